/**
 * Delta (incremental) xDS against the real gRPC server: only changed resources and removals,
 * reconnect with `initial_resource_versions`, subscription changes with a stale nonce, ordering.
 */

import assert from "node:assert/strict";
import {
  CDS,
  type DeltaClient,
  LDS,
  metricValue,
  namesOf,
  route,
  withServer,
} from "./xds_client.ts";

const NODE = { id: "edge-1" };
const QUIET_MS = 400;

/** Wildcard CDS + LDS subscription, ACKing both first responses. */
async function handshake(c: DeltaClient) {
  c.send({ node: NODE, typeUrl: CDS });
  c.send({ node: NODE, typeUrl: LDS });
  const cds = await c.next();
  assert.equal(cds.typeUrl, CDS);
  c.send({ typeUrl: CDS, responseNonce: cds.nonce });
  const lds = await c.next();
  assert.equal(lds.typeUrl, LDS);
  c.send({ typeUrl: LDS, responseNonce: lds.nonce });
  return { cds, lds };
}

Deno.test("delta: only changed resources are sent; ACK → silence", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.delta();
    const { cds, lds } = await handshake(c);
    assert.deepEqual(namesOf(cds), ["cluster-a", "cluster-b"]);
    assert.deepEqual(cds.resources.map((r) => r.name).sort(), ["cluster-a", "cluster-b"]);
    assert.ok(cds.resources.every((r) => r.version.length > 0));
    assert.equal(cds.systemVersionInfo, "1");
    assert.deepEqual(namesOf(lds), ["listener-a", "listener-b"]);
    assert.deepEqual(await c.drain(QUIET_MS), []);
    // Change b's backend only: one cluster, no listener.
    env.install("edge-1", "2", [route("a", 10001), route("b", 10002, { backend_port: 9999 })]);
    const changed = await c.next();
    assert.equal(changed.typeUrl, CDS);
    assert.deepEqual(changed.resources.map((r) => r.name), ["cluster-b"]);
    assert.deepEqual(changed.removedResources, []);
    c.send({ typeUrl: CDS, responseNonce: changed.nonce });
    assert.deepEqual(await c.drain(QUIET_MS), [], "listeners did not change");
    assert.equal(
      await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "cds" }),
      2,
    );
  });
});

Deno.test("delta: a removed route's listener goes first, its cluster after that LDS is ACKed", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.delta();
    await handshake(c);
    env.install("edge-1", "2", [route("b", 10002)]);
    const lds = await c.next();
    assert.equal(lds.typeUrl, LDS, "nothing new for CDS, and cluster-a must wait");
    assert.deepEqual(lds.removedResources, ["listener-a"]);
    assert.deepEqual(lds.resources, []);
    assert.deepEqual(await c.drain(QUIET_MS), []);
    c.send({ typeUrl: LDS, responseNonce: lds.nonce });
    const cds = await c.next();
    assert.equal(cds.typeUrl, CDS);
    assert.deepEqual(cds.removedResources, ["cluster-a"]);
    assert.deepEqual(cds.resources, []);
  });
});

Deno.test("delta: a reconnect with initial_resource_versions gets only what differs", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const first = env.delta();
    const { cds, lds } = await handshake(first);
    const held = (res: typeof cds) =>
      Object.fromEntries(res.resources.map((r) => [r.name, r.version]));
    first.close();
    await new Promise((r) => setTimeout(r, 50));
    // Meanwhile: b changes, c appears, a is gone.
    env.install("edge-1", "2", [route("b", 10002, { backend_port: 7000 }), route("c", 10003)]);
    const again = env.delta();
    again.send({ node: NODE, typeUrl: CDS, initialResourceVersions: held(cds) });
    again.send({ node: NODE, typeUrl: LDS, initialResourceVersions: held(lds) });
    const c2 = await again.next();
    assert.equal(c2.typeUrl, CDS);
    assert.deepEqual(c2.resources.map((r) => r.name).sort(), ["cluster-b", "cluster-c"]);
    assert.deepEqual(c2.removedResources, [], "cluster-a waits for the LDS that drops listener-a");
    again.send({ typeUrl: CDS, responseNonce: c2.nonce });
    const l2 = await again.next();
    assert.equal(l2.typeUrl, LDS);
    assert.deepEqual(l2.resources.map((r) => r.name), ["listener-c"], "listener-b is unchanged");
    assert.deepEqual(l2.removedResources, ["listener-a"]);
    again.send({ typeUrl: LDS, responseNonce: l2.nonce });
    const c3 = await again.next();
    assert.deepEqual(c3.removedResources, ["cluster-a"]);
    assert.deepEqual(c3.resources, []);
  });
});

Deno.test("delta: a reconnect that already holds everything gets an empty response only", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const first = env.delta();
    const { cds } = await handshake(first);
    first.close();
    const again = env.delta();
    again.send({
      node: NODE,
      typeUrl: CDS,
      initialResourceVersions: { [cds.resources[0].name]: cds.resources[0].version },
    });
    const res = await again.next();
    assert.deepEqual(res.resources, []);
    assert.deepEqual(res.removedResources, []);
    again.send({ typeUrl: CDS, responseNonce: res.nonce });
    assert.deepEqual(await again.drain(QUIET_MS), []);
  });
});

Deno.test("delta: subscription changes are honoured even with a stale nonce; unsubscribe stops updates", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001), route("b", 10002)]);
    const c = env.delta("cds");
    c.send({ node: NODE, typeUrl: CDS, resourceNamesSubscribe: ["cluster-a"] });
    const first = await c.next();
    assert.deepEqual(first.resources.map((r) => r.name), ["cluster-a"]);
    c.send({
      typeUrl: CDS,
      responseNonce: "stale-or-unknown",
      resourceNamesSubscribe: ["cluster-b"],
    });
    const second = await c.next();
    assert.deepEqual(second.resources.map((r) => r.name), ["cluster-b"]);
    assert.equal(
      await metricValue(env.metrics.xdsAcksTotal, { node_id: "edge-1", type: "cds" }),
      0,
    );
    c.send({ typeUrl: CDS, responseNonce: second.nonce, resourceNamesUnsubscribe: ["cluster-a"] });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    env.install("edge-1", "2", [route("a", 10001, { backend_port: 1 }), route("b", 10002)]);
    assert.deepEqual(await c.drain(QUIET_MS), [], "cluster-a is no longer subscribed");
  });
});

Deno.test("delta: a NACK is recorded and the rejected resources are not resent", async () => {
  await withServer(async (env) => {
    env.install("edge-1", "1", [route("a", 10001)]);
    const c = env.delta();
    c.send({ node: NODE, typeUrl: CDS });
    const cds = await c.next();
    c.send({ typeUrl: CDS, responseNonce: cds.nonce, errorDetail: { code: 3, message: "nope" } });
    assert.deepEqual(await c.drain(QUIET_MS), []);
    assert.equal(
      await metricValue(env.metrics.xdsNacksTotal, { node_id: "edge-1", type: "cds" }),
      1,
    );
    assert.equal(env.server.status().nodes[0].last_nack?.error, "nope");
    env.install("edge-1", "2", [route("a", 10001, { backend_port: 4000 })]);
    const fixed = await c.next();
    assert.equal(fixed.systemVersionInfo, "2");
  });
});
