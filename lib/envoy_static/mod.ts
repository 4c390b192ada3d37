/**
 * Static envoy.yaml sync to sigma-api. (Placeholder until the feature lands: does nothing.)
 *
 * @module
 */
import type { AgentContext, Feature } from "../context.ts";

/** Starts one sync loop per configured envoy config file. */
export function startStaticSync(_ctx: AgentContext): Feature {
  return { stop: () => Promise.resolve() };
}
