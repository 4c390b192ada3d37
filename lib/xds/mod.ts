/**
 * The Envoy xDS control plane. (Placeholder until the feature lands: does nothing.)
 *
 * @module
 */
import type { AgentContext, Feature } from "../context.ts";

/** Starts the snapshot poller and the gRPC server. */
export function startXds(_ctx: AgentContext): Promise<Feature> {
  return Promise.resolve({ stop: () => Promise.resolve() });
}
