/**
 * The agent's own lifecycle with sigma-api: register at start (retrying with backoff while the
 * API is down), persist the VPS id, heartbeat every `--interval` seconds with fresh system info,
 * and register again when the API forgets the VPS (`lifecycle.ts`).
 *
 * May import: `core`, `api`. The host facts it reports are collected by `host/` and handed in by
 * `main.ts`, so this folder never gathers them itself.
 *
 * @example
 * ```ts
 * import { Lifecycle } from "./agent/mod.ts";
 * // const lc = new Lifecycle({ api, log, metrics, store, hostname, config, collect });
 * // lc.run(signal); const vpsId = await lc.vpsIdReady;
 * ```
 *
 * @module
 */
export { Lifecycle, VPS_STATE_FILE } from "./lifecycle.ts";
export type { LifecycleOptions, LifecycleStatus } from "./lifecycle.ts";
