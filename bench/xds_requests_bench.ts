/**
 * Decoding an Envoy ACK that carries Envoy's full `Node` (as Envoy sends it on every request unless
 * its bootstrap sets `set_node_on_first_message_only`): the agent's lean decoder (`requests.ts`)
 * against protobuf-es `fromBinary`, as a `deno bench` group with protobuf-es as the baseline.
 *
 * Run: `deno task bench` (all `deno bench` files) or
 * `deno bench --allow-read --allow-env bench/xds_requests_bench.ts`.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { DiscoveryRequestSchema } from "../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import { decodeSotwRequest } from "../lib/xds/requests.ts";
import { lookupUpstreamType } from "../tests/support/upstream_protos.ts";

const Request = lookupUpstreamType("envoy.service.discovery.v3.DiscoveryRequest")!;
const ack = Request.encode(Request.fromObject({
  version_info: "42",
  node: {
    id: "edge-7",
    cluster: "sigma",
    user_agent_name: "envoy",
    user_agent_build_version: { version: { major_number: 1, minor_number: 31, patch: 2 } },
    extensions: Array.from({ length: 200 }, (_, i) => ({
      name: `envoy.filters.network.ext_${i}`,
      category: "envoy.filters.network",
      type_urls: [`type.googleapis.com/envoy.extensions.ext_${i}.v3.Config`],
    })),
  },
  type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  response_nonce: "k2.1f",
})).finish();

Deno.bench("ACK with a full Envoy node: protobuf-es fromBinary", {
  group: "decode",
  baseline: true,
}, () => {
  fromBinary(DiscoveryRequestSchema, ack);
});

Deno.bench("ACK with a full Envoy node: lean decoder (requests.ts)", { group: "decode" }, () => {
  decodeSotwRequest(ack);
});
