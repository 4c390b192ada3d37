/**
 * Per-stream wake-ups on shared timers. Each xDS stream may ask to be woken at some time (an LDS
 * push waiting for a CDS ACK, unused clusters leaving after their grace). After a change to every
 * node, a thousand streams ask at nearly the same moment; rounding each wake-up up to a
 * `resolutionMs` slot lets them share one timer per slot instead of one timer each.
 *
 * A key has at most one wake-up: scheduling it again moves it. Wake-ups never fire early.
 *
 * @example
 * ```ts
 * import { WakeTimers } from "./wake_timers.ts";
 * const timers = new WakeTimers<string>((key) => console.log("wake", key));
 * timers.schedule("stream-1", performance.now() + 100);
 * timers.cancel("stream-1");
 * timers.clear();
 * ```
 *
 * @module
 */

interface Slot<K> {
  timer: ReturnType<typeof setTimeout>;
  keys: Set<K>;
}

/** Options of {@linkcode WakeTimers}. */
export interface WakeTimersOptions {
  /** Slot width: wake-ups are late by less than this (default 25 ms). */
  resolutionMs?: number;
  /** The clock `at` values are read against (default `performance.now`). */
  now?: () => number;
  /** Called when `fire` throws; the other keys of the slot still fire. */
  onError?: (err: unknown) => void;
}

/** Wake-ups keyed by `K`, coalesced into time slots. */
export class WakeTimers<K> {
  readonly #fire: (key: K) => void;
  readonly #resolution: number;
  readonly #now: () => number;
  readonly #onError: (err: unknown) => void;
  /** key -> its slot's time */
  readonly #slotOf = new Map<K, number>();
  readonly #slots = new Map<number, Slot<K>>();

  /** @param fire called with each key whose time has come */
  constructor(fire: (key: K) => void, opts: WakeTimersOptions = {}) {
    this.#fire = fire;
    this.#resolution = opts.resolutionMs ?? 25;
    this.#now = opts.now ?? (() => performance.now());
    this.#onError = opts.onError ?? (() => {});
  }

  /** Wakes `key` at `at` (on the clock of `now`), replacing its earlier wake-up. */
  schedule(key: K, at: number): void {
    const slot = Math.ceil(at / this.#resolution) * this.#resolution;
    const current = this.#slotOf.get(key);
    if (current === slot && this.#slots.has(slot)) return;
    if (current !== undefined) this.#remove(key, current);
    this.#slotOf.set(key, slot);
    let s = this.#slots.get(slot);
    if (!s) {
      // +1: the timer's millisecond rounding must not wake a key before its time.
      const delay = Math.max(0, slot - this.#now()) + 1;
      this.#slots.set(
        slot,
        s = { timer: setTimeout(() => this.#run(slot), delay), keys: new Set() },
      );
    }
    s.keys.add(key);
  }

  /** Drops `key`'s wake-up, if any. */
  cancel(key: K): void {
    const slot = this.#slotOf.get(key);
    if (slot !== undefined) this.#remove(key, slot);
  }

  /** Drops every wake-up and its timer. */
  clear(): void {
    for (const s of this.#slots.values()) clearTimeout(s.timer);
    this.#slots.clear();
    this.#slotOf.clear();
  }

  /** Keys waiting. */
  get size(): number {
    return this.#slotOf.size;
  }

  /** Timers running (one per occupied slot). */
  get timerCount(): number {
    return this.#slots.size;
  }

  #remove(key: K, slot: number): void {
    this.#slotOf.delete(key);
    const s = this.#slots.get(slot);
    if (!s) return;
    s.keys.delete(key);
    if (s.keys.size === 0) {
      clearTimeout(s.timer);
      this.#slots.delete(slot);
    }
  }

  #run(slot: number): void {
    const s = this.#slots.get(slot);
    if (!s) return;
    this.#slots.delete(slot);
    for (const key of s.keys) {
      // Skip keys cancelled or moved by an earlier callback of this slot.
      if (this.#slotOf.get(key) !== slot) continue;
      this.#slotOf.delete(key);
      try {
        this.#fire(key);
      } catch (err) {
        this.#onError(err); // one key must not starve the rest of its slot
      }
    }
  }
}
