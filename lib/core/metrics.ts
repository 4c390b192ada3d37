/**
 * Every Prometheus metric the agent exports, defined once in one prom-client registry.
 * Features receive the {@linkcode AgentMetrics} object and set values; only `/metrics` renders.
 * All series carry a `hostname` label (a registry default label), as the Grafana dashboard expects.
 *
 * @example
 * ```ts
 * import { createMetrics } from "./metrics.ts";
 * const m = createMetrics("vps-1", "0.1.0");
 * m.portsTotal.set(20001);
 * console.log(await m.registry.metrics());
 * ```
 *
 * @module
 */

import process from "node:process";
// prom-client's index also loads its cluster aggregator, push gateway and default collectors
// (node:cluster, node:http, /proc readers) that the agent never uses: ~5 MB of resident memory.
import Counter from "prom-client/lib/counter.js";
import Gauge from "prom-client/lib/gauge.js";
import Histogram from "prom-client/lib/histogram.js";
import Registry from "prom-client/lib/registry.js";
import type * as PromClient from "prom-client";

/** The subset of prom-client the agent uses, with its published types. */
const client = { Counter, Gauge, Histogram, Registry } as unknown as Pick<
  typeof PromClient,
  "Counter" | "Gauge" | "Histogram" | "Registry"
>;
// Type names (client.Gauge<"x">) resolve through this namespace alias.
declare namespace client {
  type Counter<T extends string = string> = PromClient.Counter<T>;
  type Gauge<T extends string = string> = PromClient.Gauge<T>;
  type Histogram<T extends string = string> = PromClient.Histogram<T>;
  type Registry = PromClient.Registry;
}

/** Port-usage categories, always emitted in this order (contract D2/D4). */
export const PORT_SOURCES = [
  "envoy",
  "sshd",
  "nginx",
  "node_exporter",
  "xray",
  "other",
  "unknown",
] as const;

/** One of {@linkcode PORT_SOURCES}. */
export type PortSource = typeof PORT_SOURCES[number];

/** xDS resource kinds used as the `type` label. */
export const XDS_TYPES = ["cds", "lds"] as const;

/** The agent's metrics. */
export interface AgentMetrics {
  registry: client.Registry;
  // Port scan (seed names).
  portsTotal: client.Gauge;
  portsAvailable: client.Gauge;
  portsInUse: client.Gauge;
  portsUsed: client.Gauge<"source">;
  portsOtherDetail: client.Gauge<"process">;
  portScanDuration: client.Gauge;
  portScansTotal: client.Counter<"result">;
  lastScanTimestamp: client.Gauge;
  // Allocation.
  allocationsTotal: client.Counter<"result">;
  portsReserved: client.Gauge;
  // Agent lifecycle and API.
  buildInfo: client.Gauge<"version">;
  registerTotal: client.Counter<"result">;
  heartbeatTotal: client.Counter<"result">;
  lastHeartbeatTimestamp: client.Gauge;
  registered: client.Gauge;
  apiRequestDuration: client.Histogram<"endpoint" | "method" | "result">;
  // Static config sync.
  staticSyncTotal: client.Counter<"node_id" | "result">;
  staticRoutes: client.Gauge<"node_id">;
  // xDS.
  xdsConnectedStreams: client.Gauge<"node_id">;
  xdsPushesTotal: client.Counter<"node_id" | "type">;
  xdsAcksTotal: client.Counter<"node_id" | "type">;
  xdsNacksTotal: client.Counter<"node_id" | "type">;
  xdsPushLatency: client.Histogram<"type">;
  xdsSnapshotVersion: client.Gauge<"node_id">;
  xdsPollTotal: client.Counter<"result">;
}

/**
 * Creates the registry and every metric.
 *
 * @param hostname value of the `hostname` label on every series
 * @param version agent version for `sigma_agent_build_info`
 */
export function createMetrics(hostname: string, version: string): AgentMetrics {
  const registry = new client.Registry();
  registry.setDefaultLabels({ hostname });
  const r = [registry];

  const m: AgentMetrics = {
    registry,
    portsTotal: new client.Gauge({
      name: "sigma_ports_total",
      help: "Ports in the scan range.",
      registers: r,
    }),
    portsAvailable: new client.Gauge({
      name: "sigma_ports_available",
      help: "Ports in the scan range where a test bind succeeded.",
      registers: r,
    }),
    portsInUse: new client.Gauge({
      name: "sigma_ports_in_use",
      help: "Ports in the scan range that could not be bound.",
      registers: r,
    }),
    portsUsed: new client.Gauge({
      name: "sigma_ports_used",
      help: "Listening TCP ports system-wide by owning process category.",
      labelNames: ["source"],
      registers: r,
    }),
    portsOtherDetail: new client.Gauge({
      name: "sigma_ports_other_detail",
      help: "Listening TCP ports of processes in the 'other' category, by process name.",
      labelNames: ["process"],
      registers: r,
    }),
    portScanDuration: new client.Gauge({
      name: "sigma_port_scan_duration_seconds",
      help: "Duration of the last port scan.",
      registers: r,
    }),
    portScansTotal: new client.Counter({
      name: "sigma_port_scans_total",
      help: "Port scans run, by result.",
      labelNames: ["result"],
      registers: r,
    }),
    lastScanTimestamp: new client.Gauge({
      name: "sigma_port_scan_last_timestamp_seconds",
      help: "Unix time the last port scan finished.",
      registers: r,
    }),
    allocationsTotal: new client.Counter({
      name: "sigma_port_allocations_total",
      help: "POST /ports/allocate calls, by result.",
      labelNames: ["result"],
      registers: r,
    }),
    portsReserved: new client.Gauge({
      name: "sigma_ports_reserved",
      help: "Ports handed out by /ports/allocate and still held back.",
      registers: r,
    }),
    buildInfo: new client.Gauge({
      name: "sigma_agent_build_info",
      help: "Agent build information; always 1.",
      labelNames: ["version"],
      registers: r,
    }),
    registerTotal: new client.Counter({
      name: "sigma_agent_register_total",
      help: "Registration attempts, by result.",
      labelNames: ["result"],
      registers: r,
    }),
    heartbeatTotal: new client.Counter({
      name: "sigma_agent_heartbeat_total",
      help: "Heartbeats sent, by result.",
      labelNames: ["result"],
      registers: r,
    }),
    lastHeartbeatTimestamp: new client.Gauge({
      name: "sigma_agent_last_heartbeat_success_timestamp_seconds",
      help: "Unix time of the last successful heartbeat.",
      registers: r,
    }),
    registered: new client.Gauge({
      name: "sigma_agent_registered",
      help: "1 once the VPS is registered with sigma-api.",
      registers: r,
    }),
    apiRequestDuration: new client.Histogram({
      name: "sigma_agent_api_request_duration_seconds",
      help: "sigma-api request duration, by endpoint and result.",
      labelNames: ["endpoint", "method", "result"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    staticSyncTotal: new client.Counter({
      name: "sigma_static_sync_total",
      help: "Static envoy.yaml syncs, by node and result.",
      labelNames: ["node_id", "result"],
      registers: r,
    }),
    staticRoutes: new client.Gauge({
      name: "sigma_static_routes",
      help: "Static routes last synced, by node.",
      labelNames: ["node_id"],
      registers: r,
    }),
    xdsConnectedStreams: new client.Gauge({
      name: "sigma_xds_connected_streams",
      help: "Open xDS streams, by Envoy node id.",
      labelNames: ["node_id"],
      registers: r,
    }),
    xdsPushesTotal: new client.Counter({
      name: "sigma_xds_pushes_total",
      help: "xDS responses sent, by node and resource type.",
      labelNames: ["node_id", "type"],
      registers: r,
    }),
    xdsAcksTotal: new client.Counter({
      name: "sigma_xds_acks_total",
      help: "xDS ACKs received, by node and resource type.",
      labelNames: ["node_id", "type"],
      registers: r,
    }),
    xdsNacksTotal: new client.Counter({
      name: "sigma_xds_nacks_total",
      help: "xDS NACKs received, by node and resource type.",
      labelNames: ["node_id", "type"],
      registers: r,
    }),
    xdsPushLatency: new client.Histogram({
      name: "sigma_xds_push_latency_seconds",
      help: "Time from a snapshot change to the push reaching the stream, by type.",
      labelNames: ["type"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers: r,
    }),
    xdsSnapshotVersion: new client.Gauge({
      name: "sigma_xds_snapshot_version",
      help: "config_version of the snapshot held for each node.",
      labelNames: ["node_id"],
      registers: r,
    }),
    xdsPollTotal: new client.Counter({
      name: "sigma_xds_poll_total",
      help: "xDS config polls of sigma-api, by result.",
      labelNames: ["result"],
      registers: r,
    }),
  };

  m.buildInfo.set({ version }, 1);
  m.registered.set(0);
  for (const source of PORT_SOURCES) m.portsUsed.set({ source }, 0);
  for (const result of ["success", "failure"]) {
    m.registerTotal.inc({ result }, 0);
    m.heartbeatTotal.inc({ result }, 0);
  }
  registerProcessMetrics(registry);
  return m;
}

/**
 * Process metrics that work inside Deno's sandbox (prom-client's defaults read /proc, which the
 * agent's permissions do not grant): resident memory, heap, CPU seconds, start time.
 */
function registerProcessMetrics(registry: client.Registry): void {
  const r = [registry];
  const startTime = Date.now() / 1000 - performance.now() / 1000;
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: r,
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new client.Gauge({
    name: "process_heap_bytes",
    help: "JavaScript heap in use, bytes.",
    registers: r,
    collect() {
      this.set(Deno.memoryUsage().heapUsed);
    },
  });
  new client.Counter({
    name: "process_cpu_seconds_total",
    help: "User and system CPU time spent, seconds.",
    registers: r,
    collect() {
      const u = process.cpuUsage();
      this.reset();
      this.inc((u.user + u.system) / 1e6);
    },
  });
  new client.Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since the Unix epoch, seconds.",
    registers: r,
    collect() {
      this.set(Math.round(startTime));
    },
  });
}
