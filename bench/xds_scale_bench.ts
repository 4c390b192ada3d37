/**
 * xDS scale benchmark: 1,000 concurrent ADS streams, each its own Envoy node (and its own TCP
 * connection) with 10 routes.
 *
 * Once every stream holds version 1, all 1,000 snapshots change at once and we time how long
 * until every stream has received the new CDS and LDS. The client ACKs every response as Envoy
 * does. Two kinds of change:
 * - `in-place`: every route gets a new backend port and a new listen port (same names): both CDS
 *   and LDS change, the listeners only use clusters the client already has, so LDS follows CDS
 *   without waiting for its ACK;
 * - `renamed`: every route is replaced by one with a new name: LDS must wait for the ACK of the
 *   CDS that adds the new clusters (a client round trip), and the CDS keeps the old clusters until
 *   the new LDS is ACKed.
 *
 * Clusters that a renamed route left behind are removed by one more CDS push after a grace period
 * (see `protocol.ts`); that clean-up is not part of the timed update.
 *
 * The reference, measured in the same run: a gRPC server with no xDS logic (the same transport)
 * writes the same bytes — the very responses, pre-serialized, all at once — over the same number
 * of grpc-js streams and connections to the same client process, which decodes them and answers
 * each with the same ACK bytes as the xDS client (the server's transport reads them, nothing
 * decodes them). So both sides move the same traffic; what differs is the xDS logic: decoding
 * requests, the protocol state machine, encoding, metrics, and for `renamed` the wait for the
 * CDS ACK before LDS. Results are printed as ratios of medians, with the server process's CPU
 * time per stream in the timed window (what one push and its ACKs cost the server). Memory: server RSS before the
 * streams, with every stream connected and served, and after all streams closed.
 *
 * Run: `deno task bench:xds` (options: `--streams N`, `--routes N`, `--rounds N`). The clients run
 * in a separate process so the server's RSS is its own. Environment knobs: `BENCH_DEBUG=1` prints
 * per-round times and memory; `BENCH_REF_FIRST=1` runs the reference first, so the "first time"
 * memory line measures the bare transport; `BENCH_PROFILE=<file>` writes a CPU profile of the timed
 * window of each xDS round (needs `--allow-sys --allow-write`).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { parseArgs } from "node:util";
import process from "node:process";
import {
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
} from "../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import type { EnvoyRoute } from "../lib/api/types.ts";
import { createLogger } from "../lib/core/log.ts";
import { createMetrics } from "../lib/core/metrics.ts";
import { SnapshotCache, snapshotInput, TYPE_URLS } from "../lib/xds/cache.ts";
import { GrpcServer } from "../lib/grpc/h2_server.ts";
import { buildResources, type BuiltResource, type BuiltResources } from "../lib/xds/resources.ts";
import { XDS_METHOD_PATHS, XdsServer } from "../lib/xds/server.ts";

const CDS = TYPE_URLS.cds;
const LDS = TYPE_URLS.lds;
const MB = 1024 * 1024;
const RAW_PATH = "/bench.Raw/Stream";

type Scenario = "in-place" | "renamed";

/** A client-side bidi method that sends and receives bytes. */
function bytesMethod(path: string) {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    requestDeserialize: (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    responseSerialize: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    responseDeserialize: (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
  };
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

function routesFor(node: number, count: number, version: number, scenario: Scenario): EnvoyRoute[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${node}-${i}`,
    envoy_node_id: `node-${node}`,
    name: scenario === "renamed" ? `n${node}-r${i}-v${version}` : `n${node}-r${i}`,
    listen_port: 10000 + i * 10 + version,
    backend_host: `10.${node >> 8}.${node & 255}.${i + 1}`,
    backend_port: 8000 + version,
    cluster_type: "static",
    connect_timeout_secs: 5,
    proxy_protocol: i % 3,
    source: "dynamic",
    status: "active",
  }));
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) { for (let i = 0; i < 3; i++) g(); }
}

/** Resident memory and live memory (JS heap in use + external buffers), after GC. */
interface Mem {
  rss: number;
  live: number;
}

/** Memory after letting timers run and collecting garbage. */
async function settledMem(label: string): Promise<Mem> {
  await new Promise((r) => setTimeout(r, 300));
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const m = Deno.memoryUsage();
  if (Deno.env.get("BENCH_DEBUG")) {
    console.error(
      `  [mem ${label}] rss ${(m.rss / MB).toFixed(1)} heapUsed ${(m.heapUsed / MB).toFixed(1)} ` +
        `heapTotal ${(m.heapTotal / MB).toFixed(1)} external ${(m.external / MB).toFixed(1)}`,
    );
  }
  return { rss: m.rss, live: m.heapUsed + m.external };
}

// ───────────────────────────── client process ─────────────────────────────

/**
 * The client process: `streams` ADS streams, one connection each, node ids `node-0`…, ACKing every
 * response. Also used by `xds_api_bench.ts`. Commands on stdin: `next [version [count]]`, `close`.
 */
export async function runClient(
  mode: "xds" | "raw",
  port: number,
  streams: number,
  initial = "1",
): Promise<void> {
  const out = (o: unknown) => console.log(JSON.stringify(o));
  const method = bytesMethod(mode === "xds" ? XDS_METHOD_PATHS.ads.sotw : RAW_PATH);
  const Ctor = grpc.makeGenericClientConstructor({ S: method }, "C");
  const clients: grpc.Client[] = [];
  const calls: grpc.ClientDuplexStream<Uint8Array, Uint8Array>[] = [];
  let target = initial;
  let expected = streams; // streams 0..expected-1 must reach the target
  let complete = 0;
  const seen = new Uint8Array(streams); // bit 1: CDS of the target version, bit 2: LDS
  for (let i = 0; i < streams; i++) {
    // A connection per stream, like 1,000 separate Envoys.
    const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    clients.push(client);
    // deno-lint-ignore no-explicit-any
    const call = (client as any).S() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
    calls.push(call);
    call.on("error", () => {});
    call.on("data", (bytes: Uint8Array) => {
      // Both modes decode every response and ACK it, as Envoy does.
      const res = fromBinary(DiscoveryResponseSchema, bytes);
      const ack = create(DiscoveryRequestSchema, {
        typeUrl: res.typeUrl,
        versionInfo: res.versionInfo,
        responseNonce: res.nonce,
      });
      call.write(toBinary(DiscoveryRequestSchema, ack));
      // "2+stale" (old clusters kept for the old listeners) is the new CDS too.
      if (res.versionInfo.split("+")[0] !== target || i >= expected) return;
      const bit = res.typeUrl === CDS ? 1 : 2;
      if (seen[i] & bit) return;
      seen[i] |= bit;
      if (seen[i] === 3 && ++complete === expected) {
        out({ event: target === initial ? "ready" : "done", at: now() });
      }
    });
    const node = { id: `node-${i}` };
    call.write(
      toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node, typeUrl: CDS })),
    );
    if (mode === "xds") {
      call.write(
        toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node, typeUrl: LDS })),
      );
    }
    // Do not open 1,000 connections in one tick.
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 1));
  }
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    for (const cmd of chunk.split("\n").filter(Boolean)) {
      if (cmd === "next" || cmd.startsWith("next ")) {
        // "next [version [count]]": streams 0..count-1 (default all) must reach `version`.
        const [, version, count] = cmd.split(" ");
        target = version ?? "2";
        expected = count ? Number(count) : streams;
        complete = 0;
        seen.fill(0);
        out({ event: "armed" });
      } else if (cmd === "close") {
        // Abrupt, like Envoys going away: reset every stream and close every connection.
        for (const c of calls) c.cancel();
        for (const c of clients) c.close();
        out({ event: "closed" });
        await new Promise((r) => setTimeout(r, 200));
        Deno.exit(0);
      }
    }
  }
}

// ───────────────────────────── server side ─────────────────────────────

export interface ClientProc {
  /** The client process's pid (for its CPU time). */
  pid: number;
  send(cmd: string): Promise<void>;
  wait(event: string, timeoutMs: number): Promise<{ event: string; at?: number }>;
  /** Waits for the process to exit (killing it if it does not within a few seconds). */
  finish(): Promise<void>;
}

export function spawnClient(
  mode: "xds" | "raw",
  port: number,
  streams: number,
  initial = "1",
): ClientProc {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-env",
      new URL(import.meta.url).pathname,
      "--client",
      mode,
      "--port",
      String(port),
      "--streams",
      String(streams),
      "--initial",
      initial,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const events: { event: string; at?: number }[] = [];
  let wake: () => void = () => {};
  (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          events.push(JSON.parse(line));
        } catch {
          console.error(`client: ${line}`);
        }
        wake();
      }
    }
  })();
  return {
    pid: child.pid,
    send: (cmd) => writer.write(new TextEncoder().encode(cmd + "\n")),
    async wait(event, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (true) {
        const i = events.findIndex((e) => e.event === event);
        if (i >= 0) return events.splice(i, 1)[0];
        if (Date.now() > end) throw new Error(`client: no "${event}" within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
    async finish() {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await child.status;
      clearTimeout(timer);
      await writer.close().catch(() => {});
    },
  };
}

/** Both versions of every node for one scenario. */
interface Fixture {
  scenario: Scenario;
  v1: BuiltResources[];
  v2: BuiltResources[];
  buildMs: number;
}

function buildFixture(scenario: Scenario, streams: number, routes: number): Fixture {
  const v1 = Array.from(
    { length: streams },
    (_, n) => buildResources(routesFor(n, routes, 1, scenario)),
  );
  const t = performance.now();
  const v2 = Array.from(
    { length: streams },
    (_, n) => buildResources(routesFor(n, routes, 2, scenario)),
  );
  return { scenario, v1, v2, buildMs: performance.now() - t };
}

/** A DiscoveryResponse as our server writes it (same fields, same nonce length). */
function responseBytes(
  resources: readonly BuiltResource[],
  type: "cds" | "lds",
  version: string,
): Uint8Array {
  return toBinary(
    DiscoveryResponseSchema,
    create(DiscoveryResponseSchema, {
      versionInfo: version,
      resources: resources.map((r) => r.any),
      typeUrl: TYPE_URLS[type],
      nonce: "abcdefg.zz",
      controlPlane: { identifier: "sigma-agent/0.1.0" },
    }),
  );
}

interface RoundResult {
  ms: number;
  /** CPU time of this (the server's) process in the timed window, ms. */
  cpuMs: number;
  bytes: number;
  before: Mem;
  served: Mem;
  closed: Mem;
}

/** CPU time (user + system) of this process so far, ms. */
function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The reference: the responses the xDS server writes on the critical path, with no xDS logic. */
async function referenceRound(fx: Fixture, streams: number): Promise<RoundResult> {
  const v1 = fx.v1.map((
    b,
  ) => [responseBytes(b.clusters, "cds", "1"), responseBytes(b.listeners, "lds", "1")]);
  const v2 = fx.v2.map((b, n) =>
    fx.scenario === "renamed"
      // What the xDS server sends first: the new clusters plus the old ones still in use.
      ? [
        responseBytes([...fx.v1[n].clusters, ...b.clusters], "cds", "2+stale"),
        responseBytes(b.listeners, "lds", "2"),
      ]
      : [responseBytes(b.clusters, "cds", "2"), responseBytes(b.listeners, "lds", "2")]
  );
  const bytes = v2.reduce((n, [c, l]) => n + c.length + l.length, 0);
  const writers = new Map<number, (b: Uint8Array) => void>();
  const server = new GrpcServer({
    methods: {
      [RAW_PATH]: {
        decode: (b: Uint8Array) => b,
        encode: (b: Uint8Array) => b,
        handle: (call) => {
          let first = true;
          call.onMessage((b: Uint8Array) => {
            if (!first) return;
            first = false;
            const node = Number(fromBinary(DiscoveryRequestSchema, b).node!.id.slice(5));
            writers.set(node, (x) => call.write(x));
            call.write(v1[node][0]);
            call.write(v1[node][1]);
          });
        },
      },
    },
  });
  const port = await server.listen("127.0.0.1", 0);
  const before = await settledMem("reference before");
  const client = spawnClient("raw", port, streams);
  try {
    await client.wait("ready", 120_000);
    await client.send("next");
    await client.wait("armed", 10_000);
    const cpu0 = cpuNow();
    const t0 = now();
    for (let n = 0; n < streams; n++) {
      const write = writers.get(n)!;
      write(v2[n][0]);
      write(v2[n][1]);
    }
    const done = await client.wait("done", 120_000);
    const cpuMs = cpuNow() - cpu0;
    const served = await settledMem("reference served");
    await client.send("close");
    await client.wait("closed", 30_000);
    const end = Date.now() + 30_000;
    while (server.callCount > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const closed = await settledMem("reference closed");
    return { ms: done.at! - t0, cpuMs, bytes, before, served, closed };
  } finally {
    await client.finish();
    await server.shutdown();
  }
}

async function xdsRound(fx: Fixture, streams: number): Promise<RoundResult> {
  const cache = new SnapshotCache();
  const metrics = createMetrics("bench", "0");
  const server = new XdsServer({
    cache,
    log: createLogger({ level: "warn", write: () => {} }),
    metrics,
  });
  const port = await server.listen("127.0.0.1", 0);
  for (let n = 0; n < streams; n++) cache.set(snapshotInput(`node-${n}`, "1", fx.v1[n]));
  const before = await settledMem("xds before");
  const client = spawnClient("xds", port, streams);
  try {
    await client.wait("ready", 120_000);
    await client.send("next");
    await client.wait("armed", 10_000);
    const inputs = fx.v2.map((b, n) => snapshotInput(`node-${n}`, "2", b));
    const stopProfile = await profile();
    const cpu0 = cpuNow();
    const t0 = now();
    for (const input of inputs) cache.set(input);
    const installed = now();
    const done = await client.wait("done", 120_000);
    const cpuMs = cpuNow() - cpu0;
    await stopProfile?.();
    if (Deno.env.get("BENCH_DEBUG")) {
      console.error(`  [xds] install loop ${(installed - t0).toFixed(0)} ms`);
    }
    const served = await settledMem("xds served");
    await client.send("close");
    await client.wait("closed", 30_000);
    const end = Date.now() + 30_000;
    while (server.streamCount > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (server.streamCount > 0) throw new Error(`${server.streamCount} streams not freed`);
    const closed = await settledMem("xds closed");
    return { ms: done.at! - t0, cpuMs, bytes: 0, before, served, closed };
  } finally {
    await client.finish();
    await server.stop();
  }
}

/** BENCH_PROFILE=<file>: CPU profile of the timed window of the xDS rounds (for perf work). */
async function profile(): Promise<(() => Promise<void>) | undefined> {
  const file = Deno.env.get("BENCH_PROFILE");
  if (!file) return undefined;
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  return async () => {
    const { profile } = await session.post("Profiler.stop");
    await Deno.writeTextFile(file, JSON.stringify(profile));
    session.disconnect();
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const kb = (bytes: number) => (bytes / 1024).toFixed(1);
const mb = (bytes: number) => (bytes / MB).toFixed(1);

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      client: { type: "string" },
      port: { type: "string" },
      streams: { type: "string", default: "1000" },
      routes: { type: "string", default: "10" },
      rounds: { type: "string", default: "7" },
      initial: { type: "string", default: "1" },
    },
  });
  const streams = Number(values.streams);
  if (values.client) {
    await runClient(
      values.client as "xds" | "raw",
      Number(values.port),
      streams,
      values.initial,
    );
    return;
  }
  const routes = Number(values.routes), rounds = Number(values.rounds);
  if (!(globalThis as { gc?: unknown }).gc) {
    console.warn("(run with --v8-flags=--expose-gc for stable RSS figures)");
  }
  const rssStart = await settledMem("start");
  console.log(
    `xDS scale bench: ${streams} ADS streams × ${routes} routes, one node and one connection per stream, ` +
      `median of ${rounds} rounds`,
  );
  const memory: RoundResult[] = [], refMemory: RoundResult[] = [];
  const refFirst = !!Deno.env.get("BENCH_REF_FIRST");
  for (const scenario of ["in-place", "renamed"] as const) {
    const fx = buildFixture(scenario, streams, routes);
    const ref: RoundResult[] = [], xds: RoundResult[] = [];
    for (let r = 0; r < rounds; r++) {
      // xDS first: the very first round then measures memory in a process that never had streams.
      // By default xDS goes first, so its first round measures memory in a process that never had
      // streams; BENCH_REF_FIRST=1 measures the bare transport's first-time memory instead.
      if (refFirst) ref.push(await referenceRound(fx, streams));
      xds.push(await xdsRound(fx, streams));
      if (!refFirst) ref.push(await referenceRound(fx, streams));
      if (Deno.env.get("BENCH_DEBUG")) {
        console.error(
          `  [${scenario} round ${r + 1}] reference ${ref[r].ms.toFixed(0)} ms, xDS ${
            xds[r].ms.toFixed(0)
          } ms; server CPU per stream: reference ${
            (1000 * ref[r].cpuMs / streams).toFixed(0)
          } µs, xDS ${(1000 * xds[r].cpuMs / streams).toFixed(0)} µs`,
        );
      }
    }
    memory.push(...xds);
    refMemory.push(...ref);
    const refMs = median(ref.map((x) => x.ms)), xdsMs = median(xds.map((x) => x.ms));
    const ratio = xdsMs / refMs;
    console.log("");
    console.log(
      `change "${scenario}" (building the ${streams} new snapshots, not timed: ${
        fx.buildMs.toFixed(0)
      } ms)`,
    );
    console.log(
      `  reference, ${mb(ref[0].bytes)} MB of the same responses, no xDS logic: ${
        refMs.toFixed(0).padStart(5)
      } ms`,
    );
    console.log(
      `  xDS, install → every stream has the new CDS+LDS:              ${
        xdsMs.toFixed(0).padStart(5)
      } ms`,
    );
    console.log(`  ratio ${ratio.toFixed(2)}× (target ≤ 1.5×) ${ratio <= 1.5 ? "OK" : "MISSED"}`);
    const cpuPer = (rs: RoundResult[]) =>
      (1000 * median(rs.map((x) => x.cpuMs)) / streams).toFixed(0);
    console.log(
      `  server CPU per stream in that window (push, write, read and handle the ACKs; median): ` +
        `reference ${cpuPer(ref)} µs, xDS ${cpuPer(xds)} µs`,
    );
  }
  const cold = refFirst ? refMemory[0] : memory[0];
  const coldPerStream = (cold.served.rss - cold.before.rss) / streams;
  const livePerStream = median(memory.map((x) => x.served.live - x.before.live)) / streams;
  const keptAfterFirst = cold.closed.live - cold.before.live;
  // Each scenario has its own fixtures in memory: compare rounds of the same scenario.
  const drift = Math.max(
    ...memory.map((x, i) => Math.abs(x.closed.live - memory[i - (i % rounds)].closed.live)),
  );
  const sign = (n: number) => `${n >= 0 ? "+" : ""}${mb(n)}`;
  console.log("");
  console.log(`memory of the xDS server process (after GC):`);
  console.log(
    `  RSS at start ${
      mb(rssStart.rss)
    } MB; with the ${streams} nodes' snapshots and the test fixtures ` +
      `${mb(cold.before.rss)} MB`,
  );
  console.log(
    `  RSS growth with ${streams} streams connected and served, first time in this process` +
      (refFirst ? " (the reference server, no xDS logic)" : "") +
      `: ${kb(coldPerStream)} KB/stream (target ≤ 50) ${
        coldPerStream <= 50 * 1024 ? "OK" : "MISSED"
      }`,
  );
  const warm = median(memory.slice(1).map((x) => x.served.rss - x.before.rss)) / streams;
  console.log(`  the same in later rounds (median): ${kb(warm)} KB/stream`);
  console.log(
    `  live memory (JS heap + buffers) per connected stream: ${
      kb(livePerStream)
    } KB (median of ${memory.length} rounds)`,
  );
  console.log(
    `  after all streams closed: live memory ${
      sign(keptAfterFirst)
    } MB vs before they opened (per-node metric ` +
      `series and status, kept while the node exists), RSS ${
        sign(cold.closed.rss - cold.before.rss)
      } MB ` +
      `(V8 and the allocator keep their high-water mark)`,
  );
  console.log(
    `  over ${memory.length} open/close cycles, live memory after close moves by at most ${
      mb(drift)
    } MB ` +
      `${
        drift <= 1 * MB
          ? "OK (back to the same baseline every time: nothing per stream survives)"
          : "MISSED"
      }`,
  );
}

if (import.meta.main) {
  await main();
} else {
  // Under `deno bench`: what one push costs the server, serializing one 10-cluster response.
  const { encodeSotwResponse } = await import("../lib/xds/wire.ts");
  const built = buildResources(routesFor(1, 10, 1, "in-place"));
  Deno.bench("xds: encode a 10-cluster DiscoveryResponse from shared resource bytes", () => {
    encodeSotwResponse({
      version: "1",
      resources: built.clusters,
      typeUrl: CDS,
      nonce: "abc.1",
      controlPlane: "x",
    });
  });
}
