/**
 * The cross-cutting pieces every feature is built on, with no feature knowledge of their own:
 *
 * - `config.ts`: the option table (`OPTIONS`: flag, env var, default, parser) and `parseConfig`;
 * - `log.ts`: the structured logger (text or JSON) that redacts the API key;
 * - `metrics.ts`: the Prometheus registry and every metric the agent exports;
 * - `schedule.ts`: interval + jitter + backoff, the one scheduling helper of every loop;
 * - `state_store.ts`: atomic files in the state dir;
 * - `memory.ts`: one memory-reducing collection after a burst of work (`MemoryReclaimer`);
 * - `context.ts`: what `main.ts` hands every feature (`AgentContext`) and what a feature hands
 *   back (`Feature`: routes, readiness, stop).
 *
 * May import: `api` (types only), `status` (types only), `tls` (types only), all in `context.ts`:
 * the contract handed to features.
 * Must not import anything that runs a feature: core sits at the start of the one-way flow
 * config -> collectors and clients -> state -> servers.
 *
 * @example
 * ```ts
 * import { createLogger, parseConfig } from "./core/mod.ts";
 * const parsed = parseConfig(["--interval=5"], {});
 * if (parsed.kind === "config") {
 *   const log = createLogger({ format: "json", secrets: [parsed.config.apiKey] });
 *   log.info("interval", { seconds: parsed.config.interval });
 * }
 * ```
 *
 * @module
 */
export { ConfigError, parseConfig, VERSION } from "./config.ts";
export type { Config } from "./config.ts";
export type { AgentContext, Feature, HttpRoute } from "./context.ts";
export { createLogger, silentLogger } from "./log.ts";
export type { Logger } from "./log.ts";
export { createMetrics } from "./metrics.ts";
export type { AgentMetrics } from "./metrics.ts";
export { Backoff, jittered, runPeriodic, sleep } from "./schedule.ts";
export { StateStore } from "./state_store.ts";
export { MemoryReclaimer } from "./memory.ts";
