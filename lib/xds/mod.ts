/**
 * The Envoy xDS control plane: loads the persisted snapshots, starts the gRPC server (even when
 * sigma-api is unreachable), then polls sigma-api for every Envoy node of this VPS.
 *
 * Three parts, as in go-control-plane: the snapshot cache (`cache.ts`, filled by `poller.ts`), the
 * resource builders (`resources.ts`) and the stream protocol (`protocol.ts`, served by
 * `server.ts`).
 *
 * Also here: `messages.ts` (the same resources as protobuf-es messages: the tests' reference for
 * the bytes `resources.ts` writes; the agent never loads it, nor protobuf-es), `requests.ts` and
 * `wire.ts` (decoding requests, encoding responses), the stream
 * timers (`wake_timers.ts`) and `bootstrap.ts`, the `sigma-agent envoy-bootstrap` generator of
 * the Envoy bootstraps that point at this server.
 *
 * May import: `core`, `api`, `host` (IP versions of addresses), `grpc` (the transport, which knows
 * nothing of xDS), `tls` (the certificate files of `--xds-tls-*`) and the generated Envoy protos
 * under `proto/gen/`.
 *
 * @example
 * ```ts
 * import { startXds } from "./mod.ts";
 * const feature = await startXds(ctx); // ctx: AgentContext with config.xdsEnabled
 * await feature.stop();
 * ```
 *
 * @module
 */
import type { AgentContext, Feature } from "../core/context.ts";
import { SnapshotCache } from "./cache.ts";
import { SnapshotPoller } from "./poller.ts";
import { XdsServer } from "./server.ts";

/**
 * Starts the snapshot poller and the gRPC server on `config.xdsAddr:config.xdsPort`, and
 * publishes the `xds` section of `/status`.
 *
 * @throws when the gRPC port cannot be bound
 */
export async function startXds(ctx: AgentContext): Promise<Feature & { port: number }> {
  const log = ctx.log;
  const stopping = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stopping.signal]);
  const cache = new SnapshotCache((e) =>
    log.error("xds: stream update failed", { error: (e as Error).message })
  );
  const poller = new SnapshotPoller({
    api: ctx.api,
    cache,
    store: ctx.store,
    log,
    metrics: ctx.metrics,
    vpsId: ctx.vpsId,
    vpsIdReady: ctx.vpsIdReady,
    intervalMs: ctx.config.xdsPollInterval * 1000,
    signal,
  });
  await poller.load();
  const server = new XdsServer({
    cache,
    log,
    metrics: ctx.metrics,
    onUnknownNode: (nodeId) => poller.ensureNode(nodeId),
  });
  const tls = ctx.xdsTls;
  const port = await server.listen(ctx.config.xdsAddr, ctx.config.xdsPort, tls);
  log.info("xds: serving ADS", {
    address: ctx.config.xdsAddr,
    port,
    nodes: cache.size,
    tls: tls ? (tls.paths.clientAuth === "require" ? "mtls" : "tls") : "off",
  });
  const loop = poller.run().catch((e) =>
    log.error("xds: poll loop ended", { error: (e as Error).message })
  );
  ctx.board.provide("xds", () => ({
    ...server.status(),
    poll: poller.lastPoll ?? null,
    tls: tls
      ? {
        client_auth: tls.paths.clientAuth,
        certificates_loaded_at: tls.loadedAt?.toISOString() ?? null,
        error: tls.error ?? null,
      }
      : null,
  }));
  return {
    port,
    stop: async () => {
      stopping.abort();
      await server.stop();
      await loop;
      await poller.close();
    },
  };
}
