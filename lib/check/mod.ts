/**
 * `sigma-agent check [agent options] [--json]`: the preflight an operator runs before enabling the
 * service (like `promtool check config` or `vault operator diagnose`). It runs in the same binary
 * with the same permission flags as the agent and checks, one line per item (ok / warn / fail and
 * what to do): the configuration; every configured path against the grants and on disk; that the
 * state dir is writable; that sigma-api answers a read-only call and accepts the key; that `ss`
 * runs and sees other users' processes; that each envoy.yaml parses (routes counted); that the
 * metrics and xDS ports can be bound; that system information is readable. Exit 0 only when
 * nothing fails (1 otherwise).
 *
 * Owns: the checks and their report. Must not start any agent loop or write anything but a probe
 * file in the state dir (removed again).
 *
 * May import: `core`, `api`, `envoy_static` (the pure parser and the path rules), `ports`
 * (the `ss` reader), `status` (types only). It reuses each feature's own parsing and probing, so a
 * check passes exactly when the feature would work.
 *
 * @example
 * ```ts
 * import { checkCommand } from "./mod.ts";
 * const r = await checkCommand(["--api-url", "http://127.0.0.1:3000/api", "--json"], {});
 * console.log(r.stdout); // {"ok":false,"items":[...]}
 * ```
 *
 * @module
 */

import { statfsSync } from "node:fs";
import os from "node:os";
import { ApiError, SigmaClient } from "../api/client.ts";
import { type Config, ConfigError, parseConfig, VERSION } from "../core/config.ts";
import { checkGrants, configuredPaths, grantProblemLine, GRANTS_FILE } from "../core/grants.ts";
import { StateStore } from "../core/state_store.ts";
import { EnvoyConfigError, parseEnvoyConfig } from "../envoy_static/parser.ts";
import { resolveConfigPaths } from "../envoy_static/paths.ts";
import { readListeningPorts } from "../ports/listeners.ts";
import type { CommandResult } from "../status/cli.ts";

/** Verdict of one item. */
export type CheckStatus = "ok" | "warn" | "fail";

/** One line of the report. */
export interface CheckItem {
  item: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do about it (warn and fail). */
  fix?: string;
}

/** Options of {@linkcode runChecks} (tests point `ss` elsewhere). */
export interface CheckOptions {
  ssCommand?: string;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const ok = (item: string, detail: string): CheckItem => ({ item, status: "ok", detail });
const warn = (item: string, detail: string, fix: string): CheckItem => ({
  item,
  status: "warn",
  detail,
  fix,
});
const fail = (item: string, detail: string, fix: string): CheckItem => ({
  item,
  status: "fail",
  detail,
  fix,
});

async function checkPaths(config: Config): Promise<{ items: CheckItem[]; denied: Set<string> }> {
  const problems = await checkGrants(config);
  const denied = new Set(problems.map((p) => p.path));
  const items: CheckItem[] = [];
  for (const p of configuredPaths(config)) {
    const problem = problems.find((x) => x.path === p.path && x.option === p.option);
    items.push(
      problem
        ? fail(
          "grants",
          grantProblemLine(problem),
          `add ${problem.grantPath} to ${GRANTS_FILE} (or to the flags of your unit), or use a granted path`,
        )
        : ok("grants", `${p.option} ${p.path}: ${p.access.join(" + ")} granted`),
    );
  }
  return { items, denied };
}

async function checkStateDir(config: Config, denied: Set<string>): Promise<CheckItem> {
  const dir = config.stateDir;
  if (denied.has(dir)) {
    return fail("state dir", `${dir}: not checked, outside the grants`, "see the grants line");
  }
  const store = new StateStore(dir);
  const probe = `check-probe-${Deno.pid}.json`;
  try {
    await store.write(probe, { probe: true });
    await Deno.remove(store.path(probe));
    return ok("state dir", `${dir} is writable`);
  } catch (e) {
    const why = e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.AlreadyExists
      ? "a path component is a file, not a directory"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied by the file system"
      : message(e);
    return fail(
      "state dir",
      `${dir} is not writable: ${why}`,
      `create it for the agent's user: install -d -m 0700 -o <user> ${dir} (or set --state-dir)`,
    );
  }
}

async function checkApi(config: Config): Promise<CheckItem> {
  if (config.dev) return ok("sigma-api", "--dev: the embedded dev API is used; not checked");
  const api = new SigmaClient({
    baseUrl: config.apiUrl,
    apiKey: config.apiKey,
    timeoutMs: config.apiTimeout * 1000,
    userAgent: `sigma-agent/${VERSION} (check)`,
  });
  try {
    // GET list endpoints have no role check: any valid key may call them, nothing is written.
    await api.request("GET", "/envoy-nodes?page=1&per_page=1");
    return ok(
      "sigma-api",
      `${api.baseUrl} answers and ${
        config.apiKey ? "accepts the API key" : "needs no API key"
      } (read-only GET /envoy-nodes)`,
    );
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      return fail(
        "sigma-api",
        e.message,
        config.apiKey
          ? "set SIGMA_API_KEY (or --api-key) to a valid key of role agent, operator or admin"
          : "this API requires a key: set SIGMA_API_KEY",
      );
    }
    const fix = e instanceof ApiError && (e.kind === "network" || e.kind === "timeout")
      ? "check --api-url / SIGMA_API_URL (it includes /api), DNS, firewall and that sigma-api runs"
      : "check that --api-url points at sigma-api (it includes /api)";
    return fail("sigma-api", message(e), fix);
  }
}

async function checkSs(config: Config, opts: CheckOptions): Promise<CheckItem> {
  let ports: Map<number, string | undefined>;
  try {
    ports = await readListeningPorts({ command: opts.ssCommand, timeoutMs: 5000 });
  } catch (e) {
    const detail = `ss -tulnp: ${message(e)}`;
    const fix = "install iproute2 (ss) on the host or in the image";
    return config.portScan ? fail("ss", detail, fix) : warn("ss", detail, fix);
  }
  const hidden = [...ports.values()].filter((p) => p === undefined).length;
  if (hidden > 0) {
    return warn(
      "ss",
      `ss runs, but ${hidden} of ${ports.size} listening ports show no process (owned by another ` +
        'user, or in another PID namespace), so the port scan counts them as "other"',
      "for port attribution run as root with CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH (and the " +
        "host PID namespace in a container)",
    );
  }
  return ok("ss", `ss runs and names the process of all ${ports.size} listening ports`);
}

async function checkEnvoyFiles(config: Config, denied: Set<string>): Promise<CheckItem[]> {
  if (!config.envoyConfigSync) {
    return [ok("envoy config", "static sync is off (--envoy-config-sync); nothing to parse")];
  }
  const granted = config.envoyConfigPath.filter((p) => !denied.has(p));
  const { files, warnings } = await resolveConfigPaths(granted, config.envoyConfigExclude);
  const items: CheckItem[] = warnings.map((w) =>
    warn("envoy config", w, "check --envoy-config-path")
  );
  if (files.length === 0) {
    items.push(warn(
      "envoy config",
      `no file matches ${config.envoyConfigPath.join(", ")}`,
      "check --envoy-config-path / AGENT_ENVOY_CONFIG_PATH; the agent waits for the file",
    ));
  }
  for (const path of files) {
    try {
      const parsed = parseEnvoyConfig(await Deno.readTextFile(path), { source: path });
      if (!parsed.isBootstrap) {
        items.push(fail(
          "envoy config",
          `${path}: empty or not an Envoy bootstrap`,
          "fix the file; the agent syncs nothing from it until it parses",
        ));
        continue;
      }
      const extra = parsed.warnings.length ? `, ${parsed.warnings.length} warning(s)` : "";
      const item = ok(
        "envoy config",
        `${path}: ${parsed.routes.length} route(s), ${parsed.skippedListeners} listener(s) skipped${extra}`,
      );
      items.push(
        parsed.warnings.length
          ? { ...item, status: "warn", fix: parsed.warnings.slice(0, 3).join("; ") }
          : item,
      );
    } catch (e) {
      const detail = e instanceof EnvoyConfigError ? e.message : `${path}: ${message(e)}`;
      items.push(fail(
        "envoy config",
        detail,
        "fix the file; the agent keeps its last good routes",
      ));
    }
  }
  return items;
}

function checkPort(item: string, option: string, addr: string, port: number): CheckItem {
  let l: Deno.Listener;
  try {
    l = Deno.listen({ hostname: addr, port, transport: "tcp" });
  } catch (e) {
    const where = `${addr}:${port}`;
    if (e instanceof Deno.errors.AddrInUse) {
      return fail(
        item,
        `${where} is already in use`,
        `stop what listens there (ss -ltnp 'sport = :${port}'; an agent already running?) or set ${option}`,
      );
    }
    if (e instanceof Deno.errors.AddrNotAvailable) {
      return fail(
        item,
        `${where}: no such address on this host`,
        `set ${option} to a local address`,
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      return fail(
        item,
        `${where}: permission denied`,
        "ports below 1024 need CAP_NET_BIND_SERVICE; use a higher port",
      );
    }
    return fail(item, `${where}: ${message(e)}`, `check ${option}`);
  }
  l.close();
  return ok(item, `${addr}:${port} can be bound`);
}

function checkSystemInfo(config: Config): CheckItem {
  const parts: [string, string, () => unknown][] = [
    ["hostname", "hostname", () => Deno.hostname()],
    ["network interfaces", "networkInterfaces", () => Deno.networkInterfaces()],
    ["memory", "systemMemoryInfo", () => Deno.systemMemoryInfo()],
    ["uptime", "osUptime", () => Deno.osUptime()],
    ["load average", "loadavg", () => Deno.loadavg()],
    ["CPUs", "cpus", () => os.cpus().length],
  ];
  const missing: string[] = [];
  const kinds: string[] = [];
  for (const [what, kind, fn] of parts) {
    try {
      fn();
    } catch {
      missing.push(what);
      kinds.push(kind);
    }
  }
  let disk = "";
  try {
    const s = statfsSync(config.diskPath);
    disk = `, disk ${Math.floor((Number(s.blocks) * Number(s.bsize)) / 2 ** 30)} GiB`;
  } catch (e) {
    missing.push(`disk size via ${config.diskPath} (${message(e)})`);
    kinds.push("statfs");
  }
  if (missing.length > 0) {
    return warn(
      "system info",
      `cannot read ${missing.join(", ")}; reported as 0`,
      `grant --allow-sys=${
        kinds.join(",")
      } (${GRANTS_FILE}) / point --disk-path at a readable file`,
    );
  }
  return ok("system info", `hostname ${Deno.hostname()}, ${os.cpus().length} CPUs${disk}`);
}

/**
 * Runs every check for `config`.
 *
 * @example
 * ```ts
 * const items = await runChecks(config);
 * const failed = items.some((i) => i.status === "fail");
 * ```
 */
export async function runChecks(config: Config, opts: CheckOptions = {}): Promise<CheckItem[]> {
  const items: CheckItem[] = [ok("config", "valid")];
  const { items: grantItems, denied } = await checkPaths(config);
  items.push(...grantItems);
  items.push(await checkStateDir(config, denied));
  items.push(await checkApi(config));
  items.push(await checkSs(config, opts));
  items.push(...await checkEnvoyFiles(config, denied));
  items.push(
    config.metricsPort > 0
      ? checkPort("metrics port", "--metrics-port", config.metricsAddr, config.metricsPort)
      : ok("metrics port", "disabled (--metrics-port 0)"),
  );
  items.push(
    config.xdsEnabled
      ? checkPort("xds port", "--xds-port", config.xdsAddr, config.xdsPort)
      : ok("xds port", "xDS is off (--xds-enabled)"),
  );
  items.push(checkSystemInfo(config));
  return items;
}

/**
 * The report as text: one line per item, then a summary.
 *
 * @example
 * ```ts
 * renderChecks([{ item: "config", status: "ok", detail: "valid" }]);
 * // "ok    config        valid\n1 ok, 0 warn, 0 fail"
 * ```
 */
export function renderChecks(items: CheckItem[]): string {
  const width = Math.max(12, ...items.map((i) => i.item.length));
  const lines = items.map((i) =>
    `${i.status.padEnd(4)}  ${i.item.padEnd(width)}  ${i.detail}${i.fix ? ` \u2192 ${i.fix}` : ""}`
  );
  const count = (s: CheckStatus) => items.filter((i) => i.status === s).length;
  lines.push(`${count("ok")} ok, ${count("warn")} warn, ${count("fail")} fail`);
  return lines.join("\n");
}

/**
 * The `check` subcommand: the agent's options plus `--json`.
 *
 * @param args arguments after `check`
 * @param env the environment (the agent's variables)
 */
export async function checkCommand(
  args: string[],
  env: Record<string, string | undefined>,
  opts: CheckOptions = {},
): Promise<CommandResult> {
  const json = args.includes("--json");
  const rest = args.filter((a) => a !== "--json");
  let items: CheckItem[];
  try {
    const parsed = parseConfig(rest, env);
    if (parsed.kind !== "config") {
      return {
        exitCode: 0,
        stdout: "Usage: sigma-agent check [agent options] [--json]\n" +
          "Checks what the agent would do with these options; exit 0 when nothing fails.",
        stderr: "",
      };
    }
    items = await runChecks(parsed.config, opts);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    items = [fail("config", e.message, "fix the flag or variable (see sigma-agent --help)")];
  }
  const failed = items.some((i) => i.status === "fail");
  return {
    exitCode: failed ? 1 : 0,
    stdout: json ? JSON.stringify({ ok: !failed, items }, null, 2) : renderChecks(items),
    stderr: "",
  };
}
