/**
 * Static envoy.yaml sync to sigma-api: one {@linkcode StaticFileSync} loop per file of
 * `--envoy-config-path` (comma-separated, globs allowed, `--envoy-config-exclude` removes file
 * names), each feeding its own Envoy node (`static-<hostname>` for `envoy.yaml`,
 * `static-<hostname>-<stem>` otherwise). Globs are re-expanded every sync interval so a file
 * added later gets its loop; a file that disappears keeps its loop (and its last good routes).
 *
 * Status: `/status` section `static_sync`. Metrics: `sigma_static_sync_total{node_id,result}`,
 * `sigma_static_routes{node_id}`.
 *
 * May import: `core`, `api`. The parser (`parser.ts`) is pure: files are read by the sync loop and
 * parsed from text, so it is tested on captured envoy.yaml files.
 *
 * @example
 * ```ts
 * import { startStaticSync } from "./envoy_static/mod.ts";
 * const feature = startStaticSync(ctx); // does nothing unless ctx.config.envoyConfigSync
 * await feature.stop();
 * ```
 *
 * @module
 */
import type { AgentContext, Feature } from "../core/context.ts";
import { runPeriodic } from "../core/schedule.ts";
import { resolveConfigPaths, staticNodeId } from "./paths.ts";
import { type FileSyncStatus, StaticFileSync } from "./sync.ts";

export { parseEnvoyConfig } from "./parser.ts";
export { StaticFileSync } from "./sync.ts";

/** Tuning knobs (tests shorten the retry and debounce times). */
export interface StaticSyncOptions {
  /** Watch directories for changes (default true); polling always runs as well. */
  watch?: boolean;
  /** Quiet time after a file event, and between the two reads that must agree (default 250 ms). */
  debounceMs?: number;
  /** First retry ceiling after a failed POST (default 1000 ms). */
  retryBaseMs?: number;
  /** Largest retry ceiling (default 60 000 ms). */
  retryCapMs?: number;
}

/** Two files whose names give the same node id: only the first (in sorted order) is synced. */
interface NodeIdConflict {
  path: string;
  node_id: string;
  conflicts_with: string;
}

/**
 * Starts one sync loop per configured envoy config file (when `--envoy-config-sync` is on).
 * Loops wait for `ctx.vpsIdReady` before talking to the API and stop on `ctx.signal` or
 * `stop()`.
 *
 * @example
 * ```ts
 * const feature = startStaticSync(ctx, { retryCapMs: 5_000 });
 * ```
 */
export function startStaticSync(ctx: AgentContext, opts: StaticSyncOptions = {}): Feature {
  const cfg = ctx.config;
  if (!cfg.envoyConfigSync) {
    ctx.board.provide("static_sync", () => ({ enabled: false }));
    return { stop: () => Promise.resolve() };
  }
  const log = ctx.log.child({ component: "static_sync" });
  const intervalMs = cfg.envoyConfigSyncInterval * 1000;
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  if (ctx.signal.aborted) ac.abort();

  const loops = new Map<string, StaticFileSync>(); // by path
  const owners = new Map<string, string>(); // node id -> path
  const conflicts = new Map<string, NodeIdConflict>();
  const runs: Promise<void>[] = [];
  let lastWarnings = "";
  let lastEmpty = false;

  ctx.board.provide("static_sync", () => ({
    enabled: true,
    config_paths: cfg.envoyConfigPath,
    exclude: cfg.envoyConfigExclude ?? null,
    interval_secs: cfg.envoyConfigSyncInterval,
    files: [...loops.values()].map((l): FileSyncStatus => l.status()),
    conflicts: [...conflicts.values()],
  }));

  const rescan = async () => {
    const { files, warnings } = await resolveConfigPaths(
      cfg.envoyConfigPath,
      cfg.envoyConfigExclude,
    );
    const w = warnings.join("\n");
    if (w !== lastWarnings && w !== "") { for (const x of warnings) log.warn(x); }
    lastWarnings = w;
    if (files.length === 0 && !lastEmpty) {
      log.warn("no envoy config file matches --envoy-config-path", { paths: cfg.envoyConfigPath });
    }
    lastEmpty = files.length === 0;
    for (const path of files) {
      if (loops.has(path) || conflicts.has(path) || ac.signal.aborted) continue;
      const nodeId = staticNodeId(path, ctx.hostname);
      const owner = owners.get(nodeId);
      if (owner !== undefined) {
        // Two files on one node would delete each other's routes on every sync (contract E.13).
        conflicts.set(path, { path, node_id: nodeId, conflicts_with: owner });
        log.error(
          `${path} maps to envoy node "${nodeId}" like ${owner}; not synced (rename one of them)`,
        );
        continue;
      }
      owners.set(nodeId, path);
      const loop = new StaticFileSync({
        path,
        nodeId,
        api: ctx.api,
        vpsId: ctx.vpsIdReady,
        log,
        metrics: ctx.metrics,
        intervalMs,
        signal: ac.signal,
        watch: opts.watch,
        debounceMs: opts.debounceMs,
        retryBaseMs: opts.retryBaseMs,
        retryCapMs: opts.retryCapMs,
      });
      loops.set(path, loop);
      log.info("static config sync started", { file: path, node_id: nodeId });
      runs.push(loop.run());
    }
  };

  const scanner = runPeriodic(rescan, {
    intervalMs,
    signal: ac.signal,
    onError: (e) =>
      log.error("resolving --envoy-config-path failed", { error: (e as Error).message }),
  });

  return {
    stop: async () => {
      ac.abort();
      ctx.signal.removeEventListener("abort", onAbort);
      await scanner;
      await Promise.all(runs);
    },
  };
}
