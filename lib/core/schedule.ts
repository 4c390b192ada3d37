/**
 * The one scheduling helper every loop uses (heartbeat, scan, sync, poll): abortable sleep,
 * exponential backoff with full jitter, and a periodic loop with a little jitter.
 *
 * @example
 * ```ts
 * import { Backoff, sleep } from "./schedule.ts";
 * const backoff = new Backoff({ baseMs: 1000, capMs: 60_000 });
 * const ac = new AbortController();
 * await sleep(backoff.next(), ac.signal); // 0..1 s, then 0..2 s, 0..4 s ... capped at 60 s
 * ```
 *
 * @module
 */

/**
 * Sleeps `ms` milliseconds or until `signal` aborts.
 *
 * @returns `true` when the full time elapsed, `false` when aborted
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Options of {@linkcode Backoff}. */
export interface BackoffOptions {
  /** First ceiling, default 1000 ms. */
  baseMs?: number;
  /** Largest ceiling, default 60 000 ms. */
  capMs?: number;
  /** Injectable randomness in [0, 1). */
  random?: () => number;
}

/**
 * Exponential backoff with full jitter: attempt n waits a uniform random time in
 * [0, min(cap, base·2^n)]. Full jitter spreads a fleet's retries after an API outage.
 *
 * @example
 * ```ts
 * const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.5 });
 * b.next(); // 50
 * b.next(); // 100
 * b.reset();
 * ```
 */
export class Backoff {
  #attempt = 0;
  readonly #base: number;
  readonly #cap: number;
  readonly #random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.#base = opts.baseMs ?? 1000;
    this.#cap = opts.capMs ?? 60_000;
    this.#random = opts.random ?? Math.random;
  }

  /** The ceiling of the next delay, without jitter. */
  get ceiling(): number {
    return Math.min(this.#cap, this.#base * 2 ** Math.min(this.#attempt, 30));
  }

  /** The next delay in ms; each call doubles the ceiling up to the cap. */
  next(): number {
    const d = Math.floor(this.#random() * this.ceiling);
    this.#attempt++;
    return d;
  }

  /** The cap itself (used after a rejected API key: retry slowly but forever). */
  get capMs(): number {
    return this.#cap;
  }

  /** Back to the first step after a success. */
  reset(): void {
    this.#attempt = 0;
  }
}

/**
 * `ms` spread by ±`fraction` so a fleet started together does not pulse in step.
 *
 * @example
 * ```ts
 * jittered(60_000, 0.1); // somewhere in 54 000..66 000
 * ```
 */
export function jittered(ms: number, fraction = 0.1, random: () => number = Math.random): number {
  return Math.max(0, Math.round(ms * (1 + fraction * (2 * random() - 1))));
}

/** Options of {@linkcode runPeriodic}. */
export interface PeriodicOptions {
  /** Interval between the end of one run and the start of the next. */
  intervalMs: number;
  signal: AbortSignal;
  /** ±fraction of jitter on each interval, default 0.1. */
  jitter?: number;
  /** Run once immediately before the first wait (default true). */
  immediate?: boolean;
  /** Called with errors `task` throws; the loop goes on. */
  onError?: (err: unknown) => void;
}

/**
 * Runs `task` every `intervalMs` (with jitter) until the signal aborts. A throwing task never
 * ends the loop. If the task returns a number, that is the delay (ms) before the next run
 * instead of the interval - how a loop asks for backoff.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * runPeriodic(async () => { await Promise.resolve(); }, { intervalMs: 60_000, signal: ac.signal });
 * ac.abort();
 * ```
 */
export async function runPeriodic(
  task: () => Promise<number | void> | number | void,
  opts: PeriodicOptions,
): Promise<void> {
  let first = opts.immediate ?? true;
  let delay = opts.intervalMs;
  while (!opts.signal.aborted) {
    if (!first) {
      if (!(await sleep(delay, opts.signal))) return;
    }
    first = false;
    delay = jittered(opts.intervalMs, opts.jitter ?? 0.1);
    try {
      const next = await task();
      if (typeof next === "number") delay = next;
    } catch (err) {
      opts.onError?.(err);
    }
  }
}
