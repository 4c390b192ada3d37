/**
 * System information for register and heartbeat, exactly as contract §B defines it, read through
 * Deno's system APIs (each behind a scoped `--allow-sys` kind; /proc is not readable in the
 * sandbox). Each value falls back to its failure value (0 or []) on error.
 *
 * @example
 * ```ts
 * import { collectSystemInfo } from "./system_info.ts";
 * const info = collectSystemInfo({ diskPath: "/etc/os-release", metricsPort: 9102 });
 * ```
 *
 * @module
 */

import os from "node:os";
import { statfsSync } from "node:fs";
import type { SystemInfo } from "../api/types.ts";

/** Options of {@linkcode collectSystemInfo}. */
export interface SystemInfoOptions {
  /** A path on the filesystem to report (statfs needs read access to exactly it). */
  diskPath: string;
  /** Included when > 0. */
  metricsPort: number;
  /** Included when known. */
  publicIp?: string;
}

const GIB = 2 ** 30;

/** Fragment size (statvfs f_frsize) when the runtime gives it, else the block size. */
function frsize(s: { bsize: number | bigint; frsize?: number | bigint }): number {
  return Number(s.frsize ?? s.bsize);
}

function attempt<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/** Collects `system_info`. Never throws. */
export function collectSystemInfo(opts: SystemInfoOptions): SystemInfo {
  const disk = attempt(() => {
    const s = statfsSync(opts.diskPath);
    return {
      total: Math.floor((Number(s.blocks) * frsize(s)) / GIB),
      used: Math.floor(((Number(s.blocks) - Number(s.bfree)) * frsize(s)) / GIB),
    };
  }, { total: 0, used: 0 });
  const info: SystemInfo = {
    cpu_cores: attempt(() => os.cpus().length, 0),
    ram_mb: attempt(() => Math.floor(Deno.systemMemoryInfo().total / 1024 / 1024), 0),
    disk_gb: disk.total,
    disk_used_gb: disk.used,
    uptime_seconds: attempt(() => Math.floor(Deno.osUptime()), 0),
    load_avg: attempt(() => Deno.loadavg().slice(0, 3), [] as number[]),
  };
  if (opts.metricsPort > 0) info.metrics_port = opts.metricsPort;
  if (opts.publicIp) info.public_ip = opts.publicIp;
  return info;
}
