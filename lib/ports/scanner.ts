/**
 * Which ports of a range are available: a port is available when a TCP listener can be opened on
 * `0.0.0.0:<port>` with `SO_REUSEADDR`, exactly what Rust's `TcpListener::bind` (the old agent)
 * and `Deno.listen` do. The kernel's own answer is the only exact one: a socket that is bound but
 * neither listening nor connected blocks the port and is invisible to `ss` before iproute2 6.7 /
 * Linux 6.7, so no port is skipped on `ss`'s word - every port is bind-tested.
 *
 * Each bind test is a `Deno.listen` + `close`, i.e. ten system calls (`socket`, `setsockopt`,
 * `bind`, `listen`, `getsockname`, two `fcntl`, `epoll_ctl` add and delete, `close`) against the
 * four of a C loop (`socket`, `setsockopt`, `bind`, `close`): ~ 3x the C loop's time per port on
 * one thread (measured on a 2-core VM, where system calls are dear).
 *
 * By default the tests run on the calling thread, which yields to the event loop every 10 ms and
 * lets sockets be polled every 50 ms, so HTTP and xDS are still served during a scan. Web Workers
 * (`workers`, opt-in) split a large range with the calling thread: on 2 cores a 20,001-port scan
 * takes ~1.7x the C loop instead of ~2.8x, but an agent that has started a worker once idles ~2 MB
 * higher for good (the executable's pages a new isolate touches stay resident), so memory on the
 * smallest VPSes wins the default. Even two bare threads stay above 1.5x the C loop
 * (`deno task bench:ports` measures that floor). A worker lives for one scan only; the agent's
 * `--no-memory-pool-share-memory-on-teardown` V8 flag makes its heap go back to the system when it
 * ends, where V8 would otherwise keep it for ~15 s. Small ranges are always tested inline, where
 * starting workers (~ 30 ms) would cost more than it saves.
 *
 * @example
 * ```ts
 * import { BindScanner } from "./scanner.ts";
 * const scanner = new BindScanner();
 * const result = await scanner.scan({ start: 10000, end: 30000 });
 * console.log(result.available, "free;", result.busy.length, "in use");
 * ```
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** An inclusive port range. */
export interface PortRange {
  start: number;
  end: number;
}

/** The outcome of scanning a range. */
export interface Availability {
  /** Ports in the range (end - start + 1). */
  total: number;
  /** Ports where the bind test succeeded. */
  available: number;
  /** Ports where it failed, ascending. */
  busy: number[];
  /** How the scan ran: in parallel workers or on the calling thread. */
  method: "workers" | "inline";
}

/**
 * The bind test for one port: open a TCP listener on `0.0.0.0:port` (SO_REUSEADDR on, as Deno
 * and Rust's std always set it) and close it at once.
 *
 * @returns `true` when the port is available
 * @throws {Deno.errors.NotCapable} when the agent lacks `--allow-net` (a misconfiguration, not a
 * busy port)
 *
 * @example
 * ```ts
 * bindTest(0) // true: the kernel picks a free port
 * ```
 */
export function bindTest(port: number): boolean {
  try {
    Deno.listen({ hostname: "0.0.0.0", port, transport: "tcp" }).close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) throw e;
    return false;
  }
}

/**
 * The body of a scan worker. It runs in a fresh isolate from its own source text (see
 * {@linkcode workerUrl}), so it must not use anything from this module: the bind test is
 * repeated here on purpose and must stay identical to {@linkcode bindTest}.
 */
function scanWorkerMain(): void {
  const scope = self as unknown as {
    onmessage: ((e: MessageEvent<{ start: number; end: number }>) => void) | null;
    postMessage(message: { busy: number[] } | { error: string }): void;
  };
  scope.onmessage = (e) => {
    const busy: number[] = [];
    try {
      for (let port = e.data.start; port <= e.data.end; port++) {
        try {
          Deno.listen({ hostname: "0.0.0.0", port, transport: "tcp" }).close();
        } catch (err) {
          if (err instanceof Deno.errors.NotCapable) throw err;
          busy.push(port);
        }
      }
      scope.postMessage({ busy });
    } catch (err) {
      scope.postMessage({ error: String(err) });
    }
  };
}

let cachedWorkerUrl: string | undefined;

/**
 * A `blob:` URL of the worker source. A blob (instead of a module file) needs no read permission
 * and survives `deno compile`.
 */
function workerUrl(): string {
  cachedWorkerUrl ??= URL.createObjectURL(
    new Blob([`(${scanWorkerMain.toString()})();\n`], { type: "text/javascript" }),
  );
  return cachedWorkerUrl;
}

/** Options of {@linkcode BindScanner}. */
export interface BindScannerOptions {
  /** Parallel workers besides the calling thread (default 0: inline; see the module doc). */
  workers?: number;
  /** Ranges smaller than this are scanned inline (default 2048 ports). */
  inlineBelow?: number;
  /** Ports tested per message (default 1024); small chunks balance uneven cores. */
  chunk?: number;
}

/** The longest stretch (ms) of bind tests on the calling thread before timers and worker replies run. */
const SLICE_MS = 10;

/** The longest stretch (ms) before sockets (HTTP requests, xDS streams) are served too. */
const IO_SLICE_MS = 50;

/**
 * Paces the bind tests of the calling thread. Deno runs `setImmediate` callbacks (and with them
 * timers and worker replies) without polling sockets, so a scan that yielded only through them
 * would answer no request until it ends; `setTimeout(0)` polls them but costs ~ 2 ms of timer
 * granularity. So: a cheap yield every {@linkcode SLICE_MS}, a timeout every
 * {@linkcode IO_SLICE_MS} (~ 4 % of the thread). `tests/ports/scanner_test.ts` checks that
 * requests are answered while a scan runs.
 */
class Pacer {
  #slice = performance.now();
  #io = this.#slice;

  /** Whether the current slice is over (cheap enough to ask every few dozen ports). */
  due(): boolean {
    return performance.now() - this.#slice >= SLICE_MS;
  }

  /** Lets the event loop run, then starts the next slice. */
  async yield(): Promise<void> {
    if (performance.now() - this.#io >= IO_SLICE_MS) {
      await new Promise((r) => setTimeout(r, 0));
      this.#io = performance.now();
    } else {
      await new Promise((r) => setImmediate(r));
    }
    this.#slice = performance.now();
  }
}

/** Scans port ranges with the bind test. */
export class BindScanner {
  readonly #workers: number;
  readonly #inlineBelow: number;
  readonly #chunk: number;
  #workerFailure: string | undefined;

  constructor(opts: BindScannerOptions = {}) {
    // Inline by default: a worker makes a scan faster only with a free core, and the first one
    // leaves ~2 MB of the executable resident for the life of the agent (see the module doc).
    this.#workers = Math.max(0, Math.floor(opts.workers ?? 0));
    this.#inlineBelow = opts.inlineBelow ?? 2048;
    this.#chunk = Math.max(1, Math.floor(opts.chunk ?? 1024));
  }

  /** Why workers are not used (they failed once), or undefined. */
  get workerFailure(): string | undefined {
    return this.#workerFailure;
  }

  /**
   * Bind-tests every port of `range`.
   *
   * @throws {Deno.errors.NotCapable} (or an Error naming it, from a worker) without `--allow-net`
   * @throws {DOMException} `AbortError` when `signal` aborts
   */
  async scan(range: PortRange, signal?: AbortSignal): Promise<Availability> {
    signal?.throwIfAborted();
    const total = range.end - range.start + 1;
    if (total <= 0) return { total: 0, available: 0, busy: [], method: "inline" };
    const useWorkers = this.#workers > 0 && total >= this.#inlineBelow &&
      this.#workerFailure === undefined;
    let busy: number[] | undefined;
    let method: Availability["method"] = "inline";
    if (useWorkers) {
      try {
        busy = await this.#scanWithWorkers(range, signal);
        method = "workers";
      } catch (e) {
        if (signal?.aborted || isPermissionError(e)) throw e;
        // A broken worker setup (not a busy port) must not stop scanning: fall back for good.
        this.#workerFailure = (e as Error).message;
      }
    }
    busy ??= await scanInline(range, signal);
    return { total, available: total - busy.length, busy, method };
  }

  async #scanWithWorkers(range: PortRange, signal?: AbortSignal): Promise<number[]> {
    const chunk = this.#chunk;
    const count = Math.min(this.#workers, Math.ceil((range.end - range.start + 1) / chunk));
    const workers: Worker[] = [];
    const busy: number[] = [];
    let next = range.start;
    /**
     * The next chunk to test, or undefined when every port has been handed out. Chunks keep their
     * size to the end: smaller ones (measured: down to 64 ports) leave a worker idle until this
     * thread's next yield hands it more, which costs more than the shorter tail saves.
     */
    const take = (): PortRange | undefined => {
      if (next > range.end) return undefined;
      const start = next;
      next = Math.min(range.end, start + chunk - 1) + 1;
      return { start, end: next - 1 };
    };
    let onAbort = () => {};
    try {
      await new Promise<void>((resolve, reject) => {
        onAbort = () => reject(new DOMException("port scan aborted", "AbortError"));
        signal?.addEventListener("abort", onAbort, { once: true });
        let active = 0;
        const done = () => {
          if (--active === 0) resolve();
        };
        // Each worker holds two chunks, so it never waits for this thread to hand it the next.
        const inFlight = new Map<Worker, number>();
        const feed = (worker: Worker) => {
          let queued = inFlight.get(worker) ?? 0;
          for (let piece; queued < 2 && (piece = take()); queued++) worker.postMessage(piece);
          inFlight.set(worker, queued);
          if (queued === 0) {
            worker.terminate();
            done();
          }
        };
        const url = workerUrl();
        for (let i = 0; i < count; i++) {
          const worker = new Worker(url, { type: "module", name: `port-scan-${i}` });
          workers.push(worker);
          active++;
          worker.onmessage = (e: MessageEvent<{ busy?: number[]; error?: string }>) => {
            if (e.data.error !== undefined) return reject(new Error(e.data.error));
            for (const port of e.data.busy ?? []) busy.push(port);
            inFlight.set(worker, inFlight.get(worker)! - 1);
            feed(worker);
          };
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`port scan worker failed: ${e.message}`));
          };
          feed(worker);
        }
        // This thread tests chunks too, from before the workers have booted (~30 ms) to the end.
        // It yields every SLICE_MS so worker replies, HTTP requests and xDS streams are served.
        active++;
        (async () => {
          const pacer = new Pacer();
          for (let piece; !signal?.aborted && (piece = take());) {
            for (let port = piece.start; port <= piece.end; port++) {
              if (!bindTest(port)) busy.push(port);
              if ((port & 31) === 0 && pacer.due()) await pacer.yield();
            }
          }
          done();
        })().catch(reject);
      });
    } finally {
      signal?.removeEventListener("abort", onAbort);
      for (const worker of workers) worker.terminate();
    }
    return busy.sort((a, b) => a - b);
  }
}

function isPermissionError(e: unknown): boolean {
  return e instanceof Deno.errors.NotCapable || /NotCapable/.test(String(e));
}

/** The bind test over `range` on the calling thread, yielding to the event loop now and then. */
async function scanInline(range: PortRange, signal?: AbortSignal): Promise<number[]> {
  const busy: number[] = [];
  const pacer = new Pacer();
  for (let port = range.start; port <= range.end; port++) {
    if (!bindTest(port)) busy.push(port);
    if ((port & 31) === 0 && pacer.due()) {
      await pacer.yield();
      signal?.throwIfAborted();
    }
  }
  return busy;
}
