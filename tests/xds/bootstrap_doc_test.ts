/**
 * The Envoy bootstrap shown in docs/xds.md ("Envoy bootstrap") is valid for Envoy (checked against
 * the upstream `envoy.config.bootstrap.v3.Bootstrap` schema), points at the agent's default xDS
 * address, and the seed's `explicit_http_version` typo would be caught.
 */

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../lib/core/config.ts";
import { strictBootstrapFromYaml } from "../support/upstream_protos.ts";

const DOC = new URL("../../docs/xds.md", import.meta.url);

async function docBootstrap(): Promise<string> {
  const text = await Deno.readTextFile(DOC);
  assert.ok(text.startsWith("# Envoy xDS control plane\n"), "docs/xds.md is the xDS page");
  const start = text.indexOf("\n## Envoy bootstrap\n");
  assert.ok(start >= 0, "docs/xds.md has the Envoy bootstrap section");
  const section = text.slice(start + 1).split(/\n## /)[0];
  const m = /```yaml\n([\s\S]*?)```/.exec(section);
  assert.ok(m, "no yaml block under 'Envoy bootstrap'");
  return m[1];
}

Deno.test("docs: the Envoy bootstrap validates against the upstream Bootstrap schema", async () => {
  const yaml = await docBootstrap();
  strictBootstrapFromYaml(yaml); // throws StrictProtoError listing every problem
  const parsed = parseYaml(yaml);
  const config = parseConfig([], {});
  assert.equal(config.kind, "config");
  const address = parsed.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]
    .endpoint.address.socket_address;
  if (config.kind === "config") {
    assert.equal(address.address, config.config.xdsAddr);
    assert.equal(address.port_value, config.config.xdsPort);
  }
  assert.equal(
    parsed.dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name,
    "xds_cluster",
  );
});

Deno.test("docs: the seed's explicit_http_version field is rejected by the same check", async () => {
  const wrong = (await docBootstrap()).replace("explicit_http_config:", "explicit_http_version:");
  assert.throws(() => strictBootstrapFromYaml(wrong), /explicit_http_version/);
});
