/**
 * Builds the Envoy resources of one node from its routes (contract §D6): one
 * `envoy.config.cluster.v3.Cluster` and one `envoy.config.listener.v3.Listener` per route.
 *
 * Everything built here is valid by construction: a route Envoy would reject (no backend, a
 * port out of range, `static` with a hostname, a connect timeout <= 0, an unknown PROXY protocol
 * version, a second route on a listen port or name already taken) is returned in `skipped` with
 * a reason instead, because one bad resource gets the whole CDS/LDS update NACKed.
 *
 * Each resource is serialized once, here; the stream code shares {@linkcode BuiltResource.bytes}
 * (and the ready-made {@linkcode BuiltResource.any}) across every stream that receives it.
 *
 * Pure: no I/O, no clock, no randomness; the output depends only on the input routes.
 *
 * @example
 * ```ts
 * import { buildResources } from "./resources.ts";
 * const built = buildResources([{
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 2, source: "dynamic", status: "active",
 * }]);
 * built.clusters[0].name; // "cluster-web"
 * built.listeners[0].name; // "listener-web"
 * ```
 *
 * @module
 */
import { ipVersion } from "../host/ips.ts";
import { sha256Hex } from "./sha256.ts";
import { ProtoCursor, type Text, text, varintSize } from "./wire.ts";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { EnvoyRoute } from "../api/types.ts";
import type { Cluster_DiscoveryType } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";

// Only types come from protobuf-es and the generated protos here: the agent never loads them
// (~8 MB of resident memory). `messages.ts` builds the same resources as protobuf-es messages, the
// oracle the tests hold the bytes written here to.

/** Prefix of every `type_url`. */
export const TYPE_PREFIX = "type.googleapis.com/";

/** `type_url` of CDS responses and of each Cluster inside them. */
export const CLUSTER_TYPE_URL: string = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster";
/** `type_url` of LDS responses and of each Listener inside them. */
export const LISTENER_TYPE_URL: string = TYPE_PREFIX + "envoy.config.listener.v3.Listener";
/** `type_url` of the tcp_proxy filter's `typed_config`. */
export const TCP_PROXY_TYPE_URL: string = TYPE_PREFIX +
  "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/** `type_url` of the upstream PROXY protocol transport socket's `typed_config`. */
export const PROXY_PROTOCOL_TYPE_URL: string = TYPE_PREFIX +
  "envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport";
/** `type_url` of the raw_buffer transport socket's `typed_config`. */
export const RAW_BUFFER_TYPE_URL: string = TYPE_PREFIX +
  "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/** Envoy extension name of the TCP proxy network filter. */
export const TCP_PROXY_FILTER_NAME = "envoy.filters.network.tcp_proxy";
/** Envoy extension name of the upstream PROXY protocol transport socket. */
export const PROXY_PROTOCOL_SOCKET_NAME = "envoy.transport_sockets.upstream_proxy_protocol";
/** Envoy extension name of the plain (raw buffer) transport socket. */
export const RAW_BUFFER_SOCKET_NAME = "envoy.transport_sockets.raw_buffer";

/** Largest `google.protobuf.Duration` (10,000 years), the bound of `connect_timeout`. */
const MAX_DURATION_SECONDS = 315_576_000_000;

/** One serialized resource, built once per snapshot and shared by every stream that sends it. */
export interface BuiltResource {
  /** Resource name (`cluster-<route>` / `listener-<route>`), unique within its type. */
  readonly name: string;
  /** {@linkcode CLUSTER_TYPE_URL} or {@linkcode LISTENER_TYPE_URL}. */
  readonly typeUrl: string;
  /** The serialized Cluster or Listener message. */
  readonly bytes: Uint8Array;
  /**
   * `google.protobuf.Any{type_url: typeUrl, value: bytes}`, ready for
   * `DiscoveryResponse.resources` and `Resource.resource`. Shared: do not mutate.
   */
  readonly any: Any;
  /**
   * Content hash (hex SHA-256 of `typeUrl` and `bytes`): the per-resource version for Delta xDS
   * (`Resource.version`, compared with `initial_resource_versions`). Equal content => equal hash,
   * across nodes, snapshots and restarts.
   */
  readonly hash: string;
}

/** A route that produced no resources, and why. */
export interface SkippedRoute {
  readonly route: EnvoyRoute;
  /** Human-readable reason, e.g. `backend_port 0 is not in 1..65535`. */
  readonly reason: string;
}

/** What {@linkcode buildResources} returns: resources in route order plus the skipped routes. */
export interface BuiltResources {
  /** One Cluster per accepted route, ordered by listen_port then name. */
  readonly clusters: readonly BuiltResource[];
  /** One Listener per accepted route, same order as `clusters`. */
  readonly listeners: readonly BuiltResource[];
  /** Routes left out, in the same deterministic order. */
  readonly skipped: readonly SkippedRoute[];
}

/**
 * Name of the Cluster built for a route.
 *
 * @example
 * ```ts
 * import { clusterName } from "./resources.ts";
 * clusterName("web"); // "cluster-web"
 * ```
 */
export function clusterName(routeName: string): string {
  return `cluster-${routeName}`;
}

/**
 * Name of the Listener built for a route.
 *
 * @example
 * ```ts
 * import { listenerName } from "./resources.ts";
 * listenerName("web"); // "listener-web"
 * ```
 */
export function listenerName(routeName: string): string {
  return `listener-${routeName}`;
}

/**
 * The Cluster a built Listener forwards to: the one of the same route. `undefined` for a name the
 * builders never give a listener.
 *
 * @example
 * ```ts
 * import { listenerCluster } from "./resources.ts";
 * listenerCluster("listener-web"); // "cluster-web"
 * ```
 */
export function listenerCluster(listener: string): string | undefined {
  return listener.startsWith(LISTENER_PREFIX)
    ? clusterName(listener.slice(LISTENER_PREFIX.length))
    : undefined;
}

const LISTENER_PREFIX = listenerName("");

/**
 * `stat_prefix` of a route's tcp_proxy filter.
 *
 * @example
 * ```ts
 * import { statPrefix } from "./resources.ts";
 * statPrefix("web"); // "tcp-web"
 * ```
 */
export function statPrefix(routeName: string): string {
  return `tcp-${routeName}`;
}

/**
 * Maps the API's `cluster_type` to Envoy's discovery type: `static`, `strict_dns`,
 * `logical_dns` (case-insensitive); anything else (`eds`, `original_dst`, unknown) becomes
 * LOGICAL_DNS, which works with the single endpoint we send.
 *
 * @example
 * ```ts
 * import { discoveryType } from "./resources.ts";
 * discoveryType("STRICT_DNS"); // 1, Cluster_DiscoveryType.STRICT_DNS
 * ```
 */
export function discoveryType(clusterType: string): Cluster_DiscoveryType {
  switch (clusterType.toLowerCase()) {
    case "static":
      return 0 as Cluster_DiscoveryType.STATIC;
    case "strict_dns":
      return 1 as Cluster_DiscoveryType.STRICT_DNS;
    default:
      return 2 as Cluster_DiscoveryType.LOGICAL_DNS;
  }
}

// One DNS label: letters, digits, '-' and '_' (seen in internal names), 1..63 characters.
const DNS_NAME =
  /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** The backend host as Envoy wants it: `[::1]` -> `::1`, anything else unchanged. */
export function endpointHost(host: string): string {
  const m = /^\[(.*)\]$/.exec(host);
  return m && ipVersion(m[1]) === 6 ? m[1] : host;
}

function isPort(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/**
 * Why Envoy would reject the resources of this route on its own (ignoring other routes), or
 * `null` when it can be built.
 *
 * @example
 * ```ts
 * import { routeProblem } from "./resources.ts";
 * routeProblem({
 *   id: "r1", envoy_node_id: "n1", name: "db", listen_port: 15432,
 *   backend_host: "db.internal", backend_port: 5432, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * }); // 'cluster_type static needs an IP address, got backend_host "db.internal"'
 * ```
 */
export function routeProblem(route: EnvoyRoute): string | null {
  if (typeof route.name !== "string" || route.name === "") return "empty route name";
  if (!isPort(route.listen_port)) return `listen_port ${route.listen_port} is not in 1..65535`;
  const host = route.backend_host;
  if (host === null || host === undefined || host === "") return "no backend_host";
  if (route.backend_port === null || route.backend_port === undefined) return "no backend_port";
  if (!isPort(route.backend_port)) return `backend_port ${route.backend_port} is not in 1..65535`;
  const ip = ipVersion(endpointHost(host)) !== 0;
  if (!ip && !DNS_NAME.test(host)) {
    return `backend_host ${JSON.stringify(host)} is neither an IP address nor a DNS name`;
  }
  const clusterType = typeof route.cluster_type === "string" ? route.cluster_type : "";
  if (discoveryType(clusterType) === 0 /* STATIC */ && !ip) {
    return `cluster_type static needs an IP address, got backend_host ${JSON.stringify(host)}`;
  }
  const timeout = route.connect_timeout_secs;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0) {
    return `connect_timeout_secs ${timeout} is not > 0`;
  }
  if (timeout > MAX_DURATION_SECONDS) return `connect_timeout_secs ${timeout} is too large`;
  // Envoy wants connect_timeout > 0; a value that rounds to 0 ns would be sent as 0.
  if (Math.round(timeout * 1e9) < 1) return `connect_timeout_secs ${timeout} is below 1 ns`;
  const pp = route.proxy_protocol;
  if (!(pp === 0 || pp === 1 || pp === 2)) {
    return `proxy_protocol ${pp} is not 0 (off), 1 (v1) or 2 (v2)`;
  }
  return null;
}

/** Whole seconds and nanos of a positive duration in seconds (nanos rounded, carried into seconds). */
export function durationParts(secs: number): [seconds: number, nanos: number] {
  const seconds = Math.floor(secs);
  const nanos = Math.round((secs - seconds) * 1e9);
  // Rounding 0.9999999999 up gives 1e9 nanos, which is out of range; carry it.
  return nanos >= 1e9 ? [seconds + 1, 0] : [seconds, nanos];
}

/** Content hashes, made when Delta first asks for one: a fleet served over SotW never does. */
const contentHashes = new WeakMap<Resource, string>();

/**
 * A resource over a range of its build's buffer. The view is made when `bytes` is read rather
 * than kept: a typed-array view costs about 100 bytes of heap, and a thousand nodes hold twenty
 * thousand resources, while a push reads each one once or twice. For the same reason the type URL
 * comes from the class and the content hash lives outside the object. `any` and `hash` are derived
 * on demand: the SotW encoder needs neither (it writes `typeUrl` and `bytes` itself), and the hash
 * is only the Delta version; once computed it is kept.
 */
abstract class Resource implements BuiltResource {
  readonly name: string;
  readonly #buf: Uint8Array;
  readonly #start: number;
  readonly #end: number;

  constructor(name: string, buf: Uint8Array, start = 0, end = buf.length) {
    this.name = name;
    this.#buf = buf;
    this.#start = start;
    this.#end = end;
  }

  abstract get typeUrl(): string;

  get bytes(): Uint8Array {
    return this.#start === 0 && this.#end === this.#buf.length
      ? this.#buf
      : this.#buf.subarray(this.#start, this.#end);
  }

  get any(): Any {
    return { $typeName: "google.protobuf.Any", typeUrl: this.typeUrl, value: this.bytes };
  }

  get hash(): string {
    let hash = contentHashes.get(this);
    if (hash === undefined) {
      hash = sha256Hex(utf8Encoder.encode(this.typeUrl + "\n"), this.bytes);
      contentHashes.set(this, hash);
    }
    return hash;
  }
}

class ClusterResource extends Resource {
  get typeUrl(): string {
    return CLUSTER_TYPE_URL;
  }
}

class ListenerResource extends Resource {
  get typeUrl(): string {
    return LISTENER_TYPE_URL;
  }
}

/** A resource of any other type (bytes made elsewhere). */
class OtherResource extends Resource {
  readonly #typeUrl: string;

  constructor(name: string, typeUrl: string, bytes: Uint8Array) {
    super(name, bytes);
    this.#typeUrl = typeUrl;
  }

  get typeUrl(): string {
    return this.#typeUrl;
  }
}

/**
 * A {@linkcode BuiltResource} of already serialized bytes.
 *
 * @example
 * ```ts
 * import { CLUSTER_TYPE_URL, resourceOf } from "./resources.ts";
 * resourceOf("cluster-web", CLUSTER_TYPE_URL, new Uint8Array([10, 0])).typeUrl;
 * ```
 */
export function resourceOf(name: string, typeUrl: string, bytes: Uint8Array): BuiltResource {
  if (typeUrl === CLUSTER_TYPE_URL) return new ClusterResource(name, bytes);
  if (typeUrl === LISTENER_TYPE_URL) return new ListenerResource(name, bytes);
  return new OtherResource(name, typeUrl, bytes);
}

// --- Direct encoding ---
// Building protobuf-es messages and walking them with `toBinary` costs ~30 µs per route and a lot
// of short-lived garbage. The Cluster and Listener of a route have a fixed shape, so they are
// written here directly, field by field, in the order and form `toBinary` uses (fields in number
// order, proto3 defaults omitted, oneof members always written): sizes first, then one pass into
// one buffer per route.
// `tests/xds/resources_test.ts` checks the bytes against `toBinary(buildCluster(route))` and
// `toBinary(buildListener(route))`.

const utf8Encoder = new TextEncoder();

/** Size of a length-delimited field with a `len`-byte payload and a `keyBytes`-byte key. */
function lenField(len: number, keyBytes = 1): number {
  return keyBytes + varintSize(len) + len;
}

/** Size of a string field, 0 when empty (proto3 implicit presence). */
function textField(t: Text): number {
  return t.length === 0 ? 0 : lenField(t.length);
}

// The encoded transport sockets (field 24 of a Cluster) for proxy_protocol 1 and 2.
// TransportSocket{1 name, 3 typed_config: Any{1 type_url, 2 value: ProxyProtocolUpstreamTransport{
//   1 config: ProxyProtocolConfig{1 version (V1 = 0 is the default, so omitted)},
//   2 transport_socket: TransportSocket{1 name: raw_buffer, 3 Any{1 type_url} (RawBuffer is empty)}}}}
function proxyProtocolSocketBytes(version: 0 | 1): Uint8Array {
  const str = (field: number, s: string) => lenBytes(field, utf8Encoder.encode(s));
  const raw = concat(
    str(1, RAW_BUFFER_SOCKET_NAME),
    lenBytes(3, str(1, RAW_BUFFER_TYPE_URL)),
  );
  const upstream = concat(
    lenBytes(1, version === 0 ? new Uint8Array(0) : new Uint8Array([8, version])),
    lenBytes(2, raw),
  );
  const any = concat(str(1, PROXY_PROTOCOL_TYPE_URL), lenBytes(2, upstream));
  return concat(str(1, PROXY_PROTOCOL_SOCKET_NAME), lenBytes(3, any));
}

/** A length-delimited field (field numbers below 16, lengths below 16 KiB: all that is used here). */
function lenBytes(field: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + varintSize(payload.length) + payload.length);
  const c = new ProtoCursor(out);
  c.field(field, payload, true);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const PROXY_PROTOCOL_SOCKET_BYTES: Readonly<Record<1 | 2, Uint8Array>> = {
  1: proxyProtocolSocketBytes(0),
  2: proxyProtocolSocketBytes(1),
};
const TCP_PROXY_TYPE_URL_TEXT = text(TCP_PROXY_TYPE_URL);
const TCP_PROXY_FILTER_TEXT = text(TCP_PROXY_FILTER_NAME);
const ANY_ADDRESS_TEXT = text("0.0.0.0");

/** Sizes of the nested messages of one route's Cluster and Listener, computed once. */
interface Plan {
  route: EnvoyRoute;
  cluster: Text;
  listener: Text;
  stat: Text;
  host: Text;
  seconds: number;
  nanos: number;
  type: number;
  pp: Uint8Array | undefined;
  // Cluster parts
  timeout: number;
  backendSocket: number;
  assignment: number;
  clusterSize: number;
  // Listener parts
  listenSocket: number;
  tcpProxy: number;
  any: number;
  filter: number;
  chain: number;
  listenerSize: number;
}

function plan(route: EnvoyRoute): Plan {
  const cluster = text(clusterName(route.name));
  const host = text(endpointHost(route.backend_host ?? ""));
  const [seconds, nanos] = durationParts(route.connect_timeout_secs);
  const type = discoveryType(route.cluster_type);
  const pp = route.proxy_protocol === 1 || route.proxy_protocol === 2
    ? PROXY_PROTOCOL_SOCKET_BYTES[route.proxy_protocol]
    : undefined;
  const timeout = (seconds !== 0 ? 1 + varintSize(seconds) : 0) +
    (nanos !== 0 ? 1 + varintSize(nanos) : 0);
  // SocketAddress{2 address, 3 port_value} -> Address{1} -> Endpoint{1} -> LbEndpoint{1} ->
  // LocalityLbEndpoints{2} -> ClusterLoadAssignment{1 cluster_name, 2 endpoints}.
  const backendSocket = textField(host) + 1 + varintSize(route.backend_port ?? 0);
  const locality = lenField(lenField(lenField(lenField(backendSocket))));
  const assignment = textField(cluster) + lenField(locality);
  const clusterSize = textField(cluster) + 1 + varintSize(type) + lenField(timeout) +
    (pp ? lenField(pp.length, 2) : 0) + lenField(assignment, 2);
  const listener = text(listenerName(route.name));
  const stat = text(statPrefix(route.name));
  const listenSocket = textField(ANY_ADDRESS_TEXT) + 1 + varintSize(route.listen_port);
  const tcpProxy = textField(stat) + textField(cluster);
  const any = textField(TCP_PROXY_TYPE_URL_TEXT) + lenField(tcpProxy);
  const filter = textField(TCP_PROXY_FILTER_TEXT) + lenField(any);
  const chain = lenField(filter);
  const listenerSize = textField(listener) + lenField(lenField(listenSocket)) + lenField(chain);
  return {
    route,
    cluster,
    listener,
    stat,
    host,
    seconds,
    nanos,
    type,
    pp,
    timeout,
    backendSocket,
    assignment,
    clusterSize,
    listenSocket,
    tcpProxy,
    any,
    filter,
    chain,
    listenerSize,
  };
}

/** Writes the Cluster of `p`: the bytes of `toBinary(buildCluster(route))`. */
function writeCluster(c: ProtoCursor, p: Plan): void {
  c.text(1, p.cluster);
  c.uint(2, p.type);
  c.header(4, p.timeout);
  if (p.seconds !== 0) c.uint(1, p.seconds);
  if (p.nanos !== 0) c.uint(2, p.nanos);
  if (p.pp) c.field(24, p.pp);
  c.header(33, p.assignment);
  c.text(1, p.cluster);
  const address = lenField(p.backendSocket);
  const endpoint = lenField(address);
  const lbEndpoint = lenField(endpoint);
  c.header(2, lenField(lbEndpoint)); // LocalityLbEndpoints
  c.header(2, lbEndpoint); // LbEndpoint
  c.header(1, endpoint); // Endpoint
  c.header(1, address); // Address
  c.header(1, p.backendSocket); // SocketAddress
  c.text(2, p.host);
  c.uint(3, p.route.backend_port ?? 0);
}

/** Writes the Listener of `p`: the bytes of `toBinary(buildListener(route))`. */
function writeListener(c: ProtoCursor, p: Plan): void {
  c.text(1, p.listener);
  c.header(2, lenField(p.listenSocket)); // Address
  c.header(1, p.listenSocket); // SocketAddress
  c.text(2, ANY_ADDRESS_TEXT);
  c.uint(3, p.route.listen_port);
  c.header(3, p.chain); // FilterChain
  c.header(3, p.filter); // Filter
  c.text(1, TCP_PROXY_FILTER_TEXT);
  c.header(4, p.any); // typed_config
  c.text(1, TCP_PROXY_TYPE_URL_TEXT);
  c.header(2, p.tcpProxy);
  c.text(1, p.stat);
  c.text(2, p.cluster);
}

/**
 * The Cluster and Listener of each checked route, serialized into one buffer for all of them (the
 * resources are views of it), without validation. One allocation per node build rather than per
 * route: each ArrayBuffer costs a few hundred bytes beside its contents. A resource kept across
 * snapshots keeps its build's buffer, so a node pins at most one buffer per live route.
 */
function encodeRoutes(routes: readonly EnvoyRoute[]): [BuiltResource, BuiltResource][] {
  const plans = routes.map(plan);
  let size = 0;
  for (const p of plans) size += p.clusterSize + p.listenerSize;
  const buf = new Uint8Array(size);
  const c = new ProtoCursor(buf);
  return plans.map((p, i) => {
    const start = c.off;
    writeCluster(c, p);
    const mid = c.off;
    writeListener(c, p);
    const name = routes[i].name;
    return [
      new ClusterResource(clusterName(name), buf, start, mid),
      new ListenerResource(listenerName(name), buf, mid, c.off),
    ];
  });
}

/**
 * The Cluster and Listener of one route, serialized, without validation (the caller checks the
 * route with {@linkcode routeProblem} first; {@linkcode buildResources} does).
 *
 * @example
 * ```ts
 * import { encodeRoute } from "./resources.ts";
 * const [cluster, listener] = encodeRoute({
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * });
 * cluster.name; // "cluster-web"
 * ```
 */
export function encodeRoute(route: EnvoyRoute): [BuiltResource, BuiltResource] {
  return encodeRoutes([route])[0];
}

/**
 * The resources already built for a route identical to this one (same
 * {@linkcode sameResources}), or `undefined` to encode it.
 */
export type ReuseBuilt = (
  route: EnvoyRoute,
) => readonly [cluster: BuiltResource, listener: BuiltResource] | undefined;

/**
 * Whether two routes produce the same Cluster and Listener (every field the builders read is
 * equal).
 *
 * @example
 * ```ts
 * import { sameResources } from "./resources.ts";
 * const a = {
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * };
 * sameResources(a, { ...a, id: "r2" }); // true
 * sameResources(a, { ...a, backend_port: 8081 }); // false
 * ```
 */
export function sameResources(a: EnvoyRoute, b: EnvoyRoute): boolean {
  return a.name === b.name && a.listen_port === b.listen_port &&
    a.backend_host === b.backend_host && a.backend_port === b.backend_port &&
    a.cluster_type === b.cluster_type && a.connect_timeout_secs === b.connect_timeout_secs &&
    a.proxy_protocol === b.proxy_protocol;
}

/** Deterministic processing order: listen_port, then name, then id (ties are unusual). */
function compareRoutes(a: EnvoyRoute, b: EnvoyRoute): number {
  const pa = Number.isFinite(a.listen_port) ? a.listen_port : Infinity;
  const pb = Number.isFinite(b.listen_port) ? b.listen_port : Infinity;
  if (pa !== pb) return pa < pb ? -1 : 1;
  const na = String(a.name), nb = String(b.name);
  if (na !== nb) return na < nb ? -1 : 1;
  const ia = String(a.id), ib = String(b.id);
  return ia < ib ? -1 : ia > ib ? 1 : 0;
}

/**
 * Builds and serializes the Clusters and Listeners of one node's routes.
 *
 * `reuse`, when given, may hand back the resources already built for an identical route (see
 * {@linkcode sameResources}): only the routes that changed are encoded again.
 *
 * Routes are taken in order of listen_port then name; each must pass
 * {@linkcode routeProblem}, and the first valid route on a listen port or with a name wins:
 * later ones are skipped so Envoy never sees two listeners on one port or duplicate names.
 *
 * @example
 * ```ts
 * import { buildResources } from "./resources.ts";
 * const base = {
 *   envoy_node_id: "n1", backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * };
 * const built = buildResources([
 *   { ...base, id: "a", name: "web", listen_port: 10080 },
 *   { ...base, id: "b", name: "web2", listen_port: 10080 },
 * ]);
 * built.listeners.length; // 1
 * built.skipped[0].reason; // 'listen_port 10080 is already used by route "web"'
 * ```
 */
export function buildResources(
  routes: readonly EnvoyRoute[],
  reuse?: ReuseBuilt,
): BuiltResources {
  const clusters: BuiltResource[] = [];
  const listeners: BuiltResource[] = [];
  const skipped: SkippedRoute[] = [];
  const byPort = new Map<number, string>();
  const byName = new Set<string>();
  // Routes to encode (all in one buffer) and where their resources go.
  const fresh: EnvoyRoute[] = [];
  const at: number[] = [];
  for (const route of [...routes].sort(compareRoutes)) {
    const problem = routeProblem(route);
    if (problem !== null) {
      skipped.push({ route, reason: problem });
      continue;
    }
    const portOwner = byPort.get(route.listen_port);
    if (portOwner !== undefined) {
      skipped.push({
        route,
        reason: `listen_port ${route.listen_port} is already used by route ${
          JSON.stringify(portOwner)
        }`,
      });
      continue;
    }
    if (byName.has(route.name)) {
      skipped.push({
        route,
        reason: `another route is already named ${JSON.stringify(route.name)}`,
      });
      continue;
    }
    byPort.set(route.listen_port, route.name);
    byName.add(route.name);
    const kept = reuse?.(route);
    if (kept) {
      clusters.push(kept[0]);
      listeners.push(kept[1]);
    } else {
      fresh.push(route);
      at.push(clusters.length);
      clusters.push(undefined!);
      listeners.push(undefined!);
    }
  }
  encodeRoutes(fresh).forEach(([cluster, listener], i) => {
    clusters[at[i]] = cluster;
    listeners[at[i]] = listener;
  });
  return { clusters, listeners, skipped };
}
