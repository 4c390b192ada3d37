/**
 * The hand-assembled responses of `wire.ts` are byte-for-byte what protobuf-es `toBinary` makes of
 * the same generated messages, and decode with the upstream Envoy protos.
 */

import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryResponseSchema,
  DiscoveryResponseSchema,
  ResourceSchema,
} from "../../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import { TYPE_URLS } from "../../lib/xds/cache.ts";
import { buildResources } from "../../lib/xds/resources.ts";
import { frameMessage } from "../../lib/grpc/call.ts";
import { encodeDeltaResponse, encodeSotwResponse } from "../../lib/xds/wire.ts";
import { decodeAny } from "../support/upstream_protos.ts";
import { route } from "./xds_client.ts";

const built = buildResources([
  route("a", 10001, { proxy_protocol: 2 }),
  route("b", 10002, { backend_host: "backend.internal", cluster_type: "strict_dns" }),
  // A big resource: lengths above 127 and 16383 need multi-byte varints.
  route("c".repeat(20_000), 10003),
]);

Deno.test("wire: SotW responses equal toBinary of the generated message", () => {
  for (
    const [resources, version, nonce, controlPlane] of [
      [built.clusters, "12", "abc.1", "sigma-agent/0.1.0"],
      [built.listeners, "12+stale", "n", ""],
      [[], "", "", ""],
      // Non-ASCII strings take the TextEncoder path instead of the direct one.
      [built.clusters.slice(0, 1), "3", "nönce-é", "sigma-agent/0.1.0"],
    ] as const
  ) {
    const ours = encodeSotwResponse({
      version,
      resources,
      typeUrl: TYPE_URLS.cds,
      nonce,
      controlPlane,
    });
    const reference = toBinary(
      DiscoveryResponseSchema,
      create(DiscoveryResponseSchema, {
        versionInfo: version,
        resources: resources.map((r) => r.any),
        typeUrl: TYPE_URLS.cds,
        nonce,
        controlPlane: controlPlane ? { identifier: controlPlane } : undefined,
      }),
    );
    assert.deepEqual(ours, reference);
    const framed = encodeSotwResponse({
      version,
      resources,
      typeUrl: TYPE_URLS.cds,
      nonce,
      controlPlane,
    }, true);
    assert.deepEqual(framed, frameMessage(reference));
  }
});

Deno.test("wire: Delta responses equal toBinary of the generated message and decode upstream", () => {
  const fields = {
    systemVersion: "7",
    resources: built.listeners,
    typeUrl: TYPE_URLS.lds,
    nonce: "x.2",
    removed: ["listener-gone", "", "listener-é"],
    controlPlane: "sigma-agent/0.1.0",
  };
  const ours = encodeDeltaResponse(fields);
  const reference = toBinary(
    DeltaDiscoveryResponseSchema,
    create(DeltaDiscoveryResponseSchema, {
      systemVersionInfo: "7",
      resources: built.listeners.map((r) =>
        create(ResourceSchema, { name: r.name, version: r.hash, resource: r.any })
      ),
      typeUrl: TYPE_URLS.lds,
      nonce: "x.2",
      removedResources: fields.removed,
      controlPlane: { identifier: "sigma-agent/0.1.0" },
    }),
  );
  assert.deepEqual(ours, reference);
  assert.deepEqual(encodeDeltaResponse(fields, true), frameMessage(reference));
  const decoded = decodeAny(
    "type.googleapis.com/envoy.service.discovery.v3.DeltaDiscoveryResponse",
    ours,
  );
  const first = (decoded.resources as Record<string, Record<string, unknown>>[])[0];
  assert.equal(first.name, "listener-a");
  assert.equal(first.version, built.listeners[0].hash);
  assert.equal(first.resource["@type"], TYPE_URLS.lds);
  assert.deepEqual(decoded.removed_resources, fields.removed);
});

Deno.test("wire: a response is never overwritten by later ones (responses share slabs)", () => {
  const fields = (nonce: string) => ({
    version: "1",
    resources: built.clusters.slice(0, 2),
    typeUrl: TYPE_URLS.cds,
    nonce,
    controlPlane: "sigma-agent/0.1.0",
  });
  const first = encodeSotwResponse(fields("first"), true);
  const copy = first.slice();
  // Enough responses to fill several slabs.
  for (let i = 0; i < 200; i++) encodeSotwResponse(fields(`n${i}`), true);
  assert.deepEqual(first, copy);
});
