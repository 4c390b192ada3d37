/**
 * The resources of `resources.ts` built as protobuf-es messages: the reference the direct encoder
 * is held to (`tests/xds/resources_test.ts` checks that its bytes equal `toBinary` of these), and
 * the readable form of what a route becomes. The agent itself never imports this module, so
 * protobuf-es and the generated Envoy descriptors stay out of its memory.
 *
 * @example
 * ```ts
 * import { buildCluster } from "./messages.ts";
 * const cluster = buildCluster({
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * });
 * cluster.name; // "cluster-web"
 * ```
 *
 * @module
 */
import { create, type DescMessage, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { anyPack, type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import type { EnvoyRoute } from "../api/types.ts";
import { type Cluster, ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
import { type Address, AddressSchema } from "../../proto/gen/envoy/config/core/v3/address_pb.ts";
import {
  type TransportSocket,
  TransportSocketSchema,
} from "../../proto/gen/envoy/config/core/v3/base_pb.ts";
import { ProxyProtocolConfig_Version } from "../../proto/gen/envoy/config/core/v3/proxy_protocol_pb.ts";
import { ClusterLoadAssignmentSchema } from "../../proto/gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  type Listener,
  ListenerSchema,
} from "../../proto/gen/envoy/config/listener/v3/listener_pb.ts";
import { TcpProxySchema } from "../../proto/gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "../../proto/gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import { RawBufferSchema } from "../../proto/gen/envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer_pb.ts";
import {
  type BuiltResource,
  clusterName,
  discoveryType,
  durationParts,
  endpointHost,
  listenerName,
  PROXY_PROTOCOL_SOCKET_NAME,
  RAW_BUFFER_SOCKET_NAME,
  resourceOf,
  statPrefix,
  TCP_PROXY_FILTER_NAME,
  TYPE_PREFIX,
} from "./resources.ts";

function duration(secs: number): Duration {
  const [seconds, nanos] = durationParts(secs);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos });
}

function socketAddress(host: string, port: number): Address {
  return create(AddressSchema, {
    address: {
      case: "socketAddress",
      value: { address: host, portSpecifier: { case: "portValue", value: port } },
    },
  });
}

function proxyProtocolSocket(version: ProxyProtocolConfig_Version): TransportSocket {
  const rawBuffer = create(TransportSocketSchema, {
    name: RAW_BUFFER_SOCKET_NAME,
    configType: { case: "typedConfig", value: anyPack(RawBufferSchema, create(RawBufferSchema)) },
  });
  const upstream = create(ProxyProtocolUpstreamTransportSchema, {
    config: { version },
    transportSocket: rawBuffer,
  });
  return create(TransportSocketSchema, {
    name: PROXY_PROTOCOL_SOCKET_NAME,
    configType: {
      case: "typedConfig",
      value: anyPack(ProxyProtocolUpstreamTransportSchema, upstream),
    },
  });
}

// The two PROXY protocol sockets are constants; build them once and share them (read-only).
const PROXY_PROTOCOL_SOCKETS: Readonly<Record<1 | 2, TransportSocket>> = {
  1: proxyProtocolSocket(ProxyProtocolConfig_Version.V1),
  2: proxyProtocolSocket(ProxyProtocolConfig_Version.V2),
};

/**
 * The upstream transport socket for a route's `proxy_protocol` (1 -> v1, 2 -> v2, with a
 * raw_buffer socket inside), or `undefined` for 0. The returned message is shared: do not
 * mutate it.
 *
 * @example
 * ```ts
 * import { proxyProtocolTransportSocket } from "./messages.ts";
 * proxyProtocolTransportSocket(2)?.name; // "envoy.transport_sockets.upstream_proxy_protocol"
 * ```
 */
export function proxyProtocolTransportSocket(proxyProtocol: number): TransportSocket | undefined {
  return proxyProtocol === 1 || proxyProtocol === 2
    ? PROXY_PROTOCOL_SOCKETS[proxyProtocol]
    : undefined;
}

/**
 * The Cluster message of one route. The caller must have checked the route with
 * {@linkcode routeProblem} (`buildResources` does); an unchecked route may yield a Cluster
 * Envoy rejects.
 *
 * @example
 * ```ts
 * import { buildCluster } from "./messages.ts";
 * const cluster = buildCluster({
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "app.internal", backend_port: 8080, cluster_type: "strict_dns",
 *   connect_timeout_secs: 3, proxy_protocol: 0, source: "dynamic", status: "active",
 * });
 * cluster.name; // "cluster-web"
 * ```
 */
export function buildCluster(route: EnvoyRoute): Cluster {
  const name = clusterName(route.name);
  return create(ClusterSchema, {
    name,
    clusterDiscoveryType: { case: "type", value: discoveryType(route.cluster_type) },
    connectTimeout: duration(route.connect_timeout_secs),
    loadAssignment: create(ClusterLoadAssignmentSchema, {
      clusterName: name,
      endpoints: [{
        lbEndpoints: [{
          hostIdentifier: {
            case: "endpoint",
            value: {
              address: socketAddress(
                endpointHost(route.backend_host ?? ""),
                route.backend_port ?? 0,
              ),
            },
          },
        }],
      }],
    }),
    transportSocket: proxyProtocolTransportSocket(route.proxy_protocol),
  });
}

/**
 * The Listener message of one route: `0.0.0.0:<listen_port>`, one filter chain with one
 * tcp_proxy filter forwarding to the route's cluster.
 *
 * @example
 * ```ts
 * import { buildListener } from "./messages.ts";
 * const listener = buildListener({
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * });
 * listener.name; // "listener-web"
 * ```
 */
export function buildListener(route: EnvoyRoute): Listener {
  const tcpProxy = create(TcpProxySchema, {
    statPrefix: statPrefix(route.name),
    clusterSpecifier: { case: "cluster", value: clusterName(route.name) },
  });
  return create(ListenerSchema, {
    name: listenerName(route.name),
    address: socketAddress("0.0.0.0", route.listen_port),
    filterChains: [{
      filters: [{
        name: TCP_PROXY_FILTER_NAME,
        configType: { case: "typedConfig", value: anyPack(TcpProxySchema, tcpProxy) },
      }],
    }],
  });
}

/**
 * Serializes a message once into a {@linkcode BuiltResource}.
 *
 * @example
 * ```ts
 * import { buildCluster, builtResource } from "./messages.ts";
 * import { ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
 * const route = {
 *   id: "r1", envoy_node_id: "n1", name: "web", listen_port: 10080,
 *   backend_host: "10.0.0.5", backend_port: 8080, cluster_type: "static",
 *   connect_timeout_secs: 5, proxy_protocol: 0, source: "dynamic", status: "active",
 * };
 * const res = builtResource(ClusterSchema, buildCluster(route));
 * res.typeUrl; // "type.googleapis.com/envoy.config.cluster.v3.Cluster"
 * ```
 */
export function builtResource<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc> & { name: string },
): BuiltResource {
  return resourceOf(message.name, TYPE_PREFIX + schema.typeName, toBinary(schema, message));
}
