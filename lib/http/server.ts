/**
 * The agent's HTTP port (`--metrics-port`): `/metrics`, `/healthz`, `/readyz`, `/status`, and the
 * routes features mount (e.g. `POST /ports/allocate`). Unknown paths answer 404 and wrong methods
 * 405, both as JSON `{"error": ...}`. The server only reads state that others maintain.
 *
 * With a web config file ({@linkcode WebConfig}) the port serves TLS, asks for HTTP Basic
 * credentials on every path except `/healthz` (a liveness probe that reveals nothing but "ok"),
 * and adds the configured response headers. `/status` and `/metrics` pass through the secret
 * redactor, so no secret form reaches them.
 *
 * @example
 * ```ts
 * import { startHttpServer } from "./server.ts";
 * // const srv = startHttpServer({ hostname: "0.0.0.0", port: 9102, metrics, board, ready, routes: [], log });
 * // await srv.shutdown();
 * ```
 *
 * @module
 */

import type { HttpRoute, ReadinessCheck } from "../core/context.ts";
import { type Http1Limits, serveHttp1 } from "./http1.ts";
import type { Logger } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import type { StatusBoard } from "../status/board.ts";
import type { ByteListener } from "../tls/listener.ts";
import type { WebConfig } from "./web_config.ts";

/** Options of {@linkcode startHttpServer}. */
export interface HttpServerOptions {
  hostname: string;
  port: number;
  metrics: AgentMetrics;
  board: StatusBoard;
  /** Readiness checks; `/readyz` is 200 when all return `undefined`. */
  ready: ReadinessCheck[];
  routes: HttpRoute[];
  log: Logger;
  /** Extra routes served before the built-ins (the status page). */
  extra?: HttpRoute[];
  /** Transport limits (slow or oversized requests); production defaults when omitted. */
  limits?: Partial<Http1Limits>;
  /** TLS, basic auth and headers (`--web-config-file`), already loaded. */
  web?: WebConfig;
  /** A bound TLS listener to serve on (see {@linkcode listenWebTls}). */
  listener?: ByteListener;
  /** Removes secrets from `/status` and `/metrics` text. */
  redact?: (text: string) => string;
}

/** Paths served without basic auth: a liveness probe must not need credentials. */
const OPEN_PATHS = new Set(["/healthz"]);

/** A JSON response. */
export function jsonResponse(
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

/** The running server. */
export interface RunningHttpServer {
  /** The bound port (useful with port 0). */
  port: number;
  shutdown(): Promise<void>;
}

/** Builds the request handler (exposed for tests that need no socket). */
export function createHandler(opts: Omit<HttpServerOptions, "hostname" | "port">) {
  const redact = opts.redact ?? ((t: string) => t);
  // Single flight: scrapes that arrive while a render is under way share its result, so a burst
  // of scrapers costs one render, not one each.
  let inFlight: Promise<string> | undefined;
  const renderMetrics = (): Promise<string> => {
    inFlight ??= opts.metrics.registry.metrics().finally(() => (inFlight = undefined));
    return inFlight;
  };
  const builtins: HttpRoute[] = [
    {
      path: "/metrics",
      methods: ["GET", "HEAD"],
      handler: async () =>
        new Response(redact(await renderMetrics()), {
          headers: { "content-type": opts.metrics.registry.contentType },
        }),
    },
    {
      path: "/healthz",
      methods: ["GET", "HEAD"],
      handler: () => jsonResponse(200, { status: "ok" }),
    },
    {
      path: "/readyz",
      methods: ["GET", "HEAD"],
      handler: () => {
        const reasons = opts.ready.map((c) => c()).filter((r): r is string => !!r);
        return reasons.length === 0
          ? jsonResponse(200, { status: "ready" })
          : jsonResponse(503, { status: "not ready", reasons });
      },
    },
    {
      path: "/status",
      methods: ["GET", "HEAD"],
      handler: () =>
        new Response(redact(JSON.stringify(opts.board.document())), {
          headers: { "content-type": "application/json", "cache-control": "no-store" },
        }),
    },
  ];
  const table = new Map<string, HttpRoute>();
  for (const r of [...builtins, ...opts.routes, ...(opts.extra ?? [])]) table.set(r.path, r);

  const route = async (req: Request, remoteAddr: string): Promise<Response> => {
    const path = new URL(req.url).pathname;
    if (opts.web && !OPEN_PATHS.has(path)) {
      const denied = await opts.web.authenticate(req);
      if (denied) return denied;
    }
    const route = table.get(path);
    if (!route) return jsonResponse(404, { error: `not found: ${path}` });
    if (!route.methods.includes(req.method)) {
      return jsonResponse(405, { error: `method ${req.method} not allowed on ${path}` }, {
        allow: route.methods.join(", "),
      });
    }
    try {
      return await route.handler(req, { remoteAddr });
    } catch (e) {
      opts.log.error("http handler failed", { path, error: (e as Error).message });
      return jsonResponse(500, { error: "internal error" });
    }
  };
  if (!opts.web) return route;
  const web = opts.web;
  return async (req: Request, remoteAddr: string): Promise<Response> => {
    const res = await route(req, remoteAddr);
    const extra = web.headers();
    if (extra.length === 0) return res;
    const headers = new Headers(res.headers);
    for (const [k, v] of extra) headers.set(k, v);
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  };
}

/**
 * Binds the TLS listener of the metrics port when the web config has `tls_server_config`
 * (pass it to {@linkcode startHttpServer} as `listener`); undefined for plain HTTP.
 *
 * @throws when the port cannot be bound
 */
export async function listenWebTls(
  web: WebConfig | undefined,
  hostname: string,
  port: number,
  log: Logger,
): Promise<ByteListener | undefined> {
  if (!web?.tls) return undefined;
  // Loaded only for TLS: a plain-text agent never holds that module in memory.
  const { listenTls } = await import("../tls/listener.ts");
  return await listenTls({
    hostname,
    port,
    alpn: ["http/1.1"],
    settings: () => web.tls!.current(),
    onClientError: (message, remote) =>
      log.debug("tls handshake refused", { remote, error: message }),
  });
}

/**
 * Starts the server: on `listener` when given (TLS, see {@linkcode listenWebTls}), else on a
 * plain TCP listener bound to `hostname:port`.
 *
 * @throws when the port cannot be bound (the caller reports it and exits)
 */
export function startHttpServer(opts: HttpServerOptions): RunningHttpServer {
  const handle = createHandler(opts);
  const server = serveHttp1(
    { hostname: opts.hostname, port: opts.port, limits: opts.limits, listener: opts.listener },
    (req, info) => handle(req, info.remoteAddr),
  );
  opts.log.info("http server listening", {
    addr: `${opts.hostname}:${server.port}`,
    tls: !!opts.listener,
    client_auth: opts.web?.tls?.paths.clientAuth ?? "none",
    basic_auth: (opts.web?.current().users.size ?? 0) > 0,
  });
  return server;
}
