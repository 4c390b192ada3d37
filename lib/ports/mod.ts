/**
 * Port scanning, `/metrics` port-usage gauges and `POST /ports/allocate`.
 * (Placeholder until the ports feature lands: does nothing.)
 *
 * @module
 */
import type { AgentContext, Feature } from "../context.ts";

/** Starts the port feature (scan loop when `--port-scan`, allocate route always). */
export function startPorts(_ctx: AgentContext): Feature {
  return { routes: [], stop: () => Promise.resolve() };
}
