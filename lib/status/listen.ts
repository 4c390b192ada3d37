/**
 * Where the running agent really listens, recorded in its state dir (`listen.json`, written
 * atomically once the servers are bound). `sigma-agent status` reads it, so the container's
 * HEALTHCHECK and the systemd/Kubernetes probes find the agent however its settings were given
 * (flags, environment, defaults). A wildcard listen address is dialled on loopback.
 *
 * @example
 * ```ts
 * import { dialAddress, LISTEN_FILE, readListenRecord } from "./listen.ts";
 * const rec = await readListenRecord("/var/lib/sigma-agent");
 * if (rec?.metrics) console.log(dialAddress(rec.metrics.addr, rec.metrics.port)); // "127.0.0.1:9102"
 * ```
 *
 * @module
 */

import type { StateStore } from "../core/state_store.ts";

/** The state-dir file with the listen addresses. */
export const LISTEN_FILE = "listen.json";

/** One bound socket. */
export interface Endpoint {
  addr: string;
  port: number;
}

/** What `listen.json` holds. */
export interface ListenRecord {
  pid: number;
  started_at: string;
  /** `null` when the metrics port is disabled (`--metrics-port 0`). */
  metrics: Endpoint | null;
  /** `null` when xDS is off. */
  xds: Endpoint | null;
}

/** Writes the record atomically. */
export async function writeListenRecord(store: StateStore, rec: ListenRecord): Promise<void> {
  await store.write(LISTEN_FILE, rec);
}

function endpoint(v: unknown): Endpoint | null | undefined {
  if (v === null) return null;
  const o = v as Record<string, unknown> | undefined;
  if (!o || typeof o.addr !== "string" || !Number.isInteger(o.port)) return undefined;
  return { addr: o.addr, port: o.port as number };
}

/**
 * Reads `listen.json` from `stateDir`.
 *
 * @returns the record, `undefined` when it is missing, unreadable or malformed
 */
export async function readListenRecord(stateDir: string): Promise<ListenRecord | undefined> {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(await Deno.readTextFile(`${stateDir.replace(/\/+$/, "")}/${LISTEN_FILE}`));
  } catch {
    return undefined;
  }
  const metrics = endpoint(v?.metrics), xds = endpoint(v?.xds);
  if (metrics === undefined || xds === undefined) return undefined;
  return {
    pid: Number(v.pid),
    started_at: String(v.started_at),
    metrics,
    xds,
  };
}

/**
 * `HOST:PORT` to dial a listener: `0.0.0.0` becomes `127.0.0.1`, `::` becomes `[::1]`, IPv6
 * literals get brackets.
 *
 * @example
 * ```ts
 * dialAddress("::", 9102); // "[::1]:9102"
 * ```
 */
export function dialAddress(addr: string, port: number): string {
  const a = addr.replace(/^\[|\]$/g, "");
  const host = a === "0.0.0.0" || a === "" ? "127.0.0.1" : a === "::" || a === "::0" ? "::1" : a;
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}
