/**
 * Pure parser of Envoy bootstrap files (`envoy.yaml`) into the static route entries that
 * `POST /envoy-routes/sync-static` takes (contract §A6, §D5). No I/O: text in, routes out.
 *
 * What becomes a route: each `static_resources.listeners[]` entry whose filter chains contain an
 * `envoy.filters.network.tcp_proxy` filter (by name or by typed_config `@type`), joined with the
 * cluster that filter names. Listeners that are not TCP proxies (HTTP connection managers, ...)
 * are skipped and counted; listeners and clusters of the control plane (`xds_cluster`,
 * `sigma_xds`, `*_xds`) are ignored. Anything odd but survivable becomes a warning, never an
 * exception: only text that is not YAML (or is an alias bomb) throws {@linkcode EnvoyConfigError}.
 *
 * @example
 * ```ts
 * import { parseEnvoyConfig } from "./parser.ts";
 * const yaml = `
 * static_resources:
 *   listeners:
 *   - address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }
 *     filter_chains:
 *     - filters:
 *       - name: envoy.filters.network.tcp_proxy
 *         typed_config: { stat_prefix: tcp, cluster: backend }
 *   clusters:
 *   - name: backend
 *     connect_timeout: 0.25s
 *     load_assignment:
 *       endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.5, port_value: 443 } } } }] }]
 * `;
 * const { routes } = parseEnvoyConfig(yaml);
 * // [{ name: "static-10000", listen_port: 10000, backend_host: "10.0.0.5", backend_port: 443,
 * //    cluster_type: "static", connect_timeout_secs: 1, proxy_protocol: 0 }]
 * ```
 *
 * @module
 */

import {
  type Document,
  isAlias,
  isMap as isYamlMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
} from "yaml";
import type { StaticRouteEntry } from "../api/types.ts";

/** What {@linkcode parseEnvoyConfig} found in one file. */
export interface ParsedEnvoyConfig {
  /** One entry per TCP-proxy listener, in listener order, listen ports unique. */
  routes: StaticRouteEntry[];
  /** Listeners that are not TCP proxies (e.g. `http_connection_manager`) or point at the control plane. */
  skippedListeners: number;
  /** Survivable oddities (unknown cluster, bad port, duplicate port, ...), human-readable. */
  warnings: string[];
  /**
   * `false` when the document is empty or its top level is not a mapping: such text cannot be an
   * Envoy bootstrap (typically a file caught half-written), so callers must not treat its empty
   * route list as "the operator removed every route".
   */
  isBootstrap: boolean;
}

/** Options of {@linkcode parseEnvoyConfig}. */
export interface ParseOptions {
  /** Name used in error messages (usually the file path). */
  source?: string;
  /**
   * Largest alias expansion accepted (the `yaml` package's `maxAliasCount`), default
   * {@linkcode DEFAULT_MAX_ALIAS_COUNT}. A "billion laughs" document exceeds it and is rejected.
   */
  maxAliasCount?: number;
}

/** Default alias budget: generous for configs that reuse `<<: *defaults` on hundreds of listeners. */
export const DEFAULT_MAX_ALIAS_COUNT = 1000;

/** Envoy's own default `connect_timeout` (seconds). */
export const DEFAULT_CONNECT_TIMEOUT_SECS = 5;

/** Text that is not a usable YAML document. `line`/`column` are 1-based when known. */
export class EnvoyConfigError extends Error {
  override name = "EnvoyConfigError";
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(message: string, line?: number, column?: number) {
    super(message);
    this.line = line;
    this.column = column;
  }
}

/** Names of the filter and its `@type` (current and legacy spellings). */
const TCP_PROXY_NAMES = new Set(["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"]);
const TCP_PROXY_TYPE = /\.tcp_proxy\.v\d+(alpha)?\.TcpProxy$/;
const PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol";
const PROXY_PROTOCOL_TYPE = /\.ProxyProtocolUpstreamTransport$/;
/** Cluster discovery types by proto enum number (the JSON mapping allows numbers). */
const CLUSTER_TYPES = ["static", "strict_dns", "logical_dns", "eds", "original_dst"];

/**
 * True for clusters of the control plane, which are never routes (contract §D5): `xds_cluster`,
 * `sigma_xds` and any name ending in `_xds`.
 *
 * @example
 * ```ts
 * isControlPlaneCluster("xds_cluster"); // true
 * isControlPlaneCluster("backend"); // false
 * ```
 */
export function isControlPlaneCluster(name: string): boolean {
  return name === "xds_cluster" || name === "sigma_xds" || name.endsWith("_xds");
}

/**
 * Parses an Envoy duration (`5s`, `0.25s`, `1.5s`, `100ms`, `1m`, `{seconds, nanos}` or a bare
 * number of seconds) into whole seconds, rounding **up** (a timeout must never get shorter than
 * configured) and never below 1 (the API and Envoy reject 0). `undefined` when unparsable.
 *
 * @example
 * ```ts
 * durationToSeconds("0.25s"); // 1
 * durationToSeconds("1.5s"); // 2
 * durationToSeconds("1m"); // 60
 * durationToSeconds("soon"); // undefined
 * ```
 */
export function durationToSeconds(value: unknown): number | undefined {
  let nanos: bigint | undefined;
  if (typeof value === "number") {
    if (Number.isFinite(value) && value >= 0) nanos = decimalToNanos(String(value), 1_000_000_000n);
  } else if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)?\s*$/.exec(value);
    if (m) nanos = decimalToNanos(m[1], UNIT_NANOS[m[2] ?? "s"]);
  } else if (isMap(value)) {
    const s = toInteger(value.seconds ?? 0);
    const n = toInteger(value.nanos ?? 0);
    if (s !== undefined && n !== undefined && s >= 0 && n >= 0) {
      nanos = BigInt(s) * 1_000_000_000n + BigInt(n);
    }
  }
  if (nanos === undefined) return undefined;
  const secs = (nanos + 999_999_999n) / 1_000_000_000n; // ceil
  const clamped = secs > 2_147_483_647n ? 2_147_483_647 : Number(secs);
  return Math.max(1, clamped);
}

const UNIT_NANOS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Exact decimal × unit in nanoseconds (rounded up), so `0.7m` is 42 s, not 42.000...1 s. */
function decimalToNanos(decimal: string, unit: bigint): bigint | undefined {
  if (/e/i.test(decimal)) return undefined; // exponent notation from a huge/tiny number
  const [intPart, frac = ""] = decimal.split(".");
  const scale = 10n ** BigInt(frac.length);
  const scaled = BigInt(intPart || "0") * scale + BigInt(frac || "0");
  return (scaled * unit + scale - 1n) / scale;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map);
}

function asList(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Integer from a YAML number or a decimal string (the proto JSON mapping allows both). */
function toInteger(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (typeof v === "string" && /^\s*\d{1,15}\s*$/.test(v)) return Number(v);
  return undefined;
}

function toPort(v: unknown): number | undefined {
  const n = toInteger(v);
  return n !== undefined && n >= 1 && n <= 65535 ? n : undefined;
}

function describe(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? "[\u2026]" : "{\u2026}"; // aliases can make a value contain itself
  }
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

/** `@type` of a typed_config, or "". */
function typeUrl(typedConfig: unknown): string {
  return isMap(typedConfig) && typeof typedConfig["@type"] === "string" ? typedConfig["@type"] : "";
}

function isTcpProxyFilter(filter: Record<string, unknown>): boolean {
  const name = typeof filter.name === "string" ? filter.name : "";
  return TCP_PROXY_NAMES.has(name) || TCP_PROXY_TYPE.test(typeUrl(filter.typed_config));
}

/** The cluster a tcp_proxy filter sends to (`cluster`, else the first weighted cluster). */
function tcpProxyCluster(
  filter: Record<string, unknown>,
  warn: (w: string) => void,
  where: string,
): string | undefined {
  // `config` is the pre-v3 spelling of `typed_config`.
  const cfg = isMap(filter.typed_config)
    ? filter.typed_config
    : isMap(filter.config)
    ? filter.config
    : {};
  if (typeof cfg.cluster === "string" && cfg.cluster !== "") return cfg.cluster;
  const weighted = isMap(cfg.weighted_clusters) ? asList(cfg.weighted_clusters.clusters) : [];
  const first = weighted.find((c) => isMap(c) && typeof c.name === "string" && c.name !== "");
  if (isMap(first)) {
    if (weighted.length > 1) {
      warn(`${where}: weighted_clusters: only the first cluster (${first.name}) is synced`);
    }
    return first.name as string;
  }
  return undefined;
}

interface ClusterInfo {
  backend_host: string | null;
  backend_port: number | null;
  cluster_type: string;
  connect_timeout_secs: number;
  proxy_protocol: number;
}

function clusterType(
  cluster: Record<string, unknown>,
  where: string,
  warn: (w: string) => void,
): string {
  const t = cluster.type;
  if (typeof t === "string" && t.trim() !== "") return t.trim().toLowerCase();
  if (typeof t === "number" && CLUSTER_TYPES[t]) return CLUSTER_TYPES[t];
  if (t === undefined || t === null) {
    // A custom cluster type (e.g. dynamic_forward_proxy) is named by `cluster_type.name`.
    const custom = isMap(cluster.cluster_type) ? cluster.cluster_type.name : undefined;
    if (typeof custom === "string" && custom !== "") return custom.toLowerCase();
    return "static"; // Envoy's default discovery type when `type` is absent
  }
  warn(`${where}: unrecognised type ${describe(t)}, using "static"`);
  return "static";
}

function proxyProtocol(
  cluster: Record<string, unknown>,
  where: string,
  warn: (w: string) => void,
): number {
  const socket = cluster.transport_socket;
  if (!isMap(socket)) return 0;
  const name = typeof socket.name === "string" ? socket.name : "";
  const typed = isMap(socket.typed_config) ? socket.typed_config : {};
  if (name !== PROXY_PROTOCOL_SOCKET && !PROXY_PROTOCOL_TYPE.test(typeUrl(typed))) return 0;
  const config = isMap(typed.config) ? typed.config : {};
  const version = config.version;
  // ProxyProtocolConfig.Version: V1 = 0 (the default), V2 = 1.
  if (version === undefined || version === null || version === "V1" || version === 0) return 1;
  if (version === "V2" || version === 1) return 2;
  if (typeof version === "string" && /^v?[12]$/i.test(version.trim())) {
    return version.trim().slice(-1) === "2" ? 2 : 1;
  }
  warn(`${where}: unrecognised PROXY protocol version ${describe(version)}, assuming V1`);
  return 1;
}

function firstEndpoint(cluster: Record<string, unknown>): Record<string, unknown> | undefined {
  const la = isMap(cluster.load_assignment) ? cluster.load_assignment : {};
  for (const locality of asList(la.endpoints)) {
    if (!isMap(locality)) continue;
    for (const lb of asList(locality.lb_endpoints)) {
      const sa = isMap(lb) && isMap(lb.endpoint) && isMap(lb.endpoint.address)
        ? lb.endpoint.address.socket_address
        : undefined;
      if (isMap(sa)) return sa;
    }
  }
  // Pre-v3 `hosts: [{ socket_address: ... }]`.
  for (const host of asList(cluster.hosts)) {
    if (isMap(host) && isMap(host.socket_address)) return host.socket_address;
  }
  return undefined;
}

function clusterInfo(
  cluster: Record<string, unknown>,
  name: string,
  warn: (w: string) => void,
): ClusterInfo {
  const where = `cluster "${name}"`;
  let timeout = DEFAULT_CONNECT_TIMEOUT_SECS;
  if (cluster.connect_timeout !== undefined && cluster.connect_timeout !== null) {
    const t = durationToSeconds(cluster.connect_timeout);
    if (t === undefined) {
      warn(
        `${where}: unparsable connect_timeout ${
          describe(cluster.connect_timeout)
        }, using ${timeout}s`,
      );
    } else timeout = t;
  }
  const info: ClusterInfo = {
    backend_host: null,
    backend_port: null,
    cluster_type: clusterType(cluster, where, warn),
    connect_timeout_secs: timeout,
    proxy_protocol: proxyProtocol(cluster, where, warn),
  };
  const sa = firstEndpoint(cluster);
  if (sa) {
    const host = sa.address;
    if (typeof host === "string" && host.trim() !== "") info.backend_host = host.trim();
    else if (typeof host === "number") info.backend_host = String(host);
    info.backend_port = toPort(sa.port_value) ?? null;
    if (sa.port_value !== undefined && info.backend_port === null) {
      warn(`${where}: endpoint port_value ${describe(sa.port_value)} is not a port (1-65535)`);
    }
  } else if (info.cluster_type !== "eds" && info.cluster_type !== "original_dst") {
    // EDS and ORIGINAL_DST clusters have no endpoints in the file by design.
    warn(`${where}: no load_assignment endpoint with a socket_address; backend left empty`);
  }
  return info;
}

/** Compact location for messages: `listener "name"` or `listeners[3]`. */
function listenerLabel(listener: Record<string, unknown>, index: number): string {
  return typeof listener.name === "string" && listener.name !== ""
    ? `listener "${listener.name}"`
    : `listeners[${index}]`;
}

/** Offset of the first merge key (`<<`) whose value is not a mapping, an alias or a list of them. */
function badMergeOffset(doc: Document): number | undefined {
  let found: number | undefined;
  const isMergeKey = (k: unknown) =>
    isScalar(k) &&
    (k.value === "<<" || (typeof k.value === "symbol" && k.value.description === "<<"));
  const mergeable = (n: unknown) => isYamlMap(isAlias(n) ? n.resolve(doc) : n);
  visit(doc, {
    Pair(_key, pair) {
      if (!isPair(pair) || !isMergeKey(pair.key)) return;
      const v = pair.value;
      if (mergeable(v) || (isSeq(v) && v.items.every(mergeable))) return;
      found = (pair.key as { range?: [number, number, number] }).range?.[0];
      return visit.BREAK;
    },
  });
  return found;
}

/** Parses YAML text into a plain JS value, with line-accurate errors and an alias budget. */
function loadYaml(text: string, opts: ParseOptions, warnings: string[]): unknown {
  const source = opts.source ?? "<input>";
  const lineCounter = new LineCounter();
  let doc;
  try {
    doc = parseDocument(text, {
      merge: true, // `<<: *defaults`
      uniqueKeys: true,
      prettyErrors: false,
      logLevel: "error", // warnings are collected below, never printed by the library
      lineCounter,
    });
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      // The yaml package reads LOG_TOKENS / LOG_STREAM; the agent's flags ignore them.
      throw new EnvoyConfigError(
        `${source}: the YAML parser needs --ignore-env=LOG_TOKENS,LOG_STREAM (see deploy/permissions.flags): ${
          (e as Error).message
        }`,
      );
    }
    throw new EnvoyConfigError(`${source}: invalid YAML: ${(e as Error).message}`);
  }
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const { line, col } = lineCounter.linePos(e.pos[0]);
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more errors)` : "";
    throw new EnvoyConfigError(
      `${source}:${line}:${col}: invalid YAML: ${e.message}${more}`,
      line,
      col,
    );
  }
  for (const w of doc.warnings) {
    const { line, col } = lineCounter.linePos(w.pos[0]);
    warnings.push(`line ${line}:${col}: ${w.message}`);
  }
  try {
    return doc.toJS({ maxAliasCount: opts.maxAliasCount ?? DEFAULT_MAX_ALIAS_COUNT });
  } catch (e) {
    const msg = (e as Error).message;
    if (/Excessive alias count/.test(msg)) {
      throw new EnvoyConfigError(
        `${source}: too many alias expansions (limit ${
          opts.maxAliasCount ?? DEFAULT_MAX_ALIAS_COUNT
        }); ` +
          `refusing a possible "billion laughs" document`,
      );
    }
    const bad = badMergeOffset(doc);
    if (bad !== undefined) {
      const { line, col } = lineCounter.linePos(bad);
      throw new EnvoyConfigError(`${source}:${line}:${col}: invalid YAML: ${msg}`, line, col);
    }
    throw new EnvoyConfigError(`${source}: invalid YAML: ${msg}`);
  }
}

/**
 * Parses the text of an Envoy bootstrap file into static route entries.
 *
 * Never throws for well-formed YAML of any shape (unexpected shapes become warnings); throws
 * {@linkcode EnvoyConfigError} with the line and column when the text is not valid YAML, and when
 * alias expansion exceeds `maxAliasCount`.
 *
 * @example
 * ```ts
 * const r = parseEnvoyConfig("static_resources: {}", { source: "/etc/envoy/envoy.yaml" });
 * // { routes: [], skippedListeners: 0, warnings: [], isBootstrap: true }
 * ```
 */
export function parseEnvoyConfig(text: string, opts: ParseOptions = {}): ParsedEnvoyConfig {
  const warnings: string[] = [];
  const warn = (w: string) => warnings.push(w);
  const root = loadYaml(text, opts, warnings);
  const result: ParsedEnvoyConfig = {
    routes: [],
    skippedListeners: 0,
    warnings,
    isBootstrap: isMap(root),
  };
  if (!isMap(root)) return result;
  const sr = root.static_resources;
  if (sr === undefined || sr === null) return result;
  if (!isMap(sr)) {
    warn(`static_resources is not a mapping (${describe(sr)})`);
    return result;
  }
  if (sr.listeners !== undefined && !Array.isArray(sr.listeners)) {
    warn("static_resources.listeners is not a list");
  }
  if (sr.clusters !== undefined && !Array.isArray(sr.clusters)) {
    warn("static_resources.clusters is not a list");
  }

  const clusters = new Map<string, Record<string, unknown>>();
  for (const c of asList(sr.clusters)) {
    if (!isMap(c) || typeof c.name !== "string" || c.name === "") continue;
    if (clusters.has(c.name)) {
      warn(`cluster "${c.name}" is defined twice; the first definition is used`);
    } else clusters.set(c.name, c);
  }
  const infoCache = new Map<string, ClusterInfo>();
  const portOwner = new Map<number, string>();

  asList(sr.listeners).forEach((listener, index) => {
    if (!isMap(listener)) {
      warn(`listeners[${index}] is not a mapping; skipped`);
      return;
    }
    const where = listenerLabel(listener, index);
    const chains = [...asList(listener.filter_chains)];
    if (listener.default_filter_chain !== undefined) chains.push(listener.default_filter_chain);
    const proxies: Record<string, unknown>[] = [];
    for (const chain of chains) {
      if (!isMap(chain)) continue;
      for (const f of asList(chain.filters)) {
        if (isMap(f) && isTcpProxyFilter(f)) {
          proxies.push(f);
          break; // a chain ends in one network terminal filter
        }
      }
    }
    if (proxies.length === 0) {
      result.skippedListeners++;
      return;
    }
    const clusterName = tcpProxyCluster(proxies[0], warn, where);
    if (clusterName === undefined) {
      warn(`${where}: tcp_proxy names no cluster; skipped`);
      result.skippedListeners++;
      return;
    }
    if (isControlPlaneCluster(clusterName)) {
      result.skippedListeners++;
      return;
    }
    const others = new Set(proxies.slice(1).map((p) => tcpProxyCluster(p, () => {}, where)));
    others.delete(clusterName);
    others.delete(undefined);
    if (others.size > 0) {
      warn(
        `${where}: filter chains proxy to several clusters; only "${clusterName}" is synced (one route per port)`,
      );
    }

    const sa = isMap(listener.address) ? listener.address.socket_address : undefined;
    if (!isMap(sa)) {
      warn(`${where}: no address.socket_address (pipe or internal listener?); skipped`);
      return;
    }
    const port = toPort(sa.port_value);
    if (port === undefined) {
      warn(`${where}: port_value ${describe(sa.port_value)} is not a port (1-65535); skipped`);
      return;
    }
    const owner = portOwner.get(port);
    if (owner !== undefined) {
      warn(`${where}: port ${port} is already used by ${owner}; skipped`);
      return;
    }
    portOwner.set(port, where);

    let info = infoCache.get(clusterName);
    if (!info) {
      const cluster = clusters.get(clusterName);
      if (cluster) info = clusterInfo(cluster, clusterName, warn);
      else {
        warn(
          `${where}: cluster "${clusterName}" is not defined in static_resources; backend left empty`,
        );
        // Unknown cluster (e.g. from CDS): the API's own defaults (contract §D5).
        info = {
          backend_host: null,
          backend_port: null,
          cluster_type: "logical_dns",
          connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
          proxy_protocol: 0,
        };
      }
      infoCache.set(clusterName, info);
    }
    result.routes.push({ name: `static-${port}`, listen_port: port, ...info });
  });
  return result;
}
