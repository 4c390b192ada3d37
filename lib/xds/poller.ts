/**
 * Fills the {@linkcode SnapshotCache} from sigma-api and keeps it on disk.
 *
 * - Every poll interval: list this VPS's active Envoy nodes (all pages); for each node whose
 *   `config_version` changed, fetch all pages of its active dynamic routes and rebuild its
 *   snapshot; drop nodes no longer listed. Each rebuilt node is installed (and its streams woken)
 *   at once, so an error later in the same poll never loses the wake-up of earlier nodes.
 * - The routes behind every snapshot are written atomically to the state dir after each poll that
 *   changed something and loaded at start, so Envoys connecting while the API is down, or before
 *   registration succeeded, get their last configuration.
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
import type { EnvoyRoute } from "../api/types.ts";
import { type Logger, RepeatedFailure } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import { jittered, sleep } from "../core/schedule.ts";
import type { StateStore } from "../core/state_store.ts";
import { type SnapshotCache, snapshotInput } from "./cache.ts";
import { buildResources, type BuiltResources } from "./resources.ts";

/** The state-dir file holding the last good snapshot (its routes) of every node. */
export const SNAPSHOT_FILE = "xds-snapshots.json";

/** Description sent when a stream's unknown node id is registered (as the seed did). */
export const AUTO_REGISTER_DESCRIPTION = "Auto-registered by agent";

/** Route rows → serialized clusters and listeners (the resource builders of `resources.ts`). */
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
}

/** What a node's snapshot was built from; persisted as is. */
interface NodeSource {
  /** The API row id (`envoy_nodes.id`). */
  id: string;
  version: string;
  routes: EnvoyRoute[];
}

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
  readonly #sources = new Map<string, NodeSource>();
  readonly #registering = new Set<string>();
  readonly #lastAttempt = new Map<string, number>();
  #wake = new AbortController();
  #again = false;
  #lastPoll: PollStatus | undefined;
  #polling: Promise<PollStatus> | undefined;
  readonly #pollFailure: RepeatedFailure;

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
        this.#install(nodeId, {
          id: String(src.id ?? ""),
          version: src.version,
          routes: src.routes,
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
      for (const node of nodes) {
        if (o.signal.aborted) break;
        if (node.status !== "active" || listed.has(node.node_id)) continue;
        listed.add(node.node_id);
        const version = String(node.config_version);
        const known = this.#sources.get(node.node_id);
        if (
          known && known.version === version && known.id === node.id && o.cache.get(node.node_id)
        ) continue;
        let routes: EnvoyRoute[];
        try {
          routes = await o.api.listEnvoyRoutes({
            envoy_node_id: node.id,
            status: "active",
            source: "dynamic",
          });
        } catch (e) {
          if (isApiWide(e)) throw e;
          errors.push(`node ${node.node_id}: ${describe(e)}`);
          continue;
        }
        // The API filters already; a defensive second filter costs nothing.
        routes = routes.filter((r) => r.status === "active" && r.source === "dynamic");
        this.#install(node.node_id, { id: node.id, version, routes });
        status.rebuilt++;
      }
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
      errors.unshift(describe(e));
    } finally {
      if (status.rebuilt > 0 || status.dropped > 0) await this.#persist();
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

  /** Builds and installs one node's snapshot (wakes its streams). */
  #install(nodeId: string, src: NodeSource): void {
    const built = (this.#o.build ?? buildResources)(src.routes);
    for (const s of built.skipped) {
      this.#o.log.warn("xds: route skipped", {
        node_id: nodeId,
        route: s.route.name,
        reason: s.reason,
      });
    }
    this.#o.cache.set(snapshotInput(nodeId, src.version, built));
    this.#sources.set(nodeId, src);
    const v = Number(src.version);
    if (Number.isFinite(v)) this.#o.metrics?.xdsSnapshotVersion.set({ node_id: nodeId }, v);
  }

  async #persist(): Promise<void> {
    const file: SnapshotFile = {
      format: 1,
      saved_at: new Date().toISOString(),
      nodes: Object.fromEntries(this.#sources),
    };
    try {
      await this.#o.store.write(SNAPSHOT_FILE, file);
    } catch (e) {
      this.#o.log.warn("xds: could not persist snapshots", {
        file: SNAPSHOT_FILE,
        error: describe(e),
      });
    }
  }

  /**
   * Polls every interval (with jitter) until the signal aborts, starting once a VPS id is known.
   * A rate-limited poll waits at least the API's `Retry-After`.
   */
  async run(): Promise<void> {
    const o = this.#o;
    if (!o.vpsId() && (await raceAbort(o.vpsIdReady, o.signal)) === undefined) return;
    while (!o.signal.aborted) {
      this.#again = false;
      await this.pollOnce();
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
