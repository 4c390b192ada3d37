/**
 * Fills the {@linkcode SnapshotCache} from sigma-api and keeps it on disk.
 *
 * - Every poll interval: list this VPS's active Envoy nodes (all pages); for each node whose
 *   `config_version` changed, fetch all pages of its active dynamic routes and rebuild its
 *   snapshot; drop nodes no longer listed. Changed nodes are fetched
 *   {@linkcode DEFAULT_FETCH_CONCURRENCY} at a time. Each rebuilt node is installed (and its
 *   streams woken) as soon as its routes arrive, so an error later in the same poll never loses
 *   the wake-up of earlier nodes. Only the resources of routes that changed are encoded again.
 * - A poll that rebuilt nodes is followed by one more {@linkcode FOLLOW_UP_DELAY_MS} later: a
 *   change made while the node pages were being read shows only on the pages read after it.
 * - A 429 from the API pauses every fetch of the poll together for its `Retry-After` (1 s when
 *   absent), then the node is fetched again; after {@linkcode MAX_RATE_LIMITED_RETRIES} such
 *   pauses, or a `Retry-After` longer than the poll interval, the poll stops and the next one
 *   starts no sooner than the API asked.
 * - The routes behind every snapshot are written atomically to the state dir once per poll that
 *   changed something (one durable write however many nodes changed) and loaded at start, so
 *   Envoys connecting while the API is down, or before registration succeeded, get their last
 *   configuration. The poller keeps the file it wrote open and copies the unchanged nodes' bytes
 *   from it into the next one, so a node's JSON is in memory only from its rebuild to the next
 *   write; call {@linkcode SnapshotPoller.close} when done.
 * - A stream for an unknown node id triggers one auto-registration (`POST /envoy-nodes`); a
 *   duplicate (500 or 409) is looked up instead, then the poller polls again right away.
 *
 * @example
 * ```ts
 * import { SnapshotPoller } from "./poller.ts";
 * const poller = new SnapshotPoller({ api, cache, store, build, log, vpsId: () => id,
 *   vpsIdReady: Promise.resolve(id), intervalMs: 10_000, signal });
 * await poller.load();
 * poller.run(); // until signal aborts
 * ```
 *
 * @module
 */

import { ApiError, type SigmaClient } from "../api/client.ts";
import type { EnvoyNode, EnvoyRoute } from "../api/types.ts";
import { type Logger, RepeatedFailure } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import { jittered, sleep } from "../core/schedule.ts";
import type { StateStore } from "../core/state_store.ts";
import { type SnapshotCache, snapshotInput } from "./cache.ts";
import {
  buildResources,
  type BuiltResources,
  clusterName,
  listenerName,
  type ReuseBuilt,
} from "./resources.ts";

/** The state-dir file holding the last good snapshot (its routes) of every node. */
export const SNAPSHOT_FILE = "xds-snapshots.json";

/**
 * Changed nodes whose routes are fetched at once. Eight keeps a 1,000-node change well under a
 * second on loopback while asking sigma-api for no more than a browser opens to one host.
 */
export const DEFAULT_FETCH_CONCURRENCY = 8;

/** 429 pauses within one poll before it gives up and waits for the next. */
export const MAX_RATE_LIMITED_RETRIES = 3;

/** The pause after a 429 without a usable `Retry-After`. */
const DEFAULT_RETRY_AFTER_MS = 1000;

/** The wait before the poll that follows one which rebuilt nodes ({@linkcode SnapshotPoller.run}). */
export const FOLLOW_UP_DELAY_MS = 250;

/** Description sent when a stream's unknown node id is registered (as the seed did). */
export const AUTO_REGISTER_DESCRIPTION = "Auto-registered by agent";

/** Route rows -> serialized clusters and listeners (the resource builders of `resources.ts`). */
export type SnapshotBuilder = (routes: readonly EnvoyRoute[]) => BuiltResources;

/** The API calls the poller makes. */
export type PollerApi = Pick<SigmaClient, "listEnvoyNodes" | "listEnvoyRoutes" | "createEnvoyNode">;

/** Options of {@linkcode SnapshotPoller}. */
export interface PollerOptions {
  api: PollerApi;
  cache: SnapshotCache;
  store: StateStore;
  /** Default: {@linkcode buildResources}. */
  build?: SnapshotBuilder;
  log: Logger;
  metrics?: Pick<AgentMetrics, "xdsPollTotal" | "xdsSnapshotVersion">;
  /** The VPS id known now. */
  vpsId: () => string | undefined;
  /** Resolves once a VPS id is known. */
  vpsIdReady: Promise<string>;
  intervalMs: number;
  signal: AbortSignal;
  /** Minimum time between two auto-registrations of the same node id (default 30 s). */
  registerRetryMs?: number;
  /** Route fetches in flight at once (default {@linkcode DEFAULT_FETCH_CONCURRENCY}). */
  fetchConcurrency?: number;
}

/** What a node's snapshot was built from; persisted as is. */
interface NodeSource {
  /** The API row id (`envoy_nodes.id`). */
  id: string;
  version: string;
  routes: EnvoyRoute[];
}

/**
 * The fields persisted, for the node and for each of its routes: what the builders read, plus the
 * route id (it orders ties). The rest is known without storing it a thousand times: a kept route
 * belongs to its node and is active and dynamic.
 */
export const PERSISTED_FIELDS: readonly string[] = [
  "id",
  "version",
  "routes",
  "name",
  "listen_port",
  "backend_host",
  "backend_port",
  "cluster_type",
  "connect_timeout_secs",
  "proxy_protocol",
];

/**
 * What the poller keeps of a node once its snapshot is built: no route objects and, once written,
 * not even its JSON. The fingerprints of the routes behind the snapshot's resources are enough to
 * reuse those resources when the node changes again, and the node's persisted JSON is a range of
 * the snapshot file the poller holds open, copied from there into each new file. Only a node
 * installed since the last durable write holds its JSON (`pending`).
 */
interface KnownNode {
  /** The API row id. */
  id: string;
  version: string;
  /** `,fp,fp,...,`: {@linkcode routeFingerprint} of each route whose resources are in the snapshot. */
  fingerprints: string;
  /** The node's persisted JSON, until a durable write has put it in the file. */
  pending: string | undefined;
  /** Where the node's entry (`"<node id>":{...}`) is in the held file: byte offset and length. */
  at: number;
  len: number;
}

/** A route's persisted JSON: the fields of {@linkcode PERSISTED_FIELDS}, in that order. */
function persistedText(route: EnvoyRoute): string {
  return JSON.stringify(route, PERSISTED_FIELDS as string[]);
}

/**
 * A 64-bit fingerprint of a route's persisted JSON, as text: two independent 32-bit lanes
 * (FNV-1a and a multiply-xorshift), each finished with an avalanche. It stands for the text in the
 * reuse lookup; as the text holds the route's name, two routes of one node with equal
 * fingerprints are the same route.
 *
 * @example
 * ```ts
 * routeFingerprint('{"id":"r1","name":"web"}') === routeFingerprint('{"id":"r1","name":"web"}'); // true
 * ```
 */
export function routeFingerprint(text: string): string {
  let a = 0x811c9dc5, b = 0x9e3779b9;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  a ^= a >>> 13;
  b = Math.imul(b ^ (b >>> 16), 0xc2b2ae35);
  b ^= b >>> 16;
  return `${(a >>> 0).toString(36)}.${(b >>> 0).toString(36)}`;
}

/** Thrown when the held snapshot file no longer has a node's bytes where they were written. */
class SnapshotFileChanged extends Error {}

/** Bytes copied per read from the held snapshot file into the next one. */
const COPY_CHUNK_BYTES = 64 * 1024;

/** The persisted file. */
interface SnapshotFile {
  format: 1;
  saved_at: string;
  nodes: Record<string, NodeSource>;
}

/** How the last poll went. */
export interface PollStatus {
  at: string;
  result: "success" | "failure";
  error?: string;
  nodes: number;
  rebuilt: number;
  dropped: number;
}

/** API errors that mean "the API as a whole is unwell": stop this poll instead of trying every node. */
function isApiWide(e: unknown): boolean {
  return e instanceof ApiError && ["network", "timeout", "rate_limited", "server"].includes(e.kind);
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Polls sigma-api into the cache, persists it, auto-registers unknown nodes. */
export class SnapshotPoller {
  readonly #o: PollerOptions;
  readonly #sources = new Map<string, KnownNode>();
  readonly #registering = new Set<string>();
  readonly #lastAttempt = new Map<string, number>();
  #wake = new AbortController();
  #again = false;
  #lastPoll: PollStatus | undefined;
  #polling: Promise<PollStatus> | undefined;
  readonly #pollFailure: RepeatedFailure;
  /** The longest `Retry-After` of the current poll's 429s, ms (0: none). */
  #retryAfterMs = 0;
  /** The snapshot file last written, open for reading (the unchanged nodes' JSON is in it). */
  #file: Deno.FsFile | undefined;
  /** Nodes were loaded from a file that is not held: the next poll writes the file, changed or not. */
  #unsaved = false;

  constructor(opts: PollerOptions) {
    this.#o = opts;
    this.#pollFailure = new RepeatedFailure(opts.log, "xds: poll");
  }

  /** The last poll's outcome (for `/status`). */
  get lastPoll(): PollStatus | undefined {
    return this.#lastPoll;
  }

  /**
   * Loads the persisted snapshots into the cache. A missing file loads nothing; a damaged one is
   * logged and ignored.
   *
   * @returns the number of nodes loaded
   */
  async load(): Promise<number> {
    let file: SnapshotFile | undefined;
    try {
      file = await this.#o.store.read<SnapshotFile>(SNAPSHOT_FILE);
    } catch (e) {
      this.#o.log.warn("xds: ignoring unreadable persisted snapshots", {
        file: SNAPSHOT_FILE,
        error: describe(e),
      });
      return 0;
    }
    if (
      !file || typeof file !== "object" || typeof file.nodes !== "object" || file.nodes === null
    ) return 0;
    let loaded = 0;
    for (const [nodeId, src] of Object.entries(file.nodes)) {
      if (!src || typeof src.version !== "string" || !Array.isArray(src.routes)) continue;
      try {
        const id = String(src.id ?? "");
        this.#install(nodeId, {
          id,
          version: src.version,
          // What is not persisted (see PERSISTED_FIELDS); a file from before keeps its own.
          routes: src.routes.map((r: Partial<EnvoyRoute>) =>
            ({ envoy_node_id: id, source: "dynamic", status: "active", ...r }) as EnvoyRoute
          ),
        });
        loaded++;
      } catch (e) {
        this.#o.log.warn("xds: ignoring a persisted snapshot", {
          node_id: nodeId,
          error: describe(e),
        });
      }
    }
    if (loaded > 0) this.#o.log.info("xds: loaded persisted snapshots", { nodes: loaded });
    this.#unsaved = loaded > 0;
    return loaded;
  }

  /**
   * Polls the API once (never two at a time: a call during a poll returns that poll's result).
   * Never throws; the outcome is returned and kept in {@linkcode SnapshotPoller.lastPoll}.
   */
  pollOnce(): Promise<PollStatus> {
    this.#polling ??= this.#poll().finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  async #poll(): Promise<PollStatus> {
    const o = this.#o;
    const vpsId = o.vpsId();
    const status: PollStatus = {
      at: new Date().toISOString(),
      result: "success",
      nodes: 0,
      rebuilt: 0,
      dropped: 0,
    };
    const errors: string[] = [];
    try {
      if (!vpsId) throw new Error("VPS id not known yet");
      const nodes = await o.api.listEnvoyNodes({ vps_id: vpsId, status: "active" });
      const listed = new Set<string>();
      const changed: EnvoyNode[] = [];
      for (const node of nodes) {
        if (node.status !== "active" || listed.has(node.node_id)) continue;
        listed.add(node.node_id);
        const known = this.#sources.get(node.node_id);
        if (
          known && known.version === String(node.config_version) && known.id === node.id &&
          o.cache.get(node.node_id)
        ) continue;
        changed.push(node);
      }
      await this.#fetchChanged(changed, status, errors);
      if (!o.signal.aborted) {
        for (const nodeId of [...this.#sources.keys()]) {
          if (listed.has(nodeId)) continue;
          this.#sources.delete(nodeId);
          o.cache.delete(nodeId);
          o.metrics?.xdsSnapshotVersion.remove({ node_id: nodeId });
          o.log.info("xds: node no longer listed, snapshot dropped", { node_id: nodeId });
          status.dropped++;
        }
      }
      status.nodes = listed.size;
    } catch (e) {
      if (e instanceof ApiError && e.kind === "rate_limited") {
        this.#retryAfterMs = Math.max(this.#retryAfterMs, e.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS);
      }
      errors.unshift(describe(e));
    } finally {
      if (status.rebuilt > 0 || status.dropped > 0 || this.#unsaved) await this.#persist();
    }
    if (errors.length > 0) {
      status.result = "failure";
      status.error = errors.join("; ");
      this.#pollFailure.fail("xds: poll failed; serving the last snapshots, polling again", {
        error: status.error,
        rebuilt: status.rebuilt,
        next: `retry in ${o.intervalMs / 1000} s`,
      });
    } else this.#pollFailure.ok({ nodes: status.nodes });
    o.metrics?.xdsPollTotal.inc({ result: status.result });
    this.#lastPoll = status;
    return status;
  }

  /**
   * Fetches the routes of `changed` nodes, {@linkcode PollerOptions.fetchConcurrency} at a time,
   * installing each as it arrives. An API-wide error stops every worker and is thrown; a 429
   * pauses them all (see the module doc).
   */
  async #fetchChanged(changed: EnvoyNode[], status: PollStatus, errors: string[]): Promise<void> {
    const o = this.#o;
    let next = 0;
    let fatal: unknown;
    let resumeAt = 0;
    let rateLimited = 0;
    const worker = async () => {
      while (fatal === undefined && !o.signal.aborted && next < changed.length) {
        const node = changed[next++];
        let routes: EnvoyRoute[] | undefined;
        while (routes === undefined && fatal === undefined && !o.signal.aborted) {
          const wait = resumeAt - Date.now();
          if (wait > 0) await sleep(wait, o.signal);
          if (fatal !== undefined || o.signal.aborted) return;
          try {
            routes = await o.api.listEnvoyRoutes({
              envoy_node_id: node.id,
              status: "active",
              source: "dynamic",
            });
          } catch (e) {
            if (e instanceof ApiError && e.kind === "rate_limited") {
              const pause = e.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
              this.#retryAfterMs = Math.max(this.#retryAfterMs, pause);
              // The 429s of requests that were in flight together are one pause, not several.
              const fresh = Date.now() >= resumeAt;
              if ((fresh && ++rateLimited > MAX_RATE_LIMITED_RETRIES) || pause > o.intervalMs) {
                fatal ??= e;
                return;
              }
              // Back off together: every worker waits for the same moment.
              resumeAt = Math.max(resumeAt, Date.now() + pause);
              continue;
            }
            if (isApiWide(e)) {
              fatal ??= e;
              return;
            }
            errors.push(`node ${node.node_id}: ${describe(e)}`);
            break;
          }
        }
        if (routes === undefined || o.signal.aborted) continue;
        // The API filters already; a defensive second filter costs nothing.
        const kept = routes.filter((r) => r.status === "active" && r.source === "dynamic");
        this.#install(node.node_id, {
          id: node.id,
          version: String(node.config_version),
          routes: kept,
        });
        status.rebuilt++;
      }
    };
    const n = Math.max(
      1,
      Math.min(o.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY, changed.length),
    );
    await Promise.all(Array.from({ length: n }, worker));
    if (fatal !== undefined) throw fatal;
  }

  /**
   * The resources of the node's current snapshot for routes that did not change since it was
   * built, so only changed routes are encoded again. A route is unchanged when its fingerprint
   * (of its persisted JSON: its id and every field the builders read) is among those of the routes
   * the snapshot's resources were built from; a route skipped for a duplicate name is not among
   * them, so it never borrows the resources of the route that won the name.
   */
  #reuse(nodeId: string, printOf: (route: EnvoyRoute) => string): ReuseBuilt | undefined {
    const known = this.#sources.get(nodeId);
    const snap = this.#o.cache.get(nodeId);
    if (!known || !snap) return undefined;
    const kept = known.fingerprints;
    return (route) => {
      if (!kept.includes(`,${printOf(route)},`)) return undefined;
      const cluster = snap.resources.cds.get(clusterName(route.name));
      const listener = snap.resources.lds.get(listenerName(route.name));
      return cluster && listener ? [cluster, listener] : undefined;
    };
  }

  /** Builds and installs one node's snapshot (wakes its streams). */
  #install(nodeId: string, src: NodeSource): void {
    // Each route's persisted JSON, made once: the node's JSON is made of it, and the reuse lookup
    // and the kept fingerprints are taken from it (the same text as JSON.stringify(src,
    // PERSISTED_FIELDS)).
    const texts = src.routes.map(persistedText);
    const prints = texts.map(routeFingerprint);
    const printOf = new Map(src.routes.map((r, i) => [r, prints[i]]));
    const built = this.#o.build ? this.#o.build(src.routes) : buildResources(
      src.routes,
      this.#reuse(
        nodeId,
        (r) => printOf.get(r) ?? routeFingerprint(persistedText(r)),
      ),
    );
    for (const s of built.skipped) {
      this.#o.log.warn("xds: route skipped", {
        node_id: nodeId,
        route: s.route.name,
        reason: s.reason,
      });
    }
    this.#o.cache.set(snapshotInput(nodeId, src.version, built));
    const skipped = built.skipped.length > 0 ? new Set(built.skipped.map((s) => s.route)) : null;
    // One join makes one flat string; `+=` or a template would keep a chain of pieces per node.
    const used = skipped ? prints.filter((_, i) => !skipped.has(src.routes[i])) : prints;
    const fingerprints = ["", ...used, ""].join(",");
    this.#sources.set(nodeId, {
      id: src.id,
      version: src.version,
      fingerprints,
      pending: `{"id":${JSON.stringify(src.id)},"version":${
        JSON.stringify(src.version)
      },"routes":[${texts.join(",")}]}`,
      at: 0,
      len: 0,
    });
    const v = Number(src.version);
    if (Number.isFinite(v)) this.#o.metrics?.xdsSnapshotVersion.set({ node_id: nodeId }, v);
  }

  /**
   * The one durable write of a poll. The new file is assembled from the nodes installed since
   * the last write and, for every other node, its bytes in the held file; the new file is held
   * in its place once it is safely written. When the held file no longer has those bytes
   * (something else truncated or rewrote it), every node written there is fetched again, which
   * puts its JSON back in memory for the next write; the snapshots served are not touched.
   */
  async #persist(): Promise<void> {
    const entries = [...this.#sources.values()];
    const ids = [...this.#sources.keys()];
    const placed = new Array<number>(entries.length * 2);
    const written = { bytes: 0 };
    try {
      const file = await this.#o.store.writePartsAndOpen(
        SNAPSHOT_FILE,
        this.#document(ids, entries, placed, written),
        written,
      );
      this.#file?.close();
      this.#file = file;
      for (let i = 0; i < entries.length; i++) {
        const known = entries[i];
        known.at = placed[2 * i];
        known.len = placed[2 * i + 1];
        known.pending = undefined;
      }
      this.#unsaved = false;
    } catch (e) {
      if (e instanceof SnapshotFileChanged) {
        for (const known of entries) if (known.pending === undefined) known.version = "";
        this.requestPoll();
      }
      this.#o.log.warn("xds: could not persist snapshots", {
        file: SNAPSHOT_FILE,
        error: describe(e),
        ...(e instanceof SnapshotFileChanged
          ? { next: "fetching every node again to rewrite it" }
          : {}),
      });
    }
  }

  /**
   * The persisted document in pieces (text, and byte ranges of the held file): the same text as
   * JSON.stringify({ format, saved_at, nodes }). Each node's entry is placed in `placed` (byte
   * offset, length). Entries that lie one comma apart in the held file, as unchanged neighbours
   * do, are copied in one run.
   */
  async *#document(
    ids: string[],
    entries: KnownNode[],
    placed: number[],
    written: { bytes: number },
  ): AsyncGenerator<string | Uint8Array> {
    // The writer counts the bytes of each part before asking for the next: `written.bytes` is
    // where the next part lands. Text goes out as text (the writer encodes it into its buffer).
    yield `{"format":1,"saved_at":${JSON.stringify(new Date().toISOString())},"nodes":{`;
    let chunk: Uint8Array | undefined;
    for (let i = 0; i < entries.length;) {
      if (i > 0) yield ",";
      const first = entries[i];
      const pos = written.bytes;
      placed[2 * i] = pos;
      if (first.pending !== undefined) {
        yield `${JSON.stringify(ids[i])}:`;
        yield first.pending;
        placed[2 * i + 1] = written.bytes - pos;
        i++;
        continue;
      }
      let end = first.at + first.len;
      placed[2 * i + 1] = first.len;
      let j = i + 1;
      for (; j < entries.length; j++) {
        const next = entries[j];
        if (next.pending !== undefined || next.at !== end + 1) break;
        placed[2 * j] = pos + (next.at - first.at);
        placed[2 * j + 1] = next.len;
        end = next.at + next.len;
      }
      chunk ??= new Uint8Array(COPY_CHUNK_BYTES);
      yield* this.#copy(first.at, end, chunk);
      i = j;
    }
    yield "}}";
  }

  /** Bytes `start`..`end` of the held file, through `chunk` (each piece is used before the next read). */
  async *#copy(start: number, end: number, chunk: Uint8Array): AsyncGenerator<Uint8Array> {
    const file = this.#file;
    if (!file) throw new SnapshotFileChanged("the snapshot file is not open");
    await file.seek(start, Deno.SeekMode.Start);
    for (let left = end - start; left > 0;) {
      const n = await file.read(chunk.subarray(0, Math.min(chunk.length, left)));
      if (n === null) {
        throw new SnapshotFileChanged(
          `${SNAPSHOT_FILE} ends before byte ${end}: it was changed by something else`,
        );
      }
      left -= n;
      yield chunk.subarray(0, n);
    }
  }

  /** Closes the held snapshot file (after the poll in progress, if any). */
  async close(): Promise<void> {
    await this.#polling?.catch(() => {});
    this.#file?.close();
    this.#file = undefined;
  }

  /**
   * Polls every interval (with jitter) until the signal aborts, starting once a VPS id is known.
   * A rate-limited poll waits at least the API's `Retry-After`.
   */
  async run(): Promise<void> {
    const o = this.#o;
    if (!o.vpsId() && (await raceAbort(o.vpsIdReady, o.signal)) === undefined) return;
    let followUp = false;
    while (!o.signal.aborted) {
      this.#again = false;
      this.#retryAfterMs = 0;
      const status = await this.pollOnce();
      const retryAfter = this.#retryAfterMs;
      if (retryAfter > 0 && this.#lastPoll?.result === "failure") {
        // Rate-limited: nothing, not even a requested poll, goes out before the API allows it.
        await sleep(Math.max(retryAfter, jittered(o.intervalMs, 0.1)), o.signal);
        continue;
      }
      // Changes made while the node pages were being read are seen only on the pages read after
      // them: nodes on earlier pages still showed their old version. One more poll shortly after
      // (not a chain of them) catches those instead of leaving them for the next interval; the
      // short wait lets this poll's pushes go out first.
      if (status.rebuilt > 0 && !followUp) {
        followUp = true;
        await sleep(Math.min(FOLLOW_UP_DELAY_MS, o.intervalMs), o.signal);
        continue;
      }
      followUp = false;
      if (this.#again) continue;
      const wake = this.#wake = new AbortController();
      await sleep(jittered(o.intervalMs, 0.1), AbortSignal.any([o.signal, wake.signal]));
    }
  }

  /** Makes the loop poll now (or right after the poll in progress). */
  requestPoll(): void {
    this.#again = true;
    this.#wake.abort();
  }

  /**
   * A stream asked for `nodeId`, which has no snapshot: register it with the API (at most once per
   * `registerRetryMs`), then poll. Returns at once; the work runs in the background.
   */
  ensureNode(nodeId: string): void {
    const o = this.#o;
    if (o.cache.get(nodeId) || this.#registering.has(nodeId) || o.signal.aborted) return;
    const now = Date.now();
    const last = this.#lastAttempt.get(nodeId);
    if (last !== undefined && now - last < (o.registerRetryMs ?? 30_000)) return;
    if (this.#lastAttempt.size > 10_000) this.#lastAttempt.clear();
    this.#lastAttempt.set(nodeId, now);
    this.#registering.add(nodeId);
    this.#register(nodeId)
      .catch((e) =>
        o.log.warn("xds: auto-registration failed; retried when the node connects again", {
          node_id: nodeId,
          error: describe(e),
          next: `retry after ${(o.registerRetryMs ?? 30_000) / 1000} s`,
        })
      )
      .finally(() => this.#registering.delete(nodeId));
  }

  async #register(nodeId: string): Promise<void> {
    const o = this.#o;
    const vpsId = o.vpsId() ?? (await raceAbort(o.vpsIdReady, o.signal));
    if (vpsId === undefined || o.cache.get(nodeId)) return;
    try {
      await o.api.createEnvoyNode({
        vps_id: vpsId,
        node_id: nodeId,
        description: AUTO_REGISTER_DESCRIPTION,
      });
      o.log.info("xds: auto-registered envoy node", { node_id: nodeId });
    } catch (e) {
      // The API answers a duplicate (vps_id, node_id) with 500 "Database error" (409 if fixed).
      if (!(e instanceof ApiError) || (e.status !== 500 && e.status !== 409)) throw e;
      const all = await o.api.listEnvoyNodes({ vps_id: vpsId });
      const row = all.find((n) => n.node_id === nodeId);
      if (!row) throw e;
      if (row.status !== "active") {
        o.log.warn("xds: envoy node exists but is not active; nothing to serve", {
          node_id: nodeId,
          status: row.status,
        });
        return;
      }
      o.log.info("xds: envoy node already registered", { node_id: nodeId });
    }
    this.requestPoll();
  }
}
