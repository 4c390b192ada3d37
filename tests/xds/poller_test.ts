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
import { createLogger, type Logger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { type DocumentParts, StateStore } from "../../lib/core/state_store.ts";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { encodeRoute } from "../../lib/xds/resources.ts";
import {
  DEFAULT_FETCH_CONCURRENCY,
  PERSISTED_FIELDS,
  type PollerApi,
  routeFingerprint,
  SNAPSHOT_FILE,
  SnapshotPoller,
} from "../../lib/xds/poller.ts";
import { changeAll, fleet } from "../support/fleet.ts";
import { openFds } from "../helpers.ts";

/** A StateStore that counts its (real) writes. */
class CountingStore extends StateStore {
  writes = 0;
  override writePartsAndOpen(
    name: string,
    parts: DocumentParts,
    written?: { bytes: number },
  ): Promise<Deno.FsFile> {
    this.writes++;
    return super.writePartsAndOpen(name, parts, written);
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
    log?: Logger;
  } = {},
) {
  const client = new SigmaClient({ baseUrl: dev.url, apiKey: undefined, timeoutMs: 5000 });
  const cache = extra.cache ?? new SnapshotCache();
  const signal = new AbortController();
  const p = new SnapshotPoller({
    api: extra.api ?? client,
    cache,
    store,
    log: extra.log ?? createLogger({ write: () => {} }),
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

/** What a write of every node from scratch gives: each listed node's routes as the API has them. */
function expectedNodes(dev: DevApi): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of dev.nodes) {
    const routes = dev.routes.filter((r) => r.envoy_node_id === n.id);
    out[n.node_id] = JSON.parse(
      JSON.stringify(
        { id: n.id, version: String(n.config_version), routes },
        PERSISTED_FIELDS as string[],
      ),
    );
  }
  return out;
}

Deno.test("poller: unchanged nodes are copied from the file it holds; after changes and a drop the file is what a full write gives", async () => {
  const { dev, vpsId, rows } = await fleet(30, 3);
  const dir = await Deno.makeTempDir();
  const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir));
  try {
    // Multi-byte ids where entries begin and end; a changed node between unchanged neighbours.
    dev.nodes[4].node_id = "edge-ü-東京";
    dev.nodes[5].node_id = 'edge-"q"-😀';
    assert.equal((await p.pollOnce()).rebuilt, 30);
    const file = () => JSON.parse(Deno.readTextFileSync(`${dir}/${SNAPSHOT_FILE}`));
    assert.deepEqual(file().nodes, expectedNodes(dev));
    for (const [round, every] of [[1, 3], [2, 7], [3, 29]]) {
      for (const [i, row] of rows.entries()) {
        if (i % every !== 0) continue;
        const route = dev.routes.find((r) => r.envoy_node_id === row)!;
        route.backend_port = 9000 + round;
        dev.bumpVersion(row);
      }
      assert.equal((await p.pollOnce()).result, "success");
      assert.deepEqual(file().nodes, expectedNodes(dev), `round ${round}`);
    }
    // One file is held, whatever the number of writes: each new one replaces the last.
    const fds = openFds(Deno.pid);
    for (let round = 4; round < 8; round++) {
      dev.bumpVersion(rows[round]);
      await p.pollOnce();
    }
    assert.equal(openFds(Deno.pid), fds);
    // A node no longer listed leaves the file; its neighbours are still copied whole.
    dev.nodes.splice(10, 1);
    assert.equal((await p.pollOnce()).dropped, 1);
    assert.deepEqual(file().nodes, expectedNodes(dev));
    assert.deepEqual(Object.keys(file().nodes), cache.nodeIds());
    // A new process restores exactly what is served.
    const fresh = poller(dev, vpsId, new StateStore(dir));
    assert.equal(await fresh.poller.load(), 29);
    for (const id of cache.nodeIds()) {
      assert.deepEqual(
        [...fresh.cache.get(id)!.resources.lds.values()].map((r) => r.bytes),
        [...cache.get(id)!.resources.lds.values()].map((r) => r.bytes),
      );
    }
    const held = openFds(Deno.pid);
    await p.close();
    assert.equal(openFds(Deno.pid), held - 1, "close() lets the held file go");
  } finally {
    await p.close();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a snapshot file cut short by something else is rewritten from the API; the snapshots served stay", async () => {
  const { dev, vpsId, rows } = await fleet(6, 2);
  const dir = await Deno.makeTempDir();
  const warnings: string[] = [];
  const { poller: p, cache } = poller(dev, vpsId, new StateStore(dir), {
    log: createLogger({ write: (line) => warnings.push(line) }),
  });
  try {
    assert.equal((await p.pollOnce()).rebuilt, 6);
    const served = cache.get("node-3");
    await Deno.truncate(`${dir}/${SNAPSHOT_FILE}`, 40);
    dev.bumpVersion(rows[0]);
    assert.equal((await p.pollOnce()).rebuilt, 1);
    assert.ok(
      warnings.some((l) => l.includes("could not persist") && l.includes("fetching every node")),
      warnings.join("\n"),
    );
    assert.equal(cache.get("node-3"), served, "the other nodes' snapshots are still served");
    // The next poll fetches the nodes whose bytes were lost and writes the whole file again.
    assert.equal((await p.pollOnce()).rebuilt, 5);
    const nodes = JSON.parse(Deno.readTextFileSync(`${dir}/${SNAPSHOT_FILE}`)).nodes;
    assert.deepEqual(nodes, expectedNodes(dev));
  } finally {
    await p.close();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a loaded file is rewritten by the first poll even when nothing changed (then its JSON is not kept in memory)", async () => {
  const { dev, vpsId } = await fleet(3, 2);
  const dir = await Deno.makeTempDir();
  const first = poller(dev, vpsId, new StateStore(dir));
  const store = new CountingStore(dir);
  const second = poller(dev, vpsId, store);
  try {
    await first.poller.pollOnce();
    await first.poller.close();
    // An older agent's file: every route field, as the API sent it.
    const old = JSON.parse(Deno.readTextFileSync(`${dir}/${SNAPSHOT_FILE}`));
    for (const [id, n] of Object.entries(expectedNodes(dev))) {
      const row = dev.nodes.find((x) => x.node_id === id)!;
      old.nodes[id] = {
        ...(n as object),
        routes: dev.routes.filter((r) => r.envoy_node_id === row.id),
      };
    }
    Deno.writeTextFileSync(`${dir}/${SNAPSHOT_FILE}`, JSON.stringify(old));
    assert.equal(await second.poller.load(), 3);
    assert.equal((await second.poller.pollOnce()).rebuilt, 0);
    assert.equal(store.writes, 1);
    assert.deepEqual(
      JSON.parse(Deno.readTextFileSync(`${dir}/${SNAPSHOT_FILE}`)).nodes,
      expectedNodes(dev),
    );
    await second.poller.pollOnce();
    assert.equal(store.writes, 1, "then an unchanged poll writes nothing");
  } finally {
    await second.poller.close();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("routeFingerprint: equal texts agree; a changed field or name changes it", () => {
  const base = '{"id":"r1","name":"web","listen_port":10080,"backend_port":8080}';
  assert.equal(routeFingerprint(base), routeFingerprint(String(base)));
  const seen = new Set<string>([routeFingerprint(base)]);
  for (let port = 10000; port < 30000; port++) {
    seen.add(routeFingerprint(base.replace("8080", String(port))));
  }
  seen.add(routeFingerprint(base.replace("web", "wex")));
  assert.equal(seen.size, 20002, "no two of 20,002 near-identical texts share a fingerprint");
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
