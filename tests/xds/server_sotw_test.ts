/**
 * State-of-the-world xDS against the real gRPC server: each protocol rule is its own test, driven
 * by a real grpc-js client stream and decoded with the generated code.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { TcpProxySchema } from "../../proto/gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import {
  CDS,
  clustersOf,
  LDS,
  listenersOf,
  metricValue,
  namesOf,
  route,
  type SotwClient,
  waitUntil,
  withServer,
} from "./xds_client.ts";

const NODE = { id: "edge-1", cluster: "sigma" };
const QUIET_MS = 400;
/** Stale-cluster grace of the tests that check it. */
const GRACE_MS = 600;

/** Subscribes to CDS and LDS and completes the first CDS → ACK → LDS → ACK exchange. */
async function handshake(c: SotwClient, version: string) {
  c.send({ node: NODE, typeUrl: CDS });
  c.send({ node: NODE, typeUrl: LDS });
  const cds = await c.next();
  assert.equal(cds.typeUrl, CDS);
  assert.equal(cds.versionInfo, version);
  c.send({ typeUrl: CDS, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
  const lds = await c.next();
  assert.equal(lds.typeUrl, LDS);
  assert.equal(lds.versionInfo, version);
  c.send({ typeUrl: LDS, versionInfo: lds.versionInfo, responseNonce: lds.nonce });
  return { cds, lds };
}

Deno.test("sotw: ACK → silence, ACK recorded per node and type", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.sotw();
    const { cds, lds } = await handshake(c, "1");
    assert.deepEqual(namesOf(cds), ["cluster-a", "cluster-b"]);
    assert.deepEqual(namesOf(lds), ["listener-a", "listener-b"]);
    const tcp = fromBinary(
      TcpProxySchema,
      listenersOf(lds)[0].filterChains[0].filters[0].configType.value!.value as Uint8Array,
    );
    assert.equal(tcp.clusterSpecifier.value, "cluster-a");
    assert.deepEqual(await c.drain(QUIET_MS), [], "an ACK must not trigger a resend");
    await waitUntil(async () =>
      (await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "lds" })) === 1
    );
    assert.equal(
      await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "cds" }),
      1,
    );
    assert.equal(
      await metricValue(env.metrics.xdsPushesTotal, { node_id: "edge-1", type: "cds" }),
      1,
    );
    assert.equal(await metricValue(env.metrics.xdsConnectedStreams, { node_id: "edge-1" }), 1);
    const node = env.server.status().nodes.find((n) => n.node_id === "edge-1")!;
    assert.equal(node.connected_streams, 1);
    assert.equal(node.snapshot_version, "1");
    assert.equal(node.last_acked.cds?.version, "1");
    assert.equal(node.last_acked.lds?.version, "1");
    assert.ok(node.last_push_at);
    // A version bump with identical resources is not a change: nothing to send.
    env.install(
      "edge-1",
      "2",
      [route("a", 10001), route("b", 10002)].map((r, i) => ({ ...r, id: `x${i}` })),
    );
    assert.deepEqual(await c.drain(QUIET_MS), []);
  });
});

Deno.test("sotw: NACK is recorded with its message and the rejected version is not resent", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    c.send({ node: NODE, typeUrl: CDS });
    const cds = await c.next();
    c.send({
      typeUrl: CDS,
      versionInfo: "",
      responseNonce: cds.nonce,
      errorDetail: { code: 3, message: "cluster-a: bad things" },
    });
    assert.deepEqual(await c.drain(QUIET_MS), [], "a NACKed version must stay parked");
    await waitUntil(async () =>
      (await metricValue(env.metrics.xdsNacksTotal, { node_id: "edge-1", type: "cds" })) === 1
    );
    const node = env.server.status().nodes.find((n) => n.node_id === "edge-1")!;
    assert.equal(node.last_nack?.error, "cluster-a: bad things");
    assert.equal(node.last_nack?.version, "1");
    assert.equal(node.last_nack?.type, "cds");
    const logged = env.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "xds: NACK");
    assert.equal(logged?.error, "cluster-a: bad things");
    assert.equal(logged?.node_id, "edge-1");
    // Same resources under a new version: still parked.
    env.install("edge-1", "2", [route("a", 10001)]);
    assert.deepEqual(await c.drain(QUIET_MS), []);
    // The snapshot really changes: the new set goes out.
    env.install("edge-1", "3", [route("a", 10001, { backend_port: 9090 })]);
    const next = await c.next();
    assert.equal(next.versionInfo, "3");
    assert.notEqual(next.nonce, cds.nonce);
  });
});

Deno.test("sotw: a stale nonce is ignored (neither ACK nor NACK)", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    c.send({ node: NODE, typeUrl: CDS });
    const first = await c.next();
    env.install("edge-1", "2", [route("a", 10001, { backend_port: 9000 })]);
    const second = await c.next();
    assert.equal(second.versionInfo, "2");
    // A NACK of the superseded response: stale, must not be recorded nor answered.
    c.send({ typeUrl: CDS, responseNonce: first.nonce, errorDetail: { code: 3, message: "old" } });
    c.send({ typeUrl: CDS, responseNonce: "no-such-nonce", versionInfo: "1" });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    assert.equal(
      await metricValue(env.metrics.xdsNacksTotal, { node_id: "edge-1", type: "cds" }),
      0,
    );
    assert.equal(
      await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "cds" }),
      0,
    );
    assert.ok(env.lines.some((l) => l.includes("stale nonce ignored")));
    c.send({ typeUrl: CDS, responseNonce: second.nonce, versionInfo: "2" });
    await waitUntil(async () =>
      (await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "cds" })) === 1
    );
    assert.equal(env.server.status().nodes[0].last_acked.cds?.version, "2");
  });
});

Deno.test("sotw: CDS is ACKed before LDS goes; removed clusters stay until the LDS that dropped them is ACKed, and a grace after", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.sotw();
    await handshake(c, "1");
    // v2: a removed, c added.
    env.install("edge-1", "2", [route("b", 10002), route("c", 10003)]);
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    assert.deepEqual(
      namesOf(cds),
      ["cluster-a", "cluster-b", "cluster-c"],
      "cluster-a is still used by listener-a",
    );
    assert.equal(cds.versionInfo, "2+stale");
    assert.deepEqual(await c.drain(QUIET_MS), [], "no LDS before the CDS ACK");
    c.send({ typeUrl: CDS, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
    const lds = await c.next();
    assert.equal(lds.typeUrl, LDS);
    assert.deepEqual(namesOf(lds), ["listener-b", "listener-c"]);
    assert.deepEqual(await c.drain(QUIET_MS), [], "cluster-a stays until the new LDS is ACKed");
    c.send({ typeUrl: LDS, versionInfo: lds.versionInfo, responseNonce: lds.nonce });
    const ackedAt = performance.now();
    const final = await c.next();
    assert.ok(
      performance.now() - ackedAt >= GRACE_MS - 5,
      "unused clusters leave only after the grace",
    );
    assert.equal(final.typeUrl, CDS);
    assert.equal(final.versionInfo, "2");
    assert.deepEqual(namesOf(final), ["cluster-b", "cluster-c"]);
    c.send({ typeUrl: CDS, versionInfo: final.versionInfo, responseNonce: final.nonce });
    assert.deepEqual(await c.drain(QUIET_MS), []);
  }, { staleClusterGraceMs: GRACE_MS });
});

Deno.test("sotw: snapshot changes in quick succession reach a stream as one push of the latest", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    await handshake(c, "1");
    // Same turn of the event loop: the stream is planned once, after the last change.
    env.install("edge-1", "2", [route("a", 10001, { backend_port: 9002 })]);
    env.install("edge-1", "3", [route("a", 10001, { backend_port: 9003 })]);
    const cds = await c.next();
    assert.equal(cds.versionInfo, "3");
    c.send({ typeUrl: CDS, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
    assert.deepEqual(await c.drain(QUIET_MS), [], "version 2 is never sent");
  });
});

Deno.test("sotw: an LDS that only uses clusters the client already ACKed does not wait for the CDS ACK", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.sotw();
    await handshake(c, "1");
    // Same routes, new backend and listen ports: cluster-a/b change in place, listeners move.
    env.install("edge-1", "2", [
      route("a", 11001, { backend_port: 9001 }),
      route("b", 11002, { backend_port: 9002 }),
    ]);
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    assert.equal(cds.versionInfo, "2");
    const lds = await c.next(); // no CDS ACK sent
    assert.equal(lds.typeUrl, LDS);
    assert.equal(lds.versionInfo, "2");
    const ports = listenersOf(lds).map((l) =>
      l.address?.address.case === "socketAddress"
        ? l.address.address.value.portSpecifier.value
        : undefined
    );
    assert.deepEqual(ports, [11001, 11002]);
  });
});

Deno.test("sotw: a NACKed LDS keeps the clusters its old listeners use", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    await handshake(c, "1");
    env.install("edge-1", "2", [route("b", 10002)]);
    const cds = await c.next();
    assert.deepEqual(namesOf(cds), ["cluster-a", "cluster-b"]);
    c.send({ typeUrl: CDS, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
    const lds = await c.next();
    c.send({
      typeUrl: LDS,
      versionInfo: "1",
      responseNonce: lds.nonce,
      errorDetail: { code: 3, message: "port busy" },
    });
    assert.deepEqual(
      await c.drain(QUIET_MS),
      [],
      "Envoy still runs listener-a: cluster-a stays, nothing resent",
    );
  });
});

Deno.test("sotw: LDS waits for the CDS ACK at most the bounded time", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    c.send({ node: NODE, typeUrl: CDS });
    c.send({ node: NODE, typeUrl: LDS });
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    const started = performance.now();
    const lds = await c.next(10_000); // no ACK sent: LDS comes after the 600 ms bound
    assert.equal(lds.typeUrl, LDS);
    assert.ok(performance.now() - started >= 450, "LDS came before the bound");
  }, { cdsAckTimeoutMs: 600 });
});

Deno.test("sotw: an unknown node gets nothing (not an empty set), asks for registration, and is served once config exists", async () => {
  await withServer(async (env) => {
    const c = env.sotw();
    c.send({ node: { id: "newcomer" }, typeUrl: CDS });
    c.send({ node: { id: "newcomer" }, typeUrl: LDS });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    assert.ok(env.unknown.includes("newcomer"));
    assert.equal(env.server.streamCount, 1, "the stream stays open");
    env.install("newcomer", "0", []);
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    assert.equal(cds.versionInfo, "0");
    assert.equal(cds.resources.length, 0, "a known-empty snapshot is sent as empty");
  });
});

Deno.test("sotw: a first request without node id ends the stream with INVALID_ARGUMENT", async () => {
  await withServer(async (env) => {
    const c = env.sotw();
    c.send({ typeUrl: CDS });
    const end = await c.ended;
    assert.equal(end.code, grpc.status.INVALID_ARGUMENT);
    assert.match(end.details, /node\.id/);
    await waitUntil(() => env.server.streamCount === 0);
  });
});

Deno.test("sotw: unknown type_url is ignored and the stream keeps working", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    c.send({ node: NODE, typeUrl: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration" });
    c.send({ node: NODE, typeUrl: "" });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    c.send({ typeUrl: CDS });
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    assert.ok(env.lines.some((l) => l.includes("RouteConfiguration")));
  });
});

Deno.test("sotw: resource_names subscriptions get only the named resources", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.sotw();
    c.send({ node: NODE, typeUrl: CDS, resourceNames: ["cluster-b", "cluster-zzz"] });
    const cds = await c.next();
    assert.deepEqual(namesOf(cds), ["cluster-b"]);
    assert.equal(clustersOf(cds)[0].loadAssignment?.clusterName, "cluster-b");
    // Changing the subscription with the latest nonce (ACK + new names) is answered.
    c.send({
      typeUrl: CDS,
      versionInfo: "1",
      responseNonce: cds.nonce,
      resourceNames: ["cluster-a", "cluster-b"],
    });
    const more = await c.next();
    assert.deepEqual(namesOf(more), ["cluster-a", "cluster-b"]);
    // The same names again (an ACK repeats its subscription, in any order): nothing to send.
    c.send({
      typeUrl: CDS,
      versionInfo: "1",
      responseNonce: more.nonce,
      resourceNames: ["cluster-b", "cluster-a"],
    });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    // As many names as before, but one of them twice: the subscription shrinks to one.
    c.send({
      typeUrl: CDS,
      versionInfo: "1",
      responseNonce: more.nonce,
      resourceNames: ["cluster-a", "cluster-a"],
    });
    const fewer = await c.next();
    assert.deepEqual(namesOf(fewer), ["cluster-a"]);
  });
});

Deno.test("sotw: two nodes are isolated and nonces are unique server-wide", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    env.install("edge-2", "7", [route("z", 20001)]);
    const one = env.sotw(), two = env.sotw();
    const r1 = await handshake(one, "1");
    two.send({ node: { id: "edge-2" }, typeUrl: CDS });
    two.send({ node: { id: "edge-2" }, typeUrl: LDS });
    const c2 = await two.next();
    assert.deepEqual(namesOf(c2), ["cluster-z"]);
    assert.equal(c2.versionInfo, "7");
    two.send({ typeUrl: CDS, versionInfo: "7", responseNonce: c2.nonce });
    const l2 = await two.next();
    assert.deepEqual(namesOf(l2), ["listener-z"]);
    const nonces = new Set([r1.cds.nonce, r1.lds.nonce, c2.nonce, l2.nonce]);
    assert.equal(nonces.size, 4);
    two.send({ typeUrl: LDS, versionInfo: "7", responseNonce: l2.nonce });
    // Changing edge-2 leaves edge-1 alone.
    env.install("edge-2", "8", [route("z", 20001), route("y", 20002)]);
    const c3 = await two.next();
    assert.deepEqual(namesOf(c3), ["cluster-y", "cluster-z"]);
    assert.deepEqual(await one.drain(QUIET_MS), []);
  });
});

Deno.test("sotw: per-type StreamClusters and StreamListeners services", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const cds = env.sotw("cds"), lds = env.sotw("lds");
    cds.send({ node: NODE, typeUrl: CDS });
    lds.send({ node: NODE, typeUrl: LDS });
    assert.deepEqual(namesOf(await cds.next()), ["cluster-a"]);
    assert.deepEqual(namesOf(await lds.next()), ["listener-a"]);
    // A listener request on the cluster service is not served there.
    cds.send({ typeUrl: LDS });
    assert.deepEqual(await cds.drain(QUIET_MS), []);
  });
});

Deno.test("sotw: stream state is freed when the stream ends", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.sotw();
    await handshake(c, "1");
    assert.equal(env.server.streamCount, 1);
    assert.equal(env.cache.watcherCount, 1);
    c.close();
    await waitUntil(() => env.server.streamCount === 0, 10_000, "stream freed");
    assert.equal(env.cache.watcherCount, 0);
    assert.equal(await metricValue(env.metrics.xdsConnectedStreams, { node_id: "edge-1" }), 0);
    assert.equal(env.server.status().nodes[0].connected_streams, 0);
  });
});

Deno.test("sotw: a reconnecting client gets the current config again", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "4", [route("a", 10001)]);
    const first = env.sotw();
    await handshake(first, "4");
    first.close();
    await waitUntil(() => env.server.streamCount === 0);
    const again = env.sotw();
    again.send({ node: NODE, typeUrl: CDS, versionInfo: "4" });
    const cds = await again.next();
    assert.equal(cds.versionInfo, "4");
    assert.deepEqual(namesOf(cds), ["cluster-a"]);
  });
});
