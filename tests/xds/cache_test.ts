/**
 * The snapshot cache: a node's resources by name (small nodes searched in place, large ones
 * indexed), unchanged bytes keeping their object across versions, duplicates, watchers.
 */

import assert from "node:assert/strict";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { CLUSTER_TYPE_URL, LISTENER_TYPE_URL, resourceOf } from "../../lib/xds/resources.ts";

function clusters(n: number, tag = 0) {
  return Array.from(
    { length: n },
    (_, i) => resourceOf(`cluster-${i}`, CLUSTER_TYPE_URL, new Uint8Array([10, i & 127, tag])),
  );
}

for (const size of [1, 10, 16, 17, 200]) {
  Deno.test(`cache: ${size} resources are found by name, in builder order, and nothing else is`, () => {
    const cache = new SnapshotCache();
    const items = clusters(size);
    const snap = cache.set({ nodeId: "n", version: "1", clusters: items, listeners: [] });
    const cds = snap.resources.cds;
    assert.equal(cds.size, size);
    for (const r of items) {
      assert.equal(cds.get(r.name), r);
      assert.ok(cds.has(r.name));
    }
    assert.equal(cds.get("cluster-missing"), undefined);
    assert.equal(cds.has(`cluster-${size}`), false);
    assert.deepEqual([...cds.keys()], items.map((r) => r.name));
    assert.deepEqual([...cds.values()], items);
    assert.deepEqual([...cds].map(([name, r]) => [name, r]), items.map((r) => [r.name, r]));
    const seen: string[] = [];
    cds.forEach((r, name, map) => {
      assert.equal(map, cds);
      assert.equal(r.name, name);
      seen.push(name);
    });
    assert.deepEqual(seen, items.map((r) => r.name));
    assert.equal(snap.resources.lds.size, 0);
  });
}

Deno.test("cache: a resource whose bytes did not change keeps its object; a duplicate name keeps the first", () => {
  const cache = new SnapshotCache();
  const first = clusters(20);
  cache.set({ nodeId: "n", version: "1", clusters: first, listeners: [] });
  const next = clusters(20);
  next[3] = resourceOf("cluster-3", CLUSTER_TYPE_URL, new Uint8Array([10, 3, 9]));
  const dup = resourceOf("cluster-5", CLUSTER_TYPE_URL, new Uint8Array([1]));
  const listener = resourceOf("listener-a", LISTENER_TYPE_URL, new Uint8Array([2]));
  const snap = cache.set({
    nodeId: "n",
    version: "2",
    clusters: [...next, dup],
    listeners: [listener],
  });
  assert.equal(snap.resources.cds.size, 20);
  assert.equal(snap.resources.cds.get("cluster-0"), first[0], "equal bytes: the old object");
  assert.equal(snap.resources.cds.get("cluster-3"), next[3], "changed bytes: the new object");
  assert.equal(snap.resources.cds.get("cluster-5"), first[5], "the duplicate is dropped");
  assert.equal(snap.resources.lds.get("listener-a"), listener);
});

Deno.test("cache: watchers hear every replacement and the drop of their node only", () => {
  const cache = new SnapshotCache();
  const heard: (string | undefined)[] = [];
  const stop = cache.watch("a", (s) => heard.push(s?.version));
  cache.set({ nodeId: "a", version: "1", clusters: [], listeners: [] });
  cache.set({ nodeId: "b", version: "7", clusters: [], listeners: [] });
  cache.set({ nodeId: "a", version: "2", clusters: [], listeners: [] });
  cache.delete("a");
  stop();
  cache.set({ nodeId: "a", version: "3", clusters: [], listeners: [] });
  assert.deepEqual(heard, ["1", "2", undefined]);
  assert.equal(cache.watcherCount, 0);
  assert.deepEqual(cache.nodeIds(), ["b", "a"]);
});
