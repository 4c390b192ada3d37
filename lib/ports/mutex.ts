/**
 * A minimal async mutex: port scans and allocations take turns, so an allocation never sees a
 * port held for an instant by a scan's bind test (or the reverse), and two allocations never
 * interleave between "this port is free" and "this port is now reserved".
 *
 * @example
 * ```ts
 * import { Mutex } from "./mutex.ts";
 * const lock = new Mutex();
 * const value = await lock.run(async () => 42);
 * ```
 *
 * @module
 */

/** Runs critical sections one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` once every earlier `run` has settled; a throwing section does not block later ones.
   *
   * @example
   * ```ts
   * const lock = new Mutex();
   * await Promise.all([lock.run(() => 1), lock.run(() => 2)]); // run one after the other
   * ```
   */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}
