/**
 * Child process of `tests/xds/poller_test.ts` (run with `--v8-flags=--expose-gc`): the poller,
 * cache, metrics and xDS server against a real DevApi, with `streams` SotW streams ACKing every
 * push. After a warm-up round, every route of every node changes, `rounds` times; prints the JS
 * heap in use after GC before the rounds and after each one, as JSON.
 *
 * Usage: `heap_rounds.ts <nodes> <routes> <rounds>`
 *
 * @module
 */

import { createLogger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { SnapshotPoller } from "../../lib/xds/poller.ts";
import { XdsServer } from "../../lib/xds/server.ts";
import { changeAll, fleet } from "./fleet.ts";
import { type SotwClient, XdsTestClient } from "../xds/xds_client.ts";

const [nodes, routes, rounds] = Deno.args.map(Number);
const STREAMS = 10;
const gc = (globalThis as { gc?: () => void }).gc!;

function heap(): number {
  dev.requests.splice(0); // the DevApi's request log lives in this process too
  for (let i = 0; i < 4; i++) gc();
  return Deno.memoryUsage().heapUsed;
}

const { dev, vpsId } = await fleet(nodes, routes);
const dir = await Deno.makeTempDir();
const cache = new SnapshotCache();
const metrics = createMetrics("h", "0");
const log = createLogger({ write: () => {} });
const signal = new AbortController();
const { SigmaClient } = await import("../../lib/api/client.ts");
const poller = new SnapshotPoller({
  api: new SigmaClient({ baseUrl: dev.url, apiKey: undefined }),
  cache,
  store: new StateStore(dir),
  log,
  metrics,
  vpsId: () => vpsId,
  vpsIdReady: Promise.resolve(vpsId),
  intervalMs: 3_600_000,
  signal: signal.signal,
});
const server = new XdsServer({ cache, log, metrics });
const port = await server.listen("127.0.0.1", 0);
const latest = new Map<number, string>(); // stream → "<cds version>/<lds version>"
const clients: SotwClient[] = [];

async function ackLoop(c: SotwClient, i: number): Promise<void> {
  const got = { cds: "", lds: "" };
  while (true) {
    const res = await c.next(3_600_000).catch(() => undefined);
    if (!res) return;
    c.send({ typeUrl: res.typeUrl, versionInfo: res.versionInfo, responseNonce: res.nonce });
    if (res.typeUrl.endsWith("Cluster")) got.cds = res.versionInfo;
    else got.lds = res.versionInfo;
    latest.set(i, `${got.cds}/${got.lds}`);
  }
}

async function allAt(version: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (clients.some((_, i) => latest.get(i) !== `${version}/${version}`)) {
    if (Date.now() > end) throw new Error(`streams not at ${version}: ${[...latest.values()]}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let round = 0;
async function changeRound(): Promise<void> {
  changeAll(dev, ++round);
  const status = await poller.pollOnce();
  if (status.rebuilt !== nodes) throw new Error(`round ${round}: ${JSON.stringify(status)}`);
  await allAt(String(cache.get("node-0")!.version));
}

try {
  await poller.pollOnce();
  for (let i = 0; i < STREAMS; i++) {
    const c = XdsTestClient.sotw(port);
    clients.push(c);
    c.send({
      node: { id: `node-${i}` },
      typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    });
    c.send({
      node: { id: `node-${i}` },
      typeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener",
    });
    ackLoop(c, i);
  }
  await allAt(cache.get("node-0")!.version);
  await changeRound(); // warm-up: code paths compiled, pools and caches at their working size
  await new Promise((r) => setTimeout(r, 1500)); // let grace timers of the protocol run out
  const before = heap();
  const after: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await changeRound();
    await new Promise((r) => setTimeout(r, 1500));
    after.push(heap());
  }
  console.log(JSON.stringify({ before, after, streams: STREAMS }));
} finally {
  for (const c of clients) c.close();
  signal.abort();
  await server.stop();
  await dev.close();
  await Deno.remove(dir, { recursive: true });
}
