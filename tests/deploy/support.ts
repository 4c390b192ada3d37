/**
 * Support for the deployment-artifact tests: Debian tool gating, running the tools, scraping a
 * real agent's `/metrics`, and pulling metric names and label matchers out of PromQL.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DevApi } from "../../lib/api/dev_server.ts";
import { freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";

export { ROOT };

/** The absolute path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const path = `${dir}/${cmd}`;
      const st = Deno.statSync(path);
      if (st.isFile && (st.mode ?? 0o111) & 0o111) return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Whether a test that needs Debian tool `tool` (package `pkg`) must be skipped: only when the
 * tool is missing and `CI` is unset. On CI a missing tool makes the test run and fail with a
 * clear message (see {@linkcode requireTool}).
 */
export function skipWithout(tool: string, pkg: string): boolean {
  if (which(tool)) return false;
  if (Deno.env.get("CI")) return false;
  console.warn(`skipping: ${tool} is not installed (apt-get install -y ${pkg}); CI fails instead`);
  return true;
}

/** The path of `tool`, or an error telling which Debian package to install. */
export function requireTool(tool: string, pkg: string): string {
  const path = which(tool);
  if (!path) throw new Error(`${tool} is required: apt-get install -y ${pkg}`);
  return path;
}

/**
 * Pipes an exposition text through `promtool check metrics` and asserts it is clean but for the
 * one finding the seed's names cause: exit 3 means lint findings only (1 would be a parse error),
 * and the only finding allowed is the gauge name `sigma_ports_total`, kept because the existing
 * Grafana dashboards query it.
 */
export async function assertPromtoolAcceptsMetrics(promtool: string, text: string): Promise<void> {
  const child = new Deno.Command(promtool, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const report = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const findings = report.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  assert.deepEqual(findings, [
    'sigma_ports_total non-counter metrics should not have "_total" suffix',
  ], report);
  assert.equal(out.code, 3, report);
}

/** Output of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (no shell) and returns its exit code and output. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): Promise<RunResult> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** One sample line of the Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parsed `/metrics`: metric families (from `# TYPE`) and every sample. */
export interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

/** Parses the Prometheus text format (label values without escaped quotes, as prom-client emits). */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2];
    }
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return { types, samples };
}

/**
 * Every series name the exposition can produce: each family, plus `_bucket`/`_sum`/`_count`
 * for histograms and summaries (whether or not a sample exists yet).
 */
export function exportedNames(e: Exposition): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of e.types) {
    if (type === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
    } else if (type === "summary") {
      for (const s of ["", "_sum", "_count"]) names.add(name + s);
    } else names.add(name);
  }
  for (const s of e.samples) names.add(s.name);
  return names;
}

/**
 * Starts the real agent (main.ts with its real permission flags) against a dev sigma-api, waits
 * until it has registered, and returns its `/metrics` text.
 */
export async function scrapeRealAgent(): Promise<string> {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = freePort();
  const stateDir = await Deno.makeTempDir({ prefix: "sigma-deploy-state-" });
  const agent = await spawnAgent({
    args: [`--metrics-port=${metricsPort}`, "--metrics-addr=127.0.0.1", "--interval=1"],
    env: { SIGMA_API_URL: url, AGENT_HOSTNAME: "deploy-test" },
    stateDir,
  });
  try {
    return await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      const text = await res.text();
      return res.ok && /^sigma_agent_registered\{[^}]*\} 1$/m.test(text) ? text : undefined;
    }, { timeoutMs: 60_000, message: "agent registered and serving /metrics" });
  } finally {
    await agent.stop();
    await api.close();
    await Deno.remove(stateDir, { recursive: true });
  }
}

const PROMQL_KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "inf",
  "nan",
  "atan2",
  // Aggregation operators (their modifier may stand between the name and the parenthesis).
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);

/** A vector selector found in a PromQL expression. */
export interface Selector {
  metric: string;
  /** Label names used in the `{...}` matchers. */
  labels: string[];
}

/**
 * The vector selectors of a PromQL expression (metric name + matcher label names). Grafana
 * variables (`$hostname`, `$__rate_interval`, `${x}`) are accepted. Function names, aggregation
 * keywords, label lists of `by`/`without`/`on`/`ignoring`/`group_*` and string literals are not
 * metrics.
 */
export function promqlSelectors(expr: string): Selector[] {
  // Drop strings first so that label values never look like names.
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  s = s.replace(/\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*/g, "5m");
  // Label lists of grouping modifiers.
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, "$1 ()");
  // Range / subquery / offset durations.
  s = s.replace(/\[[^\]]*\]/g, "");
  const out: Selector[] = [];
  const re = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?(\s*\()?|\{([^}]*)\}/g;
  for (const m of s.matchAll(re)) {
    if (m[5] !== undefined) {
      // `{__name__="x"}` style selectors are not used by our artifacts; refuse them loudly.
      throw new Error(`selector without a metric name in: ${expr}`);
    }
    const name = m[1];
    const isCall = m[4] !== undefined;
    const before = s.slice(0, m.index);
    if (isCall || PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    if (/[0-9.]$/.test(before)) continue; // the unit of a duration or number, e.g. 5m, 1e3
    const labels = [...(m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)].map((l) =>
      l[1]
    );
    out.push({ metric: name, labels });
  }
  return out;
}

/** Replaces Grafana's template variables with values Prometheus accepts. */
export function expandGrafanaVariables(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "2m")
    .replaceAll("$__interval", "1m")
    .replaceAll("$__range", "1h")
    .replace(/\$\{?hostname\}?/g, ".*");
}

/** Whether this process may create directories under /var/lib/sigma-agent (the baked-in state dir). */
export function canUseProductionStateDir(): boolean {
  try {
    Deno.mkdirSync("/var/lib/sigma-agent", { recursive: true });
    const probe = `/var/lib/sigma-agent/.probe-${crypto.randomUUID()}`;
    Deno.mkdirSync(probe);
    Deno.removeSync(probe);
    return true;
  } catch {
    console.warn(
      "skipping: cannot write /var/lib/sigma-agent (the baked-in state dir); run as root",
    );
    return false;
  }
}

/**
 * Runs an agent executable (launcher or compiled binary) for real against a dev sigma-api, with
 * a state dir under /var/lib/sigma-agent (the only one its flags allow): it must register,
 * heartbeat, serve `/metrics`, persist state, pass `sigma-agent status`, exit 0 on SIGTERM, and
 * `status` must fail once it is gone.
 */
export async function shortRealRun(executable: string, env: Record<string, string>): Promise<void> {
  const api = new DevApi();
  const apiUrl = api.listen({ hostname: "127.0.0.1", port: 0 });
  const port = freePort();
  const stateDir = `/var/lib/sigma-agent/test-${crypto.randomUUID()}`;
  await Deno.mkdir(stateDir, { recursive: true });
  const agent = await spawnAgent({
    binary: executable,
    args: [
      `--api-url=${apiUrl}`,
      `--metrics-port=${port}`,
      "--metrics-addr=127.0.0.1",
      "--interval=1",
    ],
    env: { ...env, AGENT_HOSTNAME: "binary-test" },
    stateDir,
  });
  try {
    await waitFor(
      () =>
        api.requests.filter((r) => r.path === "/api/agent/heartbeat" && r.status === 200).length >=
          1,
      { timeoutMs: 60_000, message: "registered and one heartbeat" },
    );
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^sigma_agent_registered\{hostname="binary-test"\} 1$/m);
    assert.ok([...Deno.readDirSync(stateDir)].length > 0, "state persisted in the state dir");
    const healthy = await run(executable, ["status", "--addr", `127.0.0.1:${port}`], { env });
    assert.equal(healthy.code, 0, `status: ${healthy.stdout}${healthy.stderr}`);
  } finally {
    const status = await agent.stop();
    await api.close();
    await Deno.remove(stateDir, { recursive: true });
    assert.equal(status.code, 0, `exit on SIGTERM:\n${agent.lines.join("\n")}`);
  }
  const down = await run(executable, ["status", "--addr", `127.0.0.1:${port}`], { env });
  assert.notEqual(down.code, 0, "status fails with the agent gone");
}
