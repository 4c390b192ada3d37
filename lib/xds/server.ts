/**
 * The xDS gRPC server: `envoy.service.discovery.v3.AggregatedDiscoveryService`
 * (`StreamAggregatedResources`, `DeltaAggregatedResources`) plus the per-type
 * `ClusterDiscoveryService` and `ListenerDiscoveryService` (SotW and Delta) for Envoys that do not
 * use ADS. Requests are decoded by `requests.ts` (only the fields the protocol reads), responses
 * are written by `wire.ts` from the resources serialized once; the transport is our own small
 * HTTP/2 gRPC server, `h2_server.ts` (see there why neither `Deno.serve` nor grpc-js).
 *
 * Each call gets an {@linkcode XdsStream} state machine (`protocol.ts`) that decides what to send;
 * this module only moves messages, watches the node's snapshot in the {@linkcode SnapshotCache},
 * keeps the timers the state machine asks for, and records metrics, NACK log lines and per-node
 * status. Stream state is freed when the call ends; a periodic sweep frees any stream whose end
 * was never reported.
 *
 * @example
 * ```ts
 * import { SnapshotCache } from "./cache.ts";
 * import { XdsServer } from "./server.ts";
 * import { silentLogger } from "../core/log.ts";
 * const server = new XdsServer({ cache: new SnapshotCache(), log: silentLogger });
 * const port = await server.listen("127.0.0.1", 0);
 * await server.stop();
 * ```
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { VERSION } from "../core/config.ts";
import type { Logger } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import type { SnapshotCache, XdsType } from "./cache.ts";
import { type BidiCall, type BidiMethod, GrpcStatus } from "../grpc/call.ts";
import { GrpcServer } from "../grpc/h2_server.ts";
import type { TlsFiles } from "../tls/listener.ts";
import {
  type DeltaRequest,
  type Push,
  type SotwRequest,
  type Step,
  type StreamMode,
  XdsStream,
} from "./protocol.ts";
import { decodeDeltaRequest, decodeSotwRequest } from "./requests.ts";
import { WakeTimers } from "./wake_timers.ts";
import { encodeDeltaResponse, encodeSotwResponse } from "./wire.ts";

/** The metrics the server records. */
export type XdsMetrics = Pick<
  AgentMetrics,
  "xdsConnectedStreams" | "xdsPushesTotal" | "xdsAcksTotal" | "xdsNacksTotal" | "xdsPushLatency"
>;

/** Options of {@linkcode XdsServer}. */
export interface XdsServerOptions {
  cache: SnapshotCache;
  log: Logger;
  metrics?: XdsMetrics;
  /** Called when a stream names a node with no snapshot (the poller auto-registers it). */
  onUnknownNode?: (nodeId: string) => void;
  /** Longest wait for a CDS ACK before LDS goes anyway, ms (default 5000). */
  cdsAckTimeoutMs?: number;
  /** How long unused clusters stay after the LDS ACK that dropped them, ms (default 1000). */
  staleClusterGraceMs?: number;
  /** Interval of the sweep that frees streams whose end was never reported, ms (default 60 000). */
  sweepIntervalMs?: number;
}

/** Last ACK of one type on a node. */
interface AckInfo {
  version: string;
  /** Epoch ms. */
  at: number;
}

/** Per-node view for `/status`. */
interface NodeStats {
  streams: number;
  acked: Partial<Record<XdsType, AckInfo>>;
  lastNack?: { type: XdsType; version: string; error: string; at: string };
  /** Types whose latest answer from this node was a NACK (cleared by a later ACK). */
  nacking: Set<XdsType>;
  /** Epoch ms (formatted only when `/status` is read: pushes are hot). */
  lastPushAt?: number;
}

/** What `/status` shows for one node. */
export interface NodeStatus {
  node_id: string;
  connected_streams: number;
  snapshot_version: string | null;
  clusters: number;
  listeners: number;
  last_acked: Partial<Record<XdsType, { version: string; at: string }>>;
  last_nack: { type: XdsType; version: string; error: string; at: string } | null;
  /** True while the node's latest answer for some type is a NACK. */
  nacking: boolean;
  last_push_at: string | null;
}

/** Requests arrive decoded into the state machine's shapes (see `requests.ts`). */
type XdsRequest = SotwRequest | DeltaRequest;
/** Responses are written already serialized (see `wire.ts`). */
type XdsResponse = Uint8Array;
type XdsCall = BidiCall<XdsRequest, XdsResponse>;

/** One live gRPC stream. */
interface LiveStream {
  id: number;
  call: XdsCall;
  machine: XdsStream;
  nodeId?: string;
  unwatch?: () => void;
  ignoredTypes?: Set<string>;
  closed: boolean;
  /** Metric labels of the stream's node per type, made once (pushes and ACKs are hot). */
  labels?: Record<XdsType, { node_id: string; type: XdsType }>;
}

/** Labels of `sigma_xds_push_latency_seconds`, per type. */
const LATENCY_LABELS: Record<XdsType, { type: XdsType }> = {
  cds: { type: "cds" },
  lds: { type: "lds" },
};

/**
 * The HTTP/2 paths of every xDS method we serve (clients in tests and the benchmark use them).
 * Written out rather than read from the generated service descriptors, which would load
 * protobuf-es into the agent; `tests/xds/server_paths_test.ts` checks them against the
 * descriptors.
 */
export const XDS_METHOD_PATHS = {
  ads: {
    sotw: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    delta: "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
  },
  cds: {
    sotw: "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters",
    delta: "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters",
  },
  lds: {
    sotw: "/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners",
    delta: "/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners",
  },
} as const;

function codec<Req>(decode: (b: Uint8Array) => Req) {
  return {
    decode,
    encode: (bytes: Uint8Array) => bytes,
    framed: true, // `wire.ts` writes the gRPC message header itself
    borrows: true, // `requests.ts` copies what it keeps (strings): no copy of each request
  };
}

/**
 * Streams pushed per event-loop turn after snapshot changes. Between batches the loop writes what
 * was queued and reads ACKs, so the first Envoys get their update while later ones are planned.
 */
const PUSH_BATCH = 64;

/** `control_plane.identifier` of every response. */
const CONTROL_PLANE = `sigma-agent/${VERSION}`;

const SOTW_CODEC = codec(decodeSotwRequest);
const DELTA_CODEC = codec(decodeDeltaRequest);

/** The xDS gRPC server. */
export class XdsServer {
  readonly #o: XdsServerOptions;
  readonly #server: GrpcServer;
  readonly #streams = new Map<number, LiveStream>();
  readonly #nodes = new Map<string, NodeStats>();
  /** Streams whose node has a new snapshot not yet planned (see {@linkcode XdsServer.#flush}). */
  readonly #dirty = new Set<LiveStream>();
  #flushQueued = false;
  /** Wake-ups the state machines asked for, on shared timers. */
  readonly #wakeups = new WakeTimers<LiveStream>((s) => this.#apply(s, s.machine.onTimer()), {
    onError: (e) =>
      this.#o.log.error("xds: timer failed", { error: (e as Error)?.message ?? String(e) }),
  });
  readonly #bootId = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
  #nonceSeq = 0;
  #streamSeq = 0;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #address: string | undefined;

  constructor(opts: XdsServerOptions) {
    this.#o = opts;
    const method = (mode: StreamMode, types: XdsType[]): BidiMethod<XdsRequest, XdsResponse> => ({
      ...(mode === "sotw" ? SOTW_CODEC : DELTA_CODEC),
      handle: (call) => this.#accept(call, mode, types),
    });
    const p = XDS_METHOD_PATHS;
    this.#server = new GrpcServer({
      methods: {
        [p.ads.sotw]: method("sotw", ["cds", "lds"]),
        [p.ads.delta]: method("delta", ["cds", "lds"]),
        [p.cds.sotw]: method("sotw", ["cds"]),
        [p.cds.delta]: method("delta", ["cds"]),
        [p.lds.sotw]: method("sotw", ["lds"]),
        [p.lds.delta]: method("delta", ["lds"]),
      },
      onError: (e, path) =>
        opts.log.warn("xds: gRPC call failed", { path, error: (e as Error)?.message ?? String(e) }),
    });
  }

  /**
   * Binds `host:port` (port 0 picks one) and starts serving.
   *
   * @returns the bound port
   * @throws when the address cannot be bound
   */
  async listen(host: string, port: number, tls?: TlsFiles): Promise<number> {
    let bound: number;
    try {
      bound = await this.#server.listen(
        host,
        port,
        tls && {
          settings: () => tls.current(),
          onClientError: (error, remote) =>
            this.#o.log.debug("xds: TLS handshake refused", { remote, error }),
        },
      );
    } catch (e) {
      throw new Error(`xDS server cannot listen on ${host}:${port}: ${(e as Error).message}`);
    }
    this.#address = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${bound}`;
    const every = this.#o.sweepIntervalMs ?? 60_000;
    this.#sweep = setInterval(() => this.sweep(), every);
    Deno.unrefTimer(this.#sweep);
    return bound;
  }

  /** Ends every stream (clients reconnect elsewhere or later) and closes the server. */
  async stop(): Promise<void> {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const s of [...this.#streams.values()]) this.#close(s);
    this.#dirty.clear();
    this.#wakeups.clear();
    await this.#server.shutdown();
  }

  /** Open streams. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Frees the state of streams whose call is gone without an end event (go-control-plane#597). */
  sweep(): number {
    let freed = 0;
    for (const s of [...this.#streams.values()]) {
      if (s.call.signal.aborted) {
        this.#close(s);
        freed++;
      }
    }
    return freed;
  }

  /** Per-node status: connected streams, snapshot version, last ACK per type, last NACK, last push. */
  status(): { address: string | undefined; streams: number; nodes: NodeStatus[] } {
    const ids = new Set([...this.#nodes.keys(), ...this.#o.cache.nodeIds()]);
    const nodes = [...ids].sort().map((nodeId): NodeStatus => {
      const st = this.#nodes.get(nodeId);
      const snap = this.#o.cache.get(nodeId);
      return {
        node_id: nodeId,
        connected_streams: st?.streams ?? 0,
        snapshot_version: snap?.version ?? null,
        clusters: snap?.resources.cds.size ?? 0,
        listeners: snap?.resources.lds.size ?? 0,
        last_acked: Object.fromEntries(
          Object.entries(st?.acked ?? {}).map((
            [t, a],
          ) => [t, { version: a.version, at: new Date(a.at).toISOString() }]),
        ),
        last_nack: st?.lastNack ?? null,
        nacking: (st?.nacking.size ?? 0) > 0,
        last_push_at: st?.lastPushAt === undefined ? null : new Date(st.lastPushAt).toISOString(),
      };
    });
    return { address: this.#address, streams: this.#streams.size, nodes };
  }

  #nonce = (): string => `${this.#bootId}.${(++this.#nonceSeq).toString(36)}`;

  #accept(call: XdsCall, mode: StreamMode, types: XdsType[]): void {
    const s: LiveStream = {
      id: ++this.#streamSeq,
      call,
      machine: new XdsStream({
        mode,
        types,
        nonce: this.#nonce,
        cdsAckTimeoutMs: this.#o.cdsAckTimeoutMs,
        staleClusterGraceMs: this.#o.staleClusterGraceMs,
      }),
      closed: false,
    };
    this.#streams.set(s.id, s);
    call.onEnd(() => this.#close(s));
    call.onMessage((msg) => this.#onMessage(s, mode, msg));
  }

  #onMessage(s: LiveStream, mode: StreamMode, msg: XdsRequest): void {
    if (s.closed) return;
    if (s.nodeId === undefined && msg.nodeId !== "") this.#attach(s, msg.nodeId);
    const step = mode === "sotw"
      ? s.machine.onRequest(msg as SotwRequest)
      : s.machine.onDeltaRequest(msg as DeltaRequest);
    this.#apply(s, step);
    if (s.nodeId !== undefined && !s.machine.snapshot) this.#o.onUnknownNode?.(s.nodeId);
  }

  /** The stream's node is known: count it and follow its snapshot. */
  #attach(s: LiveStream, nodeId: string): void {
    s.nodeId = nodeId;
    s.labels = { cds: { node_id: nodeId, type: "cds" }, lds: { node_id: nodeId, type: "lds" } };
    const st = this.#stats(nodeId);
    st.streams++;
    this.#o.metrics?.xdsConnectedStreams.set({ node_id: nodeId }, st.streams);
    s.unwatch = this.#o.cache.watch(nodeId, () => this.#markDirty(s));
    // Not subscribed to anything yet: this only hands over the snapshot, nothing is sent.
    s.machine.onSnapshot(this.#o.cache.get(nodeId));
  }

  /**
   * The stream's snapshot changed: plan its pushes on a later turn. Installing many snapshots
   * then costs little, repeated changes to one node coalesce into one push, and the pushes go
   * out in batches interleaved with I/O instead of all behind one long synchronous loop.
   */
  #markDirty(s: LiveStream): void {
    this.#dirty.add(s);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    setImmediate(this.#flush);
  }

  #flush = (): void => {
    let n = 0;
    for (const s of this.#dirty) {
      this.#dirty.delete(s);
      if (!s.closed) this.#apply(s, s.machine.onSnapshot(this.#o.cache.get(s.nodeId!)));
      if (++n === PUSH_BATCH) break;
    }
    if (this.#dirty.size > 0) setImmediate(this.#flush);
    else this.#flushQueued = false;
  };

  #stats(nodeId: string): NodeStats {
    let st = this.#nodes.get(nodeId);
    if (!st) this.#nodes.set(nodeId, st = { streams: 0, acked: {}, nacking: new Set() });
    return st;
  }

  #apply(s: LiveStream, step: Step): void {
    if (s.closed) return;
    const nodeId = s.nodeId ?? "";
    const m = this.#o.metrics;
    for (const ev of step.events) {
      switch (ev.kind) {
        case "ack": {
          m?.xdsAcksTotal.inc(this.#labels(s, ev.type));
          const st = this.#stats(nodeId);
          const acked = st.acked[ev.type];
          // Updated in place: `/status` copies it when read.
          if (acked) {
            acked.version = ev.version;
            acked.at = Date.now();
          } else st.acked[ev.type] = { version: ev.version, at: Date.now() };
          if (st.nacking.size > 0) st.nacking.delete(ev.type);
          break;
        }
        case "nack": {
          m?.xdsNacksTotal.inc({ node_id: nodeId, type: ev.type });
          const at = new Date().toISOString();
          this.#stats(nodeId).lastNack = {
            type: ev.type,
            version: ev.version,
            error: ev.message,
            at,
          };
          this.#stats(nodeId).nacking.add(ev.type);
          this.#o.log.warn("xds: NACK", {
            node_id: nodeId,
            type: ev.type,
            version: ev.version,
            code: ev.code,
            error: ev.message,
          });
          break;
        }
        case "stale":
          this.#o.log.debug("xds: stale nonce ignored", {
            node_id: nodeId,
            type: ev.type,
            nonce: ev.nonce,
          });
          break;
        case "ignored_type":
          s.ignoredTypes ??= new Set();
          if (!s.ignoredTypes.has(ev.typeUrl) && s.ignoredTypes.size < 16) {
            s.ignoredTypes.add(ev.typeUrl);
            this.#o.log.info("xds: ignoring requests for a type this stream does not serve", {
              node_id: nodeId,
              type_url: ev.typeUrl,
            });
          }
          break;
        case "subscribed":
          this.#o.log.debug("xds: subscribed", {
            node_id: nodeId,
            type: ev.type,
            wildcard: ev.wildcard,
          });
          break;
      }
    }
    for (const push of step.pushes) this.#write(s, push);
    if (step.error) {
      this.#fail(s, GrpcStatus.INVALID_ARGUMENT, step.error);
      return;
    }
    if (step.wakeAt !== undefined) {
      this.#wakeups.schedule(s, step.wakeAt);
    }
  }

  #write(s: LiveStream, push: Push): void {
    const msg = s.machine.mode === "sotw"
      ? encodeSotwResponse({
        version: push.version,
        resources: push.resources,
        typeUrl: push.typeUrl,
        nonce: push.nonce,
        controlPlane: CONTROL_PLANE,
      }, true)
      : encodeDeltaResponse({
        systemVersion: push.version,
        resources: push.resources,
        typeUrl: push.typeUrl,
        nonce: push.nonce,
        removed: push.removed,
        controlPlane: CONTROL_PLANE,
      }, true);
    s.call.write(msg);
    const nodeId = s.nodeId ?? "";
    const m = this.#o.metrics;
    if (m) {
      m.xdsPushesTotal.inc(this.#labels(s, push.type));
      m.xdsPushLatency.observe(LATENCY_LABELS[push.type], push.latencyMs / 1000);
    }
    this.#stats(nodeId).lastPushAt = Date.now();
  }

  /** The stream's `{node_id, type}` labels (a fresh object before its node is known). */
  #labels(s: LiveStream, type: XdsType): { node_id: string; type: XdsType } {
    return s.labels?.[type] ?? { node_id: s.nodeId ?? "", type };
  }

  /** Ends the stream with an error status. */
  #fail(s: LiveStream, code: number, details: string): void {
    this.#close(s);
    s.call.fail(code, details);
  }

  /** Frees everything the stream holds. Idempotent. */
  #close(s: LiveStream): void {
    if (s.closed) return;
    s.closed = true;
    this.#streams.delete(s.id);
    this.#dirty.delete(s);
    this.#wakeups.cancel(s);
    s.unwatch?.();
    if (s.nodeId === undefined) return;
    const st = this.#nodes.get(s.nodeId);
    if (!st) return;
    st.streams--;
    if (st.streams > 0) this.#o.metrics?.xdsConnectedStreams.set({ node_id: s.nodeId }, st.streams);
    else if (this.#o.cache.get(s.nodeId)) {
      this.#o.metrics?.xdsConnectedStreams.set({ node_id: s.nodeId }, 0);
    } else {
      // Forget node ids nobody serves (any client can make one up); a known node keeps its history.
      this.#o.metrics?.xdsConnectedStreams.remove({ node_id: s.nodeId });
      this.#nodes.delete(s.nodeId);
    }
  }
}
