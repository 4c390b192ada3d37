/**
 * Test support: run the agent as a real subprocess with its real permission flags, wait for
 * conditions, and find free ports.
 *
 * @module
 */

import type { SystemInfo } from "../lib/api/types.ts";

/** Placeholder system info for tests that register a VPS themselves (values are irrelevant). */
export const TEST_SYSTEM_INFO: SystemInfo = {
  cpu_cores: 1,
  ram_mb: 512,
  disk_gb: 10,
  disk_used_gb: 1,
  uptime_seconds: 1,
  load_avg: [],
};

/** Repository root (absolute path, trailing slash). */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** The agent's permission flags as `deno task start` uses them (deploy/permissions.flags). */
export function startPermissionFlags(): string[] {
  return Deno.readTextFileSync(`${ROOT}deploy/permissions.flags`).split("\n").map((l) => l.trim())
    .filter(
      (l) => l !== "",
    );
}

/**
 * The start flags with the test's own directories in place of the production paths
 * (`/var/lib/sigma-agent`, `/etc/envoy`), so each test has a private state dir. Nothing is added.
 */
export function agentPermissionFlags(
  paths: { stateDir?: string; envoyDir?: string; etcDir?: string } = {},
): string[] {
  return startPermissionFlags().map((f) => {
    if (paths.stateDir) f = f.replaceAll("/var/lib/sigma-agent", paths.stateDir);
    if (paths.envoyDir) f = f.replaceAll("/etc/envoy", paths.envoyDir);
    if (paths.etcDir) f = f.replaceAll("/etc/sigma-agent", paths.etcDir);
    return f;
  });
}

/** Polls `fn` until it returns a truthy value; throws with `message` after the timeout. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
  throw new Error(
    `timed out: ${opts.message ?? "condition"}${last ? ` (last error: ${last})` : ""}`,
  );
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A running agent subprocess. */
export interface AgentProcess {
  child: Deno.ChildProcess;
  /** Every stderr line so far (JSON log lines, parsed when possible). */
  lines: string[];
  /** Parsed JSON log records so far. */
  records(): Record<string, unknown>[];
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Sends a signal and waits for the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  status: Promise<Deno.CommandStatus>;
  stateDir: string;
}

/** Options of {@linkcode spawnAgent}. */
export interface SpawnOptions {
  args: string[];
  env?: Record<string, string>;
  stateDir?: string;
  envoyDir?: string;
  /** Stands in for `/etc/sigma-agent` (certificates, web config) in the read grant. */
  etcDir?: string;
  /** Run this executable (a compiled binary) instead of `deno run <flags> main.ts`. */
  binary?: string;
  /**
   * Extra `deno run` flags after the real ones (benchmarks trying V8 settings: a later
   * `--v8-flags` value wins over the permissions file's).
   */
  denoFlags?: string[];
}

/**
 * Starts `main.ts` with the real permission flags (see {@linkcode agentPermissionFlags}) and a
 * clean environment (only PATH plus `env`). External public-IP lookups are always disabled.
 */
export async function spawnAgent(opts: SpawnOptions): Promise<AgentProcess> {
  const stateDir = opts.stateDir ?? (await Deno.makeTempDir({ prefix: "sigma-agent-state-" }));
  const args = opts.binary ? [...opts.args] : [
    "run",
    "--quiet",
    ...agentPermissionFlags({ stateDir, envoyDir: opts.envoyDir, etcDir: opts.etcDir }),
    ...(opts.denoFlags ?? []),
    `${ROOT}main.ts`,
    ...opts.args,
  ];
  if (!opts.args.some((a) => a.startsWith("--public-ip-lookup"))) args.push("--public-ip-lookup=");
  if (!opts.args.some((a) => a.startsWith("--state-dir"))) args.push(`--state-dir=${stateDir}`);
  const child = new Deno.Command(opts.binary ?? Deno.execPath(), {
    args,
    cwd: ROOT,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", NO_COLOR: "1", ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let out = "";
  const pump = async (stream: ReadableStream<Uint8Array>, onText: (t: string) => void) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) onText(dec.decode(chunk, { stream: true }));
  };
  let partial = "";
  const stderrDone = pump(child.stderr, (t) => {
    partial += t;
    const parts = partial.split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
  });
  const stdoutDone = pump(child.stdout, (t) => (out += t));
  const status = (async () => {
    const s = await child.status;
    await Promise.allSettled([stderrDone, stdoutDone]);
    if (partial) lines.push(partial);
    return s;
  })();
  return {
    child,
    lines,
    stateDir,
    records: () =>
      lines.flatMap((l) => {
        try {
          return [JSON.parse(l)];
        } catch {
          return [];
        }
      }),
    stdout: () => out,
    status,
    stop: async (signal: Deno.Signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch {
        // already exited
      }
      return await status;
    },
  };
}

/**
 * Reads a file under /proc. Deno refuses /proc reads without `--allow-all`, and the test task
 * does not grant that, so this goes through `cat` (allowed by `--allow-run`).
 */
export function readProc(path: string): string {
  const out = new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "piped" })
    .outputSync();
  if (!out.success) throw new Error(`cat ${path}: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout);
}

/** Open file descriptors of a process (via `ls`, for the same reason as {@linkcode readProc}). */
export function openFds(pid: number): number {
  const out = new Deno.Command("ls", { args: [`/proc/${pid}/fd`], stdout: "piped", stderr: "null" })
    .outputSync();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim() !== "").length;
}
