/**
 * One port scan: the bind test over the scan range (availability) and `ss -tulnp` (which process
 * owns each listening port) run side by side, then the port gauges of `/metrics` are set.
 *
 * `sigma_ports_used{source}` counts distinct listening TCP ports system-wide per process category
 * (contract D2). When `ss` is missing or fails the scan still completes: the ports of the range
 * that failed the bind test are all counted as `unknown`, and the failure is logged once (until
 * `ss` works again).
 *
 * @example
 * ```ts
 * import { PortScan } from "./port_scan.ts";
 * const scan = new PortScan({ range: { start: 10000, end: 30000 }, metrics, log });
 * const report = await scan.run();
 * console.log(report.available, report.used.envoy);
 * ```
 *
 * @module
 */

import { type Logger, RepeatedFailure } from "../core/log.ts";
import { type AgentMetrics, PORT_SOURCES, type PortSource } from "../core/metrics.ts";
import { readListeningPorts, type SsCommandOptions } from "./listeners.ts";
import { Mutex } from "./mutex.ts";
import { type Availability, BindScanner, type PortRange } from "./scanner.ts";
import { countBySource, emptySourceCounts } from "./ss.ts";

/** What one scan found. */
export interface ScanReport {
  /** When the scan finished, ms since the epoch. */
  finishedAt: number;
  durationSeconds: number;
  total: number;
  available: number;
  inUse: number;
  /** Listening ports per category (every category present). */
  used: Record<PortSource, number>;
  /** Ports per raw process name of the `other` category. */
  otherDetail: Map<string, number>;
  /** `ss` when attribution worked, else `unavailable` (then every used port is `unknown`). */
  attribution: "ss" | "unavailable";
  /** Why attribution is unavailable. */
  attributionError?: string;
  /** How the bind test ran. */
  method: Availability["method"];
}

/** Options of {@linkcode PortScan}. */
export interface PortScanOptions {
  range: PortRange;
  metrics: AgentMetrics;
  log: Logger;
  /** Shared with the allocator so their bind tests never overlap. */
  lock?: Mutex;
  scanner?: BindScanner;
  /** How to run `ss` (tests point it at a missing or failing command). */
  ss?: SsCommandOptions;
  /** Clock, ms since the epoch. */
  now?: () => number;
}

/** Runs scans and publishes their results as metrics. */
export class PortScan {
  readonly #opts: PortScanOptions;
  readonly #lock: Mutex;
  readonly #scanner: BindScanner;
  readonly #now: () => number;
  #last: ScanReport | undefined;
  /** Whether the last `ss` run failed (its failure is logged once per streak). */
  #ssFailing = false;
  #ssFailure: RepeatedFailure | undefined;

  constructor(opts: PortScanOptions) {
    this.#opts = opts;
    this.#lock = opts.lock ?? new Mutex();
    this.#scanner = opts.scanner ?? new BindScanner();
    this.#now = opts.now ?? Date.now;
  }

  /** The last successful scan, if any. */
  get last(): ScanReport | undefined {
    return this.#last;
  }

  /**
   * Scans once and updates the metrics.
   *
   * @throws when the bind test itself cannot run (e.g. no `--allow-net`); `ss` failures do not
   * throw
   */
  async run(signal?: AbortSignal): Promise<ScanReport> {
    const { metrics, range } = this.#opts;
    const started = performance.now();
    const owners = readListeningPorts(this.#opts.ss).then(
      (ports) => ({ ports, error: undefined }),
      (e: Error) => ({ ports: undefined, error: e.message }),
    );
    let availability: Availability;
    try {
      availability = await this.#lock.run(() => this.#scanner.scan(range, signal));
    } catch (e) {
      await owners;
      metrics.portScansTotal.inc({ result: "failure" });
      throw e;
    }
    const { ports, error } = await owners;
    const durationSeconds = (performance.now() - started) / 1000;
    const inUse = Math.max(0, availability.total - availability.available);

    let used: Record<PortSource, number>;
    let otherDetail = new Map<string, number>();
    if (ports) {
      ({ used, otherDetail } = countBySource(ports));
      this.#ssFailure?.ok();
      this.#ssFailing = false;
    } else {
      used = emptySourceCounts();
      used.unknown = inUse;
      this.#ssFailure ??= new RepeatedFailure(this.#opts.log, "ss (port attribution)");
      this.#ssFailure.fail(
        "ss failed: port attribution unavailable, used ports count as unknown; retried every scan",
        { error },
      );
      this.#ssFailing = true;
    }

    const report: ScanReport = {
      finishedAt: this.#now(),
      durationSeconds,
      total: availability.total,
      available: availability.available,
      inUse,
      used,
      otherDetail,
      attribution: ports ? "ss" : "unavailable",
      method: availability.method,
    };
    if (error !== undefined) report.attributionError = error;
    this.#publish(report);
    this.#last = report;
    return report;
  }

  #publish(r: ScanReport): void {
    const m = this.#opts.metrics;
    m.portsTotal.set(r.total);
    m.portsAvailable.set(r.available);
    m.portsInUse.set(r.inUse);
    for (const source of PORT_SOURCES) m.portsUsed.set({ source }, r.used[source]);
    m.portsOtherDetail.reset();
    for (const [process, count] of r.otherDetail) m.portsOtherDetail.set({ process }, count);
    m.portScanDuration.set(r.durationSeconds);
    m.lastScanTimestamp.set(r.finishedAt / 1000);
    m.portScansTotal.inc({ result: "success" });
  }
}
