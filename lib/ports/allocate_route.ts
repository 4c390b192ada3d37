/**
 * `POST /ports/allocate` on the metrics port: `{"count": n}` (1-100) -> `{"ports": [...]}`.
 *
 * Every error is JSON `{"error": "..."}`: 401 without the bearer token (when
 * `--allocate-token` is set), 503 when port scanning is disabled, 400 for a wrong content type,
 * bad JSON or a bad count, 413 for a body over 4 KiB, 409 when fewer ports are free than asked.
 * The sigma-api proxy (`POST /api/vps/{id}/allocate-ports`) sends no token, so setting one is for
 * deployments where the agent is called directly.
 *
 * @example
 * ```ts
 * import { createAllocateRoute } from "./allocate_route.ts";
 * // const route = createAllocateRoute({ allocator, token: undefined, metrics, log });
 * // route.path === "/ports/allocate"; route.methods -> ["POST"]
 * ```
 *
 * @module
 */

import type { HttpRoute } from "../core/context.ts";
import { jsonResponse } from "../http/server.ts";
import type { Logger } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import { InsufficientPortsError, type PortAllocator } from "./allocator.ts";
import { readCapped } from "../http/read_body.ts";

/** The largest `count` one call may ask for (the seed's bound). */
export const MAX_ALLOCATE_COUNT = 100;

/** The largest request body accepted, bytes. */
export const MAX_ALLOCATE_BODY_BYTES = 4096;

/** Values of the `result` label of `sigma_port_allocations_total`. */
export const ALLOCATION_RESULTS = [
  "success",
  "insufficient",
  "bad_request",
  "too_large",
  "unauthorized",
  "disabled",
  "error",
] as const;

type AllocationResult = typeof ALLOCATION_RESULTS[number];

/** Options of {@linkcode createAllocateRoute}. */
export interface AllocateRouteOptions {
  /** The allocator; undefined when port scanning is disabled (every call answers 503). */
  allocator: PortAllocator | undefined;
  /** Bearer token the caller must present; undefined leaves the endpoint open. */
  token?: string;
  metrics: AgentMetrics;
  log: Logger;
}

const encoder = new TextEncoder();

/**
 * Builds the route.
 *
 * @example
 * ```ts
 * const route = createAllocateRoute({ allocator: undefined, metrics, log });
 * const res = await route.handler(new Request("http://x/ports/allocate", { method: "POST" }), {
 *   remoteAddr: "127.0.0.1",
 * });
 * res.status; // 503
 * ```
 */
export function createAllocateRoute(opts: AllocateRouteOptions): HttpRoute {
  const { allocator, token, metrics, log } = opts;
  for (const result of ALLOCATION_RESULTS) metrics.allocationsTotal.inc({ result }, 0);
  const fail = (result: AllocationResult, status: number, error: string, headers = {}) => {
    metrics.allocationsTotal.inc({ result });
    return jsonResponse(status, { error }, headers);
  };

  return {
    path: "/ports/allocate",
    methods: ["POST"],
    handler: async (req, info) => {
      if (token !== undefined && !hasBearer(req, token)) {
        log.warn("port allocation refused: missing or wrong bearer token", {
          client: info.remoteAddr,
        });
        return fail("unauthorized", 401, "missing or invalid bearer token", {
          "www-authenticate": 'Bearer realm="sigma-agent"',
        });
      }
      if (!allocator) {
        return fail(
          "disabled",
          503,
          "port scanning is not enabled (start the agent with --port-scan)",
        );
      }
      const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "application/json") {
        return fail("bad_request", 400, "content-type must be application/json");
      }
      const body = await readBody(req, MAX_ALLOCATE_BODY_BYTES);
      if (body === undefined) {
        return fail("too_large", 413, `request body over ${MAX_ALLOCATE_BODY_BYTES} bytes`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(body));
      } catch (e) {
        return fail("bad_request", 400, `invalid JSON: ${(e as Error).message}`);
      }
      const count = (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed))
        ? (parsed as Record<string, unknown>).count
        : undefined;
      if (
        typeof count !== "number" || !Number.isInteger(count) || count < 1 ||
        count > MAX_ALLOCATE_COUNT
      ) {
        return fail(
          "bad_request",
          400,
          `count must be an integer between 1 and ${MAX_ALLOCATE_COUNT}`,
        );
      }
      try {
        const ports = await allocator.allocate(count);
        metrics.allocationsTotal.inc({ result: "success" });
        log.info("ports allocated", { count, ports, client: info.remoteAddr });
        return jsonResponse(200, { ports });
      } catch (e) {
        if (e instanceof InsufficientPortsError) return fail("insufficient", 409, e.message);
        log.error("port allocation failed", { error: (e as Error).message });
        return fail("error", 500, `port test failed: ${(e as Error).message}`);
      }
    },
  };
}

/**
 * Whether the request carries `Authorization: Bearer <token>` (or `X-Allocate-Token: <token>`,
 * for callers whose `Authorization` header holds the metrics port's basic auth); compared in
 * constant time.
 */
function hasBearer(req: Request, token: string): boolean {
  const match = /^Bearer[ \t]+(.+)$/i.exec(req.headers.get("authorization") ?? "");
  const header = req.headers.get("x-allocate-token");
  if (!match && header === null) return false;
  const given = encoder.encode((match ? match[1] : header!).trim());
  const expected = encoder.encode(token);
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= (given[i] ?? 0) ^ expected[i];
  return diff === 0;
}

/** The request body, or undefined when it is (or announces to be) larger than `max` bytes. */
async function readBody(req: Request, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > max) {
    await req.body?.cancel().catch(() => {});
    return undefined;
  }
  return await readCapped(req.body, max);
}

/**
 * Whether a listen address only accepts local connections (`127.0.0.0/8`, `::1`, `localhost`).
 *
 * @example
 * ```ts
 * isLoopbackAddress("127.0.0.1"); // true
 * isLoopbackAddress("[::1]"); // true
 * isLoopbackAddress("0.0.0.0"); // false
 * ```
 */
export function isLoopbackAddress(address: string): boolean {
  const a = address.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (a === "localhost" || a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
