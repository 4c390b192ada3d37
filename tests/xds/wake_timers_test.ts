/**
 * Shared wake-up timers: wake-ups in one slot share a timer, never fire early, move when
 * rescheduled, and cancelled or moved keys do not fire; a throwing callback does not starve the
 * rest of its slot; `clear` leaves no timer behind (the test sanitizer checks).
 */

import assert from "node:assert/strict";
import { WakeTimers } from "../../lib/xds/wake_timers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("wake timers: a thousand wake-ups in one slot share one timer and none fires early", async () => {
  const fired: [number, number][] = [];
  const timers = new WakeTimers<number>((k) => fired.push([k, performance.now()]), {
    resolutionMs: 50,
  });
  const at = performance.now() + 60;
  for (let k = 0; k < 1000; k++) timers.schedule(k, at + (k % 10));
  assert.ok(timers.timerCount <= 2, `${timers.timerCount} timers for 1000 wake-ups`);
  assert.equal(timers.size, 1000);
  await sleep(200);
  assert.equal(fired.length, 1000);
  for (const [k, t] of fired) assert.ok(t >= at + (k % 10), `key ${k} fired early`);
  assert.equal(timers.size, 0);
  assert.equal(timers.timerCount, 0);
});

Deno.test("wake timers: rescheduling moves a wake-up; cancel and clear drop them", async () => {
  const fired: string[] = [];
  const timers = new WakeTimers<string>((k) => fired.push(k), { resolutionMs: 10 });
  const now = performance.now();
  timers.schedule("moved", now + 20);
  timers.schedule("moved", now + 120);
  timers.schedule("cancelled", now + 20);
  timers.cancel("cancelled");
  timers.schedule("kept", now + 20);
  await sleep(70);
  assert.deepEqual(fired, ["kept"]);
  await sleep(100);
  assert.deepEqual(fired, ["kept", "moved"]);
  timers.schedule("never", performance.now() + 1000);
  timers.clear();
  assert.equal(timers.size, 0);
  assert.equal(timers.timerCount, 0);
});

Deno.test("wake timers: a callback that cancels or reschedules another key of its slot, or throws", async () => {
  const fired: string[] = [];
  const errors: unknown[] = [];
  const timers: WakeTimers<string> = new WakeTimers<string>((k) => {
    fired.push(k);
    if (k === "a") {
      timers.cancel("b");
      timers.schedule("c", performance.now() + 40);
    }
    if (k === "d") throw new Error("boom");
  }, { resolutionMs: 1000, onError: (e) => errors.push(e) });
  const at = performance.now() + 10;
  for (const k of ["a", "b", "c", "d", "e"]) timers.schedule(k, at);
  await sleep(1100);
  assert.deepEqual(
    fired.slice(0, 3),
    ["a", "d", "e"],
    "b cancelled, c moved, d's throw stops nobody",
  );
  assert.equal(errors.length, 1);
  await sleep(1100);
  assert.deepEqual(fired, ["a", "d", "e", "c"]);
  timers.clear();
});
