/**
 * Parser tests: every fixture in `fixtures/` (a realistic envoy.yaml and its expected route list
 * in the JSON file of the same name), durations, control-plane clusters, invalid YAML with line
 * numbers, alias bombs and shapes that are YAML but not Envoy.
 */
import assert from "node:assert/strict";
import {
  DEFAULT_MAX_ALIAS_COUNT,
  durationToSeconds,
  EnvoyConfigError,
  isControlPlaneCluster,
  parseEnvoyConfig,
} from "../../lib/envoy_static/parser.ts";
import type { StaticRouteEntry } from "../../lib/api/types.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

/** The EnvoyConfigError `fn` throws (fails the test if it throws nothing or something else). */
function thrown(fn: () => unknown): EnvoyConfigError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof EnvoyConfigError, `expected EnvoyConfigError, got ${e}`);
    return e;
  }
  assert.fail("expected an EnvoyConfigError");
}

interface Expected {
  routes: StaticRouteEntry[];
  skippedListeners: number;
  /** Number of warnings; 0 when absent. */
  warningCount?: number;
}

const fixtureNames: string[] = [];
for (const entry of Deno.readDirSync(FIXTURES)) {
  if (entry.name.endsWith(".yaml")) fixtureNames.push(entry.name.slice(0, -".yaml".length));
}
fixtureNames.sort();

Deno.test("fixtures: the set covers every case of the issue", () => {
  for (
    const name of [
      "basic",
      "cluster_types",
      "durations",
      "proxy_protocol",
      "xds_bootstrap",
      "mixed_http",
      "anchors",
      "filter_chains",
      "ipv6",
      "duplicate_ports",
      "unknown_cluster",
      "dynamic_only",
    ]
  ) assert.ok(fixtureNames.includes(name), `fixture ${name}.yaml is missing`);
});

for (const name of fixtureNames) {
  Deno.test(`fixture ${name}.yaml gives its expected routes`, async () => {
    const text = await Deno.readTextFile(new URL(`${name}.yaml`, FIXTURES));
    const expected: Expected = JSON.parse(
      await Deno.readTextFile(new URL(`${name}.json`, FIXTURES)),
    );
    const got = parseEnvoyConfig(text, { source: `${name}.yaml` });
    assert.deepEqual(got.routes, expected.routes);
    assert.equal(got.skippedListeners, expected.skippedListeners, "skipped listeners");
    assert.equal(
      got.warnings.length,
      expected.warningCount ?? 0,
      `warnings: ${got.warnings.join(" | ")}`,
    );
    assert.equal(got.isBootstrap, true);
    const ports = got.routes.map((r) => r.listen_port);
    assert.equal(new Set(ports).size, ports.length, "listen ports are unique");
  });
}

Deno.test("durations: rounded up to whole seconds, at least 1", () => {
  const cases: [unknown, number | undefined][] = [
    ["5s", 5],
    ["0.25s", 1],
    ["1.5s", 2],
    ["100ms", 1],
    ["1m", 60],
    ["0.7m", 42], // exact decimal arithmetic: not 43 from 0.7 * 60 = 42.000…1
    ["1000ms", 1],
    ["1001ms", 2],
    ["2.000s", 2],
    ["0s", 1],
    ["1h", 3600],
    ["1500000us", 2],
    ["7", 7],
    [3, 3],
    [0.5, 1],
    [{ seconds: 2, nanos: 1 }, 3],
    [{ seconds: "4" }, 4],
    ["99999999999s", 2_147_483_647],
    ["soon", undefined],
    ["-1s", undefined],
    ["5 sec", undefined],
    ["", undefined],
    [null, undefined],
    [[1], undefined],
    [{ seconds: -1 }, undefined],
  ];
  for (const [input, want] of cases) {
    assert.equal(durationToSeconds(input), want, `durationToSeconds(${JSON.stringify(input)})`);
  }
});

Deno.test("control-plane clusters: xds_cluster, sigma_xds and *_xds", () => {
  assert.ok(isControlPlaneCluster("xds_cluster"));
  assert.ok(isControlPlaneCluster("sigma_xds"));
  assert.ok(isControlPlaneCluster("backup_xds"));
  assert.ok(!isControlPlaneCluster("xds"));
  assert.ok(!isControlPlaneCluster("xds_backend"));
  assert.ok(!isControlPlaneCluster("backend"));
});

Deno.test("invalid YAML: EnvoyConfigError naming the source, line and column", () => {
  const text = [
    "static_resources:", //          1
    "  listeners:", //               2
    "    - name: a", //              3
    "      address: { socket_address: { port_value: 1 }", // 4: flow map never closed
    "    - name: b", //              5
  ].join("\n");
  const err = thrown(() => parseEnvoyConfig(text, { source: "/etc/envoy/envoy.yaml" }));
  assert.match(err.message, /^\/etc\/envoy\/envoy\.yaml:\d+:\d+: invalid YAML: /);
  assert.ok(err.line !== undefined && err.line >= 4 && err.line <= 5, `line ${err.line}`);
  assert.ok(err.message.includes(`:${err.line}:${err.column}:`));
});

Deno.test("invalid YAML: a bad indent is reported on its own line", () => {
  const text = "static_resources:\n  listeners: []\n clusters: []\n";
  const err = thrown(() => parseEnvoyConfig(text, { source: "f.yaml" }));
  assert.equal(err.line, 3);
  assert.match(err.message, /^f\.yaml:3:\d+: /);
});

Deno.test("invalid YAML: duplicate keys, tabs, several documents, unresolved alias", () => {
  for (
    const text of [
      "static_resources: {}\nstatic_resources: {}\n",
      "a:\n\t- b\n",
      "a: 1\n---\nb: 2\n",
      "a: *nothing\n",
    ]
  ) {
    assert.throws(() => parseEnvoyConfig(text), EnvoyConfigError, JSON.stringify(text));
  }
});

Deno.test("an unquoted `::` address is a YAML error on its line (operators must quote it)", () => {
  const text =
    "static_resources:\n  listeners:\n    - address:\n        socket_address:\n          address: ::\n";
  assert.throws(
    () => parseEnvoyConfig(text, { source: "v6.yaml" }),
    (e: unknown) => e instanceof EnvoyConfigError && e.line === 5 && /^v6\.yaml:5:/.test(e.message),
  );
});

Deno.test("a merge key with a non-mapping value is a YAML error on its line", () => {
  const text = "static_resources:\n  clusters:\n    - name: c\n      <<: 5\n";
  const err = thrown(() => parseEnvoyConfig(text, { source: "m.yaml" }));
  assert.equal(err.line, 4);
  assert.match(err.message, /^m\.yaml:4:7: invalid YAML: Merge sources must be maps/);
});

Deno.test("billion laughs: rejected with a clear error instead of expanding", () => {
  const levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (let i = 1; i < 10; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    levels.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(", ")}]`);
  }
  levels.push("static_resources: { listeners: *j }");
  const text = levels.join("\n");
  assert.throws(
    () => parseEnvoyConfig(text, { source: "bomb.yaml" }),
    (e: unknown) =>
      e instanceof EnvoyConfigError && /bomb\.yaml: too many alias expansions/.test(e.message),
  );
});

Deno.test("alias budget: hundreds of listeners sharing `<<: *defaults` still parse", () => {
  const lines = [
    "defaults:",
    "  cluster: &c { type: STRICT_DNS, connect_timeout: 2s }",
    "  chain: &chain [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { stat_prefix: s, cluster: up } }] }]",
    "static_resources:",
    "  clusters:",
    "    - <<: *c",
    "      name: up",
    "      load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: up.example, port_value: 1 } } } }] }] }",
    "  listeners:",
  ];
  const n = 400;
  for (let i = 0; i < n; i++) {
    lines.push(
      `    - { name: l${i}, address: { socket_address: { address: 0.0.0.0, port_value: ${
        20000 + i
      } } }, filter_chains: *chain }`,
    );
  }
  assert.ok(n < DEFAULT_MAX_ALIAS_COUNT);
  const got = parseEnvoyConfig(lines.join("\n"));
  assert.equal(got.routes.length, n);
  assert.equal(got.routes[n - 1].listen_port, 20000 + n - 1);
  assert.equal(got.routes[0].cluster_type, "strict_dns");
  assert.equal(got.routes[0].connect_timeout_secs, 2);
});

Deno.test("not a bootstrap: empty, scalar and list documents give no routes and isBootstrap=false", () => {
  for (const text of ["", "   \n# only a comment\n", "just a string", "- a\n- b\n", "42", "null"]) {
    const got = parseEnvoyConfig(text);
    assert.deepEqual(got.routes, []);
    assert.equal(got.isBootstrap, false, JSON.stringify(text));
  }
  const noStatic = parseEnvoyConfig("admin: { address: { socket_address: { port_value: 9901 } } }");
  assert.equal(noStatic.isBootstrap, true);
  assert.deepEqual(noStatic.routes, []);
});

Deno.test("odd shapes are warnings, not crashes", () => {
  const cases = [
    "static_resources: 7",
    "static_resources: { listeners: oops, clusters: 3 }",
    "static_resources: { listeners: [1, null, [], {address: 5}] }",
    "static_resources: { listeners: [{ filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { cluster: c } }] }] }] }",
    "static_resources: { listeners: [{ address: { socket_address: { port_value: 1 } }, filter_chains: 4 }] }",
    "static_resources: { clusters: [{ name: c, connect_timeout: [1], transport_socket: { name: envoy.transport_sockets.upstream_proxy_protocol, typed_config: { config: { version: V9 } } } }] }",
    "self: &s [*s]", // an alias inside its own anchor: a value containing itself
  ];
  for (const text of cases) {
    const got = parseEnvoyConfig(text);
    assert.ok(Array.isArray(got.routes), text);
  }
  const missingAddress = parseEnvoyConfig(cases[3]);
  assert.deepEqual(missingAddress.routes, []);
  assert.equal(missingAddress.warnings.length, 1);
});

Deno.test("an unknown PROXY protocol version is a warning and assumed V1", () => {
  const text = `
static_resources:
  listeners:
    - address: { socket_address: { address: 0.0.0.0, port_value: 9000 } }
      filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { cluster: c } }] }]
  clusters:
    - name: c
      load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: h, port_value: 1 } } } }] }] }
      transport_socket:
        name: envoy.transport_sockets.upstream_proxy_protocol
        typed_config: { config: { version: V9 } }
`;
  const got = parseEnvoyConfig(text);
  assert.equal(got.routes[0].proxy_protocol, 1);
  assert.equal(got.warnings.length, 1);
  assert.match(got.warnings[0], /PROXY protocol version "V9"/);
});

Deno.test("cluster type given as the proto enum number is mapped", () => {
  const text = `
static_resources:
  listeners:
    - address: { socket_address: { address: 0.0.0.0, port_value: 9000 } }
      filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { cluster: c } }] }]
  clusters:
    - { name: c, type: 1, load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: h, port_value: 1 } } } }] }] } }
`;
  assert.equal(parseEnvoyConfig(text).routes[0].cluster_type, "strict_dns");
});
