/**
 * Gives memory back to the system after a burst of work. V8 lets its heap grow while a large
 * change is built (a thousand node snapshots at once) and keeps the pages long after the garbage
 * is gone; one memory-reducing collection a moment later returns them. It needs V8's `gc`
 * function, which `--v8-flags=--expose-gc` (in `deploy/permissions.flags`) provides; without it
 * {@linkcode MemoryReclaimer.request} does nothing.
 *
 * @example
 * ```ts
 * import { MemoryReclaimer } from "./memory.ts";
 * const reclaimer = new MemoryReclaimer();
 * reclaimer.request(); // a collection one second from now; further requests fold into it
 * ```
 *
 * @module
 */

/** V8's `gc` as `--expose-gc` defines it. */
export type GcFunction = (
  options?: { type?: "major" | "minor"; execution?: "sync" | "async"; flavor?: string },
) => void;

/** How long after the last request the collection runs: the burst is over by then. */
export const RECLAIM_DELAY_MS = 1000;

/** Runs one memory-reducing collection after bursts of allocation. */
export class MemoryReclaimer {
  readonly #gc: GcFunction | undefined;
  readonly #delayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #runs = 0;

  /**
   * @param gc V8's `gc` (default: the global one when exposed)
   * @param delayMs how long after the last request to collect
   */
  constructor(
    gc: GcFunction | undefined = (globalThis as { gc?: GcFunction }).gc,
    delayMs = RECLAIM_DELAY_MS,
  ) {
    this.#gc = gc;
    this.#delayMs = delayMs;
  }

  /** Whether collections can be requested (V8's `gc` is exposed). */
  get available(): boolean {
    return this.#gc !== undefined;
  }

  /** Collections run so far. */
  get runs(): number {
    return this.#runs;
  }

  /**
   * Asks for one memory-reducing collection `delayMs` from now; a request while one is pending
   * moves it later instead of adding another. The timer never keeps the process alive.
   */
  request(): void {
    const gc = this.#gc;
    if (!gc) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.#runs++;
      // "last-resort" is V8's most thorough collection: it also releases emptied pages.
      gc({ type: "major", execution: "sync", flavor: "last-resort" });
    }, this.#delayMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Cancels a pending collection (shutdown). */
  cancel(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
