/**
 * The agent's HTTP port (`--metrics-port`): a general, hardened HTTP/1.1 server and the routes
 * every agent serves on it.
 *
 * - `http1.ts`: the HTTP/1.1 server itself (head and body limits, deadlines, keep-alive); it
 *   knows nothing of the agent;
 * - `server.ts`: `/metrics`, `/healthz`, `/readyz`, `/status`, plus the routes features mount;
 * - `read_body.ts`: one capped body reader, for requests and API responses alike.
 *
 * May import: `core`, `tls` (the TLS listener), `status` (types only: the board `/status` reads).
 * Must not import a feature (`ports`, `xds`, `envoy_static`, `agent`): features mount their
 * routes through `Feature.routes`, so the server never reaches into them.
 *
 * @example
 * ```ts
 * import { jsonResponse } from "./http/mod.ts";
 * const res = jsonResponse(200, { status: "ok" });
 * ```
 *
 * @module
 */
export { serveHttp1 } from "./http1.ts";
export type { Http1Limits, Http1Server } from "./http1.ts";
export { readCapped } from "./read_body.ts";
export { createHandler, jsonResponse, startHttpServer } from "./server.ts";
export type { HttpServerOptions, RunningHttpServer } from "./server.ts";
