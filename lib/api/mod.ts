/**
 * Everything about the sigma-api: the client (`client.ts`: `X-Api-Key`, per-request timeouts,
 * classified errors, pagination) and its keep-alive HTTP/1.1 transport (`http1_client.ts`; `fetch`
 * when a proxy is configured), the wire contract's types and their strict parsers
 * (`types.ts`, checked against `shared/spec/sigma-api-contract.md`), and the embedded dev API
 * (`dev_server.ts`, what `--dev` and the tests run against).
 *
 * May import: `core` (failure wording), `http` (the capped body reader), `host` (the IP-literal
 * check of the dev API).
 * Must not import a feature: features call the client, never the other way round.
 *
 * @example
 * ```ts
 * import { SigmaClient } from "./api/mod.ts";
 * const api = new SigmaClient({ baseUrl: "http://127.0.0.1:3000/api", apiKey: undefined });
 * ```
 *
 * @module
 */
export { ApiError, SigmaClient } from "./client.ts";
export type { ApiErrorKind, ClientOptions } from "./client.ts";
export { DEMO_NODE_ID, DEMO_STATIC_ENVOY_YAML, DevApi } from "./dev_server.ts";
export * from "./types.ts";
