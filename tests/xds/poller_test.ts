/**
 * The poller at fleet scale, against the real DevApi over HTTP and the real client: changed nodes
 * are fetched with bounded concurrency, a 429 pauses every fetch together for its Retry-After,
 * only changed routes are encoded again, one poll is one durable write that a new process
 * restores, and nothing per node or per change accumulates across rounds (heap measured in a
 * child process with `--expose-gc`).
 */

import assert from "node:assert/strict";
import { SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { createLogger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { encodeRoute } from "../../lib/xds/resources.ts";
import {
  DEFAULT_FETCH_CONCURRENCY,
  type PollerApi,
  SNAPSHOT_FILE,
  SnapshotPoller,
} from "../../lib/xds/poller.ts";
import { changeAll, fleet } from "../support/fleet.ts";

/** A StateStore that counts its (real) writes. */
class CountingStore extends StateStore {
  writes = 0;
  override writeParts(name: string, parts: Iterable<string>): Promise<void> {
    this.writes++;
    return super.writeParts(name, parts);
  }
}

function poller(
  dev: DevApi,
  vpsId: string,
  store: StateStore,
  extra: {
    api?: PollerApi;
    cache?: SnapshotCache;
    intervalMs?: number;
  } = {},
) {
  const client = new SigmaClient({ baseUrl: dev.url, apiKey: undefined, timeoutMs: 5000 });
  const cache = extra.cache ?? new SnapshotCache();
  const signal = new AbortController();
  const p = new SnapshotPoller({
    api: extra.api ?? client,
    cache,
    store,
    log: createLogger({ write: () => {} }),
    metrics: createMetrics("t", "0"),
    vpsId: () => vpsId,
    vpsIdReady: Promise.resolve(vpsId),
    intervalMs: extra.intervalMs ?? 3_600_000,
    signal: signal.signal,
  });
  return { poller: p, cache, client, stop: () => signal.abort() };
}

Deno.test("poller: changed nodes are fetched concurrently, never more than the default at once; one request per node plus the pages", async () => {
  const { dev, vpsId } = await fleet(40, 2);
  const dir = await Deno.makeTempDir();
  try {
    const client = new SigmaClient({ baseUrl: dev.url, apiKey: undefined });
    let inFlight = 0, most = 0;
    const api: PollerApi = {
      listEnvoyNodes: (q) => client.listEnvoyNodes(q),
      createEnvoyNode: (b) => client.createEnvoyNode(b),
      listEnvoyRoutes: async (q) => {
        most = Math.max(most, ++inFlight);
        try {
          return await client.listEnvoyRoutes(q);
        } finally {
          inFlight--;
        }
      },
    };
    const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir), { api });
    const before = dev.requests.length;
    const status = await p.pollOnce();
    assert.equal(status.result, "success");
    assert.equal(status.rebuilt, 40);
    assert.equal(cache.size, 40);
    assert.equal(most, DEFAULT_FETCH_CONCURRENCY, `at most ${most} route fetches in flight`);
    const made = dev.requests.slice(before);
    assert.equal(made.filter((r) => r.path === "/api/envoy-routes").length, 40);
    assert.equal(made.filter((r) => r.path === "/api/envoy-nodes").length, 1);

    // An unchanged poll: the node pages only.
    const again = dev.requests.length;
    assert.equal((await p.pollOnce()).rebuilt, 0);
    assert.deepEqual(dev.requests.slice(again).map((r) => r.path), ["/api/envoy-nodes"]);
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a 429 pauses every fetch together for its Retry-After, then the poll completes", async () => {
  const { dev, vpsId } = await fleet(30, 1);
  const dir = await Deno.makeTempDir();
  try {
    const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir), { intervalMs: 10_000 });
    // The first route fetches are answered 429 "Retry-After: 1"; normal service after 150 ms.
    dev.fault = { status: 429, retryAfter: "1", pathPrefix: "/envoy-routes" };
    const start = dev.requests.length;
    const lifted = new Promise<void>((resolve) =>
      setTimeout(() => {
        dev.fault = undefined;
        resolve();
      }, 150)
    );
    const status = await p.pollOnce();
    await lifted;
    assert.equal(status.result, "success", status.error ?? "");
    assert.equal(cache.size, 30);
    const routes = dev.requests.slice(start).filter((r) => r.path === "/api/envoy-routes");
    const limited = routes.filter((r) => r.status === 429);
    assert.ok(limited.length >= 1 && limited.length <= DEFAULT_FETCH_CONCURRENCY);
    const first429 = Math.min(...limited.map((r) => r.at));
    const last429 = Math.max(...limited.map((r) => r.at));
    // Nobody asked again before the API's Retry-After had passed (the 429s were in flight together).
    const early = routes.filter((r) => r.at > last429 && r.at < first429 + 950);
    assert.deepEqual(early.map((r) => r.at - first429), [], "requests during the pause");
    assert.equal(routes.filter((r) => r.status === 200).length, 30, "each node once after");
  } finally {
    dev.fault = undefined;
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs the poller loop (100 ms interval) for 1.2 s while the API answers 429 with `Retry-After: 2`
 * on paths starting with `pathPrefix`; returns the requests made and the last poll.
 */
async function pollUnder429(nodes: number, pathPrefix: string) {
  const { dev, vpsId } = await fleet(nodes, 1);
  const dir = await Deno.makeTempDir();
  const { poller: p, stop } = poller(dev, vpsId, new StateStore(dir), { intervalMs: 100 });
  try {
    dev.fault = { status: 429, retryAfter: "2", pathPrefix };
    const start = dev.requests.length;
    const running = p.run();
    await new Promise((r) => setTimeout(r, 1200));
    const made = dev.requests.slice(start);
    stop();
    await running;
    return { made, lastPoll: p.lastPoll };
  } finally {
    stop();
    dev.fault = undefined;
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("poller: a Retry-After longer than the interval ends the poll; the loop waits for it", async () => {
  const { made, lastPoll } = await pollUnder429(3, "/envoy-routes");
  // One poll: its node page and the route fetches in flight when the 429s came back; then
  // quiet for 2 s although the interval is 100 ms.
  assert.equal(made.filter((r) => r.path === "/api/envoy-nodes").length, 1);
  assert.equal(lastPoll?.result, "failure");
  assert.match(lastPoll?.error ?? "", /429/);
});

Deno.test("poller: a 429 on the node list also holds the next poll back for its Retry-After", async () => {
  const { made } = await pollUnder429(2, "/envoy-nodes");
  assert.equal(made.length, 1, "one node-list request, then quiet");
});

Deno.test("poller: only changed routes are encoded again; unchanged resources keep their objects", async () => {
  const { dev, vpsId, rows } = await fleet(2, 10);
  const dir = await Deno.makeTempDir();
  try {
    const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir));
    await p.pollOnce();
    const before = cache.get("node-0")!;
    const changed = dev.routes.find((r) => r.envoy_node_id === rows[0] && r.name === "n0-r3")!;
    changed.backend_port = 9999;
    dev.bumpVersion(rows[0]);
    assert.equal((await p.pollOnce()).rebuilt, 1);
    const after = cache.get("node-0")!;
    assert.notEqual(after, before);
    for (const type of ["cds", "lds"] as const) {
      for (const [name, res] of after.resources[type]) {
        if (name.endsWith("-n0-r3") && type === "cds") {
          assert.notEqual(res, before.resources[type].get(name), `${name} was re-encoded`);
        } else assert.equal(res, before.resources[type].get(name), `${name} kept`);
      }
    }
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a change made while the nodes were being listed is picked up at once, not an interval later", async () => {
  const { dev, vpsId, rows } = await fleet(150, 1);
  const dir = await Deno.makeTempDir();
  try {
    const client = new SigmaClient({ baseUrl: dev.url, apiKey: undefined });
    let listings = 0;
    const api: PollerApi = {
      listEnvoyNodes: async (q) => {
        const nodes = await client.listEnvoyNodes(q);
        // The first listing read node-0 on page 1 before it changed.
        if (++listings === 1) dev.bumpVersion(rows[0]);
        return nodes;
      },
      createEnvoyNode: (b) => client.createEnvoyNode(b),
      listEnvoyRoutes: (q) => client.listEnvoyRoutes(q),
    };
    const { poller: p, cache, stop } = poller(dev, vpsId, new StateStore(dir), {
      api,
      intervalMs: 3_600_000,
    });
    const want = String(dev.nodes.find((n) => n.id === rows[0])!.config_version + 1);
    const loop = p.run();
    const end = Date.now() + 5000;
    while (cache.get("node-0")?.version !== want && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(cache.get("node-0")?.version, want, "node-0 waited for the next interval");
    // One follow-up, not a chain: the follow-up rebuilt node-0, and the loop then sleeps.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(listings, 2);
    stop();
    await loop;
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a route is reused only when it alone had its name (a skipped twin never lends its resources)", async () => {
  const { dev, vpsId, rows } = await fleet(1, 1);
  const dir = await Deno.makeTempDir();
  try {
    const twin = { name: "dup", cluster_type: "static", proxy_protocol: 0, backend_port: 8080 };
    // Same name, two ports: the lower port wins the name, the other route is skipped.
    const a = dev.addRoute(rows[0], { ...twin, listen_port: 21000, backend_host: "10.9.0.1" });
    const b = dev.addRoute(rows[0], { ...twin, listen_port: 21001, backend_host: "10.9.0.2" });
    const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir));
    await p.pollOnce();
    assert.deepEqual(
      cache.get("node-0")!.resources.cds.get("cluster-dup")!.bytes,
      encodeRoute(a)[0].bytes,
    );
    // The winner goes: the route that was skipped now gets the name, with its own backend.
    dev.routes.splice(dev.routes.findIndex((r) => r.id === a.id), 1);
    dev.bumpVersion(rows[0]);
    assert.equal((await p.pollOnce()).rebuilt, 1);
    const snap = cache.get("node-0")!;
    assert.deepEqual(snap.resources.cds.get("cluster-dup")!.bytes, encodeRoute(b)[0].bytes);
    assert.deepEqual(snap.resources.lds.get("listener-dup")!.bytes, encodeRoute(b)[1].bytes);
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a node id outside ASCII is kept, persisted and reused like any other", async () => {
  const { dev, vpsId, rows } = await fleet(1, 4);
  const dir = await Deno.makeTempDir();
  try {
    // Multi-byte UTF-8 and a character JSON escapes: where the kept bytes of the node begin.
    dev.nodes[0].node_id = 'edge-ü-東京-"q"';
    const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir));
    assert.equal((await p.pollOnce()).rebuilt, 1);
    const before = cache.get(dev.nodes[0].node_id)!;
    const changed = dev.routes.find((r) => r.envoy_node_id === rows[0] && r.name === "n0-r1")!;
    changed.backend_port = 9999;
    dev.bumpVersion(rows[0]);
    const status = await p.pollOnce();
    assert.equal(status.result, "success", status.error ?? "");
    const after = cache.get(dev.nodes[0].node_id)!;
    assert.equal(
      after.resources.cds.get("cluster-n0-r0"),
      before.resources.cds.get("cluster-n0-r0"),
      "an unchanged route of the node kept its resource",
    );
    const file = JSON.parse(await Deno.readTextFile(`${dir}/${SNAPSHOT_FILE}`));
    assert.deepEqual(Object.keys(file.nodes), [dev.nodes[0].node_id]);
    // Only what the builders read (and the id that orders ties) is persisted per route.
    assert.deepEqual(Object.keys(file.nodes[dev.nodes[0].node_id].routes[0]).sort(), [
      "backend_host",
      "backend_port",
      "cluster_type",
      "connect_timeout_secs",
      "id",
      "listen_port",
      "name",
      "proxy_protocol",
    ]);
    assert.equal(
      file.nodes[dev.nodes[0].node_id].routes.find((r: { name: string }) => r.name === "n0-r1")
        .backend_port,
      9999,
    );
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: 50 changed nodes are one durable write, and a fresh poller restores them all", async () => {
  const { dev, vpsId } = await fleet(50, 3);
  const dir = await Deno.makeTempDir();
  try {
    const store = new CountingStore(dir);
    const { poller: p, cache } = poller(dev, vpsId, store);
    assert.equal((await p.pollOnce()).rebuilt, 50);
    assert.equal(store.writes, 1);
    changeAll(dev, 1);
    assert.equal((await p.pollOnce()).rebuilt, 50);
    assert.equal(store.writes, 2, "one write per poll, however many nodes changed");
    await p.pollOnce();
    assert.equal(store.writes, 2, "an unchanged poll writes nothing");
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), [
      SNAPSHOT_FILE,
    ]);

    // A new process (here: a new poller on the same directory, the API gone) serves the same bytes.
    await dev.close();
    const fresh = poller(dev, vpsId, new StateStore(dir));
    assert.equal(await fresh.poller.load(), 50);
    for (const id of cache.nodeIds()) {
      const a = cache.get(id)!, b = fresh.cache.get(id)!;
      assert.equal(b.version, a.version);
      for (const type of ["cds", "lds"] as const) {
        assert.deepEqual(
          [...b.resources[type].values()].map((r) => r.bytes),
          [...a.resources[type].values()].map((r) => r.bytes),
        );
      }
    }
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: rounds of every route changing leave the heap where it was (nothing accumulates)", async () => {
  const script = new URL("../support/heap_rounds.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--v8-flags=--expose-gc",
      script,
      "300",
      "10",
      "7",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success, "heap_rounds.ts failed");
  const r = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    before: number;
    after: number[];
    streams: number;
  };
  const MB = 1024 * 1024;
  // Every round replaces every resource of 300 nodes (6,000 resources, ~1 MB of bytes): growth of
  // 1 KB per node per round would show as 2 MB here.
  for (const [i, heap] of r.after.entries()) {
    assert.ok(
      heap <= r.before + 1 * MB,
      `round ${i + 1}: heap ${(heap / MB).toFixed(1)} MB vs ${
        (r.before / MB).toFixed(1)
      } MB before`,
    );
  }
});
