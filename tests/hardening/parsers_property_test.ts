/**
 * Property tests for the parsers of untrusted input owned by the core: configuration values and
 * sigma-api JSON. Arbitrary input either parses or fails with the module's own clear error —
 * never another exception, never a crash.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConfigError, OPTIONS, parseConfig } from "../../lib/core/config.ts";
import {
  ApiShapeError,
  parseEnvoyNode,
  parseEnvoyRoute,
  parsePage,
  parseVps,
} from "../../lib/api/types.ts";
import { parseRetryAfter } from "../../lib/api/client.ts";

const envNames = OPTIONS.flatMap((o) => (o.env ? [o.env] : []));
const flagNames = OPTIONS.map((o) => o.flag);

Deno.test("config: any env values and flags give a config or a ConfigError naming the culprit", () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.constantFrom(...envNames), fc.string({ maxLength: 30 })),
      fc.array(
        fc.tuple(
          fc.constantFrom(...flagNames, "bogus"),
          fc.string({ maxLength: 20 }),
          fc.boolean(),
        ),
        { maxLength: 6 },
      ),
      (env, flags) => {
        const args = flags.flatMap(([f, v, eq]) => (eq ? [`--${f}=${v}`] : [`--${f}`, v]));
        try {
          const r = parseConfig(args, env);
          if (r.kind === "config") {
            const c = r.config;
            assert.ok(c.interval > 0 && c.portScanInterval > 0 && c.xdsPollInterval > 0);
            assert.ok(c.metricsPort >= 0 && c.metricsPort <= 65535);
            assert.ok(
              c.portScanRange.start >= 1 && c.portScanRange.start <= c.portScanRange.end &&
                c.portScanRange.end <= 65535,
            );
            assert.ok(/^https?:\/\//.test(c.apiUrl) && !c.apiUrl.endsWith("/"));
          }
        } catch (e) {
          assert.ok(
            e instanceof ConfigError,
            `unexpected ${(e as Error).name}: ${(e as Error).message}`,
          );
          assert.match(e.message, /--[a-z-]+|[A-Z_]+|argument/);
          assert.equal(e.message.split("\n").length, 1);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("config: secrets never appear in error messages", () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 8, maxLength: 40 }).filter((s) => s.trim().length >= 8),
      (secret) => {
        try {
          parseConfig(["--api-key", secret, "--interval", "x"], {});
        } catch (e) {
          assert.ok(!(e as Error).message.includes(secret));
        }
      },
    ),
  );
});

const anyJson = fc.jsonValue({ maxDepth: 4 });

Deno.test("API JSON: arbitrary values are accepted or rejected with ApiShapeError", () => {
  for (
    const parse of [
      parseVps,
      parseEnvoyNode,
      parseEnvoyRoute,
      (v: unknown) => parsePage(v, parseEnvoyRoute),
    ]
  ) {
    fc.assert(
      fc.property(anyJson, (v) => {
        try {
          parse(v);
        } catch (e) {
          assert.ok(e instanceof ApiShapeError, `${(e as Error).name}: ${(e as Error).message}`);
        }
      }),
      { numRuns: 1000 },
    );
  }
});

Deno.test("API JSON: rows with extra, missing or mistyped fields", () => {
  const route = fc.record({
    id: fc.oneof(fc.uuid(), fc.integer()),
    name: fc.oneof(fc.string(), fc.constant(null)),
    listen_port: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
    backend_host: fc.oneof(fc.string(), fc.constant(null), fc.integer()),
    backend_port: fc.oneof(fc.integer(), fc.constant(null), fc.string()),
    cluster_type: fc.oneof(
      fc.constantFrom("static", "strict_dns", "logical_dns", "eds"),
      fc.integer(),
    ),
    connect_timeout_secs: fc.oneof(fc.integer(), fc.string()),
    proxy_protocol: fc.oneof(fc.integer(), fc.constant(null)),
    source: fc.option(fc.constantFrom("dynamic", "static")),
    extra: anyJson,
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(route, (r) => {
      try {
        const parsed = parseEnvoyRoute(r);
        assert.equal(typeof parsed.name, "string");
        assert.ok(Number.isFinite(parsed.listen_port));
        assert.ok(parsed.source === "dynamic" || parsed.source === "static");
      } catch (e) {
        assert.ok(e instanceof ApiShapeError);
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("Retry-After: any header value gives undefined or a non-negative delay", () => {
  fc.assert(
    fc.property(fc.string(), (v) => {
      const ms = parseRetryAfter(v);
      assert.ok(ms === undefined || (Number.isFinite(ms) && ms >= 0));
    }),
  );
});
