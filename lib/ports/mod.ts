/**
 * The ports feature: the port-scan loop (`--port-scan`, over `--port-scan-range` every
 * `--port-scan-interval` seconds, first scan at start), the port gauges of `/metrics`, the
 * `POST /ports/allocate` route, the `ports` section of `/status`, and a readiness check that
 * holds `/readyz` at 503 until the first scan is done.
 *
 * Pieces: `ss.ts` (pure `ss` parser and categories), `listeners.ts` (runs `ss`), `scanner.ts`
 * (exact bind test over a range, in parallel workers), `port_scan.ts` (one scan -> metrics),
 * `allocator.ts` (allocation with reservations), `allocate_route.ts` (the HTTP route).
 *
 * May import: `core`, `http` (the JSON response and the capped body reader of its route). It serves
 * its route and gauges through `Feature` and the metrics registry, never by reaching into a server.
 *
 * @example
 * ```ts
 * import { startPorts } from "./ports/mod.ts";
 * // const feature = startPorts(ctx);
 * // feature.routes -> [POST /ports/allocate]; feature.ready?.() -> "first port scan not finished"
 * // await feature.stop();
 * ```
 *
 * @module
 */

import type { AgentContext, Feature } from "../core/context.ts";
import { RepeatedFailure } from "../core/log.ts";
import { runPeriodic } from "../core/schedule.ts";
import { createAllocateRoute, isLoopbackAddress } from "./allocate_route.ts";
import { PortAllocator } from "./allocator.ts";
import type { SsCommandOptions } from "./listeners.ts";
import { Mutex } from "./mutex.ts";
import { PortScan } from "./port_scan.ts";
import { BindScanner, type BindScannerOptions } from "./scanner.ts";

/** Test and benchmark knobs of {@linkcode startPorts}; the agent uses the defaults. */
export interface PortsOptions {
  scanner?: BindScannerOptions;
  ss?: SsCommandOptions;
  /** Clock, ms since the epoch. */
  now?: () => number;
}

/**
 * Starts the port feature: the scan loop when `--port-scan` is on, the allocate route always
 * (it answers 503 while scanning is off).
 *
 * @example
 * ```ts
 * const ports = startPorts(ctx);
 * // mount ports.routes on the metrics port, add ports.ready to /readyz
 * await ports.stop();
 * ```
 */
export function startPorts(ctx: AgentContext, opts: PortsOptions = {}): Feature {
  const { config, metrics } = ctx;
  const log = ctx.log.child({ component: "ports" });
  const range = config.portScanRange;
  const now = opts.now ?? Date.now;
  const lock = new Mutex();
  const stopper = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stopper.signal]);

  metrics.portsReserved.set(0);
  for (const result of ["success", "failure"]) metrics.portScansTotal.inc({ result }, 0);

  const allocator = config.portScan
    ? new PortAllocator({
      range,
      reservationMs: config.allocateReservation * 1000,
      lock,
      now,
      onReservations: (n) => metrics.portsReserved.set(n),
    })
    : undefined;
  const route = createAllocateRoute({ allocator, token: config.allocateToken, metrics, log });
  if (
    config.metricsPort > 0 && config.allocateToken === undefined &&
    !isLoopbackAddress(config.metricsAddr)
  ) {
    log.warn(
      "POST /ports/allocate is open to anyone who can reach the metrics port: set --allocate-token or --metrics-addr 127.0.0.1 to restrict it",
      { addr: `${config.metricsAddr}:${config.metricsPort}` },
    );
  }

  let scan: PortScan | undefined;
  let lastError: string | undefined;
  let loop: Promise<void> = Promise.resolve();
  if (config.portScan) {
    metrics.portsTotal.set(range.end - range.start + 1);
    const portScan = new PortScan({
      range,
      metrics,
      log,
      lock,
      scanner: new BindScanner(opts.scanner),
      ss: opts.ss,
      now,
    });
    scan = portScan;
    log.info("port scanning enabled", {
      range: `${range.start}-${range.end}`,
      interval_seconds: config.portScanInterval,
    });
    const scanFailure = new RepeatedFailure(log, "port scan");
    loop = runPeriodic(async () => {
      try {
        const r = await portScan.run(signal);
        scanFailure.ok();
        lastError = undefined;
        log.debug("port scan done", {
          available: r.available,
          in_use: r.inUse,
          duration_seconds: Number(r.durationSeconds.toFixed(3)),
          method: r.method,
        });
      } catch (e) {
        if (signal.aborted) return;
        const message = (e as Error).message;
        scanFailure.fail("port scan failed; retrying next interval", {
          error: message,
          next: `retry in ${config.portScanInterval} s`,
        }, "error");
        lastError = message;
      }
    }, { intervalMs: config.portScanInterval * 1000, signal });
  }

  ctx.board.provide("ports", () => {
    const last = scan?.last;
    return {
      enabled: config.portScan,
      range: { start: range.start, end: range.end },
      interval_seconds: config.portScanInterval,
      total: last?.total ?? null,
      available: last?.available ?? null,
      in_use: last?.inUse ?? null,
      used_by_source: last?.used ?? null,
      other_detail: last ? Object.fromEntries(last.otherDetail) : null,
      attribution: last?.attribution ?? null,
      ...(last?.attributionError ? { attribution_error: last.attributionError } : {}),
      scan_method: last?.method ?? null,
      last_scan: last ? new Date(last.finishedAt).toISOString() : null,
      last_scan_duration_seconds: last ? Number(last.durationSeconds.toFixed(3)) : null,
      ...(lastError ? { last_error: lastError } : {}),
      allocate_auth: config.allocateToken === undefined ? "open" : "bearer token",
      reservation_seconds: config.allocateReservation,
      reservations: (allocator?.reservations() ?? []).map((r) => ({
        port: r.port,
        expires_at: new Date(r.expiresAt).toISOString(),
      })),
    };
  });

  return {
    routes: [route],
    ready: () => {
      if (!scan || scan.last) return undefined;
      return lastError === undefined
        ? "first port scan not finished"
        : `port scan failing: ${lastError}`;
    },
    stop: async () => {
      stopper.abort();
      await loop;
      allocator?.close();
    },
  };
}
