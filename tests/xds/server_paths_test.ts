/**
 * The names the agent writes out instead of reading them from protobuf-es (which it never loads):
 * the xDS method paths and the `type_url`s equal what the generated descriptors say.
 */
import assert from "node:assert/strict";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { AggregatedDiscoveryService } from "../../proto/gen/envoy/service/discovery/v3/ads_pb.ts";
import { ClusterDiscoveryService } from "../../proto/gen/envoy/service/cluster/v3/cds_pb.ts";
import { ListenerDiscoveryService } from "../../proto/gen/envoy/service/listener/v3/lds_pb.ts";
import { ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "../../proto/gen/envoy/config/listener/v3/listener_pb.ts";
import { TcpProxySchema } from "../../proto/gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "../../proto/gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import { RawBufferSchema } from "../../proto/gen/envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer_pb.ts";
import { XDS_METHOD_PATHS } from "../../lib/xds/server.ts";
import {
  CLUSTER_TYPE_URL,
  discoveryType,
  LISTENER_TYPE_URL,
  PROXY_PROTOCOL_TYPE_URL,
  RAW_BUFFER_TYPE_URL,
  TCP_PROXY_TYPE_URL,
} from "../../lib/xds/resources.ts";
import { Cluster_DiscoveryType } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";

function path(service: GenService<never>, localName: string): string {
  const method = (service.method as Record<string, { name: string }>)[localName];
  return `/${service.typeName}/${method.name}`;
}

Deno.test("xds: the method paths are the generated service descriptors' paths", () => {
  const ads = AggregatedDiscoveryService as GenService<never>;
  const cds = ClusterDiscoveryService as GenService<never>;
  const lds = ListenerDiscoveryService as GenService<never>;
  assert.deepEqual(XDS_METHOD_PATHS, {
    ads: {
      sotw: path(ads, "streamAggregatedResources"),
      delta: path(ads, "deltaAggregatedResources"),
    },
    cds: { sotw: path(cds, "streamClusters"), delta: path(cds, "deltaClusters") },
    lds: { sotw: path(lds, "streamListeners"), delta: path(lds, "deltaListeners") },
  });
});

Deno.test("xds: the type URLs and discovery types are the generated schemas' ones", () => {
  const url = (typeName: string) => `type.googleapis.com/${typeName}`;
  assert.equal(CLUSTER_TYPE_URL, url(ClusterSchema.typeName));
  assert.equal(LISTENER_TYPE_URL, url(ListenerSchema.typeName));
  assert.equal(TCP_PROXY_TYPE_URL, url(TcpProxySchema.typeName));
  assert.equal(PROXY_PROTOCOL_TYPE_URL, url(ProxyProtocolUpstreamTransportSchema.typeName));
  assert.equal(RAW_BUFFER_TYPE_URL, url(RawBufferSchema.typeName));
  assert.equal(discoveryType("static"), Cluster_DiscoveryType.STATIC);
  assert.equal(discoveryType("STRICT_DNS"), Cluster_DiscoveryType.STRICT_DNS);
  assert.equal(discoveryType("logical_dns"), Cluster_DiscoveryType.LOGICAL_DNS);
});

/**
 * The modules `main.ts` loads at start: static value imports followed through our own files
 * (`import type`, and `type`-only named imports, are erased; `await import()` loads on demand).
 */
function startupImports(entry: URL): Set<string> {
  const seen = new Set<string>();
  const todo = [entry.href];
  while (todo.length > 0) {
    const href = todo.pop()!;
    if (seen.has(href)) continue;
    seen.add(href);
    if (!href.startsWith("file:")) continue;
    const source = Deno.readTextFileSync(new URL(href));
    for (
      const m of source.matchAll(/^(?:import|export)\s+(type\s+)?([^;]*?)\s+from\s+"([^"]+)";/gms)
    ) {
      if (m[1]) continue;
      const names = /^\{([^}]*)\}$/.exec(m[2].trim());
      if (
        names &&
        names[1].split(",").map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith("type "))
      ) {
        continue;
      }
      const spec = m[3];
      todo.push(spec.startsWith(".") ? new URL(spec, href).href : `bare:${spec}`);
    }
  }
  return seen;
}

Deno.test("xds: the agent loads neither protobuf-es nor the generated protos at start", () => {
  const loaded = [...startupImports(new URL("../../main.ts", import.meta.url))];
  assert.ok(loaded.some((s) => s.endsWith("/lib/xds/resources.ts")), "the crawl reaches lib/xds");
  assert.ok(loaded.includes("bare:prom-client/lib/counter.js"), "the crawl sees npm imports");
  assert.deepEqual(loaded.filter((s) => s.includes("/proto/gen/") || s.includes("protobuf")), []);
});
