/**
 * xDS churn and NACK-storm benchmark against the real agent process (a leak check with numbers).
 *
 * 1. Churn: `--cycles` (10,000) ADS stream connect/disconnect cycles, `--concurrency` (50) at a
 *    time. Each cycle dials its own HTTP/2 connection, opens a SotW ADS stream, sends a CDS
 *    request with a node id, waits for the response and goes away — half of them by cancelling
 *    (RST_STREAM), half by half-closing and letting the agent end the stream.
 * 2. NACK storm: `--nack-streams` (100) streams over 5 nodes subscribe to CDS and LDS and NACK
 *    every response they get (each NACK sent twice); the snapshots change `--nack-rounds` (50)
 *    times. A response carrying a version the stream already NACKed is a resend (the endless loop
 *    of go-control-plane#46 / istio#21111): there must be none, and nothing may arrive while the
 *    snapshots stay put. The storm runs `--storms` (2) times; after each, the routes it added are
 *    removed again, so every reading compares the same configuration.
 *
 * Readings of the agent process, each after the streams are gone, a forced GC and `--settle`
 * seconds (10) of rest: RSS (VmRSS) and open file descriptors from /proc, and the JS heap in use
 * after a full GC, read through the V8 inspector (the agent runs with its real permission flags
 * plus `--inspect` on loopback, for this only). Baseline = after a warm-up of `--warmup` (500)
 * cycles. Verdict: open fds back to baseline (±2); JS heap back to baseline (+2 MB at most: a
 * 200-byte leak per stream would show); RSS not growing with cycles (the second half of the
 * churn may add at most 8 MB over the first — V8 and the allocator keep a high-water mark, a leak
 * grows linearly; likewise the last storm over the first); no resend after a NACK, every NACK counted once; `sigma_xds_connected_streams` back to
 * 0; agent alive. Exit code 1 on FAIL.
 *
 * Run: `deno task bench:xds-churn` (options: `--cycles N --concurrency N --nack-streams N
 * --nack-rounds N --storms N --settle S --warmup N`). About 2 minutes with the defaults.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { freePort, openFds, readProc, waitFor } from "../tests/helpers.ts";
import {
  CDS_TYPE,
  type DiscoveryResponse,
  fetchCdsLds,
  LDS_TYPE,
  metricSum,
  RawXdsStream,
  startXdsAgent,
  type XdsAgent,
} from "../tests/hardening/xds_raw_client.ts";

const { values: opt } = parseArgs({
  args: Deno.args,
  options: {
    cycles: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "50" },
    "nack-streams": { type: "string", default: "100" },
    "nack-rounds": { type: "string", default: "50" },
    storms: { type: "string", default: "2" },
    settle: { type: "string", default: "10" },
    warmup: { type: "string", default: "500" },
  },
});
const CYCLES = Number(opt.cycles);
const CONCURRENCY = Number(opt.concurrency);
const NACK_STREAMS = Number(opt["nack-streams"]);
const NACK_ROUNDS = Number(opt["nack-rounds"]);
const STORMS = Math.max(1, Number(opt.storms));
const SETTLE_MS = Number(opt.settle) * 1000;
const WARMUP = Number(opt.warmup);
const ANSWER_MS = 30_000;
/** Nothing may arrive during this quiet time after the storm (snapshots unchanged). */
const QUIET_MS = 3_000;

/** One reading of the agent process. */
interface Sample {
  rssKb: number;
  hwmKb: number;
  fds: number;
  /** User + system CPU, seconds. */
  cpuS: number;
}

const CLK_TCK = 100;

function sample(pid: number): Sample {
  const status = readProc(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  // Fields after the command name (which may contain spaces): utime is the 14th field overall.
  const stat = readProc(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    rssKb: kb("VmRSS"),
    hwmKb: kb("VmHWM"),
    fds: openFds(pid),
    cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The agent's V8 inspector (DevTools protocol over a WebSocket): JS heap usage and forced GCs, to
 * tell live JS objects (a leak) from memory the process merely keeps mapped.
 */
class Inspector {
  readonly #ws: WebSocket;
  readonly #pending = new Map<number, (v: Record<string, unknown>) => void>();
  #id = 0;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      this.#pending.get(m.id)?.(m.result ?? {});
      this.#pending.delete(m.id);
    };
  }

  static async connect(port: number): Promise<Inspector> {
    const targets = await waitFor(
      async () => (await (await fetch(`http://127.0.0.1:${port}/json`)).json())[0],
      { timeoutMs: 30_000, message: "the agent's inspector" },
    );
    const ws = new WebSocket(targets.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    return new Inspector(ws);
  }

  call(method: string): Promise<Record<string, unknown>> {
    const id = ++this.#id;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#ws.send(JSON.stringify({ id, method, params: {} }));
    });
  }

  /** Forces a full GC and returns the JS heap in use afterwards, KB. */
  async heapAfterGcKb(): Promise<number> {
    await this.call("HeapProfiler.collectGarbage");
    return Number((await this.call("Runtime.getHeapUsage")).usedSize) / 1024;
  }

  close(): void {
    this.#ws.close();
  }
}

async function connectedStreams(a: XdsAgent): Promise<number> {
  return metricSum(await a.metrics(), "sigma_xds_connected_streams");
}

/** A reading after rest, with the JS heap. */
interface Rested {
  s: Sample;
  heapKb: number;
  drainMs: number;
}

/**
 * Waits until the agent counts no stream, forces a GC, rests `SETTLE_MS`, reads the process, then
 * the JS heap after another GC.
 */
async function settled(a: XdsAgent, inspector: Inspector): Promise<Rested> {
  const t0 = performance.now();
  await waitFor(async () => await connectedStreams(a) === 0, {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: "sigma_xds_connected_streams back to 0",
  });
  const drainMs = performance.now() - t0;
  await inspector.heapAfterGcKb();
  await sleep(SETTLE_MS);
  const s = sample(a.pid);
  return { s, heapKb: await inspector.heapAfterGcKb(), drainMs };
}

/** One connect → CDS request → response → disconnect cycle on a fresh connection. */
async function cycle(a: XdsAgent, i: number): Promise<void> {
  const s = RawXdsStream.open(a.xdsPort, "sotw");
  try {
    s.sendSotw({ node: { id: a.nodeIds[i % a.nodeIds.length] }, typeUrl: CDS_TYPE });
    const r = await s.expect(ANSWER_MS, "CDS");
    if (r.resources.length === 0) throw new Error("empty CDS");
    if (i % 2 === 1) {
      s.halfClose();
      if (!await s.waitEnd(ANSWER_MS)) {
        throw new Error("the agent did not end a half-closed stream");
      }
    }
  } finally {
    s.close();
  }
}

/** Runs `count` cycles, `concurrency` at a time; returns the failures and the peak reading. */
async function churn(a: XdsAgent, count: number, concurrency: number) {
  let next = 0, failed = 0;
  let firstError: string | undefined;
  let peak = sample(a.pid);
  const sampler = setInterval(() => {
    const s = sample(a.pid);
    if (s.rssKb > peak.rssKb) peak = { ...s, fds: Math.max(s.fds, peak.fds) };
    else peak.fds = Math.max(peak.fds, s.fds);
  }, 1000);
  const t0 = performance.now();
  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        try {
          await cycle(a, i);
        } catch (e) {
          failed++;
          firstError ??= (e as Error).message;
        }
      }
    }));
  } finally {
    clearInterval(sampler);
  }
  return { ms: performance.now() - t0, failed, firstError, peak };
}

/** One stream of the NACK storm. */
interface Nacker {
  s: RawXdsStream<DiscoveryResponse>;
  nodeId: string;
  /** Latest version received per type. */
  latest: Map<string, string>;
  nacked: Map<string, Set<string>>;
  resends: number;
}

function startNacker(a: XdsAgent, nodeId: string): Nacker {
  const s = RawXdsStream.open(a.xdsPort, "sotw");
  const n: Nacker = { s, nodeId, latest: new Map(), nacked: new Map(), resends: 0 };
  s.sendSotw({ node: { id: nodeId }, typeUrl: CDS_TYPE });
  s.sendSotw({ typeUrl: LDS_TYPE });
  (async () => {
    while (!s.end) {
      const r = await s.next(1000);
      if (!r) continue;
      const seen = n.nacked.get(r.typeUrl) ?? new Set();
      n.nacked.set(r.typeUrl, seen);
      if (seen.has(r.versionInfo)) n.resends++;
      seen.add(r.versionInfo);
      n.latest.set(r.typeUrl, r.versionInfo);
      const nack = {
        typeUrl: r.typeUrl,
        responseNonce: r.nonce,
        versionInfo: "",
        errorDetail: { code: 3, message: `bench rejects ${r.typeUrl} ${r.versionInfo}` },
      };
      s.sendSotw(nack);
      s.sendSotw(nack); // a duplicate NACK must change nothing
    }
  })();
  return n;
}

async function nackStorm(a: XdsAgent, storm: number) {
  const before = metricSum(await a.metrics(), "sigma_xds_nacks_total");
  const nodes = a.nodeIds;
  const streams = Array.from(
    { length: NACK_STREAMS },
    (_, i) => startNacker(a, nodes[i % nodes.length]),
  );
  const version = (nodeId: string) =>
    String(a.api.nodes.find((n) => n.node_id === nodeId)!.config_version);
  const allAt = () =>
    streams.every((n) => {
      const v = version(n.nodeId);
      return n.latest.get(CDS_TYPE) === v && n.latest.get(LDS_TYPE) === v;
    });
  const t0 = performance.now();
  await waitFor(allAt, { timeoutMs: 60_000, message: "every storm stream got CDS and LDS" });
  let peak = sample(a.pid);
  const added: string[] = [];
  for (let round = 1; round <= NACK_ROUNDS; round++) {
    for (const [k, nodeId] of nodes.entries()) {
      const row = a.api.nodes.find((n) => n.node_id === nodeId)!;
      const route = a.api.addRoute(row.id, {
        // New names and ports every time: a replaced route would be a rename, whose old cluster
        // stays (make before break) until an LDS is ACKed — which never happens here.
        name: `storm${storm}-${k}-${round}`,
        listen_port: 30000 + storm * 1000 + round,
        backend_host: "127.0.0.1",
        backend_port: 7000 + round,
        cluster_type: "static",
        proxy_protocol: 0,
      });
      added.push(route.id);
    }
    await waitFor(allAt, { timeoutMs: 60_000, message: `round ${round} delivered` });
    const s = sample(a.pid);
    if (s.rssKb > peak.rssKb) peak = s;
  }
  const stormMs = performance.now() - t0;
  const received = () => streams.reduce((n, x) => n + x.s.received.length, 0);
  const beforeQuiet = received();
  await sleep(QUIET_MS);
  const quietResponses = received() - beforeQuiet;
  const nacks = metricSum(await a.metrics(), "sigma_xds_nacks_total") - before;
  const resends = streams.reduce((n, x) => n + x.resends, 0);
  const ended = streams.filter((x) => x.s.end).length;
  for (const x of streams) x.s.close();
  // Back to the routes of the baseline, so the readings after the storm compare like with like.
  for (const id of added) a.api.removeRoute(id);
  for (const nodeId of nodes) {
    await waitFor(
      () =>
        fetchCdsLds(a.xdsPort, nodeId, ANSWER_MS).then((r) =>
          r.cds.versionInfo === version(nodeId) && r.cds.resources.length === 1
        ),
      { timeoutMs: 60_000, message: `${nodeId} back to its baseline routes` },
    );
  }
  return {
    stormMs,
    responses: received(),
    nacksSent: 2 * received(),
    nacksCounted: nacks,
    // Every response is NACKed once (the duplicate must not count).
    expectedNacks: received(),
    resends,
    quietResponses,
    ended,
    peak,
  };
}

const mb = (kb: number) => (kb / 1024).toFixed(1);

async function main(): Promise<number> {
  console.log(
    `xDS churn bench: ${CYCLES} connect/disconnect cycles (${CONCURRENCY} at a time), NACK storm ` +
      `of ${NACK_STREAMS} streams × ${NACK_ROUNDS} snapshot changes; rest ${SETTLE_MS / 1000} s ` +
      `before each reading`,
  );
  const inspectPort = freePort();
  const a = await startXdsAgent({
    extraNodes: 4,
    pollSeconds: 0.2,
    hostname: "xds-churn-bench",
    logLevel: "error", // 10,000 NACK warnings would only measure the log pipe
    inspectPort,
  });
  const inspector = await Inspector.connect(inspectPort);
  try {
    const cold = sample(a.pid);
    const warm = await churn(a, WARMUP, CONCURRENCY);
    const base = await settled(a, inspector);
    const half = Math.floor(CYCLES / 2);
    const c1 = await churn(a, half, CONCURRENCY);
    const mid = await settled(a, inspector);
    const c2 = await churn(a, CYCLES - half, CONCURRENCY);
    const afterChurn = await settled(a, inspector);
    const storms: { storm: Awaited<ReturnType<typeof nackStorm>>; after: Rested }[] = [];
    for (let i = 1; i <= STORMS; i++) {
      const storm = await nackStorm(a, i);
      storms.push({ storm, after: await settled(a, inspector) });
    }
    const afterStorm = storms.at(-1)!.after;
    const connected = await connectedStreams(a);
    const churnMs = c1.ms + c2.ms, churnFailed = c1.failed + c2.failed;
    const peakChurn = c1.peak.rssKb > c2.peak.rssKb ? c1.peak : c2.peak;

    const row = (label: string, r: Rested | undefined, peak?: Sample): string[] => [
      label,
      mb((r?.s ?? peak!).rssKb),
      r ? mb(r.heapKb) : "",
      String(Math.max((r?.s ?? peak!).fds, peak?.fds ?? 0)),
      r ? r.s.cpuS.toFixed(2) : "",
    ];
    const rows: string[][] = [
      ["", "RSS MB", "JS heap MB (after GC)", "open fds", "agent CPU s"],
      ["cold start", mb(cold.rssKb), "", String(cold.fds), cold.cpuS.toFixed(2)],
      row(`baseline (after ${WARMUP} warm-up cycles)`, base),
      row(`peak during churn`, undefined, peakChurn),
      row(`after ${half} cycles`, mid),
      row(`after ${CYCLES} cycles`, afterChurn),
      ...storms.flatMap(({ storm, after }, i) => [
        row(`peak during NACK storm ${i + 1}`, undefined, storm.peak),
        row(`after NACK storm ${i + 1}`, after),
      ]),
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    console.log();
    for (const r of rows) {
      console.log(
        "  " + r.map((v, i) => i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))
          .join("  "),
      );
    }
    const churnCpu = afterChurn.s.cpuS - base.s.cpuS;
    console.log();
    console.log(
      `  churn: ${CYCLES} cycles in ${(churnMs / 1000).toFixed(1)} s ` +
        `(${(CYCLES / (churnMs / 1000)).toFixed(0)} cycles/s), ${churnFailed} failed` +
        (c1.firstError ?? c2.firstError ? ` (first: ${c1.firstError ?? c2.firstError})` : "") +
        `; agent CPU ${(churnCpu * 1000 / CYCLES).toFixed(2)} ms per cycle; ` +
        `streams drained to 0 within ${afterChurn.drainMs.toFixed(0)} ms of the last close`,
    );
    for (const [i, { storm }] of storms.entries()) {
      console.log(
        `  NACK storm ${i + 1}: ${storm.responses} responses NACKed (${storm.nacksSent} NACK ` +
          `messages incl. duplicates; ${NACK_STREAMS * (NACK_ROUNDS + 1) * 2} = one CDS and one ` +
          `LDS per stream and version) in ${(storm.stormMs / 1000).toFixed(1)} s; ` +
          `sigma_xds_nacks_total +${storm.nacksCounted} (expected ${storm.expectedNacks}); ` +
          `resends after NACK: ${storm.resends}; responses in ${QUIET_MS / 1000} s of quiet: ` +
          `${storm.quietResponses}; streams ended by the agent: ${storm.ended}`,
      );
    }
    const d = (x: Rested) =>
      `RSS ${sign((x.s.rssKb - base.s.rssKb) / 1024)} MB, JS heap ${
        sign((x.heapKb - base.heapKb) / 1024)
      } MB, fds ${sign(x.s.fds - base.s.fds)}`;
    console.log(`  vs baseline: after churn ${d(afterChurn)}; after the storms ${d(afterStorm)}`);
    console.log(
      `  second half of the churn vs first: RSS ${
        sign((afterChurn.s.rssKb - mid.s.rssKb) / 1024)
      } MB, JS heap ${sign((afterChurn.heapKb - mid.heapKb) / 1024)} MB`,
    );
    const HEAP_TOL_KB = 2 * 1024, RSS_GROWTH_TOL_KB = 8 * 1024;
    const checks: [string, boolean][] = [
      ["no failed cycle", churnFailed === 0 && warm.failed === 0],
      [
        "open fds back to baseline (±2)",
        [mid, afterChurn, ...storms.map((x) => x.after)].every((x) =>
          Math.abs(x.s.fds - base.s.fds) <= 2
        ),
      ],
      [
        "JS heap back to baseline (+2 MB at most)",
        [mid, afterChurn, ...storms.map((x) => x.after)].every((x) =>
          x.heapKb - base.heapKb <= HEAP_TOL_KB
        ),
      ],
      [
        "RSS does not grow with cycles (second half ≤ first half + 8 MB)",
        afterChurn.s.rssKb - mid.s.rssKb <= RSS_GROWTH_TOL_KB,
      ],
      [
        `RSS does not grow with storms (last ≤ first + 8 MB)`,
        afterStorm.s.rssKb - storms[0].after.s.rssKb <= RSS_GROWTH_TOL_KB,
      ],
      [
        "no resend after NACK",
        storms.every(({ storm }) => storm.resends === 0 && storm.quietResponses === 0),
      ],
      [
        "every NACK counted once",
        storms.every(({ storm }) => storm.nacksCounted === storm.expectedNacks),
      ],
      ["no storm stream ended by the agent", storms.every(({ storm }) => storm.ended === 0)],
      ["sigma_xds_connected_streams back to 0", connected === 0],
      ["agent alive (/healthz 200)", (await a.healthz()) === 200],
    ];
    const failed = checks.filter(([, ok]) => !ok);
    console.log();
    for (const [name, ok] of checks) console.log(`  ${ok ? "ok  " : "FAIL"} ${name}`);
    console.log(`\nverdict: ${failed.length === 0 ? "PASS" : "FAIL"}`);
    return failed.length === 0 ? 0 : 1;
  } finally {
    inspector.close();
    await a.stop();
  }
}

function sign(n: number): string {
  const v = Number.isInteger(n) ? String(n) : n.toFixed(1);
  return n > 0 ? `+${v}` : v;
}

Deno.exit(await main());
