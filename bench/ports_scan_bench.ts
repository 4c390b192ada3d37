/**
 * Port-scan speed: the agent's bind scan of 10000–30000 against a C loop of socket +
 * SO_REUSEADDR + bind + close per port (bench/ports_scan_reference.c, compiled with gcc into a
 * temporary directory and timed inside its own process), measured in the same run, rounds
 * interleaved, medians compared. Target: the agent's scan ≤ 1.5× the C reference.
 *
 * Also shown, for context: a naive `Deno.listen` + `close` loop on one thread, the agent's scan
 * with one worker beside the calling thread (opt-in), the floor of any two-thread `Deno.listen` scan (two bare worker loops, half the
 * range each), and a full scan cycle (bind scan + `ss -tulnp` attribution + metrics). Every
 * method must report the same number of available ports; the run fails if they disagree.
 *
 * Then the memory side: the resident memory of a process started with the agent's flags
 * (deploy/permissions.flags), 1 s after one scan of the range through workers, inline, or not at all,
 * and through workers without the V8 flag that hands a worker's pages back when it ends.
 *
 * Run: `deno task bench:ports` (options: `--range START-END`, `--rounds N`). Needs gcc.
 * Under `deno bench` the same comparisons run as `Deno.bench` cases (the C case then includes
 * process start-up).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { silentLogger } from "../lib/core/log.ts";
import { createMetrics } from "../lib/core/metrics.ts";
import { PortScan } from "../lib/ports/port_scan.ts";
import { BindScanner, bindTest, type PortRange } from "../lib/ports/scanner.ts";
import { startPermissionFlags } from "../tests/helpers.ts";

const SOURCE = new URL("./ports_scan_reference.c", import.meta.url).pathname;

/** Compiles the C reference; returns the binary's path. */
async function compileReference(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ports-scan-bench-" });
  const binary = `${dir}/ports_scan_reference`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", { args: ["-O2", "-o", binary, SOURCE], stderr: "piped" })
      .output();
  } catch (e) {
    throw new Error(`gcc is needed for the C reference (apt-get install -y gcc): ${e}`);
  }
  if (!out.success) throw new Error(`gcc failed: ${new TextDecoder().decode(out.stderr)}`);
  return binary;
}

/** One C round: [ms as timed inside the process, available ports]. */
async function runReference(binary: string, range: PortRange): Promise<[number, number]> {
  const out = await new Deno.Command(binary, {
    args: [String(range.start), String(range.end), "1"],
    stdout: "piped",
  }).output();
  const [ms, available] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
  return [ms, available];
}

/** The naive method: one `Deno.listen` + `close` per port on the calling thread. */
function naiveLoop(range: PortRange): number {
  let available = 0;
  for (let port = range.start; port <= range.end; port++) if (bindTest(port)) available++;
  return available;
}

/**
 * RSS (MB) of a fresh process with the agent's flags 1 s after one scan of `range`: `workers`
 * (the default on 2+ CPUs), `inline`, or `none`; `dropFlag` removes a flag line first.
 */
async function rssAfterScan(
  range: PortRange,
  how: "workers" | "inline" | "none",
  dropFlag?: string,
): Promise<number> {
  const scanner = new URL("../lib/ports/scanner.ts", import.meta.url).href;
  const opts = how === "inline" ? "{ workers: 0 }" : "{ workers: 1 }";
  const code = `import { BindScanner } from "${scanner}";
    ${how === "none" ? "" : `await new BindScanner(${opts}).scan(${JSON.stringify(range)});`}
    await new Promise((r) => setTimeout(r, 1000));
    console.log(Deno.memoryUsage().rss);`;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    const flags = startPermissionFlags().filter((f) => f !== dropFlag);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--quiet", ...flags, file],
      stdout: "piped",
    }).output();
    return Number(new TextDecoder().decode(out.stdout)) / 1048576;
  } finally {
    await Deno.remove(file);
  }
}

/**
 * The floor of any `Deno.listen` scan on two threads: two workers, started beforehand, each
 * bind-testing half the range in a bare loop (no event loop turns, no result list), timed from the
 * hand-out to the last answer. The agent's scan cannot beat this; when this is above 1.5× the C
 * loop, the cost is in the ten system calls of each bind test, not in how the scan is organised.
 */
class TwoThreadFloor {
  readonly #workers: Worker[];

  constructor() {
    const source = `self.onmessage = (e) => {
      let available = 0;
      for (let p = e.data.start; p <= e.data.end; p++) {
        try { Deno.listen({ hostname: "0.0.0.0", port: p }).close(); available++; } catch { /* busy */ }
      }
      self.postMessage(available);
    };`;
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    this.#workers = [0, 1].map(() => new Worker(url, { type: "module" }));
  }

  async scan(range: PortRange): Promise<[number, number]> {
    const mid = Math.floor((range.start + range.end) / 2);
    const halves = [{ start: range.start, end: mid }, { start: mid + 1, end: range.end }];
    const t0 = performance.now();
    const counts = await Promise.all(this.#workers.map((w, i) =>
      new Promise<number>((resolve) => {
        w.onmessage = (e: MessageEvent<number>) => resolve(e.data);
        w.postMessage(halves[i]);
      })
    ));
    return [performance.now() - t0, counts[0] + counts[1]];
  }

  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed(fn: () => Promise<number> | number): Promise<[number, number]> {
  const t0 = performance.now();
  const available = await fn();
  return [performance.now() - t0, available];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      range: { type: "string", default: "10000-30000" },
      rounds: { type: "string", default: "9" },
    },
  });
  const [start, end] = values.range.split("-").map(Number);
  const range = { start, end };
  const rounds = Math.max(1, Number(values.rounds));
  const binary = await compileReference();
  const scanner = new BindScanner();
  const withWorker = new BindScanner({ workers: 1 });
  const cycle = new PortScan({
    range,
    metrics: createMetrics("bench", "0"),
    log: silentLogger,
    scanner: new BindScanner(),
  });
  const floor = new TwoThreadFloor();

  const methods: [string, () => Promise<[number, number]>][] = [
    ["C reference (socket+SO_REUSEADDR+bind+close)", () => runReference(binary, range)],
    [
      "agent scan (BindScanner default: inline)",
      () => timed(async () => (await scanner.scan(range)).available),
    ],
    [
      "agent scan with one worker (opt-in)",
      () => timed(async () => (await withWorker.scan(range)).available),
    ],
    ["naive Deno.listen+close loop", () => timed(() => naiveLoop(range))],
    ["floor: 2 bare worker loops, half each", () => floor.scan(range)],
    [
      "full scan cycle (+ ss -tulnp, metrics)",
      () => timed(async () => (await cycle.run()).available),
    ],
  ];
  const times = methods.map(() => [] as number[]);
  const answers = methods.map(() => new Set<number>());
  for (const [, run] of methods) await run(); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [i, [, run]] of methods.entries()) {
      const [ms, available] = await run();
      times[i].push(ms);
      answers[i].add(available);
    }
  }
  floor.close();
  await Deno.remove(binary.slice(0, binary.lastIndexOf("/")), { recursive: true });

  const ref = median(times[0]);
  console.log(
    `ports scan ${range.start}-${range.end} (${end - start + 1} ports), ${rounds} rounds, ` +
      `${navigator.hardwareConcurrency} CPUs, load ${
        Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
      }`,
  );
  for (const [i, [name]] of methods.entries()) {
    const m = median(times[i]);
    const spread = `${Math.min(...times[i]).toFixed(1)}–${Math.max(...times[i]).toFixed(1)}`;
    console.log(
      `${name.padEnd(46)} median ${m.toFixed(1).padStart(7)} ms  (${spread.padStart(13)})  ` +
        `${(m / ref).toFixed(2)}× C   available ${[...answers[i]].join("/")}`,
    );
  }
  const ratio = median(times[1]) / ref;
  console.log(
    `agent scan / C reference = ${ratio.toFixed(2)}× (target ≤ 1.50×): ${
      ratio <= 1.5 ? "MET" : "NOT MET"
    }`,
  );

  const FLAG = "--v8-flags=--no-memory-pool-share-memory-on-teardown";
  const memory: [string, () => Promise<number>][] = [
    ["no scan", () => rssAfterScan(range, "none")],
    ["inline scan", () => rssAfterScan(range, "inline")],
    ["worker scan", () => rssAfterScan(range, "workers")],
    [`worker scan without ${FLAG.slice(11)}`, () => rssAfterScan(range, "workers", FLAG)],
  ];
  const rss = memory.map(() => [] as number[]);
  for (let r = 0; r < Math.min(rounds, 5); r++) {
    for (const [i, [, run]] of memory.entries()) rss[i].push(await run());
  }
  console.log(
    `RSS 1 s after one scan, process with the agent's flags (median of ${rss[0].length}):`,
  );
  for (const [i, [name]] of memory.entries()) {
    console.log(
      `  ${name.padEnd(60)} ${median(rss[i]).toFixed(1).padStart(5)} MB  (${
        Math.min(...rss[i]).toFixed(1)
      }–${Math.max(...rss[i]).toFixed(1)})`,
    );
  }
  console.log(`load ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);

  const all = new Set(answers.flatMap((a) => [...a]));
  if (all.size !== 1) {
    console.error(`methods disagree on available ports: ${[...all].join(", ")}`);
    Deno.exit(1);
  }
}

if (import.meta.main) {
  await main();
} else {
  // `deno bench bench/`: the same comparison as Deno.bench cases.
  const range = { start: 10000, end: 30000 };
  const binary = await compileReference().catch(() => undefined);
  const scanner = new BindScanner();
  const group = "ports scan 10000-30000";
  if (binary) {
    const dir = binary.slice(0, binary.lastIndexOf("/"));
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    Deno.bench({
      name: "C reference (spawned per iteration)",
      group,
      baseline: true,
      async fn() {
        await runReference(binary, range);
      },
    });
  }
  Deno.bench({
    name: "agent scan (BindScanner)",
    group,
    baseline: !binary,
    async fn() {
      await scanner.scan(range);
    },
  });
  Deno.bench({
    name: "naive Deno.listen+close loop",
    group,
    fn() {
      naiveLoop(range);
    },
  });
}
