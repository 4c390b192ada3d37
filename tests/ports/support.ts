/**
 * Support for tests/ports: blocks of free ports, sockets held in chosen states by a helper
 * process (`hold_sockets.pl`, Perl from Debian's essential `perl-base`), an independent bind
 * oracle (socket + SO_REUSEADDR + bind, the C reference's semantics), and an AgentContext for
 * starting the feature as main.ts does.
 *
 * @module
 */

import { SigmaClient } from "../../lib/api/client.ts";
import { parseConfig } from "../../lib/core/config.ts";
import type { AgentContext } from "../../lib/core/context.ts";
import { createLogger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { bindTest, type PortRange } from "../../lib/ports/scanner.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { StatusBoard } from "../../lib/status/board.ts";

const HOLD_SOCKETS = new URL("./hold_sockets.pl", import.meta.url).pathname;

/**
 * A block of `size` consecutive ports, all passing the bind test now, below the kernel's
 * ephemeral range (32768+) so outgoing connections of concurrent tests never land in it.
 */
export function freeBlock(size: number): PortRange {
  for (let attempt = 0; attempt < 200; attempt++) {
    const start = 20000 + Math.floor(Math.random() * (32000 - 20000 - size));
    let free = true;
    for (let p = start; p < start + size && free; p++) free = bindTest(p);
    if (free) return { start, end: start + size - 1 };
  }
  throw new Error(`no block of ${size} free ports found in 20000-32000`);
}

/** A helper process holding sockets; `close()` ends it. */
export interface HeldSockets {
  pid: number;
  close(): Promise<void>;
}

/**
 * Starts `hold_sockets.pl` with `specs` (see the script's header: `listen:ADDR:PORT`,
 * `bound:ADDR:PORT`, `connect:LPORT:RPORT`, `udp:…`, `name:NAME`, `fork:N`) and waits until every
 * socket is open.
 */
export async function holdSockets(specs: string[]): Promise<HeldSockets> {
  const child = new Deno.Command("perl", {
    args: [HOLD_SOCKETS, ...specs],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  let seen = "";
  const dec = new TextDecoder();
  while (!seen.includes("ready\n")) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += dec.decode(value, { stream: true });
  }
  reader.releaseLock();
  const close = async () => {
    await child.stdin.close().catch(() => {});
    const out = await child.output();
    return dec.decode(out.stderr);
  };
  if (!seen.includes("ready\n")) {
    const stderr = await close();
    throw new Error(`hold_sockets.pl ${specs.join(" ")} failed: ${stderr.trim()}`);
  }
  return {
    pid: child.pid,
    close: async () => {
      await close();
    },
  };
}

/**
 * The ports of `range` where `socket(AF_INET, SOCK_STREAM)` + `SO_REUSEADDR` + `bind(0.0.0.0)`
 * succeeds — the C reference's test, run by Perl, independent of Deno.
 */
export async function bindOracle(range: PortRange): Promise<Set<number>> {
  const script = `
    use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_REUSEADDR INADDR_ANY pack_sockaddr_in);
    my ($start, $end) = @ARGV;
    for my $p ($start .. $end) {
      socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
      setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!";
      print bind($s, pack_sockaddr_in($p, INADDR_ANY)) ? "$p\\n" : "";
      close($s);
    }`;
  const out = await new Deno.Command("perl", {
    args: ["-e", script, String(range.start), String(range.end)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`bind oracle failed: ${new TextDecoder().decode(out.stderr)}`);
  const text = new TextDecoder().decode(out.stdout);
  return new Set(text.split("\n").filter((l) => l !== "").map(Number));
}

/** What {@linkcode portsContext} gives a test. */
export interface TestContext {
  ctx: AgentContext;
  /** Every log line (JSON). */
  lines: string[];
  /** Parsed log records. */
  records(): Record<string, unknown>[];
  /** Aborts the context's signal (as SIGTERM would). */
  shutdown(): void;
}

/** An AgentContext with the config parsed from `args`, as main.ts would build it. */
export function portsContext(args: string[]): TestContext {
  const parsed = parseConfig(args, {});
  if (parsed.kind !== "config") throw new Error("bad test config");
  const lines: string[] = [];
  const abort = new AbortController();
  const ctx: AgentContext = {
    config: parsed.config,
    log: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    api: new SigmaClient({ baseUrl: "http://127.0.0.1:9/api", apiKey: undefined }),
    metrics: createMetrics("test-host", "0.0.0"),
    board: new StatusBoard(),
    store: new StateStore("/nonexistent-state-dir"),
    hostname: "test-host",
    signal: abort.signal,
    vpsId: () => "1",
    vpsIdReady: Promise.resolve("1"),
  };
  return {
    ctx,
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    shutdown: () => abort.abort(),
  };
}

/** The value of one series in a prom-client registry (undefined when absent). */
export async function metricValue(
  ctx: AgentContext,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = ctx.metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const hit = values.find((v) =>
    Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)
  );
  return hit?.value;
}
