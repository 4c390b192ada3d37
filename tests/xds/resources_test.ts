/**
 * Resource builders: everything `buildResources` emits is decoded with the UPSTREAM Envoy protos
 * (from `@grpc/grpc-js-xds/deps`) and checked field by field; routes Envoy would reject are
 * skipped with a reason; output is deterministic. Also checks our discovery protos against the
 * upstream ones on the wire.
 *
 * @module
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { create, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "../../proto/gen/envoy/config/listener/v3/listener_pb.ts";
import type { EnvoyRoute } from "../../lib/api/types.ts";
import { buildCluster, buildListener } from "../../lib/xds/messages.ts";
import {
  buildResources,
  CLUSTER_TYPE_URL,
  clusterName,
  LISTENER_TYPE_URL,
  listenerName,
  PROXY_PROTOCOL_TYPE_URL,
  RAW_BUFFER_TYPE_URL,
  routeProblem,
  sameResources,
  statPrefix,
  TCP_PROXY_TYPE_URL,
} from "../../lib/xds/resources.ts";
import {
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponseSchema,
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
} from "../../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import {
  decodeAny,
  type DecodedObject,
  loadUpstream,
  strictBootstrapFromYaml,
  strictJsonProblems,
  StrictProtoError,
} from "../support/upstream_protos.ts";
import { route as validRoute } from "./xds_client.ts";

/** The route "web" (10080 → 10.0.0.5:8080) with `overrides`. */
function route(overrides: Partial<EnvoyRoute> = {}): EnvoyRoute {
  const web = { id: "id-web", envoy_node_id: "node-1", backend_host: "10.0.0.5" };
  return validRoute("web", 10080, { ...web, ...overrides });
}

/** Path access into decoded objects: `at(obj, "a", 0, "b")`. */
function at(obj: unknown, ...path: (string | number)[]): unknown {
  let cur: unknown = obj;
  for (const key of path) {
    assert.ok(
      cur !== null && typeof cur === "object",
      `no ${String(key)} in ${JSON.stringify(cur)}`,
    );
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

/** The socket address of a decoded cluster's one endpoint. */
function endpointOf(cluster: DecodedObject): DecodedObject {
  const path = ["load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address"];
  return at(cluster, ...path, "socket_address") as DecodedObject;
}

function decodeOnly(r: EnvoyRoute): { cluster: DecodedObject; listener: DecodedObject } {
  const built = buildResources([r]);
  assert.deepEqual(built.skipped, []);
  assert.equal(built.clusters.length, 1);
  assert.equal(built.listeners.length, 1);
  const [c] = built.clusters;
  const [l] = built.listeners;
  return { cluster: decodeAny(c.typeUrl, c.bytes), listener: decodeAny(l.typeUrl, l.bytes) };
}

Deno.test("cluster decodes with the upstream Cluster proto (static, no PROXY protocol)", () => {
  const { cluster } = decodeOnly(route({ connect_timeout_secs: 7 }));
  assert.deepEqual(cluster, {
    name: "cluster-web",
    type: "STATIC",
    connect_timeout: { seconds: "7" },
    load_assignment: {
      cluster_name: "cluster-web",
      endpoints: [{
        lb_endpoints: [{
          endpoint: { address: { socket_address: { address: "10.0.0.5", port_value: 8080 } } },
        }],
      }],
    },
  });
});

Deno.test("listener decodes with the upstream Listener proto, TcpProxy inside the filter", () => {
  const { listener } = decodeOnly(route({ name: "db", listen_port: 15432 }));
  assert.deepEqual(listener, {
    name: "listener-db",
    address: { socket_address: { address: "0.0.0.0", port_value: 15432 } },
    filter_chains: [{
      filters: [{
        name: "envoy.filters.network.tcp_proxy",
        typed_config: {
          "@type": TCP_PROXY_TYPE_URL,
          stat_prefix: "tcp-db",
          cluster: "cluster-db",
        },
      }],
    }],
  });
  assert.equal(
    TCP_PROXY_TYPE_URL,
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
  );
});

Deno.test("PROXY protocol v1/v2: upstream_proxy_protocol socket wrapping raw_buffer", () => {
  for (const [pp, version] of [[1, "V1"], [2, "V2"]] as const) {
    const { cluster } = decodeOnly(route({ proxy_protocol: pp }));
    // V1 is enum value 0, the proto3 default: it is not on the wire, and Envoy reads it as V1.
    const config = version === "V1" ? {} : { version };
    assert.deepEqual(cluster.transport_socket, {
      name: "envoy.transport_sockets.upstream_proxy_protocol",
      typed_config: {
        "@type": PROXY_PROTOCOL_TYPE_URL,
        config,
        transport_socket: {
          name: "envoy.transport_sockets.raw_buffer",
          typed_config: { "@type": RAW_BUFFER_TYPE_URL },
        },
      },
    });
  }
  assert.equal(
    PROXY_PROTOCOL_TYPE_URL,
    "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport",
  );
  assert.equal(
    RAW_BUFFER_TYPE_URL,
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
  );
  // The upstream V1/V2 enum numbers are what we put on the wire.
  const version = loadUpstream().lookupEnum("envoy.config.core.v3.ProxyProtocolConfig.Version");
  assert.deepEqual(version.values, { V1: 0, V2: 1 });
});

Deno.test("cluster_type maps to the discovery type; unknown types become LOGICAL_DNS", () => {
  const cases: [string, string, string][] = [
    ["static", "10.1.2.3", "STATIC"],
    ["STATIC", "10.1.2.3", "STATIC"],
    ["strict_dns", "app.internal", "STRICT_DNS"],
    ["logical_dns", "app.internal", "LOGICAL_DNS"],
    ["eds", "app.internal", "LOGICAL_DNS"],
    ["original_dst", "10.1.2.3", "LOGICAL_DNS"],
    ["", "app.internal", "LOGICAL_DNS"],
    ["something_else", "app.internal", "LOGICAL_DNS"],
  ];
  for (const [clusterType, host, expected] of cases) {
    const { cluster } = decodeOnly(route({ cluster_type: clusterType, backend_host: host }));
    assert.equal(cluster.type, expected, `cluster_type ${JSON.stringify(clusterType)}`);
    assert.equal(endpointOf(cluster).address, host);
  }
});

Deno.test("IPv6 backends: bracketed literal is unwrapped; static accepts IPv6", () => {
  const { cluster } = decodeOnly(route({ backend_host: "[2001:db8::7]" }));
  assert.equal(cluster.type, "STATIC");
  assert.equal(endpointOf(cluster).address, "2001:db8::7");
});

Deno.test("fractional connect timeout becomes seconds + nanos", () => {
  assert.deepEqual(decodeOnly(route({ connect_timeout_secs: 0.5 })).cluster.connect_timeout, {
    nanos: 500_000_000,
  });
  assert.deepEqual(decodeOnly(route({ connect_timeout_secs: 2.25 })).cluster.connect_timeout, {
    seconds: "2",
    nanos: 250_000_000,
  });
});

Deno.test("BuiltResource: Any wraps the same bytes with the response type_url", () => {
  const built = buildResources([route(), route({ id: "b", name: "b", listen_port: 10081 })]);
  for (
    const [list, typeUrl] of [[built.clusters, CLUSTER_TYPE_URL], [
      built.listeners,
      LISTENER_TYPE_URL,
    ]] as const
  ) {
    for (const res of list) {
      assert.equal(res.typeUrl, typeUrl);
      assert.equal(res.any.typeUrl, typeUrl);
      // Any must share the serialized bytes (a view of the same memory), not copy them.
      assert.equal(res.any.value.buffer, res.bytes.buffer);
      assert.equal(res.any.value.byteOffset, res.bytes.byteOffset);
      assert.deepEqual(res.any.value, res.bytes);
      assert.match(res.hash, /^[0-9a-f]{64}$/);
      // The Any itself, serialized and decoded as upstream google.protobuf.Any.
      const anyType = loadUpstream().lookupType("google.protobuf.Any");
      const upstreamAny = anyType.decode(toBinary(AnySchema, res.any)) as unknown as {
        type_url: string;
        value: Uint8Array;
      };
      assert.equal(upstreamAny.type_url, typeUrl);
      assert.equal(decodeAny(upstreamAny.type_url, upstreamAny.value).name, res.name);
    }
  }
  assert.equal(CLUSTER_TYPE_URL, "type.googleapis.com/envoy.config.cluster.v3.Cluster");
  assert.equal(LISTENER_TYPE_URL, "type.googleapis.com/envoy.config.listener.v3.Listener");
});

Deno.test("names follow contract D6", () => {
  assert.equal(clusterName("x"), "cluster-x");
  assert.equal(listenerName("x"), "listener-x");
  assert.equal(statPrefix("x"), "tcp-x");
});

Deno.test("routes Envoy would reject are skipped with a reason", () => {
  const bad: [Partial<EnvoyRoute>, RegExp][] = [
    [{ name: "" }, /empty route name/],
    [{ backend_host: null }, /no backend_host/],
    [{ backend_host: "" }, /no backend_host/],
    [{ backend_port: null }, /no backend_port/],
    [{ backend_port: 0 }, /backend_port 0 is not in 1\.\.65535/],
    [{ backend_port: 65536 }, /backend_port 65536/],
    [{ backend_port: 80.5 }, /backend_port 80\.5/],
    [{ listen_port: 0 }, /listen_port 0 is not in 1\.\.65535/],
    [{ listen_port: 70000 }, /listen_port 70000/],
    [{ listen_port: -1 }, /listen_port -1/],
    [{ cluster_type: "static", backend_host: "db.internal" }, /static needs an IP address/],
    [{ cluster_type: "static", backend_host: "10.0.0.256" }, /static needs an IP address/],
    [
      { cluster_type: "strict_dns", backend_host: "bad host" },
      /neither an IP address nor a DNS name/,
    ],
    [{ cluster_type: "logical_dns", backend_host: "http://x" }, /neither an IP address/],
    [{ connect_timeout_secs: 0 }, /connect_timeout_secs 0 is not > 0/],
    [{ connect_timeout_secs: -3 }, /connect_timeout_secs -3/],
    [{ connect_timeout_secs: NaN }, /connect_timeout_secs NaN/],
    [{ connect_timeout_secs: 1e15 }, /too large/],
    [{ connect_timeout_secs: 1e-12 }, /below 1 ns/],
    [{ proxy_protocol: 3 }, /proxy_protocol 3 is not 0/],
    [{ proxy_protocol: -1 }, /proxy_protocol -1/],
  ];
  for (const [overrides, reason] of bad) {
    const r = route(overrides);
    const built = buildResources([r]);
    const what = JSON.stringify(overrides);
    assert.equal(built.clusters.length, 0, what);
    assert.equal(built.listeners.length, 0, what);
    assert.equal(built.skipped.length, 1, what);
    assert.equal(built.skipped[0].route, r, what);
    assert.match(built.skipped[0].reason, reason, what);
    assert.equal(routeProblem(r), built.skipped[0].reason);
  }
  assert.equal(routeProblem(route()), null);
});

Deno.test("duplicate listen port or name: first by (listen_port, name) wins, regardless of input order", () => {
  const routes = [
    route({ id: "3", name: "zeta", listen_port: 10080 }),
    route({ id: "1", name: "alpha", listen_port: 10080 }), // wins port 10080 (name sorts first)
    route({ id: "2", name: "alpha", listen_port: 10090 }), // name taken by the route on 10080
    route({ id: "4", name: "beta", listen_port: 10070, backend_host: null }), // invalid: claims nothing
    route({ id: "5", name: "beta", listen_port: 10095 }), // so "beta" is still free
  ];
  const expected = {
    clusters: ["cluster-alpha", "cluster-beta"],
    skipped: [
      ["beta", 10070, /no backend_host/],
      ["zeta", 10080, /listen_port 10080 is already used by route "alpha"/],
      ["alpha", 10090, /already named "alpha"/],
    ] as const,
  };
  for (
    const order of [routes, [...routes].reverse(), [
      routes[2],
      routes[4],
      routes[0],
      routes[3],
      routes[1],
    ]]
  ) {
    const built = buildResources(order);
    assert.deepEqual(built.clusters.map((c) => c.name), expected.clusters);
    assert.deepEqual(built.listeners.map((l) => l.name), ["listener-alpha", "listener-beta"]);
    assert.equal(
      decodeAny(built.listeners[0].typeUrl, built.listeners[0].bytes).address !== undefined,
      true,
    );
    assert.deepEqual(
      built.skipped.map((s) => [s.route.name, s.route.listen_port]),
      expected.skipped.map(([n, p]) => [n, p]),
    );
    built.skipped.forEach((s, i) => assert.match(s.reason, expected.skipped[i][2]));
  }
});

Deno.test("deterministic: same routes in any order give identical bytes and hashes", () => {
  const routes = Array.from({ length: 20 }, (_, i) =>
    route({
      id: `r${i}`,
      name: `svc-${(i * 7) % 20}`,
      listen_port: 20000 + ((i * 13) % 20),
      proxy_protocol: i % 3,
      cluster_type: ["static", "strict_dns", "logical_dns"][i % 3],
      backend_host: i % 3 === 0 ? `10.0.0.${i}` : `svc${i}.internal`,
    }));
  const a = buildResources(routes);
  const b = buildResources([...routes].reverse());
  assert.equal(a.clusters.length, 20);
  for (const key of ["clusters", "listeners"] as const) {
    assert.deepEqual(a[key].map((r) => r.name), b[key].map((r) => r.name));
    assert.deepEqual(a[key].map((r) => r.hash), b[key].map((r) => r.hash));
    a[key].forEach((r, i) => assert.deepEqual(r.bytes, b[key][i].bytes));
  }
  // Ordered by listen_port.
  const ports = a.listeners.map((l) =>
    at(decodeAny(l.typeUrl, l.bytes), "address", "socket_address", "port_value") as number
  );
  assert.deepEqual(ports, [...ports].sort((x, y) => x - y));
  // A content change changes the hash of exactly the resource that changed.
  const changed = buildResources(
    routes.map((r) => r.name === "svc-0" ? { ...r, backend_port: 9999 } : r),
  );
  const diff = changed.clusters.filter((c, i) => c.hash !== a.clusters[i].hash).map((c) => c.name);
  assert.deepEqual(diff, ["cluster-svc-0"]);
  assert.deepEqual(changed.listeners.map((l) => l.hash), a.listeners.map((l) => l.hash));
});

Deno.test("property: any routes → every resource decodes upstream and is valid; nothing lost", () => {
  const arbRoute = fc.record({
    id: fc.uuid(),
    envoy_node_id: fc.constant("n"),
    name: fc.oneof(fc.constantFrom("a", "b", "c", ""), fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/)),
    listen_port: fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.constantFrom(10000, 10001)),
    backend_host: fc.oneof(
      fc.constant(null),
      fc.constantFrom("", "10.0.0.1", "::1", "[::1]", "app.internal", "bad host", "a..b"),
      fc.ipV4(),
      fc.domain(),
    ),
    backend_port: fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 70000 })),
    cluster_type: fc.constantFrom(
      "static",
      "strict_dns",
      "logical_dns",
      "eds",
      "original_dst",
      "x",
    ),
    connect_timeout_secs: fc.oneof(
      fc.integer({ min: -2, max: 120 }),
      fc.double({ min: 0, max: 10, noNaN: true }),
    ),
    proxy_protocol: fc.integer({ min: -1, max: 4 }),
    source: fc.constant("dynamic"),
    status: fc.constant("active"),
  });
  fc.assert(
    fc.property(fc.array(arbRoute, { maxLength: 12 }), (routes) => {
      const built = buildResources(routes);
      assert.equal(built.clusters.length + built.skipped.length, routes.length);
      assert.equal(built.listeners.length, built.clusters.length);
      assert.equal(new Set(built.clusters.map((c) => c.name)).size, built.clusters.length);
      assert.equal(new Set(built.listeners.map((c) => c.name)).size, built.listeners.length);
      const ports = new Set<number>();
      for (const res of built.listeners) {
        const l = decodeAny(res.typeUrl, res.bytes);
        const port = at(l, "address", "socket_address", "port_value") as number;
        assert.ok(port >= 1 && port <= 65535);
        assert.ok(!ports.has(port), `two listeners on port ${port}`);
        ports.add(port);
        const tcp = at(l, "filter_chains", 0, "filters", 0, "typed_config") as DecodedObject;
        assert.equal(tcp.cluster, res.name.replace(/^listener-/, "cluster-"));
        assert.ok(typeof tcp.stat_prefix === "string" && tcp.stat_prefix.length > 4);
      }
      for (const res of built.clusters) {
        const c = decodeAny(res.typeUrl, res.bytes);
        const t = c.connect_timeout as { seconds?: string; nanos?: number };
        assert.ok(Number(t.seconds ?? 0) > 0 || (t.nanos ?? 0) > 0, "connect_timeout must be > 0");
        assert.ok((t.nanos ?? 0) < 1e9);
        const sa = endpointOf(c);
        assert.ok(typeof sa.address === "string" && sa.address !== "");
        assert.ok((sa.port_value as number) >= 1 && (sa.port_value as number) <= 65535);
        if (c.type === "STATIC") assert.match(sa.address as string, /^[\d.]+$|:/);
        if (c.transport_socket) {
          const v = at(c, "transport_socket", "typed_config", "config", "version") ?? "V1";
          assert.ok(v === "V1" || v === "V2");
        }
      }
      for (const s of built.skipped) assert.ok(s.reason.length > 0);
    }),
    { numRuns: 200 },
  );
});

Deno.test("property: the direct encoding is byte for byte toBinary of buildCluster/buildListener", () => {
  const arbRoute = fc.record({
    id: fc.uuid(),
    envoy_node_id: fc.constant("n"),
    // Non-ASCII names take the TextEncoder path of the writer.
    name: fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,70}$/), fc.constantFrom("wëb", "路由")),
    listen_port: fc.integer({ min: 1, max: 65535 }),
    backend_host: fc.oneof(fc.ipV4(), fc.domain(), fc.constantFrom("::1", "[::1]", "fe80::1")),
    backend_port: fc.integer({ min: 1, max: 65535 }),
    cluster_type: fc.constantFrom("static", "strict_dns", "logical_dns", "eds"),
    connect_timeout_secs: fc.oneof(
      fc.integer({ min: 1, max: 315_576_000_000 }),
      fc.double({ min: 1e-9, max: 1e6, noNaN: true }),
      fc.constantFrom(0.9999999999, 0.5, 2.25),
    ),
    proxy_protocol: fc.constantFrom(0, 1, 2),
    source: fc.constant("dynamic"),
    status: fc.constant("active"),
  });
  fc.assert(
    fc.property(arbRoute, (r) => {
      fc.pre(routeProblem(r) === null);
      const built = buildResources([r]);
      assert.deepEqual(built.clusters[0].bytes, toBinary(ClusterSchema, buildCluster(r)));
      assert.deepEqual(built.listeners[0].bytes, toBinary(ListenerSchema, buildListener(r)));
    }),
    { numRuns: 500 },
  );
});

Deno.test("reuse: unchanged routes keep their resource objects, changed ones are encoded again", () => {
  const a = route({ id: "a", name: "a", listen_port: 10001 });
  const b = route({ id: "b", name: "b", listen_port: 10002 });
  const first = buildResources([a, b]);
  const byName = new Map([a, b].map((r, i) => [r.name, { r, i }]));
  let asked = 0;
  const b2 = { ...b, backend_port: 9999 };
  const second = buildResources([{ ...a, id: "a-renumbered" }, b2], (r) => {
    asked++;
    const old = byName.get(r.name);
    return old && sameResources(old.r, r)
      ? [first.clusters[old.i], first.listeners[old.i]]
      : undefined;
  });
  assert.equal(asked, 2);
  assert.equal(second.clusters[0], first.clusters[0], "unchanged route: same cluster object");
  assert.equal(second.listeners[0], first.listeners[0]);
  assert.notEqual(second.clusters[1], first.clusters[1], "changed route: encoded again");
  assert.deepEqual(second.clusters[1].bytes, buildResources([b2]).clusters[0].bytes);
  assert.ok(!sameResources(b, b2));
});

Deno.test("buildCluster is what buildResources serializes", () => {
  const r = route({ proxy_protocol: 1 });
  const built = buildResources([r]);
  assert.equal(built.clusters[0].name, buildCluster(r).name);
});

Deno.test("our discovery protos match upstream on the wire (what part B sends and reads)", () => {
  const built = buildResources([route()]);
  const node = {
    id: "layer4-01",
    cluster: "sigma",
    userAgentName: "envoy",
    userAgentVersionType: { case: "userAgentVersion" as const, value: "1.31.0" },
    clientFeatures: ["envoy.lb.does_not_support_overprovisioning"],
    locality: { region: "eu", zone: "a", subZone: "1" },
  };
  const samples: [string, Uint8Array][] = [
    [
      "envoy.service.discovery.v3.DiscoveryResponse",
      toBinary(
        DiscoveryResponseSchema,
        create(DiscoveryResponseSchema, {
          versionInfo: "7",
          resources: [built.clusters[0].any],
          typeUrl: CLUSTER_TYPE_URL,
          nonce: "n-1",
          controlPlane: { identifier: "sigma-agent" },
        }),
      ),
    ],
    [
      "envoy.service.discovery.v3.DiscoveryRequest",
      toBinary(
        DiscoveryRequestSchema,
        create(DiscoveryRequestSchema, {
          versionInfo: "6",
          node,
          resourceNames: ["a", "b"],
          typeUrl: LISTENER_TYPE_URL,
          responseNonce: "n-1",
          errorDetail: { code: 3, message: "rejected" },
        }),
      ),
    ],
    [
      "envoy.service.discovery.v3.DeltaDiscoveryRequest",
      toBinary(
        DeltaDiscoveryRequestSchema,
        create(DeltaDiscoveryRequestSchema, {
          node,
          typeUrl: CLUSTER_TYPE_URL,
          resourceNamesSubscribe: ["*"],
          resourceNamesUnsubscribe: ["old"],
          initialResourceVersions: { "cluster-web": "abc" },
          responseNonce: "n-2",
          errorDetail: { code: 3, message: "no" },
        }),
      ),
    ],
    [
      "envoy.service.discovery.v3.DeltaDiscoveryResponse",
      toBinary(
        DeltaDiscoveryResponseSchema,
        create(DeltaDiscoveryResponseSchema, {
          systemVersionInfo: "7",
          resources: [{
            name: "cluster-web",
            version: built.clusters[0].hash,
            resource: built.clusters[0].any,
            aliases: ["x"],
            ttl: { seconds: 3n },
            cacheControl: { doNotCache: true },
          }],
          typeUrl: CLUSTER_TYPE_URL,
          nonce: "n-3",
          removedResources: ["cluster-gone"],
          controlPlane: { identifier: "sigma-agent" },
        }),
      ),
    ],
  ];
  for (const [typeName, bytes] of samples) {
    const decoded = decodeAny(`type.googleapis.com/${typeName}`, bytes);
    assert.ok(Object.keys(decoded).length >= 5, `${typeName}: ${JSON.stringify(decoded)}`);
  }
  const resp = decodeAny(`type.googleapis.com/${samples[0][0]}`, samples[0][1]);
  assert.equal(at(resp, "resources", 0, "@type"), CLUSTER_TYPE_URL);
  assert.equal(at(resp, "resources", 0, "name"), "cluster-web");
  const req = decodeAny(`type.googleapis.com/${samples[1][0]}`, samples[1][1]);
  assert.deepEqual(req.node, {
    id: "layer4-01",
    cluster: "sigma",
    locality: { region: "eu", zone: "a", sub_zone: "1" },
    user_agent_name: "envoy",
    user_agent_version: "1.31.0",
    client_features: ["envoy.lb.does_not_support_overprovisioning"],
  });
  assert.deepEqual(req.error_detail, { code: 3, message: "rejected" });
  const delta = decodeAny(`type.googleapis.com/${samples[3][0]}`, samples[3][1]);
  assert.equal(at(delta, "resources", 0, "version"), built.clusters[0].hash);
  assert.deepEqual(delta.removed_resources, ["cluster-gone"]);
});

Deno.test("decodeAny rejects fields the upstream schema does not know, and unknown types", () => {
  const [cluster] = buildResources([route()]).clusters;
  // Field 999 (varint) appended: upstream Cluster has no such field.
  const extra = new Uint8Array([...cluster.bytes, 0xb8, 0x3e, 0x01]);
  assert.throws(() => decodeAny(CLUSTER_TYPE_URL, extra), /does not know/);
  assert.throws(
    () => decodeAny("type.googleapis.com/envoy.nope.v3.Nothing", cluster.bytes),
    /no upstream type/,
  );
});

// --- strict Bootstrap validation (used for the bootstraps we ship) -------------------------------

const SEED_BOOTSTRAP = `
node:
  id: "layer4-01"
  cluster: "sigma"
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services:
      - envoy_grpc:
          cluster_name: xds_cluster
  lds_config: { ads: {} }
  cds_config: { ads: {} }
static_resources:
  clusters:
    - name: xds_cluster
      type: STATIC
      connect_timeout: 5s
      load_assignment:
        cluster_name: xds_cluster
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: { address: 127.0.0.1, port_value: 18000 }
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_version:
            http2_protocol_options: {}
`;
const FIXED_BOOTSTRAP = SEED_BOOTSTRAP.replace("explicit_http_version:", "explicit_http_config:");

function problemsOf(yaml: string): string[] {
  try {
    strictBootstrapFromYaml(yaml);
    return [];
  } catch (err) {
    assert.ok(err instanceof StrictProtoError, String(err));
    return [...err.problems];
  }
}

Deno.test("strict bootstrap: the seed's explicit_http_version is rejected, explicit_http_config accepted", () => {
  const problems = problemsOf(SEED_BOOTSTRAP);
  assert.ok(
    problems.some((p) =>
      p.includes('unknown field "explicit_http_version"') &&
      p.includes("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    ),
    problems.join("\n"),
  );
  const doc = strictBootstrapFromYaml(FIXED_BOOTSTRAP);
  assert.equal(at(doc, "node", "id"), "layer4-01");
});

Deno.test("strict bootstrap: a realistic config with nested typed_configs and camelCase passes", () => {
  const yaml = FIXED_BOOTSTRAP + `
  listeners:
    - name: http
      address: { socket_address: { address: 0.0.0.0, port_value: 8080 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          route: { cluster: xds_cluster, timeout: 0s }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
    - name: tcp
      address: { socket_address: { address: 0.0.0.0, portValue: 9000 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                statPrefix: tcp
                cluster: xds_cluster
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
layered_runtime:
  layers:
    - name: static
      static_layer: { overload: { global_downstream_max_connections: 50000 } }
`;
  assert.deepEqual(problemsOf(yaml), []);
});

Deno.test("strict bootstrap: each kind of mistake is reported with its path", () => {
  const cases: [string, string, RegExp][] = [
    [
      "node:\n",
      "nodee:\n",
      /^nodee: unknown field "nodee" in envoy\.config\.bootstrap\.v3\.Bootstrap/,
    ],
    ["connect_timeout: 5s", "connect_timeout: 5", /connect_timeout: expected a duration/],
    ["connect_timeout: 5s", "connect_timeout: 0s", /connect_timeout: 0s must be gt 0s/],
    [
      "type: STATIC",
      "type: STATICC",
      /type: "STATICC" is not a value of envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType/,
    ],
    ["port_value: 18000", "port_value: 70000", /port_value: 70000 must be <= 65535/],
    [
      "    - name: xds_cluster\n",
      '    - name: ""\n',
      /clusters\[0\]\.name: shorter than min_len 1/,
    ],
    [
      "http2_protocol_options: {}",
      "http2_protocol_options: { bogus: 1 }",
      /http2_protocol_options\.bogus: unknown field "bogus" in envoy\.config\.core\.v3\.Http2ProtocolOptions/,
    ],
    [
      "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
      "type.googleapis.com/envoy.extensions.upstreams.http.v3.NoSuchOptions",
      /names no upstream message type/,
    ],
    [
      "socket_address: { address: 127.0.0.1, port_value: 18000 }",
      "socket_address: { address: 127.0.0.1, port_value: 18000, named_port: x }",
      /oneof port_specifier has several members set/,
    ],
  ];
  for (const [from, to, expected] of cases) {
    assert.ok(FIXED_BOOTSTRAP.includes(from), from);
    const problems = problemsOf(FIXED_BOOTSTRAP.replace(from, to));
    assert.ok(problems.some((p) => expected.test(p)), `${to}\n→ ${problems.join("\n")}`);
  }
});

Deno.test("strictJsonProblems checks any upstream message, including our own resources' JSON form", () => {
  assert.deepEqual(
    strictJsonProblems("envoy.config.core.v3.SocketAddress", {
      address: "127.0.0.1",
      port_value: 1,
    }),
    [],
  );
  assert.deepEqual(
    strictJsonProblems("envoy.config.core.v3.SocketAddress", { address: "127.0.0.1", port: 1 }),
    [
      'port: unknown field "port" in envoy.config.core.v3.SocketAddress',
      "port_specifier: one of port_value, named_port is required",
    ],
  );
  // A listener as Envoy would receive it, in JSON form, typed_config included.
  assert.deepEqual(
    strictJsonProblems("envoy.config.listener.v3.Listener", {
      name: "listener-web",
      address: { socket_address: { address: "0.0.0.0", port_value: 10080 } },
      filter_chains: [{
        filters: [{
          name: "envoy.filters.network.tcp_proxy",
          typed_config: { "@type": TCP_PROXY_TYPE_URL, stat_prefix: "", cluster: "cluster-web" },
        }],
      }],
    }),
    ["filter_chains[0].filters[0].typed_config.stat_prefix: shorter than min_len 1"],
  );
});
