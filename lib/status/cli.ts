/**
 * `sigma-agent status [--addr HOST:PORT] [--state-dir DIR] [--json]`: fetches `/status` from a
 * running agent and prints a compact, aligned summary (colour on a TTY). Without `--addr` it asks
 * where the agent recorded it listens (`listen.json` in the state dir, see `listen.ts`), then
 * `AGENT_METRICS_ADDR`/`AGENT_METRICS_PORT`, then 127.0.0.1:9102. Exit code 0 when healthy, 1 when unhealthy
 * (not registered, last heartbeat failed, a node NACKing...), 3 when the agent cannot be reached,
 * 2 for bad arguments - usable in scripts and as a container health check.
 *
 * @example
 * ```ts
 * import { renderStatus } from "./cli.ts";
 * console.log(renderStatus({ agent: { hostname: "vps-1" }, health: { healthy: true, problems: [] } }, false));
 * ```
 *
 * @module
 */

import { dialAddress, LISTEN_FILE, readListenRecord } from "./listen.ts";

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.map(obj) : [];
}

/** "12 s ago" style relative time. */
export function ago(iso: unknown, now = Date.now()): string {
  if (typeof iso !== "string") return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Renders the summary. `color` adds ANSI colours. */
export function renderStatus(status: Obj, color: boolean, now = Date.now()): string {
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const green = (s: string) => paint("32", s),
    red = (s: string) => paint("31", s),
    dim = (s: string) => paint("2", s);
  const rows: [string, string][] = [];
  const a = obj(status.agent);
  const health = obj(status.health);
  const healthy = health.healthy === true;

  rows.push([
    "VPS",
    `${a.vps_id ?? "\u2014"} (${
      a.registration === "registered"
        ? green("registered")
        : red(String(a.registration ?? "unknown"))
    })`,
  ]);
  const hb = obj(a.last_heartbeat);
  rows.push([
    "heartbeat",
    a.last_heartbeat
      ? (hb.ok
        ? `${green("ok")} ${ago(hb.at, now)}`
        : `${red("failed")} ${ago(hb.at, now)}: ${hb.error}`)
      : "none yet",
  ]);
  const ips = list(a.ip_addresses).map((e) => `${e.ip}${e.label ? ` (${e.label})` : ""}`);
  rows.push(["IPs", ips.join(", ") || "none"]);

  const p = obj(status.ports);
  if (p.enabled === false || !status.ports) rows.push(["ports", dim("scanning disabled")]);
  else {
    const used = Object.entries(obj(p.used_by_source)).filter(([, n]) => Number(n) > 0).map((
      [s, n],
    ) => `${s} ${n}`);
    const r = obj(p.range);
    const range = r.start !== undefined ? `${r.start}-${r.end}` : String(p.range);
    const held = Array.isArray(p.reservations) ? p.reservations.length : 0;
    rows.push([
      "ports",
      `${range}: ${p.available ?? "?"}/${p.total ?? "?"} available` +
      (used.length ? `; used ${used.join(", ")}` : "") +
      (held ? `; ${held} reserved` : "") +
      (p.last_scan ? `; scanned ${ago(p.last_scan, now)}` : "; not scanned yet"),
    ]);
  }

  const s = obj(status.static_sync);
  if (s.enabled === false || !status.static_sync) rows.push(["static sync", dim("disabled")]);
  else {
    const files = list(s.files);
    if (files.length === 0) rows.push(["static sync", "no files matched"]);
    for (const f of files) {
      rows.push([
        "static sync",
        `${f.path} \u2192 ${f.node_id}: ${f.routes} routes, ` +
        (f.error ? red(`error: ${f.error}`) : `synced ${ago(f.last_sync_at, now)}`),
      ]);
    }
  }

  const x = obj(status.xds);
  if (x.enabled === false || !status.xds) rows.push(["xDS", dim("disabled")]);
  else {
    const nodes = list(x.nodes);
    if (nodes.length === 0) rows.push(["xDS", `${x.address ?? ""} no nodes yet`]);
    for (const n of nodes) {
      const ack = obj(n.last_acked);
      const acked = (t: string) => String(obj(ack[t]).version ?? "\u2014");
      const nack = obj(n.last_nack);
      rows.push([
        "xDS",
        `${n.node_id} v${n.snapshot_version ?? "\u2014"}: ${
          n.connected_streams ?? 0
        } streams, acked cds ${acked("cds")} lds ${acked("lds")}` +
        (n.nacking ? ` ${red(`NACK: ${nack.error ?? ""}`)}` : ""),
      ]);
    }
  }

  const width = Math.max(...rows.map(([k]) => k.length));
  const title = `sigma-agent ${a.version ?? "?"} on ${a.hostname ?? "?"} \u2014 ${
    healthy ? green("HEALTHY") : red("UNHEALTHY")
  }`;
  const lines = [title, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)];
  for (const problem of Array.isArray(health.problems) ? health.problems : []) {
    lines.push(red(`  ! ${problem}`));
  }
  return lines.join("\n");
}

/** Result of {@linkcode statusCommand}. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Default state dir, as in the option table. */
const DEFAULT_STATE_DIR = "/var/lib/sigma-agent";

/**
 * Where `status` asks when no `--addr` is given: the address the running agent recorded in its
 * state dir, else `AGENT_METRICS_ADDR`:`AGENT_METRICS_PORT`, else 127.0.0.1:9102.
 *
 * @returns `addr` to dial, or `error` when the agent runs without a metrics port
 *
 * @example
 * ```ts
 * await statusAddress("/var/lib/sigma-agent", {}); // { addr: "127.0.0.1:9102", source: "default" }
 * ```
 */
export async function statusAddress(
  stateDir: string,
  env: Record<string, string | undefined>,
): Promise<{ addr?: string; error?: string; source: string }> {
  const rec = await readListenRecord(stateDir);
  const file = `${stateDir.replace(/\/+$/, "")}/${LISTEN_FILE}`;
  if (rec) {
    if (rec.metrics === null) {
      return {
        error: `the agent (pid ${rec.pid}, ${file}) runs without a metrics port ` +
          "(--metrics-port 0), so it has no /status to ask",
        source: file,
      };
    }
    return { addr: dialAddress(rec.metrics.addr, rec.metrics.port), source: file };
  }
  const port = env.AGENT_METRICS_PORT && /^\d+$/.test(env.AGENT_METRICS_PORT.trim())
    ? Number(env.AGENT_METRICS_PORT.trim())
    : 9102;
  const addr = env.AGENT_METRICS_ADDR?.trim() || "0.0.0.0";
  const fromEnv = env.AGENT_METRICS_PORT !== undefined || env.AGENT_METRICS_ADDR !== undefined;
  return { addr: dialAddress(addr, port), source: fromEnv ? "environment" : "default" };
}

/**
 * Runs the `status` subcommand.
 *
 * @param args arguments after `status`
 * @param opts `env` (AGENT_STATE_DIR, AGENT_METRICS_ADDR, AGENT_METRICS_PORT), `color`;
 *   `defaultAddr` skips the lookup (tests)
 */
export async function statusCommand(
  args: string[],
  opts: {
    defaultAddr?: string;
    env?: Record<string, string | undefined>;
    color: boolean;
    timeoutMs?: number;
  },
): Promise<CommandResult> {
  let addr: string | undefined;
  let stateDir = opts.env?.AGENT_STATE_DIR?.trim() || DEFAULT_STATE_DIR;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--json") json = true;
    else if (a === "--addr" && i + 1 < args.length) addr = args[++i];
    else if (a.startsWith("--addr=")) addr = a.slice(7);
    else if (a === "--state-dir" && i + 1 < args.length) stateDir = args[++i];
    else if (a.startsWith("--state-dir=")) stateDir = a.slice(12);
    else if (a === "--help" || a === "-h") {
      return {
        exitCode: 0,
        stdout: "Usage: sigma-agent status [--addr HOST:PORT] [--state-dir DIR] [--json]\n" +
          "Without --addr: the address the agent recorded in DIR/listen.json, else\n" +
          "AGENT_METRICS_ADDR:AGENT_METRICS_PORT, else 127.0.0.1:9102.\n" +
          "Exit codes: 0 healthy, 1 unhealthy, 2 bad arguments, 3 agent unreachable.",
        stderr: "",
      };
    } else {return {
        exitCode: 2,
        stdout: "",
        stderr: `sigma-agent status: unknown argument ${JSON.stringify(a)}`,
      };}
  }
  if (addr === undefined) {
    if (opts.defaultAddr !== undefined) addr = opts.defaultAddr;
    else {
      const found = await statusAddress(stateDir, opts.env ?? {});
      if (found.error) {
        return { exitCode: 3, stdout: "", stderr: `sigma-agent status: ${found.error}` };
      }
      addr = found.addr!;
    }
  }
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(addr)) {
    return {
      exitCode: 2,
      stdout: "",
      stderr: `sigma-agent status: invalid --addr ${JSON.stringify(addr)} (HOST:PORT)`,
    };
  }
  const url = `http://${addr}/status`;
  let status: Obj;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 5000) });
    if (!res.ok) {
      await res.body?.cancel();
      return {
        exitCode: 3,
        stdout: "",
        stderr: `sigma-agent status: ${url} answered HTTP ${res.status}`,
      };
    }
    status = obj(await res.json());
  } catch (e) {
    return {
      exitCode: 3,
      stdout: "",
      stderr: `sigma-agent status: cannot reach ${url}: ${(e as Error).message}`,
    };
  }
  const healthy = obj(status.health).healthy === true;
  return {
    exitCode: healthy ? 0 : 1,
    stdout: json ? JSON.stringify(status, null, 2) : renderStatus(status, opts.color),
    stderr: "",
  };
}
