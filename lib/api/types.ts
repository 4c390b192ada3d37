/**
 * Wire types of the sigma-api contract (sections A-C of `sigma-api-contract.md`) and guards that
 * check untrusted API JSON before the agent relies on it.
 *
 * @example
 * ```ts
 * import { parseEnvoyNode } from "./types.ts";
 * const node = parseEnvoyNode({ id: "u1", vps_id: "v1", node_id: "n1", config_version: 3, status: "active" });
 * ```
 *
 * @module
 */

/** One address in `ip_addresses`. `label` is `"internal"` for RFC 1918 IPv4, else `""`. */
export interface IpAddress {
  ip: string;
  label: "internal" | "";
}

/** `system_info` as contract §B defines it. */
export interface SystemInfo {
  cpu_cores: number;
  ram_mb: number;
  disk_gb: number;
  disk_used_gb: number;
  uptime_seconds: number;
  load_avg: number[];
  /** Omitted when the metrics server is disabled (0). */
  metrics_port?: number;
  /** Omitted when unknown. */
  public_ip?: string;
}

/** Body of `POST /agent/register`. */
export interface RegisterRequest {
  hostname: string;
  alias?: string;
  ip_addresses: IpAddress[];
  ssh_port: number;
  system_info: SystemInfo;
}

/** Body of `POST /agent/heartbeat`. */
export interface HeartbeatRequest {
  hostname: string;
  ip_addresses: IpAddress[];
  system_info: SystemInfo;
}

/** The fields of a VPS row the agent reads. */
export interface Vps {
  id: string;
  hostname: string;
  status: string;
}

/** An `envoy_nodes` row (§C). */
export interface EnvoyNode {
  id: string;
  vps_id: string;
  node_id: string;
  admin_port: number | null;
  description: string;
  config_version: number;
  status: string;
}

/** An `envoy_routes` row (§C). */
export interface EnvoyRoute {
  id: string;
  envoy_node_id: string;
  name: string;
  listen_port: number;
  backend_host: string | null;
  backend_port: number | null;
  cluster_type: string;
  connect_timeout_secs: number;
  proxy_protocol: number;
  source: string;
  status: string;
}

/** One entry of `POST /envoy-routes/sync-static`. */
export interface StaticRouteEntry {
  name: string;
  listen_port: number;
  backend_host: string | null;
  backend_port: number | null;
  cluster_type: string;
  connect_timeout_secs: number;
  proxy_protocol: number;
}

/** Response of `POST /envoy-routes/sync-static`. */
export interface SyncStaticResponse {
  upserted: number;
  deleted: number;
}

/** The pagination envelope. */
export interface Page<T> {
  data: T[];
  total: number;
  page: number;
  per_page: number;
}

/** Raised when API JSON does not have the shape the contract promises. */
export class ApiShapeError extends Error {
  override name = "ApiShapeError";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, k: string, what: string): string {
  const v = o[k];
  if (typeof v !== "string") throw new ApiShapeError(`${what}: "${k}" is not a string`);
  return v;
}

function int(o: Record<string, unknown>, k: string, what: string, fallback?: number): number {
  const v = o[k];
  if (v === undefined && fallback !== undefined) return fallback;
  // config_version is int64; some serialisers send it as a string.
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) {
    throw new ApiShapeError(`${what}: "${k}" is not a number`);
  }
  return n;
}

function optInt(o: Record<string, unknown>, k: string, what: string): number | null {
  const v = o[k];
  if (v === undefined || v === null) return null;
  return int(o, k, what);
}

/** Checks a VPS row (register/heartbeat response). */
export function parseVps(v: unknown): Vps {
  if (!isObject(v)) throw new ApiShapeError("VPS: not an object");
  const id = str(v, "id", "VPS");
  if (id === "") throw new ApiShapeError("VPS: empty id");
  return {
    id,
    hostname: typeof v.hostname === "string" ? v.hostname : "",
    status: typeof v.status === "string" ? v.status : "",
  };
}

/** Checks an envoy node row. */
export function parseEnvoyNode(v: unknown): EnvoyNode {
  if (!isObject(v)) throw new ApiShapeError("envoy node: not an object");
  return {
    id: str(v, "id", "envoy node"),
    vps_id: typeof v.vps_id === "string" ? v.vps_id : "",
    node_id: str(v, "node_id", "envoy node"),
    admin_port: optInt(v, "admin_port", "envoy node"),
    description: typeof v.description === "string" ? v.description : "",
    config_version: int(v, "config_version", "envoy node", 0),
    status: typeof v.status === "string" ? v.status : "active",
  };
}

/** Checks an envoy route row; a missing `source` means `dynamic` (contract §C). */
export function parseEnvoyRoute(v: unknown): EnvoyRoute {
  if (!isObject(v)) throw new ApiShapeError("envoy route: not an object");
  const what = "envoy route";
  return {
    id: typeof v.id === "string" ? v.id : "",
    envoy_node_id: typeof v.envoy_node_id === "string" ? v.envoy_node_id : "",
    name: str(v, "name", what),
    listen_port: int(v, "listen_port", what),
    backend_host: typeof v.backend_host === "string" ? v.backend_host : null,
    backend_port: optInt(v, "backend_port", what),
    cluster_type: typeof v.cluster_type === "string" ? v.cluster_type : "logical_dns",
    connect_timeout_secs: int(v, "connect_timeout_secs", what, 5),
    proxy_protocol: int(v, "proxy_protocol", what, 0),
    source: typeof v.source === "string" ? v.source : "dynamic",
    status: typeof v.status === "string" ? v.status : "active",
  };
}

/** Checks a pagination envelope; items are checked by `item`. */
export function parsePage<T>(v: unknown, item: (x: unknown) => T): Page<T> {
  if (!isObject(v) || !Array.isArray(v.data)) throw new ApiShapeError("page: missing data array");
  return {
    data: v.data.map(item),
    total: int(v, "total", "page", v.data.length),
    page: int(v, "page", "page", 1),
    per_page: int(v, "per_page", "page", v.data.length),
  };
}
