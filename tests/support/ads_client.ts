/**
 * A `@grpc/grpc-js` client class for the upstream `AggregatedDiscoveryService` (bidi
 * `StreamAggregatedResources`), encoding and decoding with the upstream Envoy protos, as an Envoy
 * would talk to the agent.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { adsClientClass } from "./ads_client.ts";
 * const Client = adsClientClass();
 * const client = new Client("127.0.0.1:18000", grpc.credentials.createInsecure());
 * ```
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { loadUpstream } from "./upstream_protos.ts";

/** The client constructor; requests are plain objects, responses `toObject` of the upstream type. */
export function adsClientClass(): grpc.ServiceClientConstructor {
  const root = loadUpstream();
  const Req = root.lookupType("envoy.service.discovery.v3.DiscoveryRequest");
  const Res = root.lookupType("envoy.service.discovery.v3.DiscoveryResponse");
  return grpc.makeGenericClientConstructor({
    StreamAggregatedResources: {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
      requestStream: true,
      responseStream: true,
      requestSerialize: (o: object) => Buffer.from(Req.encode(Req.fromObject(o)).finish()),
      requestDeserialize: (b: Buffer) => Req.decode(b),
      responseSerialize: (o: object) => Buffer.from(Res.encode(Res.fromObject(o)).finish()),
      responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b)),
    },
  } as unknown as grpc.ServiceDefinition, "ads");
}
