/**
 * Health verdict over a `/status` document: unhealthy when the agent is not registered, the last
 * heartbeat failed, a static sync file is failing, or an Envoy node's last answer was a NACK.
 * `/status` embeds the verdict so the JSON, the HTML page and `sigma-agent status` agree.
 *
 * @example
 * ```ts
 * import { assessHealth } from "./health.ts";
 * assessHealth({ agent: { registration: "registered", last_heartbeat: { ok: true } } });
 * // { healthy: true, problems: [] }
 * ```
 *
 * @module
 */

/** The verdict. */
export interface Health {
  healthy: boolean;
  problems: string[];
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.flatMap((x) => (obj(x) ? [x as Obj] : [])) : [];
}

/** Judges a status document (sections as the features provide them). */
export function assessHealth(status: Obj): Health {
  const problems: string[] = [];
  const agent = obj(status.agent);
  if (agent) {
    if (agent.registration !== "registered") {
      problems.push(
        agent.registration === "key_rejected"
          ? "not registered: sigma-api rejected the API key"
          : "not registered with sigma-api",
      );
    }
    const hb = obj(agent.last_heartbeat);
    if (hb && hb.ok === false) {
      problems.push(`last heartbeat failed: ${String(hb.error ?? "unknown error")}`);
    }
  }
  const sync = obj(status.static_sync);
  for (const f of list(sync?.files)) {
    if (f.error) problems.push(`static sync ${String(f.path)}: ${String(f.error)}`);
  }
  const xds = obj(status.xds);
  for (const n of list(xds?.nodes)) {
    if (n.nacking === true) {
      const nack = obj(n.last_nack);
      problems.push(
        `xDS node ${String(n.node_id)} rejected its config: ${String(nack?.error ?? "NACK")}`,
      );
    }
  }
  return { healthy: problems.length === 0, problems };
}
