/**
 * Allocation on real sockets: occupied ports are skipped, handed-out ports are held back for the
 * reservation window, concurrent callers never share a port, and a shortfall reserves nothing.
 */
import assert from "node:assert/strict";
import { InsufficientPortsError, PortAllocator } from "../../lib/ports/allocator.ts";
import { waitFor } from "../helpers.ts";
import { freeBlock, holdSockets } from "./support.ts";

Deno.test("allocator: ascending from the range start, skipping ports in use in any way", async () => {
  const range = freeBlock(10);
  const p = (i: number) => range.start + i;
  const listener = Deno.listen({ hostname: "0.0.0.0", port: p(0) });
  const held = await holdSockets([`bound:0.0.0.0:${p(2)}`, `listen:127.0.0.1:${p(3)}`]);
  const allocator = new PortAllocator({ range, reservationMs: 30_000 });
  try {
    assert.deepEqual(await allocator.allocate(4), [p(1), p(4), p(5), p(6)]);
  } finally {
    allocator.close();
    await held.close();
    listener.close();
  }
});

Deno.test("allocator: handed-out ports are held back until the window ends", async () => {
  const range = freeBlock(6);
  const p = (i: number) => range.start + i;
  let now = 1_000_000;
  const counts: number[] = [];
  const allocator = new PortAllocator({
    range,
    reservationMs: 30_000,
    now: () => now,
    onReservations: (n) => counts.push(n),
  });
  try {
    assert.deepEqual(await allocator.allocate(2), [p(0), p(1)]);
    now += 10_000;
    assert.deepEqual(await allocator.allocate(2), [p(2), p(3)]);
    assert.deepEqual(allocator.reservations(), [
      { port: p(0), expiresAt: 1_030_000 },
      { port: p(1), expiresAt: 1_030_000 },
      { port: p(2), expiresAt: 1_040_000 },
      { port: p(3), expiresAt: 1_040_000 },
    ]);
    now += 20_000; // the first two expire exactly now
    assert.deepEqual(allocator.reservations().map((r) => r.port), [p(2), p(3)]);
    assert.deepEqual(await allocator.allocate(3), [p(0), p(1), p(4)]);
    assert.deepEqual(counts, [2, 4, 2, 5]);
  } finally {
    allocator.close();
  }
});

Deno.test("allocator: concurrent callers never receive the same port", async () => {
  const range = freeBlock(40);
  const taken = Deno.listen({ hostname: "0.0.0.0", port: range.start + 5 });
  const allocator = new PortAllocator({ range, reservationMs: 30_000 });
  try {
    const results = await Promise.all(Array.from({ length: 6 }, () => allocator.allocate(5)));
    const all = results.flat();
    assert.equal(new Set(all).size, 30, "30 distinct ports");
    assert.ok(!all.includes(range.start + 5));
    const expected = Array.from({ length: 31 }, (_, i) => range.start + i)
      .filter((port) => port !== range.start + 5);
    assert.deepEqual([...all].sort((a, b) => a - b), expected, "the first 30 free ports");
  } finally {
    allocator.close();
    taken.close();
  }
});

Deno.test("allocator: too few free ports → InsufficientPortsError, nothing reserved", async () => {
  const range = freeBlock(5);
  const a = Deno.listen({ hostname: "0.0.0.0", port: range.start + 1 });
  const b = Deno.listen({ hostname: "0.0.0.0", port: range.start + 3 });
  const allocator = new PortAllocator({ range, reservationMs: 30_000 });
  try {
    await assert.rejects(allocator.allocate(4), (e: Error) => {
      assert.ok(e instanceof InsufficientPortsError);
      assert.equal(e.found, 3);
      assert.equal(e.requested, 4);
      assert.equal(
        e.message,
        `only 3 available ports found in ${range.start}-${range.end}, requested 4`,
      );
      return true;
    });
    assert.deepEqual(allocator.reservations(), []);
    assert.deepEqual(await allocator.allocate(3), [range.start, range.start + 2, range.start + 4]);
  } finally {
    allocator.close();
    a.close();
    b.close();
  }
});

Deno.test("allocator: count must be a positive integer", async () => {
  const allocator = new PortAllocator({ range: freeBlock(2), reservationMs: 1000 });
  for (const bad of [0, -1, 1.5, NaN]) {
    await assert.rejects(allocator.allocate(bad), RangeError);
  }
  allocator.close();
});

Deno.test("allocator: expiry is reported without further calls (gauge follows)", async () => {
  let reserved = -1;
  const allocator = new PortAllocator({
    range: freeBlock(3),
    reservationMs: 150,
    onReservations: (n) => (reserved = n),
  });
  try {
    await allocator.allocate(2);
    assert.equal(reserved, 2);
    await waitFor(() => reserved === 0, { timeoutMs: 10_000, message: "reservations expire" });
  } finally {
    allocator.close();
  }
});
