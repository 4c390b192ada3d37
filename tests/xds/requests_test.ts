/**
 * The lean request decoder reads what protobuf-es reads: checked on random messages, on requests
 * encoded with the upstream Envoy protos carrying a full Envoy `Node` (extensions, metadata, build
 * version), and on malformed bytes (a clear error, never anything else).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
} from "../../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import type { DeltaRequest, SotwRequest } from "../../lib/xds/protocol.ts";
import { decodeDeltaRequest, decodeSotwRequest } from "../../lib/xds/requests.ts";
import { lookupUpstreamType } from "../support/upstream_protos.ts";

/** What protobuf-es makes of the bytes, in the decoder's shape. */
function referenceSotw(bytes: Uint8Array): SotwRequest {
  const m = fromBinary(DiscoveryRequestSchema, bytes);
  const req: SotwRequest = {
    nodeId: m.node?.id ?? "",
    typeUrl: m.typeUrl,
    versionInfo: m.versionInfo,
    resourceNames: m.resourceNames,
    responseNonce: m.responseNonce,
  };
  if (m.errorDetail) req.error = { code: m.errorDetail.code, message: m.errorDetail.message };
  return req;
}

function referenceDelta(bytes: Uint8Array): DeltaRequest {
  const m = fromBinary(DeltaDiscoveryRequestSchema, bytes);
  const req: DeltaRequest = {
    nodeId: m.node?.id ?? "",
    typeUrl: m.typeUrl,
    subscribe: m.resourceNamesSubscribe,
    unsubscribe: m.resourceNamesUnsubscribe,
    initialVersions: { ...m.initialResourceVersions },
    responseNonce: m.responseNonce,
  };
  if (m.errorDetail) req.error = { code: m.errorDetail.code, message: m.errorDetail.message };
  return req;
}

const text = fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: "binary", maxLength: 10 }));
const node = fc.option(
  fc.record({ id: text, cluster: text, userAgentName: text, clientFeatures: fc.array(text) }),
  { nil: undefined },
);
const errorDetail = fc.option(
  fc.record({ code: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), message: text }),
  { nil: undefined },
);

Deno.test("requests: DiscoveryRequest decodes as protobuf-es decodes it (random messages)", () => {
  fc.assert(
    fc.property(
      fc.record({
        versionInfo: text,
        node,
        resourceNames: fc.array(text, { maxLength: 5 }),
        typeUrl: text,
        responseNonce: text,
        errorDetail,
      }),
      (fields) => {
        const bytes = toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, fields));
        assert.deepEqual(decodeSotwRequest(bytes), referenceSotw(bytes));
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("requests: DeltaDiscoveryRequest decodes as protobuf-es decodes it (random messages)", () => {
  fc.assert(
    fc.property(
      fc.record({
        node,
        typeUrl: text,
        resourceNamesSubscribe: fc.array(text, { maxLength: 5 }),
        resourceNamesUnsubscribe: fc.array(text, { maxLength: 5 }),
        initialResourceVersions: fc.dictionary(text, text, { maxKeys: 5 }),
        responseNonce: text,
        errorDetail,
      }),
      (fields) => {
        const bytes = toBinary(
          DeltaDiscoveryRequestSchema,
          create(DeltaDiscoveryRequestSchema, fields),
        );
        assert.deepEqual(decodeDeltaRequest(bytes), referenceDelta(bytes));
      },
    ),
    { numRuns: 500 },
  );
});

/** An Envoy node as Envoy reports itself: most of it is skipped by the decoder. */
const ENVOY_NODE = {
  id: "edge-7",
  cluster: "sigma",
  metadata: { fields: { region: { string_value: "eu" }, weight: { number_value: 3 } } },
  locality: { region: "eu-west", zone: "a" },
  user_agent_name: "envoy",
  user_agent_build_version: {
    version: { major_number: 1, minor_number: 31, patch: 2 },
    metadata: { fields: { "revision.sha": { string_value: "abc" } } },
  },
  extensions: Array.from({ length: 200 }, (_, i) => ({
    name: `envoy.filters.network.ext_${i}`,
    category: "envoy.filters.network",
    type_urls: [`type.googleapis.com/envoy.extensions.ext_${i}.v3.Config`],
  })),
  client_features: ["envoy.lb.does_not_support_overprovisioning"],
  listening_addresses: [{ socket_address: { address: "0.0.0.0", port_value: 10000 } }],
};

Deno.test("requests: requests encoded with the upstream Envoy protos, with a full Envoy node", () => {
  const Sotw = lookupUpstreamType("envoy.service.discovery.v3.DiscoveryRequest")!;
  const sotwBytes = Sotw.encode(Sotw.fromObject({
    version_info: "7",
    node: ENVOY_NODE,
    resource_names: ["cluster-a", "cluster-b"],
    type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    response_nonce: "k2.1f",
    error_detail: {
      code: 3,
      message: "Proto constraint validation failed",
      details: [{ type_url: "type.googleapis.com/google.protobuf.StringValue", value: [1, 2] }],
    },
  })).finish();
  assert.ok(sotwBytes.length > 10_000, "the node is several KB, as Envoy's is");
  assert.deepEqual(decodeSotwRequest(sotwBytes), {
    nodeId: "edge-7",
    typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    versionInfo: "7",
    resourceNames: ["cluster-a", "cluster-b"],
    responseNonce: "k2.1f",
    error: { code: 3, message: "Proto constraint validation failed" },
  });
  assert.deepEqual(decodeSotwRequest(sotwBytes), referenceSotw(sotwBytes));

  const Delta = lookupUpstreamType("envoy.service.discovery.v3.DeltaDiscoveryRequest")!;
  const deltaBytes = Delta.encode(Delta.fromObject({
    node: ENVOY_NODE,
    type_url: "type.googleapis.com/envoy.config.listener.v3.Listener",
    resource_names_subscribe: ["*"],
    resource_names_unsubscribe: ["listener-old"],
    initial_resource_versions: { "listener-a": "h1", ["__proto__"]: "h2" },
    response_nonce: "k2.20",
  })).finish();
  const delta = decodeDeltaRequest(deltaBytes);
  assert.deepEqual(delta, referenceDelta(deltaBytes));
  assert.equal(delta.nodeId, "edge-7");
  assert.deepEqual(Object.entries(delta.initialVersions).sort(), [
    ["__proto__", "h2"],
    ["listener-a", "h1"],
  ]);
  assert.equal(delta.error, undefined);
});

Deno.test("requests: repeated fields merge as protobuf does; a negative code is an int32", () => {
  const first = toBinary(
    DiscoveryRequestSchema,
    create(DiscoveryRequestSchema, {
      node: { id: "a", cluster: "c" },
      errorDetail: { code: -5, message: "m1" },
    }),
  );
  const second = toBinary(
    DiscoveryRequestSchema,
    create(DiscoveryRequestSchema, { node: { cluster: "d" }, errorDetail: { message: "m2" } }),
  );
  const both = new Uint8Array([...first, ...second]);
  const decoded = decodeSotwRequest(both);
  assert.deepEqual(decoded, referenceSotw(both));
  assert.equal(decoded.nodeId, "a", "a later node without id keeps the id");
  assert.deepEqual(decoded.error, { code: -5, message: "m2" });
});

Deno.test("requests: malformed bytes give a RangeError or TypeError, never anything else", () => {
  const valid = toBinary(
    DiscoveryRequestSchema,
    create(DiscoveryRequestSchema, {
      versionInfo: "3",
      node: { id: "edge-1" },
      typeUrl: "t",
      responseNonce: "n",
      errorDetail: { code: 2, message: "x" },
    }),
  );
  // Every truncation inside a field fails; at a field boundary it decodes what is there.
  for (let cut = 1; cut < valid.length; cut++) {
    try {
      decodeSotwRequest(valid.subarray(0, cut));
    } catch (e) {
      assert.ok(e instanceof RangeError || e instanceof TypeError, String(e));
    }
  }
  for (
    const [bytes, message] of [
      [[0x0a, 0x05, 0x61], /length past the end/],
      [[0x08, 0x01], /version_info has wire type 0/],
      [[0x12, 0x02, 0x08, 0x01], /node.id has wire type 0/],
      [[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], /invalid varint/],
      [[0x00], /field number 0/],
      [[0x3b, 0x44], /mismatched end of group/],
      [[0x3b], /unterminated group/],
      [[0x3f], /unexpected wire type 7/],
      [[0x39, 1, 2, 3], /truncated fixed-width/],
    ] as const
  ) {
    assert.throws(() => decodeSotwRequest(new Uint8Array(bytes)), message);
  }
  // Unknown fields of every wire type, and groups, are skipped.
  const unknown = new Uint8Array([0x40, 0x01, 0x49, ...new Array(8).fill(0), 0x55, 1, 2, 3, 4]);
  assert.deepEqual(decodeSotwRequest(new Uint8Array([...unknown, 0x3b, 0x40, 0x01, 0x3c])), {
    nodeId: "",
    typeUrl: "",
    versionInfo: "",
    resourceNames: [],
    responseNonce: "",
  });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      for (const decode of [decodeSotwRequest, decodeDeltaRequest]) {
        try {
          decode(bytes);
        } catch (e) {
          assert.ok(e instanceof RangeError || e instanceof TypeError, String(e));
        }
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("requests: a repeated type URL is recognised by its bytes, also when the buffer it came from is reused", () => {
  const encode = (typeUrl: string) =>
    toBinary(
      DiscoveryRequestSchema,
      create(DiscoveryRequestSchema, { typeUrl, responseNonce: "n" }),
    );
  const a = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  const b = "type.googleapis.com/envoy.config.cluster.v3.Clustes"; // same length
  // One buffer, rewritten in place, as the transport's read buffer is between requests.
  const buf = encode(a);
  assert.equal(decodeSotwRequest(buf).typeUrl, a);
  buf.set(encode(b));
  assert.equal(decodeSotwRequest(buf).typeUrl, b);
  buf.set(encode(a));
  assert.equal(decodeSotwRequest(buf).typeUrl, a);
  // More distinct URLs than are remembered: every one still decodes to itself.
  for (let i = 0; i < 100; i++) {
    const url = `type.googleapis.com/x.T${i}`;
    assert.equal(decodeSotwRequest(encode(url)).typeUrl, url);
    assert.equal(
      decodeDeltaRequest(
        toBinary(
          DeltaDiscoveryRequestSchema,
          create(DeltaDiscoveryRequestSchema, { typeUrl: url }),
        ),
      ).typeUrl,
      url,
    );
  }
  assert.equal(decodeSotwRequest(encode(a)).typeUrl, a);
  // Short strings: ASCII fast, anything else as TextDecoder gives it.
  const nonce = decodeSotwRequest(
    toBinary(
      DiscoveryRequestSchema,
      create(DiscoveryRequestSchema, { responseNonce: "é\u{1F600}x" }),
    ),
  ).responseNonce;
  assert.equal(nonce, "é\u{1F600}x");
});
