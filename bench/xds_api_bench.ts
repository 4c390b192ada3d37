/**
 * API-driven xDS benchmark (issue 15): the real agent process, started as `deno task start` does
 * (deploy/permissions.flags, the real poller), against a local HTTP API holding one VPS with
 * `--nodes` Envoy nodes × `--routes` routes, and one ADS stream per node on its own connection from
 * a separate client process (the client of `xds_scale_bench.ts`, which ACKs every response).
 *
 * Rounds: every route of every node changes at once (new backend port and listen port, so CDS and
 * LDS both change), then the same with the first `--partial` nodes only. Timed: from the moment
 * the API answers the first node page, after the change, that lists a changed node (page 1 of the
 * next poll, or a later page of a poll under way), to the moment the client has every changed
 * stream's new CDS and LDS (both sides read the wall clock). Measured from /proc of the agent: CPU
 * (utime + stime) per changed node, without streams (fetch, rebuild, encode, persist) and with
 * them (plus pushing); RSS with the snapshots before any stream, per connected stream, and before
 * vs after the change rounds, each read 10 s after the burst before it (what the agent holds
 * between changes). The API counts its requests per poll. The client's and the API's
 * CPU per node are printed beside the agent's: the three processes share the machine's cores.
 *
 * The API is served by this process from precomputed JSON (the DevApi handles registration and
 * heartbeats), so its own CPU stays small; the three processes share the machine's cores.
 *
 * Run: `deno task bench:xds-api` (options: `--nodes N`, `--routes N`, `--rounds N`,
 * `--partial N`). `BENCH_DEBUG=1` prints every round.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DevApi } from "../lib/api/dev_server.ts";
import { freePort, readProc, spawnAgent, waitFor } from "../tests/helpers.ts";
import { spawnClient } from "./xds_scale_bench.ts";

const TICKS_PER_S = 100; // USER_HZ on Linux
const MB = 1024 * 1024;
const SNAPSHOT_FILE = "xds-snapshots.json";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "1000" },
    routes: { type: "string", default: "10" },
    rounds: { type: "string", default: "7" },
    partial: { type: "string", default: "100" },
    "agent-flags": { type: "string", default: "" },
  },
});
const NODES = Number(values.nodes), ROUTES = Number(values.routes);
const ROUNDS = Number(values.rounds), PARTIAL = Math.min(Number(values.partial), NODES);
const debug = !!Deno.env.get("BENCH_DEBUG");

function now(): number {
  return performance.timeOrigin + performance.now();
}

function procStat(pid: number): { rss: number; cpuTicks: number } {
  const status = readProc(`/proc/${pid}/status`);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  const stat = readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { rss, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

function loadavg(): string {
  return readProc("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs: number[], digits = 0) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

// ───────────────────────────── the API ─────────────────────────────

interface Node {
  index: number;
  row: string;
  nodeId: string;
  version: number;
  /** The listen/backend port shift of the current version. */
  shift: number;
  body: string | undefined;
}

const dev = new DevApi();
const nodes: Node[] = [];
const byRow = new Map<string, Node>();
let vpsId = "";
const counts = { nodePages: 0, routeFetches: 0 };
let watch: { since: number; count: number; seenAt?: number } | undefined;

function routesBody(n: Node): string {
  const stamp = new Date().toISOString();
  const data = Array.from({ length: ROUTES }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(n.index * 1000 + i).padStart(12, "0")}`,
    envoy_node_id: n.row,
    name: `n${n.index}-r${i}`,
    listen_port: 10000 + i * 100 + (n.shift % 100),
    backend_host: `10.${(n.index >> 8) & 255}.${n.index & 255}.${i + 1}`,
    backend_port: 8000 + n.shift,
    cluster_type: "static",
    connect_timeout_secs: 5,
    proxy_protocol: i % 3,
    source: "dynamic",
    status: "active",
    created_at: stamp,
    updated_at: stamp,
  }));
  return JSON.stringify({ data, total: data.length, page: 1, per_page: 100 });
}

async function handle(req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (req.method === "GET" && url.pathname === "/api/envoy-routes") {
    counts.routeFetches++;
    const n = byRow.get(url.searchParams.get("envoy_node_id") ?? "");
    if (!n) return new Response(JSON.stringify({ error: "Not found" }), { status: 404 });
    n.body ??= routesBody(n);
    return new Response(n.body, { headers: { "content-type": "application/json" } });
  }
  if (req.method === "GET" && url.pathname === "/api/envoy-nodes") {
    counts.nodePages++;
    const res = await dev.handle(req);
    const body = await res.text();
    // The change is seen by the first node page answered after it that lists a changed node (the
    // changed nodes are the first ones, in the order the API lists them): page 1 of the next poll,
    // or a later page of a poll already under way.
    const page = Number(url.searchParams.get("page") ?? "1");
    const perPage = Number(url.searchParams.get("per_page") ?? "100");
    if (watch && watch.seenAt === undefined && (page - 1) * perPage < watch.count) {
      watch.seenAt = now();
    }
    return new Response(body, { status: res.status, headers: res.headers });
  }
  const res = await dev.handle(req);
  dev.requests.splice(0); // the request log is for tests; keep this process small
  return res;
}

/** Changes every route of the first `count` nodes; returns the version they now have. */
function change(count: number): number {
  let version = 0;
  for (const n of nodes.slice(0, count)) {
    n.shift++;
    n.version++;
    n.body = undefined;
    const row = dev.nodes.find((x) => x.id === n.row)!;
    row.config_version = n.version;
    version = n.version;
  }
  return version;
}

// ───────────────────────────── the run ─────────────────────────────

const apiPort = freePort();
const METRICS_PORT = freePort();
/** Prints the agent's own memory figures from `/metrics` (BENCH_DEBUG). */
async function heap(label: string): Promise<void> {
  if (!debug) return;
  const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  const mb = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text);
    return m ? (Number(m[1]) / MB).toFixed(1) : "?";
  };
  console.error(
    `  [${label}] RSS ${mb("process_resident_memory_bytes")} MB, JS heap in use ${
      mb("process_heap_bytes")
    } MB; ${rssParts(agent.child.pid)}`,
  );
}

/** Where the agent's resident pages are, from its smaps (debug output only). */
function rssParts(pid: number): string {
  const kb: Record<string, number> = {};
  let group = "";
  for (const line of readProc(`/proc/${pid}/smaps`).split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1];
      group = name === ""
        ? "anonymous"
        : name === "[heap]"
        ? "malloc heap"
        : name.endsWith("/deno")
        ? "deno executable"
        : name.startsWith("[")
        ? "other"
        : "libraries";
      continue;
    }
    const rss = /^Rss:\s+(\d+)/.exec(line);
    if (rss) kb[group] = (kb[group] ?? 0) + Number(rss[1]);
  }
  return Object.entries(kb).map(([k, v]) => `${k} ${(v / 1024).toFixed(1)}`).join(", ");
}
const server = Deno.serve({ hostname: "127.0.0.1", port: apiPort, onListen: () => {} }, handle);
const xdsPort = freePort();
const stateDir = await Deno.makeTempDir({ prefix: "sigma-bench-xds-api-" });
const agentEnv: Record<string, string> = {};
for (const [k, v] of Object.entries(Deno.env.toObject())) {
  if (k.startsWith("MALLOC_")) agentEnv[k] = v;
}
const agent = await spawnAgent({
  stateDir,
  env: agentEnv,
  denoFlags: values["agent-flags"].split(" ").filter(Boolean),
  args: [
    `--api-url=http://127.0.0.1:${apiPort}/api`,
    `--metrics-port=${METRICS_PORT}`,
    "--metrics-addr=127.0.0.1",
    "--xds-enabled",
    `--xds-port=${xdsPort}`,
    "--xds-addr=127.0.0.1",
    "--xds-poll-interval=1",
    "--hostname=bench-xds-api",
    "--log-level=warn",
  ],
});
const pid = agent.child.pid;
const snapshotPath = `${stateDir}/${SNAPSHOT_FILE}`;

async function savedAt(): Promise<number> {
  try {
    return (await Deno.stat(snapshotPath)).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** Waits until the agent has persisted a poll newer than `after` (its last write of the change). */
async function persistedAfter(after: number): Promise<void> {
  await waitFor(async () => (await savedAt()) > after, {
    timeoutMs: 120_000,
    message: "agent persisted the change",
  });
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * RSS is read this long after the last burst (a change round, streams connecting): what the
 * agent holds between changes, after its memory reclaimer (RSS checked every 3 s, a collection a
 * second after growth) has had its turn, rather than the garbage of the burst just finished.
 */
const MEMORY_SETTLE_MS = 10_000;

try {
  await waitFor(() => dev.vps.length > 0, { timeoutMs: 60_000, message: "agent registered" });
  vpsId = dev.vps[0].id;
  for (let i = 0; i < NODES; i++) {
    const row = dev.addNode(vpsId, `node-${i}`);
    row.config_version = 1;
    const n: Node = {
      index: i,
      row: row.id,
      nodeId: row.node_id,
      version: 1,
      shift: 0,
      body: undefined,
    };
    nodes.push(n);
    byRow.set(row.id, n);
  }
  await heap("idle");
  const idle = procStat(pid);
  const t0 = now();
  await waitFor(async () => (await savedAt()) > 0, {
    timeoutMs: 300_000,
    message: "first snapshots persisted",
  });
  const firstLoadMs = now() - t0;
  await settle(3000);
  const loaded = procStat(pid);
  await heap("loaded");

  // Change rounds with no stream connected: the poller's own cost per changed node.
  const quietCpu: number[] = [];
  for (let r = 0; r < 3; r++) {
    const before = procStat(pid), mtime = await savedAt();
    await settle(10); // mtime granularity
    change(NODES);
    await persistedAfter(mtime);
    await settle(300);
    quietCpu.push((procStat(pid).cpuTicks - before.cpuTicks) / TICKS_PER_S * 1000 / NODES);
  }
  await settle(MEMORY_SETTLE_MS);
  const snapshots = procStat(pid);
  await heap("after quiet rounds");

  const client = spawnClient("xds", xdsPort, NODES, String(nodes[0].version));
  try {
    await client.wait("ready", 300_000);
    await settle(MEMORY_SETTLE_MS);
    const streamsUp = procStat(pid);

    interface Round {
      ms: number;
      cpuPerNode: number;
      /** CPU of the client process (the stand-in Envoys) and of this process (the API), per node. */
      clientCpuPerNode: number;
      apiCpuPerNode: number;
      routeFetches: number;
      nodePages: number;
    }
    const run = async (count: number): Promise<Round[]> => {
      const out: Round[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const version = nodes[0].version + 1;
        await client.send(`next ${version} ${count}`);
        await client.wait("armed", 10_000);
        const before = procStat(pid), mtime = await savedAt();
        const clientBefore = procStat(client.pid), apiBefore = procStat(Deno.pid);
        await settle(10);
        counts.nodePages = 0;
        counts.routeFetches = 0;
        watch = { since: now(), count };
        change(count);
        const done = await client.wait("done", 300_000);
        await persistedAfter(mtime);
        await settle(300);
        const perNode = (after: number, before: number) =>
          (after - before) / TICKS_PER_S * 1000 / count;
        const cpu = perNode(procStat(pid).cpuTicks, before.cpuTicks);
        const clientCpu = perNode(procStat(client.pid).cpuTicks, clientBefore.cpuTicks);
        const apiCpu = perNode(procStat(Deno.pid).cpuTicks, apiBefore.cpuTicks);
        const seenAt = watch.seenAt ?? watch.since;
        out.push({
          ms: done.at! - seenAt,
          cpuPerNode: cpu,
          clientCpuPerNode: clientCpu,
          apiCpuPerNode: apiCpu,
          routeFetches: counts.routeFetches,
          nodePages: counts.nodePages,
        });
        watch = undefined;
        if (debug) {
          console.error(`  [${count} changed, round ${r + 1}] ${JSON.stringify(out.at(-1))}`);
        }
        await settle(1500);
      }
      return out;
    };
    const all = await run(NODES);
    const some = PARTIAL > 0 && PARTIAL < NODES ? await run(PARTIAL) : [];
    await settle(MEMORY_SETTLE_MS);
    const after = procStat(pid);
    await heap("after rounds");

    const pagesPerPoll = Math.ceil(NODES / 100);
    const rows: [string, string, string, boolean | undefined][] = [];
    const row = (what: string, value: string, goal: string, met?: boolean) =>
      rows.push([what, value, goal, met]);
    const allMs = all.map((x) => x.ms), someMs = some.map((x) => x.ms);
    row(
      `change seen by the poll → all ${NODES} streams ACKed new CDS+LDS`,
      `${median(allMs).toFixed(0)} ms (${range(allMs)})`,
      "≤ 500 ms",
      median(allMs) <= 500,
    );
    if (some.length) {
      row(
        `same, ${PARTIAL} nodes changed`,
        `${median(someMs).toFixed(0)} ms (${range(someMs)})`,
        "≤ 100 ms",
        median(someMs) <= 100,
      );
    }
    const quiet = median(quietCpu);
    row(
      "agent CPU per changed node: fetch, rebuild, encode, persist (no streams)",
      `${quiet.toFixed(2)} ms (${range(quietCpu, 2)})`,
      "≤ 0.3 ms",
      quiet <= 0.3,
    );
    const withPush = all.map((x) => x.cpuPerNode);
    row(
      "  the same with every stream pushed and ACKed",
      `${median(withPush).toFixed(2)} ms (${range(withPush, 2)})`,
      "(context)",
    );
    const fetches = [...all, ...some].every((x, i) =>
      x.routeFetches === (i < all.length ? NODES : PARTIAL)
    );
    row(
      "  CPU of the client process (the stand-in Envoys, grpc-js) / of the API, per node",
      `${median(all.map((x) => x.clientCpuPerNode)).toFixed(2)} / ${
        median(all.map((x) => x.apiCpuPerNode)).toFixed(2)
      } ms`,
      "(context)",
    );
    row(
      "API requests per changed poll",
      `${median(all.map((x) => x.routeFetches))} route fetches + ${pagesPerPoll} node pages ` +
        `(${median(all.map((x) => x.nodePages))} pages counted in a round: the poll and its ` +
        `immediate follow-up)`,
      `one per changed node + pages`,
      fetches,
    );
    row(
      `RSS with ${NODES} node snapshots, before any stream`,
      `${(snapshots.rss / MB).toFixed(1)} MB (first load ${(loaded.rss / MB).toFixed(1)})`,
      "≤ 80 MB",
      snapshots.rss <= 80 * MB,
    );
    const growth = after.rss / streamsUp.rss - 1;
    row(
      `RSS after ${all.length + some.length} change rounds vs before them`,
      `${(after.rss / MB).toFixed(1)} vs ${(streamsUp.rss / MB).toFixed(1)} MB (${
        growth >= 0 ? "+" : ""
      }${(growth * 100).toFixed(0)} %)`,
      "within +20 %",
      growth <= 0.2,
    );
    const perStream = (streamsUp.rss - snapshots.rss) / NODES / 1024;
    row(
      "RSS growth per connected stream",
      `${perStream.toFixed(1)} KB`,
      "≤ 20 KB",
      perStream <= 20,
    );
    console.log(
      `xDS API bench: the agent process (deno task start flags), ${NODES} nodes × ${ROUTES} routes, ` +
        `${NODES} ADS streams on ${NODES} connections, ${ROUNDS} rounds each; load average ${loadavg()}`,
    );
    console.log(
      `  (idle RSS before the nodes existed ${
        (idle.rss / MB).toFixed(1)
      } MB; first load of ${NODES} nodes ` +
        `${(firstLoadMs / 1000).toFixed(1)} s)`,
    );
    console.log("");
    console.log(`| figure | measured | goal | |`);
    console.log(`|---|---|---|---|`);
    for (const [what, value, goal, met] of rows) {
      console.log(
        `| ${what} | ${value} | ${goal} | ${met === undefined ? "" : met ? "met" : "NOT MET"} |`,
      );
    }
    await client.send("close");
    await client.wait("closed", 30_000).catch(() => {});
  } finally {
    await client.finish();
  }
} finally {
  await agent.stop();
  const keep = Deno.env.get("BENCH_AGENT_STDOUT");
  if (keep) await Deno.writeTextFile(keep, agent.stdout());
  await server.shutdown();
  await Deno.remove(stateDir, { recursive: true });
}
