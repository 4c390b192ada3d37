/**
 * Property tests of the envoy.yaml parser (fast-check): it never throws on well-formed YAML of
 * any shape, only throws EnvoyConfigError on any text, never returns duplicate listen ports,
 * and round-trips a generated route list through a generated Envoy bootstrap.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { stringify } from "yaml";
import type { StaticRouteEntry } from "../../lib/api/types.ts";
import {
  durationToSeconds,
  EnvoyConfigError,
  parseEnvoyConfig,
} from "../../lib/envoy_static/parser.ts";
import type { ParsedEnvoyConfig } from "../../lib/envoy_static/parser.ts";

/** What every result must satisfy, whatever the input. */
function assertInvariants(r: ParsedEnvoyConfig): void {
  const ports = r.routes.map((x) => x.listen_port);
  assert.equal(new Set(ports).size, ports.length, `duplicate listen ports: ${ports}`);
  assert.ok(Number.isInteger(r.skippedListeners) && r.skippedListeners >= 0);
  for (const route of r.routes) {
    assert.ok(
      Number.isInteger(route.listen_port) && route.listen_port >= 1 && route.listen_port <= 65535,
    );
    assert.equal(route.name, `static-${route.listen_port}`);
    assert.ok(Number.isInteger(route.connect_timeout_secs) && route.connect_timeout_secs >= 1);
    assert.ok([0, 1, 2].includes(route.proxy_protocol));
    assert.equal(typeof route.cluster_type, "string");
    assert.ok(route.backend_host === null || typeof route.backend_host === "string");
    assert.ok(
      route.backend_port === null ||
        (Number.isInteger(route.backend_port) && route.backend_port >= 1 &&
          route.backend_port <= 65535),
    );
  }
  assert.doesNotThrow(() => JSON.stringify(r));
}

const runs = { numRuns: 300 };

Deno.test("property: any JSON-like document, as YAML, parses without throwing", () => {
  fc.assert(
    fc.property(fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"<<"')), (value) => {
      assertInvariants(parseEnvoyConfig(stringify(value)));
      assertInvariants(parseEnvoyConfig(stringify({ static_resources: value })));
      assertInvariants(
        parseEnvoyConfig(stringify({ static_resources: { listeners: value, clusters: value } })),
      );
    }),
    runs,
  );
});

/** Values that are sometimes right and often wrong, for every field the parser reads. */
const junk = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 70000 }),
  fc.double({ noNaN: false }),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(
    "5s",
    "0.25s",
    "100ms",
    "1m",
    "V1",
    "V2",
    "STATIC",
    "strict_dns",
    "::",
    "10.0.0.1",
  ),
  fc.array(fc.integer(), { maxLength: 2 }),
  // `<<` is the merge key: with a non-mapping value it is a YAML error (tested in parser_test).
  fc.dictionary(fc.string({ maxLength: 4 }).filter((k) => k !== "<<"), fc.integer(), {
    maxKeys: 2,
  }),
);
const clusterName = fc.constantFrom("a", "b", "c", "xds_cluster", "sigma_xds", "x_xds", "missing");
const port = fc.oneof(fc.integer({ min: 1, max: 8 }), junk); // few ports: duplicates are likely
const filter = fc.record(
  {
    name: fc.oneof(
      fc.constantFrom("envoy.filters.network.tcp_proxy", "envoy.tcp_proxy", "other"),
      junk,
    ),
    typed_config: fc.oneof(
      fc.record({
        "@type": fc.constantFrom(
          "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
          "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        ),
        cluster: fc.oneof(clusterName, junk),
        weighted_clusters: fc.oneof(
          junk,
          fc.record({ clusters: fc.array(fc.record({ name: clusterName }), { maxLength: 3 }) }),
        ),
      }, { requiredKeys: [] }),
      junk,
    ),
  },
  { requiredKeys: [] },
);
const listener = fc.oneof(
  fc.record({
    name: fc.oneof(fc.string({ maxLength: 5 }), junk),
    address: fc.oneof(
      fc.record({ socket_address: fc.record({ address: junk, port_value: port }) }),
      junk,
    ),
    filter_chains: fc.oneof(
      fc.array(fc.record({ filters: fc.oneof(fc.array(filter, { maxLength: 3 }), junk) }), {
        maxLength: 3,
      }),
      junk,
    ),
    default_filter_chain: fc.oneof(
      fc.record({ filters: fc.array(filter, { maxLength: 2 }) }),
      junk,
    ),
  }, { requiredKeys: [] }),
  junk,
);
const endpoint = fc.record({
  endpoint: fc.record({
    address: fc.record({ socket_address: fc.record({ address: junk, port_value: junk }) }),
  }),
});
const cluster = fc.oneof(
  fc.record({
    name: fc.oneof(clusterName, junk),
    type: junk,
    connect_timeout: junk,
    load_assignment: fc.oneof(
      fc.record({
        endpoints: fc.array(fc.record({ lb_endpoints: fc.array(endpoint, { maxLength: 2 }) }), {
          maxLength: 2,
        }),
      }),
      junk,
    ),
    transport_socket: fc.oneof(
      fc.record({
        name: fc.oneof(fc.constant("envoy.transport_sockets.upstream_proxy_protocol"), junk),
        typed_config: fc.oneof(
          fc.record({ config: fc.oneof(fc.record({ version: junk }), junk) }),
          junk,
        ),
      }),
      junk,
    ),
  }, { requiredKeys: [] }),
  junk,
);

Deno.test("property: Envoy-shaped documents full of wrong types never throw, ports stay unique", () => {
  fc.assert(
    fc.property(
      fc.array(listener, { maxLength: 12 }),
      fc.array(cluster, { maxLength: 6 }),
      (listeners, clusters) => {
        const r = parseEnvoyConfig(stringify({ static_resources: { listeners, clusters } }));
        assertInvariants(r);
        // Every route comes from a listener of the input with that port.
        const inputPorts = new Set(
          listeners.map((l) => {
            const sa = (l as { address?: { socket_address?: { port_value?: unknown } } })?.address
              ?.socket_address;
            const v = sa?.port_value;
            return typeof v === "number" ? v : typeof v === "string" ? Number(v.trim()) : NaN;
          }),
        );
        for (const route of r.routes) assert.ok(inputPorts.has(route.listen_port));
        assert.ok(r.routes.length + r.skippedListeners <= listeners.length);
      },
    ),
    runs,
  );
});

Deno.test("property: any text either parses or throws EnvoyConfigError, nothing else", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 200 }),
        fc.string({
          unit: fc.constantFrom(
            "a",
            ":",
            " ",
            "\n",
            "-",
            "[",
            "]",
            "{",
            "}",
            "&x",
            "*x",
            "<<",
            "#",
            "\t",
            "'",
            '"',
            "|",
            ">",
          ),
          maxLength: 80,
        }),
      ),
      (text) => {
        try {
          assertInvariants(parseEnvoyConfig(text));
        } catch (e) {
          if (!(e instanceof EnvoyConfigError)) throw e;
          assert.ok(e.message.length > 0);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

/** A route list the parser should reproduce exactly from a bootstrap built out of it. */
const modelRoutes = fc.uniqueArray(
  fc.record({
    port: fc.integer({ min: 1, max: 65535 }),
    host: fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.domain(),
    ),
    backendPort: fc.integer({ min: 1, max: 65535 }),
    type: fc.constantFrom("STATIC", "STRICT_DNS", "LOGICAL_DNS", undefined),
    timeoutMs: fc.option(fc.integer({ min: 0, max: 600_000 }), { nil: undefined }),
    proxy: fc.constantFrom(0, 1, 2),
    httpListenerBefore: fc.boolean(),
  }),
  { selector: (r) => r.port, maxLength: 15 },
);

Deno.test("property: a generated bootstrap round-trips to its route list", () => {
  fc.assert(
    fc.property(modelRoutes, (model) => {
      const listeners: unknown[] = [];
      const clusters: unknown[] = [];
      const expected: StaticRouteEntry[] = [];
      let skipped = 0;
      model.forEach((m, i) => {
        if (m.httpListenerBefore) {
          skipped++;
          listeners.push({
            name: `http${i}`,
            address: { socket_address: { address: "0.0.0.0", port_value: 65535 - i } },
            filter_chains: [{
              filters: [{
                name: "envoy.filters.network.http_connection_manager",
                typed_config: { stat_prefix: "h" },
              }],
            }],
          });
        }
        listeners.push({
          name: `l${i}`,
          address: { socket_address: { address: "::", port_value: m.port } },
          filter_chains: [{
            filters: [{
              name: "envoy.filters.network.tcp_proxy",
              typed_config: { stat_prefix: "s", cluster: `c${i}` },
            }],
          }],
        });
        const c: Record<string, unknown> = {
          name: `c${i}`,
          load_assignment: {
            cluster_name: `c${i}`,
            endpoints: [{
              lb_endpoints: [{
                endpoint: {
                  address: { socket_address: { address: m.host, port_value: m.backendPort } },
                },
              }],
            }],
          },
        };
        if (m.type) c.type = m.type;
        if (m.timeoutMs !== undefined) c.connect_timeout = `${m.timeoutMs}ms`;
        if (m.proxy > 0) {
          c.transport_socket = {
            name: "envoy.transport_sockets.upstream_proxy_protocol",
            typed_config: { config: m.proxy === 2 ? { version: "V2" } : {} },
          };
        }
        clusters.push(c);
        expected.push({
          name: `static-${m.port}`,
          listen_port: m.port,
          backend_host: m.host,
          backend_port: m.backendPort,
          cluster_type: (m.type ?? "STATIC").toLowerCase(),
          connect_timeout_secs: m.timeoutMs === undefined
            ? 5
            : Math.max(1, Math.ceil(m.timeoutMs / 1000)),
          proxy_protocol: m.proxy,
        });
      });
      // The HTTP listeners' ports (65535 - i) may clash with a TCP port: they are skipped first
      // anyway, since they are not TCP proxies, so they never claim a port.
      const r = parseEnvoyConfig(stringify({ static_resources: { listeners, clusters } }));
      assertInvariants(r);
      assert.deepEqual(r.routes, expected);
      assert.equal(r.skippedListeners, skipped);
      assert.deepEqual(r.warnings, []);
    }),
    { numRuns: 200 },
  );
});

Deno.test("property: durations round up to whole seconds, never below 1", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000_000 }), (ms) => {
      const want = Math.max(1, Math.ceil(ms / 1000));
      assert.equal(durationToSeconds(`${ms}ms`), want);
      const secs = `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}s`;
      assert.equal(durationToSeconds(secs), want);
      assert.equal(
        durationToSeconds({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 }),
        want,
      );
    }),
    { numRuns: 500 },
  );
});
