/**
 * Malformed xDS input against the real agent process (started with the permission flags of
 * `deno task start`): every case sends something an Envoy never would, or breaks the protocol,
 * and checks three things — the agent is still alive (`/healthz` 200), the bad stream got the
 * answer the xDS rules call for (a clear gRPC status, or silence), and a well-behaved stream
 * opened afterwards still gets its CDS and LDS. The agent's answers are printed as a table (the
 * one in docs/reliability.md, "Malformed requests").
 */
import assert from "node:assert/strict";
import {
  ADS_PATHS,
  CDS_TYPE,
  describeEnd,
  encodeDelta,
  encodeSotw,
  fetchCdsLds,
  grpcFrame,
  h2Exchange,
  LDS_TYPE,
  metricSum,
  RawXdsStream,
  resourceNames,
  startXdsAgent,
  STATUS_NAMES,
  type XdsAgent,
} from "./xds_raw_client.ts";

/** Generous: the machine is shared and loaded. */
const ANSWER_MS = 15_000;
/** How long "nothing was sent" is watched for. A resend loop would show at once. */
const SILENCE_MS = 1_500;

const DEMO = "demo-envoy";
const GRPC_INVALID_ARGUMENT = 3, GRPC_RESOURCE_EXHAUSTED = 8, GRPC_UNIMPLEMENTED = 12;
const GRPC_INTERNAL = 13, GRPC_OK = 0;

/** A row of the printed table. */
interface Row {
  input: string;
  answer: string;
}

/** Everything every case must leave true: alive, healthy, and serving a fresh stream. */
async function assertStillServing(a: XdsAgent, input: string): Promise<void> {
  assert.equal(a.agent.child.pid, a.pid);
  assert.equal(await a.healthz(), 200, `${input}: /healthz`);
  const { cds, lds } = await fetchCdsLds(a.xdsPort, DEMO, ANSWER_MS);
  assert.deepEqual(resourceNames(cds), ["cluster-demo-echo"], `${input}: CDS afterwards`);
  assert.deepEqual(resourceNames(lds), ["listener-demo-echo"], `${input}: LDS afterwards`);
}

/** Opens a SotW stream for `nodeId` and returns it with its first CDS response. */
async function subscribedCds(a: XdsAgent, nodeId = DEMO) {
  const s = RawXdsStream.open(a.xdsPort, "sotw");
  s.sendSotw({ node: { id: nodeId }, typeUrl: CDS_TYPE });
  const cds = await s.expect(ANSWER_MS, "the first CDS");
  return { s, cds };
}

/** Waits for the bad stream to end and returns its status (fails if it stays open). */
async function endOf(s: RawXdsStream): Promise<{ code: number; details: string }> {
  const end = await s.waitEnd(ANSWER_MS);
  assert.ok(end, "the stream should have been ended by the agent");
  return end;
}

Deno.test("xDS malformed input: the agent answers each with a clear status or ignores it, and keeps serving", async (t) => {
  const a = await startXdsAgent({ extraNodes: 1, hostname: "xds-malformed" });
  const rows: Row[] = [];
  const open: { close(): void }[] = [];
  const sotwStream = () => {
    const s = RawXdsStream.open(a.xdsPort, "sotw");
    open.push(s);
    return s;
  };
  const deltaStream = () => {
    const s = RawXdsStream.open(a.xdsPort, "delta");
    open.push(s);
    return s;
  };
  const metric = async (name: string, labels: Record<string, string>) =>
    metricSum(await a.metrics(), name, labels);
  /** Runs a case, records its answer, then checks the agent is still fine. */
  const kase = (input: string, fn: () => Promise<string>) =>
    t.step(input, async () => {
      const answer = await fn();
      rows.push({ input, answer });
      await assertStillServing(a, input);
    });

  try {
    await kase("unknown type_url on ADS (with node)", async () => {
      const s = sotwStream();
      s.sendSotw({
        node: { id: DEMO },
        typeUrl: "type.googleapis.com/envoy.config.route.v3.Bogus",
      });
      assert.equal(await s.next(SILENCE_MS), undefined, "nothing is sent for an unknown type");
      assert.equal(s.end, undefined, "the stream stays open");
      // The same stream still serves the types it knows.
      s.sendSotw({ typeUrl: CDS_TYPE });
      const cds = await s.expect(ANSWER_MS, "CDS on the same stream");
      assert.deepEqual(resourceNames(cds), ["cluster-demo-echo"]);
      assert.ok(
        a.agent.records().some((r) =>
          r.msg === "xds: ignoring requests for a type this stream does not serve" &&
          r.type_url === "type.googleapis.com/envoy.config.route.v3.Bogus"
        ),
        "logged once",
      );
      s.close();
      return "ignored (logged once at info); stream stays open and serves CDS/LDS";
    });

    await kase("first request without `node`", async () => {
      const s = sotwStream();
      s.sendSotw({ typeUrl: CDS_TYPE });
      const end = await endOf(s);
      assert.equal(end.code, GRPC_INVALID_ARGUMENT);
      assert.equal(end.details, "the first request of a stream must carry node.id");
      assert.equal(s.received.length, 0);
      return describeEnd(end);
    });

    await kase('first request with `node.id: ""`', async () => {
      const s = sotwStream();
      s.sendSotw({ node: { id: "", cluster: "edge" }, typeUrl: CDS_TYPE });
      const end = await endOf(s);
      assert.equal(end.code, GRPC_INVALID_ARGUMENT);
      assert.match(end.details, /must carry node\.id/);
      return describeEnd(end);
    });

    await kase("10,000 `resource_names` (none exist)", async () => {
      const s = sotwStream();
      const names = Array.from({ length: 10_000 }, (_, i) => `cluster-nope-${i}`);
      s.sendSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE, resourceNames: names });
      const cds = await s.expect(ANSWER_MS);
      assert.equal(cds.resources.length, 0, "none of the names exists");
      // Back to wildcard on the same stream (an ACK with no names): the real cluster arrives.
      s.sendSotw({ typeUrl: CDS_TYPE, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
      const wild = await s.expect(ANSWER_MS, "CDS after going wildcard");
      assert.deepEqual(resourceNames(wild), ["cluster-demo-echo"]);
      s.close();
      return "CDS with 0 resources (none of the names exists); stream open, wildcard later works";
    });

    await kase("one 1 MiB resource name", async () => {
      const s = sotwStream();
      s.sendSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE, resourceNames: ["x".repeat(1 << 20)] });
      const cds = await s.expect(ANSWER_MS);
      assert.equal(cds.resources.length, 0);
      assert.equal(s.end, undefined);
      s.close();
      return "CDS with 0 resources; stream open";
    });

    await kase("5 names of 1 MiB (a 5 MiB message)", async () => {
      const s = sotwStream();
      s.sendSotw({
        node: { id: DEMO },
        typeUrl: CDS_TYPE,
        resourceNames: Array.from({ length: 5 }, (_, i) => String(i).repeat(1 << 20)),
      });
      const end = await endOf(s);
      assert.equal(end.code, GRPC_RESOURCE_EXHAUSTED);
      assert.match(end.details, /^message of \d+ bytes exceeds 4194304$/);
      return describeEnd(end).replace(/\d{7,}/, "5242967");
    });

    await kase("garbage bytes (64 × 0xFF) as the message", async () => {
      const s = sotwStream();
      s.sendBytes(new Uint8Array(64).fill(0xff));
      const end = await endOf(s);
      assert.equal(end.code, GRPC_INTERNAL);
      assert.match(end.details, /^cannot decode request: /);
      return describeEnd(end);
    });

    await kase("an HTTP/1.1 request line as the message", async () => {
      const s = sotwStream();
      s.sendBytes(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      const end = await endOf(s);
      assert.equal(end.code, GRPC_INTERNAL);
      assert.match(end.details, /^cannot decode request: /);
      return describeEnd(end);
    });

    await kase("truncated DiscoveryRequest (last 5 bytes cut)", async () => {
      const s = sotwStream();
      const full = encodeSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE, versionInfo: "1" });
      s.sendBytes(full.subarray(0, full.length - 5));
      const end = await endOf(s);
      assert.equal(end.code, GRPC_INTERNAL);
      assert.match(end.details, /^cannot decode request: /);
      return describeEnd(end);
    });

    await kase("garbage after a valid first request", async () => {
      const { s } = await subscribedCds(a);
      open.push(s);
      s.sendBytes(new Uint8Array(64).fill(0xff));
      const end = await endOf(s);
      // Response headers are out: the status comes in the trailers.
      assert.equal(end.code, GRPC_INTERNAL);
      assert.match(end.details, /cannot decode request/);
      return `INTERNAL in trailers (client sees ${describeEnd(end)})`;
    });

    await kase("a DeltaDiscoveryRequest on the SotW method", async () => {
      const s = sotwStream();
      s.sendBytes(encodeDelta({ node: { id: DEMO }, typeUrl: CDS_TYPE }));
      const end = await endOf(s);
      assert.ok([GRPC_INTERNAL, GRPC_INVALID_ARGUMENT].includes(end.code), describeEnd(end));
      return describeEnd(end);
    });

    await kase("a DiscoveryRequest (SotW) on the Delta method", async () => {
      const s = deltaStream();
      s.sendBytes(encodeSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE }));
      const end = await endOf(s);
      assert.ok([GRPC_INTERNAL, GRPC_INVALID_ARGUMENT].includes(end.code), describeEnd(end));
      return `${describeEnd(end)} (the fields shift: no node is found)`;
    });

    await kase("`error_detail` without nonce, as the first request", async () => {
      const nacks = await metric("sigma_xds_nacks_total", { node_id: DEMO });
      const s = sotwStream();
      s.sendSotw({
        node: { id: DEMO },
        typeUrl: CDS_TYPE,
        errorDetail: { code: 13, message: "made-up failure" },
      });
      const cds = await s.expect(ANSWER_MS);
      assert.deepEqual(resourceNames(cds), ["cluster-demo-echo"]);
      assert.equal(await metric("sigma_xds_nacks_total", { node_id: DEMO }), nacks, "no NACK");
      s.close();
      return "treated as the initial subscription: CDS sent, no NACK counted";
    });

    await kase("`error_detail` without nonce, after a response", async () => {
      const { s } = await subscribedCds(a);
      open.push(s);
      const nacks = await metric("sigma_xds_nacks_total", { node_id: DEMO });
      s.sendSotw({ typeUrl: CDS_TYPE, errorDetail: { code: 13, message: "made-up failure" } });
      assert.equal(await s.next(SILENCE_MS), undefined, "nothing resent");
      assert.equal(s.end, undefined);
      assert.equal(await metric("sigma_xds_nacks_total", { node_id: DEMO }), nacks, "no NACK");
      s.close();
      return "ignored as stale (no nonce): nothing sent, no NACK counted, stream open";
    });

    await kase("`response_nonce` the agent never sent", async () => {
      const { s, cds } = await subscribedCds(a);
      open.push(s);
      const acks = await metric("sigma_xds_acks_total", { node_id: DEMO, type: "cds" });
      s.sendSotw({ typeUrl: CDS_TYPE, versionInfo: cds.versionInfo, responseNonce: "never-sent" });
      s.sendSotw({
        typeUrl: CDS_TYPE,
        responseNonce: "never-sent-either",
        errorDetail: { code: 3, message: "x" },
      });
      assert.equal(await s.next(SILENCE_MS), undefined, "nothing sent");
      assert.equal(await metric("sigma_xds_acks_total", { node_id: DEMO, type: "cds" }), acks);
      // The real ACK still counts.
      s.sendSotw({ typeUrl: CDS_TYPE, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
      await waitMetric(
        () => metric("sigma_xds_acks_total", { node_id: DEMO, type: "cds" }),
        acks + 1,
      );
      s.close();
      return "ignored as stale: nothing sent, no ACK/NACK counted; the real ACK still counts";
    });

    await kase("3 MiB `version_info` (first request and ACK)", async () => {
      const huge = "v".repeat(3 << 20);
      const s = sotwStream();
      s.sendSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE, versionInfo: huge });
      const cds = await s.expect(ANSWER_MS);
      assert.deepEqual(resourceNames(cds), ["cluster-demo-echo"]);
      assert.ok(cds.versionInfo.length < 100, "our version is ours, not the client's");
      s.sendSotw({ typeUrl: CDS_TYPE, versionInfo: huge, responseNonce: cds.nonce });
      assert.equal(await s.next(SILENCE_MS), undefined, "an ACK is never answered");
      assert.equal(s.end, undefined);
      s.close();
      return "served normally; the ACK is accepted and not answered";
    });

    await kase("Delta with 10,000 subscribed names (none exist)", async () => {
      const s = deltaStream();
      s.sendDelta({
        node: { id: DEMO },
        typeUrl: CDS_TYPE,
        resourceNamesSubscribe: Array.from({ length: 10_000 }, (_, i) => `nope-${i}`),
      });
      const first = await s.expect(ANSWER_MS);
      assert.equal(first.resources.length, 0);
      assert.equal(s.end, undefined);
      s.close();
      return "first Delta response, empty; stream open";
    });

    await kase("Delta and SotW streams of one node, requests interleaved", async () => {
      const sotw = sotwStream(), delta = deltaStream();
      sotw.sendSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE });
      delta.sendDelta({ node: { id: DEMO }, typeUrl: CDS_TYPE });
      sotw.sendSotw({ typeUrl: LDS_TYPE });
      delta.sendDelta({ typeUrl: LDS_TYPE });
      const got = { sotw: new Map<string, string[]>(), delta: new Map<string, string[]>() };
      for (const [name, s] of [["sotw", sotw], ["delta", delta]] as const) {
        for (let i = 0; i < 2; i++) {
          const r = await s.expect(ANSWER_MS, `${name} response ${i + 1}`);
          got[name].set(r.typeUrl, resourceNames(r));
          if (name === "sotw") sotw.sendSotw({ typeUrl: r.typeUrl, responseNonce: r.nonce });
          else delta.sendDelta({ typeUrl: r.typeUrl, responseNonce: r.nonce });
        }
      }
      for (const m of [got.sotw, got.delta]) {
        assert.deepEqual(m.get(CDS_TYPE), ["cluster-demo-echo"]);
        assert.deepEqual(m.get(LDS_TYPE), ["listener-demo-echo"]);
      }
      const nonces = [...sotw.received, ...delta.received].map((r) => r.nonce);
      assert.equal(new Set(nonces).size, nonces.length, "nonces unique across streams");
      sotw.close();
      delta.close();
      return "both get CDS+LDS; nonces unique across the two streams";
    });

    await kase("client half-closes before sending anything", async () => {
      const s = sotwStream();
      s.halfClose();
      const end = await endOf(s);
      assert.equal(end.code, GRPC_OK);
      return describeEnd(end).replace(/: $/, "") + " (empty call ends cleanly)";
    });

    await kase("client half-closes after its first response", async () => {
      const { s } = await subscribedCds(a);
      open.push(s);
      s.halfClose();
      const end = await endOf(s);
      // Response headers are out: OK comes in the trailers, as for any finished streaming call.
      assert.equal(end.code, GRPC_OK, describeEnd(end));
      return `stream ended by the agent (client sees ${describeEnd(end)})`;
    });

    await kase("NACK, duplicate NACK, then a snapshot change", async () => {
      const node = a.nodeIds[1];
      const { s, cds } = await subscribedCds(a, node);
      open.push(s);
      const labels = { node_id: node, type: "cds" };
      const nacks = await metric("sigma_xds_nacks_total", labels);
      const nack = { typeUrl: CDS_TYPE, responseNonce: cds.nonce, versionInfo: "" };
      s.sendSotw({ ...nack, errorDetail: { code: 3, message: "rejected by test" } });
      await waitMetric(() => metric("sigma_xds_nacks_total", labels), nacks + 1);
      s.sendSotw({ ...nack, errorDetail: { code: 3, message: "rejected by test" } });
      assert.equal(await s.next(SILENCE_MS), undefined, "no resend after a NACK");
      assert.equal(await metric("sigma_xds_nacks_total", labels), nacks + 1, "counted once");
      assert.ok(
        a.agent.records().some((r) =>
          r.msg === "xds: NACK" && r.node_id === node && r.error === "rejected by test"
        ),
      );
      // A new version arrives as soon as the snapshot changes.
      const row = a.api.nodes.find((n) => n.node_id === node)!;
      a.api.addRoute(row.id, {
        name: "nack-fix",
        listen_port: 21000,
        backend_host: "127.0.0.1",
        backend_port: 9999,
        cluster_type: "static",
        proxy_protocol: 0,
      });
      const next = await s.expect(ANSWER_MS, "CDS of the changed snapshot");
      assert.notEqual(next.versionInfo, cds.versionInfo);
      assert.deepEqual(resourceNames(next), ["cluster-h0", "cluster-nack-fix"]);
      s.close();
      return "counted once, logged (warn), nothing resent; next version sent on snapshot change";
    });

    // Below grpc-js: hand-made HTTP/2 requests.
    const ok = encodeSotw({ node: { id: DEMO }, typeUrl: CDS_TYPE });
    const h2 = (input: string, req: Parameters<typeof h2Exchange>[1], want: {
      http?: number;
      grpc?: number;
      message?: RegExp;
    }) =>
      kase(input, async () => {
        const ans = await h2Exchange(a.xdsPort, { timeoutMs: ANSWER_MS, ...req });
        assert.equal(ans.httpStatus, want.http ?? 200, JSON.stringify(ans));
        assert.equal(ans.grpcStatus, want.grpc, JSON.stringify(ans));
        if (want.message) assert.match(decodeURIComponent(ans.grpcMessage ?? ""), want.message);
        return ans.grpcStatus === undefined
          ? `HTTP ${ans.httpStatus}`
          : `${STATUS_NAMES[ans.grpcStatus]}${
            ans.grpcMessage ? `: ${decodeURIComponent(ans.grpcMessage)}` : ""
          }`;
      });
    await h2("gRPC message with the compressed flag set", {
      path: ADS_PATHS.sotw,
      body: grpcFrame(ok, { flag: 1 }),
    }, { grpc: GRPC_UNIMPLEMENTED, message: /compressed messages are not supported/ });
    await h2("`grpc-encoding: gzip`", {
      path: ADS_PATHS.sotw,
      headers: { "grpc-encoding": "gzip" },
      body: grpcFrame(ok),
    }, { grpc: GRPC_UNIMPLEMENTED, message: /grpc-encoding gzip/ });
    await h2("message length prefix of 4 GiB", {
      path: ADS_PATHS.sotw,
      body: grpcFrame(new Uint8Array(10), { length: 0xffffffff }),
    }, { grpc: GRPC_RESOURCE_EXHAUSTED, message: /exceeds 4194304/ });
    await h2("body ends inside a message (declared 100 bytes, sent 10)", {
      path: ADS_PATHS.sotw,
      body: grpcFrame(new Uint8Array(10), { length: 100 }),
    }, { grpc: GRPC_INTERNAL, message: /inside a message/ });
    await h2("unknown gRPC method", {
      path: "/envoy.service.discovery.v3.AggregatedDiscoveryService/Nope",
      body: grpcFrame(ok),
    }, { grpc: GRPC_UNIMPLEMENTED, message: /unknown method/ });
    await h2("`content-type: application/json`", {
      path: ADS_PATHS.sotw,
      headers: { "content-type": "application/json" },
      body: new TextEncoder().encode("{}"),
    }, { http: 415 });

    await kase("random bytes on the TCP port (not HTTP/2)", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: a.xdsPort });
      try {
        await conn.write(crypto.getRandomValues(new Uint8Array(4096)));
        const buf = new Uint8Array(4096);
        const deadline = Date.now() + ANSWER_MS;
        while (Date.now() < deadline) {
          try {
            if (await conn.read(buf) === null) break;
          } catch {
            break; // reset by the agent
          }
        }
        assert.ok(Date.now() < deadline, "the agent closes the connection");
      } finally {
        conn.close();
      }
      return "connection closed by the agent";
    });
  } finally {
    for (const s of open) s.close();
    console.log(
      "\n| Input | Agent's answer |\n| --- | --- |\n" +
        rows.map((r) => `| ${r.input} | ${r.answer} |`).join("\n"),
    );
    const st = await a.stop();
    // What an operator saw in the log meanwhile (warn and above, counted).
    const seen = new Map<string, number>();
    for (const r of a.agent.records()) {
      if (r.level !== "warn" && r.level !== "error") continue;
      const key = `${r.level} ${r.msg}: ${r.error ?? ""}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    console.log(
      "agent log, warn and above:\n" + [...seen].map(([k, n]) => `  ${n} × ${k}`).join("\n"),
    );
    assert.equal(st.code, 0, "clean exit after all the bad input");
  }
});

/** Polls a metric until it reaches `want` (counters are updated as the agent handles the message). */
async function waitMetric(read: () => Promise<number>, want: number): Promise<void> {
  const deadline = Date.now() + ANSWER_MS;
  let got = await read();
  while (got !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    got = await read();
  }
  assert.equal(got, want);
}

/**
 * An Envoy that goes away after its first response — stream reset or connection closed, the normal
 * way an Envoy restarts — is not a failure: the agent must not log `xds: gRPC call failed` for it
 * (it once did, twice per disconnect, because the transport errored the finished response body).
 */
Deno.test({
  name: "xDS: a normal client disconnect is not logged as a failed call",
  fn: async () => {
    const a = await startXdsAgent({ hostname: "xds-disconnect" });
    try {
      for (let i = 0; i < 10; i++) {
        const { s } = await subscribedCds(a);
        if (i % 2 === 0) s.close(); // RST_STREAM and connection closed
        else s.client.close(); // connection goes away with the stream open
        s.close();
      }
      await waitMetric(async () => metricSum(await a.metrics(), "sigma_xds_connected_streams"), 0);
      const noise = a.agent.records().filter((r) => r.msg === "xds: gRPC call failed");
      assert.deepEqual(noise.map((r) => r.error), [], "disconnects logged as failures");
    } finally {
      await a.stop();
    }
  },
});
