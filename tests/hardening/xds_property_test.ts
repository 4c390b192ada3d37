/**
 * Property test: random sequences of DiscoveryRequests (random strings and lists in every field,
 * random or echoed nonces, random `error_detail`) on one ADS stream of the real agent process.
 * Whatever the sequence, the agent stays up, ends the stream only for the one reason the xDS rules
 * give (no `node.id` on the first request), only answers types that were asked for, never repeats
 * its previous response of a type, and keeps nonces unique; a well-behaved stream afterwards still
 * gets its CDS and LDS, and every stream is accounted as closed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { waitFor } from "../helpers.ts";
import {
  CDS_TYPE,
  type DiscoveryResponse,
  fetchCdsLds,
  LDS_TYPE,
  metricSum,
  RawXdsStream,
  resourceNames,
  startXdsAgent,
} from "./xds_raw_client.ts";

const DEMO = "demo-envoy";
/** Stands for "the nonce of the last response received" (so ACK/NACK paths are exercised). */
const LAST_NONCE = "\u0000last";

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constant(""),
);

const request = fc.record({
  versionInfo: fc.oneof(text, fc.constantFrom("1", "0")),
  node: fc.option(
    fc.record({
      id: fc.oneof(
        { arbitrary: fc.constant(DEMO), weight: 6 },
        { arbitrary: fc.constantFrom("", "prop-a", "prop-b"), weight: 2 },
        { arbitrary: text, weight: 1 },
      ),
      cluster: text,
    }),
    { freq: 5 },
  ),
  resourceNames: fc.array(
    fc.oneof(text, fc.constantFrom("*", "cluster-demo-echo", "listener-demo-echo")),
    { maxLength: 12 },
  ),
  typeUrl: fc.oneof(
    { arbitrary: fc.constantFrom(CDS_TYPE, LDS_TYPE), weight: 4 },
    {
      arbitrary: fc.constantFrom(
        "",
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        CDS_TYPE + " ",
      ),
      weight: 1,
    },
    { arbitrary: text, weight: 1 },
  ),
  responseNonce: fc.oneof({ arbitrary: fc.constant(LAST_NONCE), weight: 3 }, {
    arbitrary: text,
    weight: 1,
  }),
  errorDetail: fc.option(
    fc.record({ code: fc.integer({ min: -5, max: 20 }), message: text }),
    { freq: 3 },
  ),
});

/** What a response is, for "never the same twice in a row": its type and resource bytes. */
function contentKey(r: DiscoveryResponse): string {
  return r.typeUrl + "|" +
    r.resources.map((a) => `${a.typeUrl}:${btoa(String.fromCharCode(...a.value))}`)
      .join(",");
}

Deno.test("xDS property: random DiscoveryRequest sequences on one stream never break the agent", async () => {
  const a = await startXdsAgent({ hostname: "xds-property" });
  const nonces = new Set<string>();
  let runs = 0, rejected = 0, responses = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 8 }), async (reqs) => {
        runs++;
        const s = RawXdsStream.open(a.xdsPort, "sotw");
        try {
          const asked = new Set<string>();
          let echoed = 0;
          for (const req of reqs) {
            let nonce = req.responseNonce;
            if (nonce === LAST_NONCE) {
              // Echo the newest response, giving the agent a moment to answer what came before.
              if (s.received.length === echoed && asked.size > 0) await s.next(150);
              echoed = s.received.length;
              nonce = s.received.at(-1)?.nonce ?? "";
            }
            if (req.typeUrl === CDS_TYPE || req.typeUrl === LDS_TYPE) asked.add(req.typeUrl);
            s.sendSotw({
              ...req,
              node: req.node ?? undefined,
              errorDetail: req.errorDetail ?? undefined,
              responseNonce: nonce,
            });
          }
          const firstHasNode = (reqs[0].node?.id ?? "") !== "";
          const end = await s.waitEnd(firstHasNode ? 300 : 15_000);
          if (!firstHasNode) {
            assert.ok(end, "a stream without node.id is ended");
            assert.equal(end.code, 3);
            assert.equal(end.details, "the first request of a stream must carry node.id");
            assert.equal(s.received.length, 0);
            rejected++;
          } else {
            assert.equal(end, undefined, `stream must stay open, ended: ${JSON.stringify(end)}`);
          }
          responses += s.received.length;
          const last = new Map<string, string>();
          for (const r of s.received) {
            assert.ok(asked.has(r.typeUrl), `answered a type never asked for: ${r.typeUrl}`);
            for (const any of r.resources) assert.equal(any.typeUrl, r.typeUrl);
            assert.ok(!nonces.has(r.nonce), `nonce ${r.nonce} reused`);
            nonces.add(r.nonce);
            const key = contentKey(r);
            assert.notEqual(last.get(r.typeUrl), key, "identical response sent twice in a row");
            last.set(r.typeUrl, key);
          }
          assert.equal(await a.healthz(), 200);
        } finally {
          s.close();
        }
      }),
      { numRuns: 40 },
    );
    const { cds, lds } = await fetchCdsLds(a.xdsPort, DEMO);
    assert.deepEqual(resourceNames(cds), ["cluster-demo-echo"]);
    assert.deepEqual(resourceNames(lds), ["listener-demo-echo"]);
    await waitFor(
      async () => metricSum(await a.metrics(), "sigma_xds_connected_streams") === 0,
      { timeoutMs: 15_000, message: "every stream accounted as closed" },
    );
    const m = await a.metrics();
    const nacks = metricSum(m, "sigma_xds_nacks_total"),
      acks = metricSum(m, "sigma_xds_acks_total");
    console.log(
      `${runs} sequences: ${responses} responses, ${rejected} streams refused (no node.id), ` +
        `${acks} ACKs and ${nacks} NACKs counted`,
    );
    // The generator must reach the interesting paths, or the property proves little.
    assert.ok(runs >= 40 && responses > 0 && rejected > 0 && acks + nacks > 0);
  } finally {
    const st = await a.stop();
    assert.equal(st.code, 0);
  }
});
