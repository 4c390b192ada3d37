/**
 * The whole xDS feature against the real DevApi (HTTP on loopback) and real gRPC streams:
 * pagination, isolation, polling, persistence across restarts with the API down, auto-registration,
 * partial poll failures, metrics and `/status`.
 */

import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { ApiError, SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { parseConfig } from "../../lib/core/config.ts";
import type { AgentContext, Feature } from "../../lib/core/context.ts";
import { createLogger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { StatusBoard } from "../../lib/status/board.ts";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { startXds } from "../../lib/xds/mod.ts";
import { type PollerApi, SNAPSHOT_FILE, SnapshotPoller } from "../../lib/xds/poller.ts";
import { XdsServer } from "../../lib/xds/server.ts";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
} from "../../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import { decodeAny } from "../support/upstream_protos.ts";
import {
  CDS,
  LDS,
  metricValue,
  namesOf,
  rawAdsStream,
  type SotwClient,
  waitUntil,
  XdsTestClient,
} from "./xds_client.ts";
import { TEST_SYSTEM_INFO } from "../helpers.ts";

interface Agent {
  feature: Feature;
  ctx: AgentContext;
  port: number;
  lines: string[];
  clients: SotwClient[];
  connect(nodeId: string): SotwClient;
  stop(): Promise<void>;
}

/** Starts the xDS feature as main.ts does, against `apiUrl`, with state in `stateDir`. */
async function startAgent(
  apiUrl: string,
  stateDir: string,
  vpsId: string | { now: () => string | undefined; ready: Promise<string> },
  pollSeconds = 0.2,
): Promise<Agent> {
  const parsed = parseConfig([
    "--api-url",
    apiUrl,
    "--xds-enabled",
    "--xds-port",
    "0",
    "--xds-poll-interval",
    String(pollSeconds),
    "--state-dir",
    stateDir,
    "--api-timeout",
    "2",
  ], {});
  if (parsed.kind !== "config") throw new Error("bad config");
  const lines: string[] = [];
  const shutdown = new AbortController();
  const ctx: AgentContext = {
    config: parsed.config,
    log: createLogger({ level: "debug", write: (l) => lines.push(l) }),
    api: new SigmaClient({ baseUrl: apiUrl, apiKey: undefined, timeoutMs: 2000 }),
    metrics: createMetrics("test-host", "0.0.0"),
    board: new StatusBoard(),
    store: new StateStore(stateDir),
    hostname: "test-host",
    signal: shutdown.signal,
    vpsId: typeof vpsId === "string" ? () => vpsId : vpsId.now,
    vpsIdReady: typeof vpsId === "string" ? Promise.resolve(vpsId) : vpsId.ready,
  };
  const feature = await startXds(ctx);
  const status = ctx.board.snapshot().xds as { address: string };
  const port = Number(status.address.split(":").pop());
  const clients: SotwClient[] = [];
  return {
    feature,
    ctx,
    port,
    lines,
    clients,
    connect(nodeId) {
      const c = XdsTestClient.sotw(port);
      clients.push(c);
      c.send({ node: { id: nodeId }, typeUrl: CDS });
      c.send({ node: { id: nodeId }, typeUrl: LDS });
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      shutdown.abort();
      await feature.stop();
    },
  };
}

/** CDS then LDS of one push, ACKing each. */
async function receiveBoth(c: SotwClient, timeoutMs = 15_000) {
  const cds = await c.next(timeoutMs);
  assert.equal(cds.typeUrl, CDS);
  c.send({ typeUrl: CDS, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
  const lds = await c.next(timeoutMs);
  assert.equal(lds.typeUrl, LDS);
  c.send({ typeUrl: LDS, versionInfo: lds.versionInfo, responseNonce: lds.nonce });
  return { cds, lds };
}

async function registerVps(dev: DevApi): Promise<string> {
  const api = new SigmaClient({ baseUrl: dev.url, apiKey: undefined });
  const vps = await api.register({
    hostname: "test-host",
    ip_addresses: [],
    ssh_port: 22,
    system_info: TEST_SYSTEM_INFO,
  });
  return vps.id;
}

function addRoutes(dev: DevApi, envoyNodeId: string, count: number, base = 20000, prefix = "r") {
  for (let i = 0; i < count; i++) {
    dev.addRoute(envoyNodeId, {
      name: `${prefix}${i}`,
      listen_port: base + i,
      backend_host: "127.0.0.1",
      backend_port: 8000 + i,
      cluster_type: "static",
      proxy_protocol: i % 3,
    });
  }
}

Deno.test("xds feature: 150 routes on one node are fetched across pages; two nodes stay isolated", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  const big = dev.addNode(vpsId, "big");
  addRoutes(dev, big.id, 150);
  const small = dev.addNode(vpsId, "small");
  addRoutes(dev, small.id, 1, 30000, "s");
  const agent = await startAgent(dev.url, dir, vpsId);
  try {
    const c = agent.connect("big");
    const { cds, lds } = await receiveBoth(c);
    assert.equal(cds.versionInfo, "150");
    assert.equal(cds.resources.length, 150);
    assert.equal(lds.resources.length, 150);
    assert.ok(namesOf(cds).includes("cluster-r149"));
    const pages = dev.requests.filter((r) =>
      r.path === "/api/envoy-routes" && r.query.envoy_node_id === big.id
    )
      .map((r) => r.query.page);
    assert.ok(pages.includes("2"), `route pages fetched: ${pages}`);
    assert.equal(dev.requests.find((r) => r.path === "/api/envoy-routes")?.query.source, "dynamic");

    const s = agent.connect("small");
    const other = await receiveBoth(s);
    assert.deepEqual(namesOf(other.cds), ["cluster-s0"]);
    assert.deepEqual(namesOf(other.lds), ["listener-s0"]);

    // A change on "small" reaches only "small".
    dev.addRoute(small.id, {
      name: "s1",
      listen_port: 30001,
      backend_host: "10.0.0.1",
      backend_port: 1,
      cluster_type: "static",
    });
    const next = await s.next(15_000);
    assert.deepEqual(namesOf(next), ["cluster-s0", "cluster-s1"]);
    assert.deepEqual(await c.drain(500), []);

    assert.equal(await metricValue(agent.ctx.metrics.xdsSnapshotVersion, { node_id: "big" }), 150);
    assert.ok(await metricValue(agent.ctx.metrics.xdsPollTotal, { result: "success" }) >= 1);
    const board = agent.ctx.board.snapshot().xds as {
      nodes: { node_id: string; connected_streams: number }[];
    };
    assert.deepEqual(board.nodes.map((n) => [n.node_id, n.connected_streams]), [["big", 1], [
      "small",
      1,
    ]]);
  } finally {
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xds feature: what we send decodes with the upstream Envoy protos (SotW and Delta)", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  const node = dev.addNode(vpsId, "edge");
  addRoutes(dev, node.id, 3);
  const agent = await startAgent(dev.url, dir, vpsId);
  const streams: ReturnType<typeof rawAdsStream>[] = [];
  try {
    await waitUntil(() =>
      agent.ctx.board.snapshot().xds &&
      (agent.ctx.board.snapshot().xds as { nodes: unknown[] }).nodes.length === 1
    );
    for (const method of ["sotw", "delta"] as const) {
      const raw = rawAdsStream(agent.port, method);
      streams.push(raw);
      const got = new Promise<Uint8Array>((resolve) => raw.call.once("data", resolve));
      const req = method === "sotw"
        ? toBinary(
          DiscoveryRequestSchema,
          create(DiscoveryRequestSchema, { node: { id: "edge" }, typeUrl: CDS }),
        )
        : toBinary(
          DeltaDiscoveryRequestSchema,
          create(DeltaDiscoveryRequestSchema, { node: { id: "edge" }, typeUrl: CDS }),
        );
      raw.call.write(req);
      const bytes = await got;
      const typeName = method === "sotw" ? "DiscoveryResponse" : "DeltaDiscoveryResponse";
      const decoded = decodeAny(
        `type.googleapis.com/envoy.service.discovery.v3.${typeName}`,
        bytes,
      );
      const resources = decoded.resources as Record<string, unknown>[];
      assert.equal(resources.length, 3);
      const cluster = (method === "sotw" ? resources[0] : resources[0].resource) as Record<
        string,
        unknown
      >;
      assert.equal(cluster["@type"], CDS);
      assert.equal(cluster.name, "cluster-r0");
      assert.equal(decoded.type_url, CDS);
      assert.ok(typeof decoded.nonce === "string" && decoded.nonce !== "");
    }
  } finally {
    for (const s of streams) {
      s.call.cancel();
      s.client.close();
    }
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xds feature: API down → the last persisted snapshot is served after a restart", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  const node = dev.addNode(vpsId, "edge");
  addRoutes(dev, node.id, 2);
  let agent = await startAgent(dev.url, dir, vpsId);
  try {
    const first = await receiveBoth(agent.connect("edge"));
    assert.equal(first.cds.versionInfo, "2");
    // Written right after the poll that installed it.
    await waitUntil(async () =>
      (await agent.ctx.store.read<{ nodes: Record<string, { version: string }> }>(SNAPSHOT_FILE))
        ?.nodes.edge?.version === "2"
    );
    await agent.stop();

    await dev.stop(); // the API is unreachable from now on
    agent = await startAgent(dev.url, dir, vpsId);
    const again = await receiveBoth(agent.connect("edge"));
    assert.equal(again.cds.versionInfo, "2");
    assert.deepEqual(namesOf(again.cds), ["cluster-r0", "cluster-r1"]);
    assert.deepEqual(namesOf(again.lds), ["listener-r0", "listener-r1"]);
    await waitUntil(async () =>
      (await metricValue(agent.ctx.metrics.xdsPollTotal, { result: "failure" })) >= 1
    );

    // The API comes back with a change: it is pushed.
    dev.addRoute(node.id, {
      name: "late",
      listen_port: 21000,
      backend_host: "10.1.1.1",
      backend_port: 80,
      cluster_type: "static",
    });
    dev.listen();
    const c = agent.clients[0];
    const update = await c.next(15_000);
    assert.equal(update.versionInfo, "3");
    assert.deepEqual(namesOf(update), ["cluster-late", "cluster-r0", "cluster-r1"]);
  } finally {
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xds feature: starts with the API unreachable and before registration; serves once both happen", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const vpsId = await registerVps(dev);
  const node = dev.addNode(vpsId, "edge");
  addRoutes(dev, node.id, 1);
  await dev.stop();
  const dir = await Deno.makeTempDir();
  let known: string | undefined;
  let registered!: (id: string) => void;
  // Before registration the id is unknown and the promise pending, as in the agent.
  const ready = new Promise<string>((r) => (registered = r));
  const agent = await startAgent(dev.url, dir, { now: () => known, ready });
  try {
    const c = agent.connect("edge");
    assert.deepEqual(
      await c.drain(500),
      [],
      "nothing is known: nothing (not an empty set) is sent",
    );
    dev.listen();
    known = vpsId;
    registered(vpsId);
    const { cds } = await receiveBoth(c);
    assert.equal(cds.versionInfo, "1");
  } finally {
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xds feature: an unknown node id is auto-registered and then served", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  const agent = await startAgent(dev.url, dir, vpsId);
  try {
    const c = agent.connect("fresh-1");
    const cds = await c.next(15_000);
    assert.equal(cds.versionInfo, "0");
    assert.equal(cds.resources.length, 0, "the API says the new node has no routes");
    const row = dev.nodes.find((n) => n.node_id === "fresh-1");
    assert.equal(row?.description, "Auto-registered by agent");
    assert.equal(row?.vps_id, vpsId);
    // Routes added later are pushed on the same stream.
    c.send({ typeUrl: CDS, versionInfo: "0", responseNonce: cds.nonce });
    const lds0 = await c.next();
    c.send({ typeUrl: LDS, versionInfo: "0", responseNonce: lds0.nonce });
    dev.addRoute(row!.id, {
      name: "x",
      listen_port: 22000,
      backend_host: "10.0.0.9",
      backend_port: 80,
      cluster_type: "static",
    });
    const { cds: cds1 } = await receiveBoth(c);
    assert.deepEqual(namesOf(cds1), ["cluster-x"]);
    assert.equal(
      dev.requests.filter((r) => r.method === "POST" && r.path === "/api/envoy-nodes").length,
      1,
    );
  } finally {
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xds feature: a duplicate auto-registration (API 500) is looked up instead", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  // Long poll interval: only the first poll runs on its own.
  const agent = await startAgent(dev.url, dir, vpsId, 3600);
  try {
    await waitUntil(() =>
      dev.requests.some((r) => r.path === "/api/envoy-nodes" && r.method === "GET")
    );
    // Created by the web UI after the agent's poll: the agent does not know it yet.
    const row = dev.addNode(vpsId, "ui-made");
    addRoutes(dev, row.id, 1);
    const disabled = dev.addNode(vpsId, "switched-off", "disabled");
    const c = agent.connect("ui-made");
    const { cds } = await receiveBoth(c);
    assert.deepEqual(namesOf(cds), ["cluster-r0"]);
    const posts = dev.requests.filter((r) => r.method === "POST" && r.path === "/api/envoy-nodes");
    assert.equal(posts.length, 1);
    assert.equal(posts[0].status, 500);

    const d = agent.connect("switched-off");
    assert.deepEqual(await d.drain(800), []);
    await waitUntil(() =>
      agent.lines.some((l) => l.includes("exists but is not active") && l.includes("switched-off"))
    );
    assert.equal(disabled.status, "disabled");
  } finally {
    await agent.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("poller: a poll failing half-way keeps the wake-up of nodes already rebuilt; dropped nodes are forgotten", async () => {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const vpsId = await registerVps(dev);
  const a = dev.addNode(vpsId, "a");
  const b = dev.addNode(vpsId, "b");
  addRoutes(dev, a.id, 1, 20000, "a");
  addRoutes(dev, b.id, 1, 21000, "b");
  const client = new SigmaClient({ baseUrl: dev.url, apiKey: undefined, timeoutMs: 2000 });
  let failRoutesFor: string | undefined;
  // The real client, with one node's route fetch failing like a dropped connection.
  const api: PollerApi = {
    listEnvoyNodes: (q) => client.listEnvoyNodes(q),
    createEnvoyNode: (b) => client.createEnvoyNode(b),
    listEnvoyRoutes: (q) => {
      if (q.envoy_node_id === failRoutesFor) {
        return Promise.reject(new ApiError("network", "GET /envoy-routes: connection reset"));
      }
      return client.listEnvoyRoutes(q);
    },
  };
  const lines: string[] = [];
  const log = createLogger({ write: (l) => lines.push(l) });
  const cache = new SnapshotCache();
  const metrics = createMetrics("h", "0");
  const signal = new AbortController();
  const store = new StateStore(dir);
  const poller = new SnapshotPoller({
    api,
    cache,
    store,
    log,
    metrics,
    vpsId: () => vpsId,
    vpsIdReady: Promise.resolve(vpsId),
    intervalMs: 3_600_000,
    signal: signal.signal,
  });
  const server = new XdsServer({ cache, log });
  const port = await server.listen("127.0.0.1", 0);
  const c = XdsTestClient.sotw(port);
  try {
    assert.equal((await poller.pollOnce()).result, "success");
    c.send({ node: { id: "a" }, typeUrl: CDS });
    const first = await c.next();
    assert.equal(first.versionInfo, "1");
    c.send({ typeUrl: CDS, versionInfo: "1", responseNonce: first.nonce });

    // Both nodes change; the listing is newest first, so "b" is fetched before "a". Make the
    // second fetch ("a") fail: "b" was rebuilt in the same, failed, poll.
    dev.addRoute(a.id, {
      name: "a2",
      listen_port: 20002,
      backend_host: "10.0.0.2",
      backend_port: 2,
      cluster_type: "static",
    });
    dev.addRoute(b.id, {
      name: "b2",
      listen_port: 21002,
      backend_host: "10.0.0.2",
      backend_port: 2,
      cluster_type: "static",
    });
    c.close();
    const cb = XdsTestClient.sotw(port);
    cb.send({ node: { id: "b" }, typeUrl: CDS });
    const bFirst = await cb.next();
    assert.equal(bFirst.versionInfo, "1");
    cb.send({ typeUrl: CDS, versionInfo: "1", responseNonce: bFirst.nonce });
    failRoutesFor = a.id;
    const failed = await poller.pollOnce();
    assert.equal(failed.result, "failure");
    assert.equal(failed.rebuilt, 1);
    const pushed = await cb.next();
    assert.equal(pushed.versionInfo, "2", "b's streams were woken despite the failed poll");
    const saved = await store.read<{ nodes: Record<string, { version: string }> }>(SNAPSHOT_FILE);
    assert.equal(saved?.nodes.b.version, "2", "b's new snapshot is persisted");
    assert.equal(saved?.nodes.a.version, "1");
    assert.equal(await metricValue(metrics.xdsPollTotal, { result: "failure" }), 1);

    // The next poll catches up with "a"; removing "b" from the API drops it.
    failRoutesFor = undefined;
    b.status = "disabled";
    const ok = await poller.pollOnce();
    assert.deepEqual([ok.result, ok.rebuilt, ok.dropped], ["success", 1, 1]);
    assert.equal(cache.get("a")?.version, "2");
    assert.equal(cache.get("b"), undefined);
    assert.deepEqual(
      await cb.drain(400),
      [],
      "a dropped node's stream keeps its config: no empty push",
    );
    const after = await store.read<{ nodes: Record<string, unknown> }>(SNAPSHOT_FILE);
    assert.deepEqual(Object.keys(after!.nodes), ["a"]);
    cb.close();
  } finally {
    c.close();
    signal.abort();
    await server.stop();
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
});
