/**
 * The snapshot cache: what each Envoy node should have right now. One {@linkcode Snapshot} per
 * node id holds the node's clusters (CDS) and listeners (LDS), each resource serialized once and
 * shared by every stream that sends it. Streams watch their node and are told synchronously when
 * its snapshot is replaced.
 *
 * The cache knows nothing about the API or gRPC: the poller fills it, the server reads it.
 *
 * @example
 * ```ts
 * import { SnapshotCache } from "./cache.ts";
 * const cache = new SnapshotCache();
 * const stop = cache.watch("edge-1", (snap) => console.log("new version", snap?.version));
 * cache.set({ nodeId: "edge-1", version: "3", clusters: [], listeners: [] });
 * stop();
 * ```
 *
 * @module
 */

import {
  type BuiltResource,
  type BuiltResources,
  CLUSTER_TYPE_URL,
  LISTENER_TYPE_URL,
  listenerCluster,
} from "./resources.ts";

/** The resource kinds we serve, used as metric labels too. */
export type XdsType = "cds" | "lds";

/** Every served kind, in push order (clusters before the listeners that use them). */
export const XDS_TYPES: readonly XdsType[] = ["cds", "lds"];

/** The `type_url` of each kind. */
export const TYPE_URLS: Readonly<Record<XdsType, string>> = {
  cds: CLUSTER_TYPE_URL,
  lds: LISTENER_TYPE_URL,
};

/**
 * The kind of a `type_url`, or `undefined` for a type we do not serve.
 *
 * @example
 * ```ts
 * typeOfUrl("type.googleapis.com/envoy.config.cluster.v3.Cluster"); // "cds"
 * typeOfUrl("type.googleapis.com/envoy.config.route.v3.RouteConfiguration"); // undefined
 * ```
 */
export function typeOfUrl(typeUrl: string): XdsType | undefined {
  if (typeUrl === CLUSTER_TYPE_URL) return "cds";
  if (typeUrl === LISTENER_TYPE_URL) return "lds";
  return undefined;
}

/**
 * One serialized resource as the builders made it (`name`, `bytes`, ready-made `any`, content
 * `hash`), shared, never copied, by every stream that sends it. `hash` is the Delta
 * `Resource.version`: equal bytes <=> equal hash.
 */
export type XdsResource = BuiltResource;

/** Listener name -> the cluster names it forwards to (`undefined`: not known). */
export interface ListenerClusters {
  get(listener: string): readonly string[] | undefined;
}

/** Everything one node should have at one version. */
export interface Snapshot {
  readonly nodeId: string;
  /** `config_version` of the node in decimal: the SotW `version_info`. */
  readonly version: string;
  /** Resources by kind, keyed by resource name. */
  readonly resources: Readonly<Record<XdsType, ReadonlyMap<string, XdsResource>>>;
  /**
   * The clusters each listener forwards to. A listener missing here is treated as possibly using
   * any cluster (its LDS push always waits for the CDS ACK).
   */
  readonly listenerClusters: ListenerClusters;
  /** `performance.now()` when the snapshot was installed (push latency). */
  readonly installedAt: number;
  /** Wall-clock ms when the snapshot was installed. */
  readonly installedAtMs: number;
}

/** What {@linkcode SnapshotCache.set} takes. */
export interface SnapshotInput {
  nodeId: string;
  version: string;
  clusters: readonly XdsResource[];
  listeners: readonly XdsResource[];
  /** Listener name -> cluster names it uses (see {@linkcode Snapshot.listenerClusters}). */
  listenerClusters?: ListenerClusters;
}

/**
 * The snapshot input of one node from the builders' output. The builders emit one cluster and one
 * listener per accepted route, in the same order, and a route's listener forwards to its cluster.
 *
 * @example
 * ```ts
 * import { buildResources } from "./resources.ts";
 * const input = snapshotInput("edge-1", "7", buildResources([]));
 * ```
 */
export function snapshotInput(
  nodeId: string,
  version: string,
  built: BuiltResources,
): SnapshotInput {
  return {
    nodeId,
    version,
    clusters: built.clusters,
    listeners: built.listeners,
    listenerClusters: built.clusters.length === built.listeners.length ? PAIRED : UNKNOWN,
  };
}

/**
 * Builder output pairs each listener with its route's cluster, which the names tell: answered
 * from the name rather than kept as a map per node (a thousand nodes, a thousand maps).
 */
const PAIRED: ListenerClusters = {
  get(listener) {
    const cluster = listenerCluster(listener);
    return cluster === undefined ? undefined : [cluster];
  },
};

/** Nothing known: every listener is treated as possibly using any cluster. */
const UNKNOWN: ListenerClusters = { get: () => undefined };

/**
 * Equal type and bytes: what equal hashes mean, without hashing.
 *
 * @example
 * ```ts
 * import { encodeRoute } from "./resources.ts";
 * import { sameContent } from "./cache.ts";
 * const route = {
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * };
 * sameContent(encodeRoute(route)[0], encodeRoute(route)[0]); // true: two objects, equal bytes
 * ```
 */
export function sameContent(a: XdsResource, b: XdsResource): boolean {
  if (a === b) return true;
  if (a.typeUrl !== b.typeUrl || a.bytes.length !== b.bytes.length) return false;
  const x = a.bytes, y = b.bytes;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Up to this many resources of a kind are found by walking them; more get an index on first use. */
const SCAN_LIMIT = 16;

/**
 * A node's resources of one kind by name. Each resource carries its name, so a node's handful of
 * resources is kept as the array alone and searched in place: a `Map` of ten entries costs about
 * 500 bytes, and a thousand nodes keep two each. Larger nodes get a `Map` index on first lookup.
 */
class ResourcesByName implements ReadonlyMap<string, XdsResource> {
  readonly #items: readonly XdsResource[];
  #index: Map<string, XdsResource> | undefined;

  constructor(items: readonly XdsResource[]) {
    this.#items = items;
  }

  get size(): number {
    return this.#items.length;
  }

  get(name: string): XdsResource | undefined {
    const items = this.#items;
    if (items.length > SCAN_LIMIT) {
      this.#index ??= new Map(items.map((r) => [r.name, r]));
      return this.#index.get(name);
    }
    for (let i = 0; i < items.length; i++) if (items[i].name === name) return items[i];
    return undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  forEach(
    callback: (value: XdsResource, key: string, map: ReadonlyMap<string, XdsResource>) => void,
    thisArg?: unknown,
  ): void {
    for (const r of this.#items) callback.call(thisArg, r, r.name, this);
  }

  *entries(): MapIterator<[string, XdsResource]> {
    for (const r of this.#items) yield [r.name, r];
  }

  *keys(): MapIterator<string> {
    for (const r of this.#items) yield r.name;
  }

  values(): MapIterator<XdsResource> {
    return this.#items.values();
  }

  [Symbol.iterator](): MapIterator<[string, XdsResource]> {
    return this.entries();
  }
}

/** Called with the node's new snapshot, or `undefined` when the node was dropped. */
export type SnapshotWatcher = (snapshot: Snapshot | undefined) => void;

/** Per-node snapshots plus watchers. */
export class SnapshotCache {
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #watchers = new Map<string, Set<SnapshotWatcher>>();
  readonly #onWatcherError: (err: unknown) => void;

  /** @param onWatcherError called when a watcher throws (the other watchers still run) */
  constructor(onWatcherError: (err: unknown) => void = () => {}) {
    this.#onWatcherError = onWatcherError;
  }

  /** The current snapshot of `nodeId`, if one is known. */
  get(nodeId: string): Snapshot | undefined {
    return this.#snapshots.get(nodeId);
  }

  /** Node ids that have a snapshot. */
  nodeIds(): string[] {
    return [...this.#snapshots.keys()];
  }

  /** Number of nodes with a snapshot. */
  get size(): number {
    return this.#snapshots.size;
  }

  /**
   * Installs a node's snapshot and tells its watchers. Resources whose bytes did not change keep
   * the previous object, so streams can compare by identity and the old bytes are not kept twice.
   * Duplicate names keep the first resource (the builders never produce duplicates).
   */
  set(input: SnapshotInput): Snapshot {
    const previous = this.#snapshots.get(input.nodeId);
    const intern = (type: XdsType, items: readonly XdsResource[]): ResourcesByName => {
      const out: XdsResource[] = [];
      const names = new Set<string>();
      const old = previous?.resources[type];
      for (const item of items) {
        if (names.has(item.name)) continue;
        names.add(item.name);
        const before = old?.get(item.name);
        out.push(before && sameContent(before, item) ? before : item);
      }
      return new ResourcesByName(out.slice()); // the copy is exactly as long: no slack kept per node
    };
    const snapshot: Snapshot = {
      nodeId: input.nodeId,
      version: input.version,
      resources: { cds: intern("cds", input.clusters), lds: intern("lds", input.listeners) },
      listenerClusters: input.listenerClusters ?? UNKNOWN,
      installedAt: performance.now(),
      installedAtMs: Date.now(),
    };
    this.#snapshots.set(input.nodeId, snapshot);
    this.#notify(input.nodeId, snapshot);
    return snapshot;
  }

  /** Forgets a node (no longer listed by the API) and tells its watchers with `undefined`. */
  delete(nodeId: string): boolean {
    const had = this.#snapshots.delete(nodeId);
    if (had) this.#notify(nodeId, undefined);
    return had;
  }

  /**
   * Calls `watcher` on every change of `nodeId`'s snapshot until the returned function is called.
   * It is not called with the current snapshot; read it with {@linkcode SnapshotCache.get}.
   */
  watch(nodeId: string, watcher: SnapshotWatcher): () => void {
    let set = this.#watchers.get(nodeId);
    if (!set) this.#watchers.set(nodeId, set = new Set());
    set.add(watcher);
    return () => {
      const s = this.#watchers.get(nodeId);
      if (!s) return;
      s.delete(watcher);
      if (s.size === 0) this.#watchers.delete(nodeId);
    };
  }

  /** Number of registered watchers (all nodes); for leak checks. */
  get watcherCount(): number {
    let n = 0;
    for (const s of this.#watchers.values()) n += s.size;
    return n;
  }

  #notify(nodeId: string, snapshot: Snapshot | undefined): void {
    const set = this.#watchers.get(nodeId);
    if (!set) return;
    for (const watcher of [...set]) {
      try {
        watcher(snapshot);
      } catch (err) {
        this.#onWatcherError(err);
      }
    }
  }
}
