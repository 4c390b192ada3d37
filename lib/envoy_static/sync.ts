/**
 * The sync loop of one Envoy config file: read -> hash -> parse -> find or create the file's Envoy
 * node -> `POST /envoy-routes/sync-static` (contract §A3, §A4, §A6).
 *
 * Rules it keeps:
 * - **Sync at start, then on content change.** A file watcher on the file's directory wakes the
 *   loop early; the poll interval is the fallback. Changes are detected by a SHA-256 of the
 *   content, so a `touch` sends nothing and two edits within one second are both seen.
 * - **Never lose data.** A missing, unreadable, non-UTF-8, invalid or empty file is an error that
 *   names the file (and line); the last good routes stay the desired state and nothing is sent -
 *   above all never an empty list, which the API reads as "delete every static route".
 * - **Retry until it sticks.** A failed POST is retried with {@linkcode Backoff} even if the file
 *   never changes again.
 * - **Node lookup over all pages, any status.** A disabled node with this file's id is an error
 *   reported in the status and retried each interval; it never ends the loop.
 *
 * @example
 * ```ts
 * import { StaticFileSync } from "./sync.ts";
 * const ac = new AbortController();
 * const sync = new StaticFileSync({
 *   path: "/etc/envoy/envoy.yaml", nodeId: "static-myhost", api, vpsId: ctx.vpsIdReady,
 *   log, metrics, intervalMs: 60_000, signal: ac.signal,
 * });
 * const done = sync.run();
 * sync.status(); // { path, node_id, last_sync_at, last_sync_result, routes, last_error, ... }
 * ac.abort();
 * await done;
 * ```
 *
 * @module
 */

import { ApiError, type SigmaClient } from "../api/client.ts";
import type { EnvoyNode, StaticRouteEntry } from "../api/types.ts";
import { type Logger, RepeatedFailure } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import { Backoff, jittered, sleep } from "../core/schedule.ts";
import { EnvoyConfigError, parseEnvoyConfig } from "./parser.ts";
import { baseName, dirName } from "./paths.ts";

/** Description the API shows for nodes this loop creates. */
export const NODE_DESCRIPTION = "Auto-registered for static config sync";

/** Files larger than this are refused (an Envoy bootstrap is kilobytes). */
export const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;

/** `result` label values of `sigma_static_sync_total`. */
export type SyncResult = "ok" | "api_error" | "node_error" | "read_error" | "parse_error";

/** The slice of {@linkcode SigmaClient} the loop uses. */
export type StaticSyncApi = Pick<
  SigmaClient,
  "listEnvoyNodes" | "createEnvoyNode" | "syncStaticRoutes"
>;

/** Options of {@linkcode StaticFileSync}. */
export interface FileSyncOptions {
  /** The Envoy config file. */
  path: string;
  /** Envoy node id the routes belong to (see `staticNodeId`). */
  nodeId: string;
  api: StaticSyncApi;
  /** Resolves with this VPS's id; nothing is sent to the API before. */
  vpsId: Promise<string>;
  log: Logger;
  metrics?: Pick<AgentMetrics, "staticSyncTotal" | "staticRoutes">;
  /** Poll interval (the fallback when no file event arrives), ms. */
  intervalMs: number;
  signal: AbortSignal;
  /** Watch the file's directory for changes (default true). */
  watch?: boolean;
  /**
   * Quiet time after a file event before reading, and between the two reads that must agree
   * before new content is used (default 250 ms).
   */
  debounceMs?: number;
  /** First retry ceiling after a failed POST (default 1000 ms). */
  retryBaseMs?: number;
  /** Largest retry ceiling (default 60 000 ms). */
  retryCapMs?: number;
  maxFileBytes?: number;
  /** Alias budget of the YAML parser. */
  maxAliasCount?: number;
}

/** What `/status` shows for one file. */
export interface FileSyncStatus {
  path: string;
  node_id: string;
  /** UUID of the Envoy node row once found or created. */
  envoy_node_id: string | null;
  /** Time of the last successful POST (RFC 3339). */
  last_sync_at: string | null;
  /** Result of the last attempt (read, parse or POST). */
  last_result: SyncResult | null;
  last_attempt_at: string | null;
  /** Routes in the last good parse of the file. */
  routes: number;
  /** Routes the API accepted in the last successful POST. */
  synced_routes: number | null;
  /** True while the last good parse has not reached the API yet. */
  pending: boolean;
  skipped_listeners: number;
  warnings: string[];
  /** The problem right now (`null` when all is well): the file's, else the API's. */
  error: string | null;
  /** The most recent problem ever met, and when. */
  last_error: string | null;
  last_error_at: string | null;
  /** Whether a file watcher is active (else only polling). */
  watching: boolean;
  waiting_for_vps_id: boolean;
}

/** A node that exists but is not `active`: syncing to it would hide routes from the operator's intent. */
export class NodeDisabledError extends Error {
  override name = "NodeDisabledError";
}

interface DesiredState {
  routes: StaticRouteEntry[];
  /** Canonical JSON of `routes`, to compare with what was last synced. */
  key: string;
}

/** Wakes a sleeping loop early (file event, VPS id known). */
class Wake {
  #pending = false;
  #abort: (() => void) | undefined;

  fire(): void {
    this.#pending = true;
    this.#abort?.();
  }

  /** Sleeps `ms` or until fired; returns true when fired. */
  async wait(ms: number, signal: AbortSignal): Promise<boolean> {
    if (!this.#pending) {
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#abort = onAbort;
      try {
        await sleep(ms, ac.signal);
      } finally {
        this.#abort = undefined;
        signal.removeEventListener("abort", onAbort);
      }
    }
    const fired = this.#pending;
    this.#pending = false;
    return fired;
  }

  /** True (and cleared) if fired since the last check. */
  take(): boolean {
    const fired = this.#pending;
    this.#pending = false;
    return fired;
  }
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Line (1-based) of the first byte sequence that is not UTF-8. */
function firstInvalidUtf8Line(bytes: Uint8Array): number {
  const text = new TextDecoder().decode(bytes);
  const bad = text.indexOf("\uFFFD");
  return bad < 0 ? 1 : text.slice(0, bad).split("\n").length;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One file's sync loop. Create it, call {@linkcode StaticFileSync.run}, abort the signal to stop. */
export class StaticFileSync {
  readonly path: string;
  readonly nodeId: string;
  readonly #o: FileSyncOptions;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #wake = new Wake();
  readonly #fileFailure: RepeatedFailure;
  readonly #apiFailure: RepeatedFailure;
  #vpsId: string | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #watchTask: Promise<void> | undefined;
  #watchFailureLogged = false;
  #fsEvent = false;

  /** Hash of the content last parsed (good or bad), so unchanged bytes are not re-parsed. */
  #seenHash: string | undefined;
  /** The parse error of the content with `#seenHash` (`undefined` when it parsed fine). */
  #seenHashError: string | undefined;
  /** Current problem with the file (read/parse) and with the API; `status.error` shows either. */
  #fileError: string | undefined;
  #apiError: string | undefined;
  #desired: DesiredState | undefined;
  #syncedKey: string | undefined;
  #status: FileSyncStatus;

  constructor(opts: FileSyncOptions) {
    this.#o = opts;
    this.path = opts.path;
    this.nodeId = opts.nodeId;
    this.#log = opts.log.child({ file: opts.path, node_id: opts.nodeId });
    this.#fileFailure = new RepeatedFailure(this.#log, "reading the envoy config");
    this.#apiFailure = new RepeatedFailure(this.#log, "static sync to sigma-api");
    this.#backoff = new Backoff({
      baseMs: opts.retryBaseMs ?? 1000,
      capMs: opts.retryCapMs ?? 60_000,
    });
    this.#status = {
      path: opts.path,
      node_id: opts.nodeId,
      envoy_node_id: null,
      last_sync_at: null,
      last_result: null,
      last_attempt_at: null,
      routes: 0,
      synced_routes: null,
      pending: false,
      skipped_listeners: 0,
      warnings: [],
      error: null,
      last_error: null,
      last_error_at: null,
      watching: false,
      waiting_for_vps_id: true,
    };
    opts.vpsId.then((id) => {
      this.#vpsId = id;
      this.#status.waiting_for_vps_id = false;
      this.#wake.fire();
    }, () => {});
  }

  /** A copy of the current status for `/status`. */
  status(): FileSyncStatus {
    return {
      ...this.#status,
      error: this.#fileError ?? this.#apiError ?? null,
      warnings: [...this.#status.warnings],
      watching: this.#watcher !== undefined,
    };
  }

  /** Runs until the signal aborts. Never throws. */
  async run(): Promise<void> {
    const signal = this.#o.signal;
    const stopWatch = () => this.#watcher?.close();
    signal.addEventListener("abort", stopWatch, { once: true });
    try {
      while (!signal.aborted) {
        this.#startWatcher();
        let delay: number;
        try {
          delay = await this.tick();
        } catch (e) {
          // Defensive: tick handles its own errors; an escape must not end the loop.
          this.#fail("api", "api_error", `unexpected error: ${message(e)}`);
          delay = this.#backoff.next();
        }
        if (signal.aborted) break;
        const fired = await this.#wake.wait(delay, signal);
        if (fired && this.#fsEvent) await this.#settle(signal);
      }
    } finally {
      signal.removeEventListener("abort", stopWatch);
      this.#watcher?.close();
      await this.#watchTask;
    }
  }

  /** After a file event: wait until events stop for `debounceMs` (bounded), so one edit is one read. */
  async #settle(signal: AbortSignal): Promise<void> {
    const quiet = this.#o.debounceMs ?? 250;
    for (let i = 0; i < 20 && !signal.aborted; i++) {
      this.#fsEvent = false;
      await sleep(quiet, signal);
      if (!this.#wake.take()) return;
    }
  }

  /**
   * One pass: read and parse the file if its content changed, then POST the desired routes if
   * they differ from what the API last accepted. Returns the delay before the next pass.
   */
  async tick(): Promise<number> {
    const now = new Date().toISOString();
    this.#status.last_attempt_at = now;
    await this.#refreshFromFile();
    const interval = jittered(this.#o.intervalMs, 0.1);
    const desired = this.#desired;
    this.#status.pending = desired !== undefined && desired.key !== this.#syncedKey;
    if (!desired || desired.key === this.#syncedKey) return interval;
    if (this.#vpsId === undefined) return interval; // woken when the id is known
    try {
      const envoyNodeId = await this.#ensureNode(this.#vpsId);
      const res = await this.#o.api.syncStaticRoutes(envoyNodeId, desired.routes);
      this.#syncedKey = desired.key;
      this.#backoff.reset();
      this.#status.pending = false;
      this.#status.last_sync_at = new Date().toISOString();
      this.#status.synced_routes = desired.routes.length;
      this.#status.last_result = "ok";
      this.#apiError = undefined;
      this.#apiFailure.ok({ envoy_node_id: envoyNodeId });
      this.#o.metrics?.staticSyncTotal.inc({ node_id: this.nodeId, result: "ok" });
      this.#o.metrics?.staticRoutes.set({ node_id: this.nodeId }, desired.routes.length);
      this.#log.info("static routes synced", {
        envoy_node_id: envoyNodeId,
        routes: desired.routes.length,
        upserted: res.upserted,
        deleted: res.deleted,
      });
      return interval;
    } catch (e) {
      if (e instanceof NodeDisabledError) {
        this.#fail("api", "node_error", e.message);
        return interval; // an operator has to act; look again next interval
      }
      if (
        e instanceof ApiError && e.kind === "client" &&
        /Envoy node .* not found/.test(e.apiMessage ?? "")
      ) {
        this.#status.envoy_node_id = null; // deleted meanwhile: the next attempt creates it again
      }
      this.#fail(
        "api",
        "api_error",
        `sync to sigma-api failed: ${
          message(e)
        }; keeping the last good routes, retrying with backoff`,
      );
      const retryAfter = e instanceof ApiError ? e.retryAfterMs ?? 0 : 0;
      return Math.max(this.#backoff.next(), retryAfter);
    }
  }

  /** Reads the file; on a new content hash parses it and, if good, makes it the desired state. */
  async #refreshFromFile(): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = await this.#read();
    } catch (e) {
      this.#fail("file", "read_error", message(e));
      return;
    }
    let hash = await sha256Hex(bytes);
    if (hash === this.#seenHash) {
      this.#fileError = this.#seenHashError; // e.g. the file is back after being missing
      if (this.#fileError === undefined) this.#fileFailure.ok();
      return;
    }
    // New content: read again after a quiet moment and use it only once two reads agree, so a
    // file caught mid-write (a valid YAML prefix with fewer listeners) is not synced.
    for (let i = 0; i < 10; i++) {
      if (!(await sleep(this.#o.debounceMs ?? 250, this.#o.signal))) return;
      try {
        const again = await this.#read();
        const againHash = await sha256Hex(again);
        if (againHash === hash) break;
        bytes = again;
        hash = againHash;
      } catch (e) {
        this.#fail("file", "read_error", message(e));
        return;
      }
    }
    this.#seenHash = hash;
    this.#seenHashError = undefined;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      this.#seenHashError = `${this.path}:${firstInvalidUtf8Line(bytes)}: not valid UTF-8 text`;
      this.#fail("file", "parse_error", this.#seenHashError);
      return;
    }
    try {
      const parsed = parseEnvoyConfig(text, {
        source: this.path,
        maxAliasCount: this.#o.maxAliasCount,
      });
      if (!parsed.isBootstrap) {
        throw new EnvoyConfigError(
          `${this.path}:1: file is empty or not an Envoy bootstrap (top level is not a mapping); keeping the last good routes`,
          1,
        );
      }
      for (const w of parsed.warnings) this.#log.warn(`${this.path}: ${w}`);
      const key = JSON.stringify(parsed.routes);
      this.#desired = { routes: parsed.routes, key };
      this.#status.routes = parsed.routes.length;
      this.#status.skipped_listeners = parsed.skippedListeners;
      this.#status.warnings = parsed.warnings;
      this.#fileError = undefined;
      this.#fileFailure.ok();
      this.#log.info("parsed envoy config", {
        routes: parsed.routes.length,
        skipped_listeners: parsed.skippedListeners,
        warnings: parsed.warnings.length,
        changed: key !== this.#syncedKey,
      });
    } catch (e) {
      const msg = e instanceof EnvoyConfigError
        ? e.message
        : `${this.path}: cannot parse: ${message(e)}`;
      this.#seenHashError = msg;
      this.#fail("file", "parse_error", msg);
    }
  }

  async #read(): Promise<Uint8Array> {
    const max = this.#o.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    try {
      const info = await Deno.stat(this.path);
      if (!info.isFile) throw new Error(`${this.path}: not a regular file`);
      if (info.size > max) {
        throw new Error(`${this.path}: file is larger than ${max} bytes; refusing to read it`);
      }
      const bytes = await Deno.readFile(this.path);
      if (bytes.length > max) {
        throw new Error(`${this.path}: file is larger than ${max} bytes; refusing to read it`);
      }
      return bytes;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(`${this.path}: file not found; keeping the last good routes`);
      }
      if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
        throw new Error(
          `${this.path}: permission denied (${
            message(e)
          }); the agent reads only the paths granted by ` +
            `--allow-read (deploy/permissions.flags)`,
        );
      }
      if (e instanceof Error && e.message.startsWith(this.path)) throw e;
      throw new Error(`${this.path}: cannot read: ${message(e)}`);
    }
  }

  /** Finds this file's node among all nodes of the VPS (every page, any status), or creates it. */
  async #ensureNode(vpsId: string): Promise<string> {
    let node = await this.#findNode(vpsId);
    if (!node) {
      try {
        node = await this.#o.api.createEnvoyNode({
          vps_id: vpsId,
          node_id: this.nodeId,
          description: NODE_DESCRIPTION,
        });
        this.#log.info("created envoy node for static config sync", { envoy_node_id: node.id });
      } catch (e) {
        // The API answers a duplicate (vps_id, node_id) with 500 "Database error": someone
        // created it meanwhile (or it is there with a status we did not expect). Look again.
        if (!(e instanceof ApiError && e.status === 500)) throw e;
        node = await this.#findNode(vpsId);
        if (!node) throw e;
      }
    }
    if (node.status !== "active") {
      throw new NodeDisabledError(
        `envoy node "${this.nodeId}" (${node.id}) exists but its status is "${node.status}"; ` +
          `static routes of ${this.path} are not synced until it is set to "active" or deleted`,
      );
    }
    this.#status.envoy_node_id = node.id;
    return node.id;
  }

  async #findNode(vpsId: string): Promise<EnvoyNode | undefined> {
    const nodes = await this.#o.api.listEnvoyNodes({ vps_id: vpsId });
    return nodes.find((n) => n.node_id === this.nodeId);
  }

  /** Records a failure; logs it at error level once per distinct message (then debug). */
  #fail(slot: "file" | "api", result: SyncResult, msg: string): void {
    const now = new Date().toISOString();
    if (slot === "file") this.#fileError = msg;
    else this.#apiError = msg;
    this.#status.last_error = msg;
    this.#status.last_error_at = now;
    this.#status.last_result = result;
    this.#o.metrics?.staticSyncTotal.inc({ node_id: this.nodeId, result });
    (slot === "file" ? this.#fileFailure : this.#apiFailure).fail(msg, { result }, "error");
  }

  /** Watches the file's directory (so rename-over writes and ConfigMap swaps are seen). */
  #startWatcher(): void {
    if (this.#o.watch === false || this.#watcher || this.#o.signal.aborted) return;
    const dir = dirName(this.path);
    const name = baseName(this.path);
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(dir, { recursive: false });
    } catch (e) {
      if (!this.#watchFailureLogged) {
        this.#watchFailureLogged = true;
        this.#log.warn(`cannot watch ${dir}; polling every ${this.#o.intervalMs / 1000}s instead`, {
          error: message(e),
        });
      }
      return;
    }
    this.#watcher = watcher;
    this.#watchTask = (async () => {
      try {
        for await (const event of watcher) {
          // Our file, or a Kubernetes ConfigMap `..data` symlink swap.
          if (event.paths.some((p) => baseName(p) === name || baseName(p).startsWith(".."))) {
            this.#fsEvent = true;
            this.#wake.fire();
          }
        }
      } catch (e) {
        this.#log.debug("file watcher ended", { error: message(e) });
      } finally {
        if (this.#watcher === watcher) this.#watcher = undefined;
        try {
          watcher.close();
        } catch {
          // already closed
        }
      }
    })();
  }
}
