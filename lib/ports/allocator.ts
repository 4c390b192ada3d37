/**
 * Port allocation for `POST /ports/allocate`: the first `count` ports of the scan range, ascending
 * from its start, that pass a bind test right now and are not held back.
 *
 * The old agent was stateless, so two callers asking at the same moment got the same ports
 * (contract E11). Here every port handed out is reserved for a window (`--allocate-reservation`
 * seconds): later calls skip it until the window ends, by which time the caller has bound it
 * (and the bind test fails anyway) or has given it up. Allocations run under a lock shared with
 * the scanner, so no two allocations interleave.
 *
 * @example
 * ```ts
 * import { PortAllocator } from "./allocator.ts";
 * const allocator = new PortAllocator({ range: { start: 20000, end: 20100 }, reservationMs: 30_000 });
 * const ports = await allocator.allocate(3); // e.g. [20000, 20001, 20003]
 * await allocator.allocate(1); // never one of those three within 30 s
 * allocator.close();
 * ```
 *
 * @module
 */

import { Mutex } from "./mutex.ts";
import { bindTest as realBindTest, type PortRange } from "./scanner.ts";

/** Fewer ports are free than were asked for. */
export class InsufficientPortsError extends Error {
  override name = "InsufficientPortsError";
  constructor(readonly found: number, readonly requested: number, range: PortRange) {
    super(
      `only ${found} available ports found in ${range.start}-${range.end}, requested ${requested}`,
    );
  }
}

/** A port handed out and held back until `expiresAt` (ms since the epoch). */
export interface Reservation {
  port: number;
  expiresAt: number;
}

/** Options of {@linkcode PortAllocator}. */
export interface AllocatorOptions {
  range: PortRange;
  /** How long a handed-out port is held back, ms. */
  reservationMs: number;
  /** Shared with the scanner so bind tests never overlap; a private one by default. */
  lock?: Mutex;
  /** Clock, ms since the epoch (tests). */
  now?: () => number;
  /** The bind test (tests); {@linkcode realBindTest} by default. */
  bindTest?: (port: number) => boolean;
  /** Called with the number of active reservations whenever it changes. */
  onReservations?: (count: number) => void;
}

/** Ports tested between two yields to the event loop. */
const YIELD_EVERY = 1024;

/** Hands out free ports with a reservation window. */
export class PortAllocator {
  readonly #range: PortRange;
  readonly #reservationMs: number;
  readonly #lock: Mutex;
  readonly #now: () => number;
  readonly #bindTest: (port: number) => boolean;
  readonly #onReservations: (count: number) => void;
  /** port -> expiry, ms since the epoch. */
  readonly #reserved = new Map<number, number>();
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(opts: AllocatorOptions) {
    this.#range = opts.range;
    this.#reservationMs = opts.reservationMs;
    this.#lock = opts.lock ?? new Mutex();
    this.#now = opts.now ?? Date.now;
    this.#bindTest = opts.bindTest ?? realBindTest;
    this.#onReservations = opts.onReservations ?? (() => {});
  }

  /**
   * Finds `count` ports, ascending from the range start, that pass the bind test and are not
   * reserved, and reserves them.
   *
   * @throws {RangeError} when `count` is not a positive integer
   * @throws {InsufficientPortsError} when fewer are free (nothing is reserved then)
   */
  allocate(count: number): Promise<number[]> {
    if (!Number.isInteger(count) || count < 1) {
      return Promise.reject(new RangeError("count must be a positive integer"));
    }
    return this.#lock.run(async () => {
      this.#expire();
      const found: number[] = [];
      let tested = 0;
      for (let port = this.#range.start; port <= this.#range.end; port++) {
        if (this.#reserved.has(port)) continue;
        if (this.#bindTest(port)) {
          found.push(port);
          if (found.length === count) break;
        }
        if (++tested % YIELD_EVERY === 0) await new Promise((r) => setTimeout(r, 0));
      }
      if (found.length < count) throw new InsufficientPortsError(found.length, count, this.#range);
      const expiresAt = this.#now() + this.#reservationMs;
      for (const port of found) this.#reserved.set(port, expiresAt);
      this.#changed();
      return found;
    });
  }

  /**
   * The active reservations, ascending by port.
   *
   * @example
   * ```ts
   * allocator.reservations(); // [{ port: 20000, expiresAt: 1767225600000 }]
   * ```
   */
  reservations(): Reservation[] {
    this.#expire();
    return [...this.#reserved].map(([port, expiresAt]) => ({ port, expiresAt }))
      .sort((a, b) => a.port - b.port);
  }

  /** Stops the expiry timer; later calls still work but no longer report expiries. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#expiryTimer);
  }

  /** Drops expired reservations; reports when any were dropped. */
  #expire(): void {
    const now = this.#now();
    let dropped = false;
    for (const [port, expiresAt] of this.#reserved) {
      if (expiresAt <= now) {
        this.#reserved.delete(port);
        dropped = true;
      }
    }
    if (dropped) this.#changed();
  }

  /** Reports the count and re-arms the expiry timer. */
  #changed(): void {
    this.#onReservations(this.#reserved.size);
    this.#arm();
  }

  /** Arms a timer for the next expiry, so the reservation gauge follows without calls. */
  #arm(): void {
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
    if (this.#closed || this.#reserved.size === 0) return;
    const next = Math.min(...this.#reserved.values());
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = undefined;
      this.#expire();
      // Timers and the clock may disagree by a little: if nothing expired yet, look again.
      if (this.#expiryTimer === undefined) this.#arm();
    }, Math.max(0, next - this.#now()) + 10);
  }
}
