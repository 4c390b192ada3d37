/**
 * The memory reclaimer: requests fold into one collection after the delay, and with V8's real
 * `gc` (as `deploy/permissions.flags` exposes it) the collection gives heap pages back.
 */

import assert from "node:assert/strict";
import { type GcFunction, MemoryReclaimer } from "../../lib/core/memory.ts";
import { agentPermissionFlags } from "../helpers.ts";

Deno.test("MemoryReclaimer: requests in a burst are one memory-reducing collection after the delay", async () => {
  const calls: Parameters<GcFunction>[0][] = [];
  const reclaimer = new MemoryReclaimer((o) => calls.push(o), 50);
  assert.ok(reclaimer.available);
  for (let i = 0; i < 5; i++) reclaimer.request();
  assert.equal(calls.length, 0, "not during the burst");
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(calls, [{ type: "major", execution: "sync", flavor: "last-resort" }]);
  assert.equal(reclaimer.runs, 1);
  reclaimer.request();
  reclaimer.cancel();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(calls.length, 1, "a cancelled request never runs");
});

Deno.test("MemoryReclaimer: RSS growth since the last collection asks for one; a larger steady state does not ask again", async () => {
  let rss = 100;
  const calls: unknown[] = [];
  const reclaimer = new MemoryReclaimer((o) => {
    calls.push(o);
    rss = 105; // the collection gave most of the growth back; 105 is the new steady state
  }, 10);
  let burst = false; // every read during a burst finds RSS 5 MiB higher than the one before
  const stop = reclaimer.watchGrowth({
    intervalMs: 10,
    growthBytes: 8,
    rss: () => burst ? (rss += 5 * 1024 * 1024) : rss,
  });
  try {
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(calls.length, 0, "no growth, no collection");
    rss = 110; // a burst: +10 over the baseline
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(calls.length, 1);
    // While RSS keeps moving (a burst in progress), nothing runs however far above it is.
    burst = true;
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(calls.length, 1, "no collection in the middle of a burst");
    burst = false;
    rss = 105;
    await new Promise((r) => setTimeout(r, 80));
    rss = 111; // +6 over the new baseline (105): below the threshold
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(calls.length, 1, "the baseline moved to the RSS after the collection");
  } finally {
    stop();
    reclaimer.cancel();
  }
});

Deno.test("MemoryReclaimer: without V8's gc it does nothing", () => {
  const reclaimer = new MemoryReclaimer(undefined, 1);
  assert.equal(reclaimer.available, false);
  reclaimer.request(); // no timer, no throw
  assert.equal(reclaimer.runs, 0);
});

Deno.test("MemoryReclaimer: under the agent's own V8 flags, the collection gives the heap back", async () => {
  const v8 = agentPermissionFlags({ stateDir: "/tmp" }).filter((f) => f.startsWith("--v8-flags"));
  assert.equal(v8.length, 1);
  assert.match(v8[0], /--expose-gc/, "the permissions file exposes gc to the agent");
  const script = `
    import { MemoryReclaimer } from ${
    JSON.stringify(new URL("../../lib/core/memory.ts", import.meta.url).href)
  };
    let keep = [];
    for (let i = 0; i < 200_000; i++) keep.push({ i, s: "x".repeat(40) + i });
    keep = [];
    const before = Deno.memoryUsage().heapTotal;
    const reclaimer = new MemoryReclaimer(undefined, 10);
    reclaimer.request();
    await new Promise((r) => setTimeout(r, 100));
    console.log(JSON.stringify({ available: reclaimer.available, runs: reclaimer.runs, before, after: Deno.memoryUsage().heapTotal }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", v8[0], script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.equal(r.available, true);
  assert.equal(r.runs, 1);
  assert.ok(r.after < r.before * 0.6, `heap ${r.before} → ${r.after} bytes`);
});
