/**
 * An in-memory sigma-api implementing the agent-facing endpoints of the contract (register,
 * heartbeat, envoy nodes, envoy routes, static sync) with the real API's status codes, error
 * texts and pagination. It backs `deno task dev` (embedded in the agent process) and the test
 * suites (a real HTTP server on loopback), and it can misbehave on command for fault tests.
 *
 * @example
 * ```ts
 * import { DevApi } from "./dev_server.ts";
 * const api = new DevApi({ seedDemo: true });
 * const url = api.listen({ hostname: "127.0.0.1", port: 0 });
 * // ... point the agent at `url` ...
 * await api.close();
 * ```
 *
 * @module
 */

import { isIpLiteral } from "../host/ips.ts";
import type { EnvoyNode, EnvoyRoute, IpAddress } from "./types.ts";

/** A stored VPS row (the subset the dev API keeps). */
export interface DevVps {
  id: string;
  hostname: string;
  alias: string;
  ip_addresses: IpAddress[];
  ssh_port: number;
  status: string;
  source: string;
  extra: { system_info?: unknown; last_heartbeat?: string; [k: string]: unknown };
  created_at: string;
  updated_at: string;
}

/** One request the dev API received (for test assertions). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  status: number;
  at: number;
}

/** A misbehaviour to inject. Applies to every `/api` request while set. */
export interface Fault {
  /** Answer with this status (and `body`, default `{"error":"Internal error: injected"}`). */
  status?: number;
  /** Raw body text to send instead of the real answer (non-JSON, truncated JSON...). */
  body?: string;
  /** Send a body of this many bytes (a huge response). */
  hugeBytes?: number;
  /** Delay every answer by this many ms (beyond the client's timeout to test timeouts). */
  delayMs?: number;
  /** `Retry-After` header value (with status 429). */
  retryAfter?: string;
  /** Only requests whose path starts with this prefix (after /api) misbehave. */
  pathPrefix?: string;
}

/** Options of {@linkcode DevApi}. */
export interface DevApiOptions {
  /** When set, requests must carry `X-Api-Key: <apiKey>` (else 401, empty body). */
  apiKey?: string;
  /** On the first VPS registration, create a demo Envoy node with one dynamic route. */
  seedDemo?: boolean;
  now?: () => Date;
}

/** Node id of the demo Envoy node that `seedDemo` creates. */
export const DEMO_NODE_ID = "demo-envoy";

function json(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

const err = (status: number, error: string) => json(status, { error });

function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}

/** A demo static envoy.yaml (one TCP proxy) for `deno task dev` and the benchmarks. */
export const DEMO_STATIC_ENVOY_YAML =
  `# Demo Envoy static config written by \`deno task dev\`; edit it and watch the agent re-sync.
static_resources:
  listeners:
  - name: demo_tcp
    address: { socket_address: { address: 0.0.0.0, port_value: 10443 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: demo_tcp
          cluster: demo_backend
  clusters:
  - name: demo_backend
    type: STATIC
    connect_timeout: 5s
    load_assignment:
      cluster_name: demo_backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8443 } } }
`;

/** The in-memory sigma-api. */
export class DevApi {
  readonly vps: DevVps[] = [];
  readonly nodes: (EnvoyNode & { created_at: string; updated_at: string })[] = [];
  readonly routes: (EnvoyRoute & { created_at: string; updated_at: string })[] = [];
  readonly requests: RecordedRequest[] = [];
  /** Set to make every request misbehave; `undefined` restores normal service. */
  fault: Fault | undefined;

  readonly #opts: DevApiOptions;
  #server: Deno.HttpServer | undefined;
  #port = 0;
  #hostname = "127.0.0.1";
  #seeded = false;

  constructor(opts: DevApiOptions = {}) {
    this.#opts = opts;
  }

  #now(): string {
    return (this.#opts.now?.() ?? new Date()).toISOString();
  }

  /**
   * Starts serving. Returns the base URL (with `/api`). Port 0 picks a free port; calling
   * `listen()` again after {@linkcode DevApi.stop} reuses the same port (an API that comes back).
   */
  listen(opts: { hostname?: string; port?: number } = {}): string {
    if (this.#server) return this.url;
    this.#hostname = opts.hostname ?? this.#hostname;
    const port = opts.port ?? this.#port;
    this.#server = Deno.serve(
      { hostname: this.#hostname, port, onListen: () => {} },
      (req) => this.handle(req),
    );
    this.#port = (this.#server.addr as Deno.NetAddr).port;
    return this.url;
  }

  /** Base URL including `/api`. */
  get url(): string {
    const host = this.#hostname.includes(":") ? `[${this.#hostname}]` : this.#hostname;
    return `http://${host}:${this.#port}/api`;
  }

  /** Stops serving (connections are refused) while keeping all data. */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) await s.shutdown();
  }

  /** Stops for good. */
  async close(): Promise<void> {
    await this.stop();
  }

  /** Adds an envoy node for a VPS (as the web UI would). */
  addNode(vpsId: string, nodeId: string, status = "active"): EnvoyNode {
    const now = this.#now();
    const node = {
      id: crypto.randomUUID(),
      vps_id: vpsId,
      node_id: nodeId,
      admin_port: null,
      description: "",
      config_version: 0,
      status,
      created_at: now,
      updated_at: now,
    };
    this.nodes.push(node);
    return node;
  }

  /** Adds a dynamic route to a node (by row id) and bumps its `config_version`. */
  addRoute(
    envoyNodeId: string,
    route: Partial<EnvoyRoute> & { name: string; listen_port: number },
  ): EnvoyRoute {
    const now = this.#now();
    const row = {
      id: crypto.randomUUID(),
      envoy_node_id: envoyNodeId,
      backend_host: null,
      backend_port: null,
      cluster_type: "logical_dns",
      connect_timeout_secs: 5,
      proxy_protocol: 1,
      source: "dynamic",
      status: "active",
      created_at: now,
      updated_at: now,
      ...route,
    };
    const clash = this.routes.findIndex((r) =>
      r.envoy_node_id === envoyNodeId && r.listen_port === route.listen_port
    );
    if (clash >= 0) this.routes.splice(clash, 1);
    this.routes.push(row);
    this.bumpVersion(envoyNodeId);
    return row;
  }

  /** Removes a route by id and bumps its node's version. */
  removeRoute(routeId: string): void {
    const i = this.routes.findIndex((r) => r.id === routeId);
    if (i < 0) return;
    const [r] = this.routes.splice(i, 1);
    this.bumpVersion(r.envoy_node_id);
  }

  /** Increments a node's `config_version` (what any route write does in the real API). */
  bumpVersion(envoyNodeId: string): void {
    const n = this.nodes.find((x) => x.id === envoyNodeId);
    if (n) {
      n.config_version++;
      n.updated_at = this.#now();
    }
  }

  /** Finds a stored VPS by hostname (non-deleted). */
  findVps(hostname: string): DevVps | undefined {
    return this.#match(hostname);
  }

  #match(hostname: string): DevVps | undefined {
    return this.vps.find((v) =>
      v.status !== "deleted" &&
      (v.hostname === hostname ||
        (Array.isArray(v.extra.merged_hostnames) && v.extra.merged_hostnames.includes(hostname)))
    );
  }

  /** Handles one HTTP request (exposed so the agent can embed the API without a socket too). */
  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => (headers[k] = v));
    const rec: RecordedRequest = {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body: undefined,
      status: 0,
      at: Date.now(),
    };
    let raw = "";
    try {
      raw = await req.text();
    } catch {
      // client went away
    }
    try {
      rec.body = raw ? JSON.parse(raw) : undefined;
    } catch {
      rec.body = raw;
    }
    this.requests.push(rec);
    if (this.requests.length > 10_000) this.requests.splice(0, this.requests.length - 10_000);

    let res = await this.#faulty(url.pathname);
    res ??= this.#route(req.method, url, headers, raw);
    rec.status = res.status;
    return res;
  }

  async #faulty(path: string): Promise<Response | undefined> {
    const f = this.fault;
    if (!f || !path.startsWith("/api")) return undefined;
    if (f.pathPrefix && !path.slice(4).startsWith(f.pathPrefix)) return undefined;
    if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
    if (f.hugeBytes) {
      return new Response("x".repeat(f.hugeBytes), { status: f.status ?? 200 });
    }
    if (f.status === undefined && f.body === undefined) return undefined;
    const headers: Record<string, string> = {};
    if (f.retryAfter !== undefined) headers["retry-after"] = f.retryAfter;
    const body = f.body ??
      (f.status === 429
        ? "Too Many Requests"
        : JSON.stringify({ error: "Internal error: injected" }));
    return new Response(body, { status: f.status ?? 200, headers });
  }

  #route(method: string, url: URL, headers: Record<string, string>, raw: string): Response {
    const path = url.pathname.replace(/\/+$/, "");
    if (!path.startsWith("/api/")) return err(404, "Not found");
    if (this.#opts.apiKey && headers["x-api-key"] !== this.#opts.apiKey) {
      return new Response(null, { status: 401 });
    }
    const p = path.slice(4);
    const body = () => {
      if (!(headers["content-type"] ?? "").includes("application/json")) {
        throw text(415, "Expected request with `Content-Type: application/json`");
      }
      try {
        return JSON.parse(raw) as Record<string, unknown>;
      } catch (e) {
        throw text(400, `Failed to parse the request body as JSON: ${(e as Error).message}`);
      }
    };
    try {
      if (method === "POST" && p === "/agent/register") return this.#register(body(), true);
      if (method === "POST" && p === "/agent/heartbeat") return this.#register(body(), false);
      if (method === "GET" && p === "/envoy-nodes") return this.#listNodes(url.searchParams);
      if (method === "POST" && p === "/envoy-nodes") return this.#createNode(body());
      if (method === "GET" && p === "/envoy-routes") return this.#listRoutes(url.searchParams);
      if (method === "POST" && p === "/envoy-routes") return this.#createRoute(body());
      if (method === "POST" && p === "/envoy-routes/sync-static") return this.#syncStatic(body());
      if (method === "GET" && p === "/vps") return this.#page(url.searchParams, this.vps);
      return err(404, "Not found");
    } catch (e) {
      if (e instanceof Response) return e;
      return err(500, `Internal error: ${(e as Error).message}`);
    }
  }

  #page<T>(q: URLSearchParams, rows: T[]): Response {
    const page = Math.max(1, Number(q.get("page") ?? 1) || 1);
    const perPage = Math.min(100, Math.max(1, Number(q.get("per_page") ?? 25) || 25));
    const data = rows.slice((page - 1) * perPage, page * perPage);
    return json(200, { data, total: rows.length, page, per_page: perPage });
  }

  #register(b: Record<string, unknown>, isRegister: boolean): Response {
    if (typeof b.hostname !== "string") return text(422, "missing field `hostname`");
    const hostname = b.hostname.trim();
    if (hostname === "") return err(400, "Bad request: hostname is required");
    const ips = Array.isArray(b.ip_addresses) ? (b.ip_addresses as IpAddress[]) : [];
    for (const entry of ips) {
      const ip = String(entry?.ip ?? "").trim();
      if (ip !== "" && !isIpLiteral(ip)) {
        return err(400, `Bad request: Invalid IP address: '${ip}'`);
      }
    }
    const now = this.#now();
    const existing = this.#match(hostname);
    if (!existing && !isRegister) return err(404, "Not found");
    const merge = (stored: IpAddress[]) =>
      ips.map((e) => {
        const old = stored.find((s) => s.ip === e.ip);
        return { ip: e.ip, label: old && old.label ? old.label : (e.label ?? "") } as IpAddress;
      });
    if (existing) {
      existing.hostname = hostname;
      if (isRegister) {
        if (typeof b.alias === "string" && b.alias !== "") existing.alias = b.alias;
        existing.ip_addresses = merge(existing.ip_addresses);
        existing.ssh_port = typeof b.ssh_port === "number" ? b.ssh_port : 22;
        existing.status = "active";
      } else if (ips.length > 0) {
        existing.ip_addresses = merge(existing.ip_addresses);
      }
      existing.extra = {
        ...existing.extra,
        system_info: b.system_info ?? null,
        last_heartbeat: now,
      };
      existing.updated_at = now;
      return json(200, this.#vpsJson(existing));
    }
    const row: DevVps = {
      id: crypto.randomUUID(),
      hostname,
      alias: typeof b.alias === "string" ? b.alias : "",
      ip_addresses: ips.map((e) => ({ ip: e.ip, label: e.label ?? "" })),
      ssh_port: typeof b.ssh_port === "number" ? b.ssh_port : 22,
      status: "active",
      source: "agent",
      extra: { system_info: b.system_info ?? null, last_heartbeat: now },
      created_at: now,
      updated_at: now,
    };
    this.vps.push(row);
    if (this.#opts.seedDemo && !this.#seeded) {
      this.#seeded = true;
      const node = this.addNode(row.id, DEMO_NODE_ID);
      this.addRoute(node.id, {
        name: "demo-echo",
        listen_port: 10080,
        backend_host: "127.0.0.1",
        backend_port: 8080,
        cluster_type: "static",
        proxy_protocol: 0,
      });
    }
    return json(200, this.#vpsJson(row));
  }

  #vpsJson(v: DevVps): unknown {
    return { ...v, provider_id: null, tags: [] };
  }

  #listNodes(q: URLSearchParams): Response {
    const vpsId = q.get("vps_id");
    if (vpsId !== null && !isUuid(vpsId)) return text(400, "Failed to deserialize query string");
    const status = q.get("status");
    const rows = this.nodes
      .filter((n) =>
        (vpsId === null || n.vps_id === vpsId) && (status === null || n.status === status)
      )
      .slice()
      .reverse(); // created_at DESC
    return this.#page(q, rows);
  }

  #createNode(b: Record<string, unknown>): Response {
    if (typeof b.vps_id !== "string" || typeof b.node_id !== "string") {
      return text(422, "missing field `vps_id` or `node_id`");
    }
    if (!this.vps.some((v) => v.id === b.vps_id)) {
      return err(400, `Bad request: VPS ${b.vps_id} not found`);
    }
    if (this.nodes.some((n) => n.vps_id === b.vps_id && n.node_id === b.node_id)) {
      return err(500, "Database error"); // the real API's unique violation
    }
    const node = this.addNode(
      b.vps_id,
      b.node_id,
      typeof b.status === "string" ? b.status : "active",
    );
    if (typeof b.description === "string") node.description = b.description;
    return json(200, node);
  }

  #listRoutes(q: URLSearchParams): Response {
    const nodeId = q.get("envoy_node_id");
    if (nodeId !== null && !isUuid(nodeId)) return text(400, "Failed to deserialize query string");
    const status = q.get("status"), source = q.get("source");
    const rows = this.routes
      .filter((r) =>
        (nodeId === null || r.envoy_node_id === nodeId) &&
        (status === null || r.status === status) &&
        (source === null || r.source === source)
      )
      .sort((a, b) => a.listen_port - b.listen_port);
    return this.#page(q, rows);
  }

  #createRoute(b: Record<string, unknown>): Response {
    if (
      typeof b.envoy_node_id !== "string" || typeof b.name !== "string" ||
      typeof b.listen_port !== "number"
    ) {
      return text(422, "missing field");
    }
    if (!this.nodes.some((n) => n.id === b.envoy_node_id)) {
      return err(400, `Bad request: Envoy node ${b.envoy_node_id} not found`);
    }
    return json(
      200,
      this.addRoute(
        b.envoy_node_id,
        b as Partial<EnvoyRoute> & { name: string; listen_port: number },
      ),
    );
  }

  #syncStatic(b: Record<string, unknown>): Response {
    const nodeId = b.envoy_node_id;
    if (typeof nodeId !== "string" || !Array.isArray(b.routes)) return text(422, "missing field");
    const node = this.nodes.find((n) => n.id === nodeId);
    if (!node) return err(400, `Bad request: Envoy node ${nodeId} not found`);
    const now = this.#now();
    const ports = new Set<number>();
    for (const e of b.routes as Record<string, unknown>[]) {
      if (typeof e.name !== "string" || typeof e.listen_port !== "number") {
        return text(422, "invalid route entry");
      }
      ports.add(e.listen_port);
      const values = {
        name: e.name,
        backend_host: (e.backend_host as string | null) ?? null,
        backend_port: (e.backend_port as number | null) ?? null,
        cluster_type: (e.cluster_type as string) ?? "logical_dns",
        connect_timeout_secs: (e.connect_timeout_secs as number) ?? 5,
        proxy_protocol: (e.proxy_protocol as number) ?? 0,
        updated_at: now,
      };
      const existing = this.routes.find((r) =>
        r.envoy_node_id === nodeId && r.listen_port === e.listen_port
      );
      if (existing) Object.assign(existing, values);
      else {
        this.routes.push({
          id: crypto.randomUUID(),
          envoy_node_id: nodeId,
          listen_port: e.listen_port,
          source: "static",
          status: "active",
          created_at: now,
          ...values,
        });
      }
    }
    let deleted = 0;
    for (let i = this.routes.length - 1; i >= 0; i--) {
      const r = this.routes[i];
      if (r.envoy_node_id === nodeId && r.source === "static" && !ports.has(r.listen_port)) {
        this.routes.splice(i, 1);
        deleted++;
      }
    }
    node.config_version++;
    node.updated_at = now;
    return json(200, { upserted: (b.routes as unknown[]).length, deleted });
  }
}
