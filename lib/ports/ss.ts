/**
 * Pure parser of `ss -tulnp` / `ss -tlnp` output and the process-name -> category mapping of
 * contract D4. No I/O: {@linkcode readListeningPorts} in `listeners.ts` runs `ss` and calls this.
 *
 * What a line looks like (with the `Netid` column of `-u`, and without it):
 *
 * ```text
 * tcp   LISTEN 0      16         0.0.0.0:18080      0.0.0.0:*    users:(("nginx",pid=22418,fd=4),("nginx",pid=22417,fd=4))
 *       LISTEN 0      16               *:19100            *:*    users:(("node_exporter",pid=22421,fd=4))
 * ```
 *
 * The state is found in the first two fields, the local address three fields after it and the
 * process column after the peer address. Process names come from the kernel's `comm` (at most 15
 * bytes) and may contain spaces, quotes and parentheses, so the name is read up to `",pid=`
 * instead of splitting on whitespace.
 *
 * @example
 * ```ts
 * import { countBySource, listeningPorts, parseSsOutput } from "./ss.ts";
 * const text = 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n';
 * const ports = listeningPorts(parseSsOutput(text)); // Map { 22 => "sshd" }
 * countBySource(ports).used.sshd; // 1
 * ```
 *
 * @module
 */

import { PORT_SOURCES, type PortSource } from "../core/metrics.ts";

/** One listening TCP socket as `ss` printed it. */
export interface SsListener {
  /** Local address as printed, without the port: `0.0.0.0`, `[::]`, `*`, `127.0.0.1%lo`. */
  address: string;
  /** Local port, 1-65535. */
  port: number;
  /** Name of the first process owning the socket; undefined when `ss` showed none. */
  process?: string;
}

/** Categories matched by substring of the lower-cased process name, in this order (D4). */
const NAMED_SOURCES: readonly PortSource[] = ["envoy", "sshd", "nginx", "node_exporter", "xray"];

const PROCESS_WITH_PID = /users:\(\("(.*?)",pid=\d/;
const PROCESS_BARE = /\(\("([^"]*)"/;

/**
 * Parses one line of `ss -tulnp` or `ss -tlnp` output.
 *
 * @returns the listener, or `undefined` for headers, non-`LISTEN` lines (UDP `UNCONN`, TCP
 * connections) and anything unparsable
 *
 * @example
 * ```ts
 * parseSsLine("LISTEN 0 511 [::]:443 [::]:* users:((\"envoy\",pid=7,fd=30))");
 * // { address: "[::]", port: 443, process: "envoy" }
 * ```
 */
export function parseSsLine(line: string): SsListener | undefined {
  const fields = line.trim().split(/\s+/);
  const at = fields[0] === "LISTEN" ? 0 : fields[1] === "LISTEN" ? 1 : -1;
  if (at < 0) return undefined;
  const local = fields[at + 3];
  if (local === undefined) return undefined;
  const colon = local.lastIndexOf(":");
  if (colon < 0) return undefined;
  const portText = local.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;

  // The process column is everything from the sixth field after the state on; it is read from
  // the raw line because process names may contain spaces.
  const processAt = fieldOffset(line, at + 5);
  const rest = processAt < 0 ? "" : line.slice(processAt);
  const name = PROCESS_WITH_PID.exec(rest)?.[1] ?? PROCESS_BARE.exec(rest)?.[1];
  const listener: SsListener = { address: local.slice(0, colon), port };
  if (name !== undefined && name !== "") listener.process = name;
  return listener;
}

/** Start index of the `n`th (0-based) whitespace-separated field of `line`, or -1. */
function fieldOffset(line: string, n: number): number {
  const field = /\S+/g;
  for (let i = 0;; i++) {
    const m = field.exec(line);
    if (m === null) return -1;
    if (i === n) return m.index;
  }
}

/**
 * Parses a whole `ss` output; lines that are not listening TCP sockets are skipped.
 *
 * @example
 * ```ts
 * parseSsOutput("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n").length; // 0
 * ```
 */
export function parseSsOutput(text: string): SsListener[] {
  const out: SsListener[] = [];
  for (const line of text.split("\n")) {
    const l = parseSsLine(line);
    if (l) out.push(l);
  }
  return out;
}

/**
 * Collapses listeners to one entry per port (IPv4 and IPv6 sockets of a port count once), mapping
 * the port to its process name. A named owner wins over an unnamed one; otherwise the first line
 * wins, so the result does not depend on which address family `ss` printed last.
 *
 * @example
 * ```ts
 * listeningPorts([{ address: "*", port: 22 }, { address: "0.0.0.0", port: 22, process: "sshd" }]);
 * // Map { 22 => "sshd" }
 * ```
 */
export function listeningPorts(listeners: Iterable<SsListener>): Map<number, string | undefined> {
  const ports = new Map<number, string | undefined>();
  for (const l of listeners) {
    if (!ports.has(l.port) || (ports.get(l.port) === undefined && l.process !== undefined)) {
      ports.set(l.port, l.process);
    }
  }
  return ports;
}

/**
 * The category of a process name (contract D4): the first of `envoy`, `sshd`, `nginx`,
 * `node_exporter`, `xray` contained in the lower-cased name; `unknown` when there is no name;
 * `other` otherwise.
 *
 * @example
 * ```ts
 * processCategory("envoy-wrapper"); // "envoy"
 * processCategory("sshd: root@pts/"); // "sshd"
 * processCategory(undefined); // "unknown"
 * processCategory("postgres"); // "other"
 * ```
 */
export function processCategory(name: string | undefined): PortSource {
  if (name === undefined || name === "") return "unknown";
  const lower = name.toLowerCase();
  return NAMED_SOURCES.find((source) => lower.includes(source)) ?? "other";
}

/** Listening ports counted per category. */
export interface SourceCounts {
  /** Every category of {@linkcode PORT_SOURCES}, 0 when none. */
  used: Record<PortSource, number>;
  /** Ports per raw process name, for the processes in `other`. */
  otherDetail: Map<string, number>;
}

/**
 * Counts distinct listening ports per category.
 *
 * @example
 * ```ts
 * const c = countBySource(new Map([[22, "sshd"], [5432, "postgres"], [9, undefined]]));
 * // c.used: { envoy: 0, sshd: 1, nginx: 0, node_exporter: 0, xray: 0, other: 1, unknown: 1 }
 * // c.otherDetail: Map { "postgres" => 1 }
 * ```
 */
export function countBySource(ports: Map<number, string | undefined>): SourceCounts {
  const used = emptySourceCounts();
  const otherDetail = new Map<string, number>();
  for (const name of ports.values()) {
    const source = processCategory(name);
    used[source]++;
    if (source === "other" && name !== undefined) {
      otherDetail.set(name, (otherDetail.get(name) ?? 0) + 1);
    }
  }
  return { used, otherDetail };
}

/**
 * Every category at 0.
 *
 * @example
 * ```ts
 * emptySourceCounts().unknown; // 0
 * ```
 */
export function emptySourceCounts(): Record<PortSource, number> {
  return Object.fromEntries(PORT_SOURCES.map((s) => [s, 0])) as Record<PortSource, number>;
}
