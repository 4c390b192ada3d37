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
 * const stop = reclaimer.watchGrowth(); // and one whenever RSS grew 4 MiB since the last
 * stop();
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

/** How often {@linkcode MemoryReclaimer.watchGrowth} reads RSS. */
export const GROWTH_CHECK_MS = 3000;

/** RSS growth since the last collection that {@linkcode MemoryReclaimer.watchGrowth} acts on. */
export const GROWTH_BYTES = 4 * 1024 * 1024;

/**
 * How little RSS may move between two checks for the burst to count as over: the collection
 * pauses the agent for tens of milliseconds, which a push in progress should not wait for.
 */
export const QUIET_BYTES = 1024 * 1024;

/** Runs one memory-reducing collection after bursts of allocation. */
export class MemoryReclaimer {
  readonly #gc: GcFunction | undefined;
  readonly #delayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #runs = 0;
  /** RSS after the last collection (or when watching began), for {@linkcode watchGrowth}. */
  #baseline: number | undefined;
  #rss: () => number = () => Deno.memoryUsage().rss;

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
      if (this.#baseline !== undefined) this.#baseline = this.#rss();
    }, this.#delayMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /**
   * Watches for bursts nobody announces (a large xDS change, a fleet of Envoys reconnecting, a
   * storm of scrapes): every `intervalMs`, when RSS has grown by `growthBytes` since the last
   * collection and moved less than {@linkcode QUIET_BYTES} since the previous check (the burst is
   * over), requests one. Live data that really grew becomes the new baseline after that
   * collection, so a larger steady state is not collected again and again.
   *
   * @returns a function that stops watching
   */
  watchGrowth(
    opts: { intervalMs?: number; growthBytes?: number; rss?: () => number } = {},
  ): () => void {
    if (!this.#gc) return () => {};
    if (opts.rss) this.#rss = opts.rss;
    const growth = opts.growthBytes ?? GROWTH_BYTES;
    this.#baseline = this.#rss();
    let previous = this.#baseline;
    const timer = setInterval(() => {
      const rss = this.#rss();
      const quiet = Math.abs(rss - previous) < QUIET_BYTES;
      previous = rss;
      if (rss < this.#baseline!) this.#baseline = rss;
      else if (rss - this.#baseline! >= growth && quiet && this.#timer === undefined) {
        this.request();
      }
    }, opts.intervalMs ?? GROWTH_CHECK_MS);
    Deno.unrefTimer(timer);
    return () => clearInterval(timer);
  }

  /** Cancels a pending collection (shutdown). */
  cancel(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
