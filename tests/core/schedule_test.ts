import assert from "node:assert/strict";
import { Backoff, jittered, runPeriodic, sleep } from "../../lib/core/schedule.ts";

Deno.test("backoff doubles from 1 s to a 60 s cap with full jitter", () => {
  const ceilings: number[] = [];
  const b = new Backoff({ random: () => 0.999999 });
  for (let i = 0; i < 10; i++) ceilings.push(b.next());
  assert.deepEqual(ceilings.slice(0, 7), [999, 1999, 3999, 7999, 15999, 31999, 59999]);
  assert.ok(ceilings.every((c) => c < 60_000));
  const low = new Backoff({ random: () => 0 });
  assert.equal(low.next(), 0, "full jitter reaches 0");
  b.reset();
  assert.equal(b.ceiling, 1000);
});

Deno.test("jitter stays within ±fraction", () => {
  assert.equal(jittered(1000, 0.1, () => 0), 900);
  assert.equal(jittered(1000, 0.1, () => 1), 1100);
  assert.equal(jittered(1000, 0.1, () => 0.5), 1000);
});

Deno.test("sleep is abortable", async () => {
  const ac = new AbortController();
  const p = sleep(10_000, ac.signal);
  ac.abort();
  assert.equal(await p, false);
  assert.equal(await sleep(1), true);
});

Deno.test("runPeriodic survives throwing tasks and honours returned delays", async () => {
  const ac = new AbortController();
  let runs = 0;
  const errors: unknown[] = [];
  const started = performance.now();
  await runPeriodic(() => {
    runs++;
    if (runs === 1) return 1; // ask for the next run after 1 ms instead of the interval
    if (runs === 2) throw new Error("boom"); // the loop goes on after the interval
    ac.abort();
  }, { intervalMs: 200, jitter: 0, signal: ac.signal, onError: (e) => errors.push(e) });
  const took = performance.now() - started;
  assert.equal(runs, 3);
  assert.equal(errors.length, 1);
  assert.ok(took >= 190 && took < 2000, `one interval after the throw, not two (${took} ms)`);
});
