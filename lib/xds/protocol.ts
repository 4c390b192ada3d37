/**
 * The xDS stream protocol as a pure state machine, one instance per gRPC stream: given the
 * requests Envoy sends, the node's snapshot changes and the passing of time, it decides what to
 * send. No I/O, no protobuf: the server converts messages to and from the plain shapes here.
 *
 * Rules kept (see `shared/spec/xds-protocol.md`):
 * - every response carries a nonce from a server-wide source; a request whose `response_nonce`
 *   is not the latest one we sent for that type is stale and ignored (Delta: its subscription
 *   changes are still honoured);
 * - a response is sent only when the resources the client should hold differ from what it was
 *   last sent: an ACK never triggers a resend, and a NACKed set stays parked until the snapshot
 *   changes it;
 * - nothing is sent before the node's snapshot is known (never an empty set by default);
 * - clusters go first: a CDS push precedes the LDS push of the same change, and while it is in
 *   flight LDS waits for its ACK (or NACK), at most `cdsAckTimeoutMs` - unless every cluster the
 *   new listeners use is one the client already confirmed (then no listener can point at a missing
 *   cluster and there is nothing to wait for); clusters that left the snapshot stay in CDS until
 *   the LDS that stopped using them has been ACKed ("make before break"), and a short grace after
 *   that ACK: removing unused clusters is clean-up, so it waits until the update that matters has
 *   reached every stream, and a route renamed back and forth does not churn its cluster.
 *
 * @example
 * ```ts
 * import { XdsStream } from "./protocol.ts";
 * let n = 0;
 * const stream = new XdsStream({ mode: "sotw", types: ["cds", "lds"], nonce: () => String(++n) });
 * const step = stream.onRequest({
 *   nodeId: "edge-1", typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
 *   versionInfo: "", resourceNames: [], responseNonce: "",
 * });
 * // step.pushes is empty until stream.onSnapshot(...) gives it the node's snapshot
 * ```
 *
 * @module
 */

import {
  sameContent,
  type Snapshot,
  TYPE_URLS,
  typeOfUrl,
  type XdsResource,
  type XdsType,
} from "./cache.ts";

/** State of the world (`StreamAggregatedResources`) or incremental (`DeltaAggregatedResources`). */
export type StreamMode = "sotw" | "delta";

/** The `error_detail` of a NACK. */
export interface ErrorDetail {
  code: number;
  message: string;
}

/** A `DiscoveryRequest`, reduced to what the protocol reads. */
export interface SotwRequest {
  /** `node.id`; `""` when the request has no node. */
  nodeId: string;
  typeUrl: string;
  versionInfo: string;
  resourceNames: readonly string[];
  responseNonce: string;
  /** Present when the request carries `error_detail` (a NACK). */
  error?: ErrorDetail;
}

/** A `DeltaDiscoveryRequest`, reduced to what the protocol reads. */
export interface DeltaRequest {
  nodeId: string;
  typeUrl: string;
  subscribe: readonly string[];
  unsubscribe: readonly string[];
  /** `initial_resource_versions`: what a reconnecting client already holds. */
  initialVersions: Readonly<Record<string, string>>;
  responseNonce: string;
  error?: ErrorDetail;
}

/** One response to send. */
export interface Push {
  type: XdsType;
  typeUrl: string;
  nonce: string;
  /** SotW `version_info`, Delta `system_version_info`. */
  version: string;
  /** SotW: the full set. Delta: the changed resources only. */
  resources: XdsResource[];
  /** Delta: names the client must drop. Always empty in SotW. */
  removed: string[];
  /** ms from the snapshot change (or the subscription, if later) to this push. */
  latencyMs: number;
}

/** Something the server should count or log. */
export type ProtocolEvent =
  | { kind: "ack"; type: XdsType; version: string; nonce: string }
  | { kind: "nack"; type: XdsType; version: string; nonce: string; message: string; code: number }
  | { kind: "stale"; type: XdsType; nonce: string }
  | { kind: "ignored_type"; typeUrl: string }
  | { kind: "subscribed"; type: XdsType; wildcard: boolean; names: string[] };

/** What one input produced. */
export interface Step {
  pushes: Push[];
  events: ProtocolEvent[];
  /** Call {@linkcode XdsStream.onTimer} at this `now()` value: a gated LDS becomes due. */
  wakeAt?: number;
  /** The stream must end with INVALID_ARGUMENT and this message. */
  error?: string;
}

/** Options of {@linkcode XdsStream}. */
export interface StreamOptions {
  mode: StreamMode;
  /** Kinds served on this stream: both for ADS, one for `StreamClusters` / `StreamListeners`. */
  types: readonly XdsType[];
  /** Server-wide unique nonces. */
  nonce: () => string;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
  /** Longest wait for a CDS ACK before LDS is sent anyway, ms (default 5000). */
  cdsAckTimeoutMs?: number;
  /** How long clusters no listener uses stay after the LDS ACK that dropped them, ms (default 1000). */
  staleClusterGraceMs?: number;
}

/**
 * What the client holds (or was last sent) of one resource: the resource object we sent, or just
 * its version (Delta `initial_resource_versions`).
 */
type Held = XdsResource | string;

function versionOf(h: Held): string {
  return typeof h === "string" ? h : h.hash;
}

/**
 * Whether two held resources have the same content version. Two resource objects compare their
 * bytes (no hashing: SotW never needs the hash); a bare version (Delta) compares hashes.
 */
function sameVersion(h: Held, r: Held): boolean {
  if (typeof h !== "string" && typeof r !== "string") return sameContent(h, r);
  return versionOf(h) === versionOf(r);
}

/** A response awaiting its ACK or NACK. */
interface Pending {
  version: string;
  sentAt: number;
  /** SotW: the whole response (never mutated). Delta: the names it added or changed. */
  names: ReadonlyMap<string, unknown> | readonly string[];
  /** Delta: the names it removed. */
  removed: string[];
}

/** Per-type protocol state of one stream. */
interface TypeState {
  subscribed: boolean;
  wildcard: boolean;
  names: Set<string>;
  subscribedAt: number;
  /**
   * SotW: what the last response contained (a map never mutated; often the snapshot's own).
   * Delta: what the client is believed to hold (a map owned and updated by this stream).
   */
  held: ReadonlyMap<string, Held>;
  /** Whether a response was sent since the subscription began. */
  sentOnce: boolean;
  /** SotW: the latest nonce sent for this type (`""` before the first response). */
  lastNonce: string;
  /** Responses awaiting ACK/NACK: nonce -> version label and send time. */
  pending: Map<string, Pending>;
  /**
   * Names the client has confirmed holding (ACKed, or reported in `initial_resource_versions`).
   * Used for CDS: an LDS push that only uses confirmed clusters need not wait for a CDS ACK.
   */
  confirmed: ReadonlySet<string> | ReadonlyMap<string, unknown>;
  ackedVersion: string | undefined;
  /** `now()` of the last ACK. */
  ackedAt: number;
  /** A NACK arrived and no ACK since: the client holds something older than `held`. */
  nacked: boolean;
}

/** The public view of one type's state, for the status page and tests. */
export interface TypeStatus {
  subscribed: boolean;
  wildcard: boolean;
  names: string[];
  ackedVersion: string | undefined;
  awaitingAck: boolean;
  nacked: boolean;
  held: string[];
}

const STALE_SUFFIX = "+stale";
/** SotW's `removed` lists, always empty: one shared, frozen array. */
const NONE = Object.freeze([]) as unknown as string[];
/** Planning order: clusters first. */
const TYPES = ["cds", "lds"] as const;
/** Unanswered Delta responses remembered per type; older ones count as stale. */
const MAX_PENDING_DELTA = 32;

function newTypeState(): TypeState {
  return {
    subscribed: false,
    wildcard: false,
    names: new Set(),
    subscribedAt: 0,
    held: new Map(),
    sentOnce: false,
    lastNonce: "",
    pending: new Map(),
    confirmed: new Set(),
    ackedVersion: undefined,
    ackedAt: 0,
    nacked: false,
  };
}

/** Whether a short list of names is exactly the set (either way: the list may repeat names). */
function sameNames(names: readonly string[], set: ReadonlySet<string>): boolean {
  if (names.length !== set.size || names.length > 16) return false;
  for (const n of names) if (!set.has(n)) return false;
  for (const n of set) if (!names.includes(n)) return false;
  return true;
}

function emptyStep(): Step {
  return { pushes: [], events: [] };
}

/**
 * The per-stream state machine. Feed it every request ({@linkcode XdsStream.onRequest} or
 * {@linkcode XdsStream.onDeltaRequest}), every snapshot change of its node
 * ({@linkcode XdsStream.onSnapshot}) and the timer it asks for ({@linkcode XdsStream.onTimer});
 * send the pushes it returns, in order.
 */
export class XdsStream {
  readonly mode: StreamMode;
  readonly types: readonly XdsType[];
  readonly #nonce: () => string;
  readonly #now: () => number;
  readonly #cdsAckTimeout: number;
  readonly #staleClusterGrace: number;
  readonly #state: Record<XdsType, TypeState> = { cds: newTypeState(), lds: newTypeState() };
  #nodeId: string | undefined;
  #snapshot: Snapshot | undefined;

  constructor(opts: StreamOptions) {
    this.mode = opts.mode;
    this.types = opts.types;
    this.#nonce = opts.nonce;
    this.#now = opts.now ?? (() => performance.now());
    this.#cdsAckTimeout = opts.cdsAckTimeoutMs ?? 5000;
    this.#staleClusterGrace = opts.staleClusterGraceMs ?? 1000;
  }

  /** The node id of the first request; `undefined` before it. */
  get nodeId(): string | undefined {
    return this.#nodeId;
  }

  /** The snapshot the stream serves (the last one it was given). */
  get snapshot(): Snapshot | undefined {
    return this.#snapshot;
  }

  /** Current state of one type. */
  status(type: XdsType): TypeStatus {
    const s = this.#state[type];
    return {
      subscribed: s.subscribed,
      wildcard: s.wildcard,
      names: [...s.names],
      ackedVersion: s.ackedVersion,
      awaitingAck: s.pending.size > 0,
      nacked: s.nacked,
      held: [...s.held.keys()],
    };
  }

  /** Handles a state-of-the-world request (subscription, ACK or NACK). */
  onRequest(req: SotwRequest): Step {
    const step = emptyStep();
    if (!this.#identify(req.nodeId, step)) return step;
    const type = this.#typeOf(req.typeUrl, step);
    if (!type) return step;
    const s = this.#state[type];
    const now = this.#now();
    if (!s.subscribed) {
      s.subscribed = true;
      s.subscribedAt = now;
      this.#setNames(s, req.resourceNames);
      step.events.push({ kind: "subscribed", type, wildcard: s.wildcard, names: [...s.names] });
      this.#plan(step);
      return step;
    }
    if (s.lastNonce !== "" && req.responseNonce !== s.lastNonce) {
      step.events.push({ kind: "stale", type, nonce: req.responseNonce });
      return step;
    }
    if (s.lastNonce !== "") this.#settle(type, s, s.lastNonce, req.error, step);
    this.#setNames(s, req.resourceNames);
    this.#plan(step);
    return step;
  }

  /** Handles an incremental request. Subscription changes count even with a stale nonce. */
  onDeltaRequest(req: DeltaRequest): Step {
    const step = emptyStep();
    if (!this.#identify(req.nodeId, step)) return step;
    const type = this.#typeOf(req.typeUrl, step);
    if (!type) return step;
    const s = this.#state[type];
    if (!s.subscribed) {
      s.subscribed = true;
      s.subscribedAt = this.#now();
      // The first request's empty subscribe list means wildcard (xDS "legacy wildcard").
      s.wildcard = req.subscribe.length === 0;
      const held = new Map<string, Held>();
      for (const [name, version] of Object.entries(req.initialVersions)) {
        held.set(name, version);
        this.#ownConfirmed(s).add(name);
      }
      s.held = held;
      step.events.push({ kind: "subscribed", type, wildcard: s.wildcard, names: [] });
    }
    if (req.responseNonce !== "") {
      if (s.pending.has(req.responseNonce)) {
        this.#settle(type, s, req.responseNonce, req.error, step);
      } else step.events.push({ kind: "stale", type, nonce: req.responseNonce });
    }
    for (const name of req.subscribe) {
      if (name === "*") s.wildcard = true;
      else s.names.add(name);
    }
    for (const name of req.unsubscribe) {
      if (name === "*") s.wildcard = false;
      else s.names.delete(name);
      // The client dropped it itself: no removal to send later.
      if (name !== "*") {
        this.#ownHeld(s).delete(name);
        this.#ownConfirmed(s).delete(name);
      }
    }
    if (!s.wildcard) {
      const held = this.#ownHeld(s);
      for (const name of [...held.keys()]) if (!s.names.has(name)) held.delete(name);
    }
    this.#plan(step);
    return step;
  }

  /**
   * The node's snapshot changed. `undefined` (node dropped by the API) keeps serving the last
   * snapshot: never push an empty set for a node whose configuration is unknown.
   */
  onSnapshot(snapshot: Snapshot | undefined): Step {
    const step = emptyStep();
    if (!snapshot || snapshot === this.#snapshot) return step;
    this.#snapshot = snapshot;
    this.#plan(step);
    return step;
  }

  /** The time asked for in {@linkcode Step.wakeAt} has come: a gated push may be due. */
  onTimer(): Step {
    const step = emptyStep();
    this.#plan(step);
    return step;
  }

  #identify(nodeId: string, step: Step): boolean {
    if (this.#nodeId !== undefined) return true;
    if (nodeId === "") {
      step.error = "the first request of a stream must carry node.id";
      return false;
    }
    this.#nodeId = nodeId;
    return true;
  }

  #typeOf(typeUrl: string, step: Step): XdsType | undefined {
    // A per-type service may leave type_url empty; ADS may not.
    const type = typeUrl === "" && this.types.length === 1 ? this.types[0] : typeOfUrl(typeUrl);
    if (!type || !this.types.includes(type)) {
      step.events.push({ kind: "ignored_type", typeUrl });
      return undefined;
    }
    return type;
  }

  #setNames(s: TypeState, names: readonly string[]): void {
    // The usual ACK repeats the subscription: keep the set (an ACK then allocates none).
    if (names.length === 0) {
      s.wildcard = true;
      if (s.names.size > 0) s.names = new Set();
      return;
    }
    s.wildcard = names.includes("*");
    if (!s.wildcard && sameNames(names, s.names)) return;
    s.names = new Set(names.filter((n) => n !== "*"));
  }

  /** Records the ACK or NACK of the response with `nonce`. */
  #settle(
    type: XdsType,
    s: TypeState,
    nonce: string,
    error: ErrorDetail | undefined,
    step: Step,
  ): void {
    const sent = s.pending.get(nonce);
    // SotW: a matching nonce whose response was already settled (a repeated ACK) changes nothing.
    if (!sent) return;
    s.pending.delete(nonce);
    if (error) {
      s.nacked = true;
      step.events.push({
        kind: "nack",
        type,
        version: sent.version,
        nonce,
        message: error.message,
        code: error.code,
      });
    } else {
      s.nacked = false;
      s.ackedVersion = sent.version;
      s.ackedAt = this.#now();
      if (this.mode === "sotw") s.confirmed = sent.names as ReadonlyMap<string, unknown>;
      else {
        const confirmed = this.#ownConfirmed(s);
        for (const name of sent.names as readonly string[]) confirmed.add(name);
        for (const name of sent.removed) confirmed.delete(name);
      }
      step.events.push({ kind: "ack", type, version: sent.version, nonce });
    }
  }

  /** The resources of `type` the client should hold now (its subscription applied). */
  #desired(type: XdsType): ReadonlyMap<string, XdsResource> {
    const all = this.#snapshot!.resources[type];
    const s = this.#state[type];
    if (s.wildcard) return all;
    const out = new Map<string, XdsResource>();
    for (const name of s.names) {
      const r = all.get(name);
      if (r) out.set(name, r);
    }
    return out;
  }

  /** Listeners are in place, and have been for the grace period: clusters they no longer use may go. */
  #ldsSettled(now: number, step: Step): boolean {
    if (!this.types.includes("lds")) return true;
    const s = this.#state.lds;
    if (!s.subscribed) {
      // On ADS the LDS request follows the CDS one: a reconnecting Delta client may still run
      // listeners on the clusters it reported. Give its LDS subscription the CDS wait to arrive.
      const graceEnd = this.#state.cds.subscribedAt + this.#cdsAckTimeout;
      if (now >= graceEnd) return true;
      step.wakeAt = Math.min(step.wakeAt ?? Infinity, graceEnd);
      return false;
    }
    if (s.pending.size > 0 || s.nacked || !s.sentOnce) return false;
    if (!this.#heldEquals(s, this.#desired("lds"))) return false;
    const graceEnd = s.ackedAt + this.#staleClusterGrace;
    if (now >= graceEnd) return true;
    step.wakeAt = Math.min(step.wakeAt ?? Infinity, graceEnd);
    return false;
  }

  /** Whether the client holds exactly `target` (by name and content version). */
  #heldEquals(s: TypeState, target: ReadonlyMap<string, Held>): boolean {
    if (s.held === target) return true;
    return s.held.size === target.size && this.#holdsAll(s, target);
  }

  /** Whether the client holds every resource of `target` (by name and content version). */
  #holdsAll(s: TypeState, target: ReadonlyMap<string, Held>): boolean {
    for (const [name, r] of target) {
      const h = s.held.get(name);
      if (h !== r && (h === undefined || !sameVersion(h, r))) return false;
    }
    return true;
  }

  /** Delta: the stream's own, mutable `held` map (the only kind Delta ever stores). */
  #ownHeld(s: TypeState): Map<string, Held> {
    return s.held as Map<string, Held>;
  }

  /** Delta: the stream's own, mutable `confirmed` set (SotW stores the ACKed response's map). */
  #ownConfirmed(s: TypeState): Set<string> {
    return s.confirmed as Set<string>;
  }

  /** When LDS may go out: `undefined` = now, else the time the CDS wait ends. */
  #ldsGate(now: number): number | undefined {
    if (!this.types.includes("cds")) return undefined;
    const c = this.#state.cds;
    if (!c.subscribed) return undefined;
    let until: number | undefined;
    for (const p of c.pending.values()) {
      const end = p.sentAt + this.#cdsAckTimeout;
      if (end > now) until = Math.max(until ?? 0, end);
    }
    return until;
  }

  #plan(step: Step): void {
    if (!this.#snapshot) return;
    const now = this.#now();
    for (const type of TYPES) {
      if (!this.types.includes(type) || !this.#state[type].subscribed) continue;
      if (type === "lds") {
        const gate = this.#ldsGate(now);
        if (gate !== undefined && !this.#ldsUsesConfirmedClustersOnly()) {
          if (this.#ldsWanted()) step.wakeAt = Math.min(step.wakeAt ?? Infinity, gate);
          continue;
        }
      }
      const push = this.mode === "sotw"
        ? this.#planSotw(type, now, step)
        : this.#planDelta(type, now, step);
      if (push) step.pushes.push(push);
    }
  }

  /**
   * Whether every cluster the listeners to send use is one the client has already confirmed: then
   * a listener can never point at a missing cluster, and the LDS push need not wait for the ACK
   * of the CDS push in flight (which only updates those clusters in place).
   */
  #ldsUsesConfirmedClustersOnly(): boolean {
    const confirmed = this.#state.cds.confirmed;
    const refs = this.#snapshot!.listenerClusters;
    for (const name of this.#desired("lds").keys()) {
      const used = refs.get(name);
      if (!used) return false; // unknown: assume the worst
      for (const cluster of used) if (!confirmed.has(cluster)) return false;
    }
    return true;
  }

  /** Whether LDS has something to send (used only to decide whether to ask for a timer). */
  #ldsWanted(): boolean {
    const s = this.#state.lds;
    if (!s.sentOnce) return true;
    return !this.#heldEquals(s, this.#desired("lds"));
  }

  #planSotw(type: XdsType, now: number, step: Step): Push | undefined {
    const s = this.#state[type];
    let target: ReadonlyMap<string, XdsResource> = this.#desired(type);
    let retained = 0;
    // Held is the very map wanted (an ACK of the current set): nothing can be stale.
    if (type === "cds" && s.sentOnce && s.held !== target) {
      let stale: [string, XdsResource][] | undefined;
      for (const [name, h] of s.held) {
        if (!target.has(name) && typeof h !== "string" && (s.wildcard || s.names.has(name))) {
          (stale ??= []).push([name, h]);
        }
      }
      // Make before break: keep clusters the listeners Envoy may still run point at.
      if (stale && !this.#ldsSettled(now, step)) {
        // Nothing to send when `held` is already exactly target + stale: checked before building
        // the union, as this runs on every request while old clusters linger.
        if (s.held.size === target.size + stale.length && this.#holdsAll(s, target)) {
          return undefined;
        }
        target = new Map([...target, ...stale]);
        retained = stale.length;
      }
    }
    if (s.sentOnce && this.#heldEquals(s, target)) return undefined;
    const version = this.#snapshot!.version + (retained > 0 ? STALE_SUFFIX : "");
    const nonce = this.#nonce();
    s.held = target;
    s.sentOnce = true;
    s.lastNonce = nonce;
    s.pending.clear(); // SotW: only the latest response can be ACKed.
    s.pending.set(nonce, { version, sentAt: now, names: target, removed: NONE });
    return {
      type,
      typeUrl: TYPE_URLS[type],
      nonce,
      version,
      resources: [...target.values()],
      removed: NONE,
      latencyMs: now - Math.max(this.#snapshot!.installedAt, s.subscribedAt),
    };
  }

  #planDelta(type: XdsType, now: number, step: Step): Push | undefined {
    const s = this.#state[type];
    const desired = this.#desired(type);
    const changed: XdsResource[] = [];
    for (const [name, r] of desired) {
      const h = s.held.get(name);
      if (h !== r && (h === undefined || !sameVersion(h, r))) changed.push(r);
    }
    const removed: string[] = [];
    const stale = [...s.held.keys()].filter((name) => !desired.has(name));
    // Make before break: a cluster goes only once the listeners that used it are gone.
    if (stale.length > 0 && (type !== "cds" || this.#ldsSettled(now, step))) removed.push(...stale);
    // The first response of a subscription goes out even when empty: Envoy waits for it.
    if (s.sentOnce && changed.length === 0 && removed.length === 0) return undefined;
    const nonce = this.#nonce();
    const held = this.#ownHeld(s);
    for (const r of changed) held.set(r.name, r);
    for (const name of removed) held.delete(name);
    s.sentOnce = true;
    s.lastNonce = nonce;
    const version = this.#snapshot!.version;
    s.pending.set(nonce, { version, sentAt: now, names: changed.map((r) => r.name), removed });
    // A client that never answers must not grow the map without bound.
    if (s.pending.size > MAX_PENDING_DELTA) s.pending.delete(s.pending.keys().next().value!);
    return {
      type,
      typeUrl: TYPE_URLS[type],
      nonce,
      version,
      resources: changed,
      removed,
      latencyMs: now - Math.max(this.#snapshot!.installedAt, s.subscribedAt),
    };
  }
}
