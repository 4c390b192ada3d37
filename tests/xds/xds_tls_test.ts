/**
 * The xDS port over TLS and mTLS (`--xds-tls-cert`, `--xds-tls-key`, `--xds-tls-client-ca`),
 * checked with a real agent process and `@grpc/grpc-js` clients configured from the bootstrap
 * `sigma-agent envoy-bootstrap --tls …` prints (strictly decoded against the upstream protos):
 * config is served over TLS with ALPN h2; without a client certificate, or with one from another
 * CA, the handshake is refused; a certificate swapped on disk is used by the next connection while
 * a stream that is up stays up. Bad TLS files stop the agent at start with exit 2.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { DEMO_NODE_ID, DevApi } from "../../lib/api/dev_server.ts";
import { envoyBootstrapCommand, XDS_CLUSTER_NAME } from "../../lib/xds/bootstrap.ts";
import { makeCerts, makeLeaf, type TestCerts } from "../security/certs.ts";
import { loadUpstream, strictBootstrapFromYaml } from "../support/upstream_protos.ts";
import { adsClientClass } from "../support/ads_client.ts";
import { freePort, spawnAgent, waitFor } from "../helpers.ts";

const CDS_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

function adsClient(port: number, creds: grpc.ChannelCredentials) {
  const Client = adsClientClass();
  // Deno's node:tls refuses an IP address as SNI server name, which grpc-js sends for an IP
  // target: name the server "localhost" (a SAN of the test certificate) instead.
  return new Client(`127.0.0.1:${port}`, creds, {
    "grpc.ssl_target_name_override": "localhost",
    // A connection of its own per client: the global pool would reuse an earlier handshake.
    "grpc.use_local_subchannel_pool": 1,
  });
}

/** Opens an ADS stream; resolves with the call once the first CDS response arrived. */
function openAds(
  port: number,
  creds: grpc.ChannelCredentials,
  timeoutMs = 5000,
): Promise<{ clusters: string[]; call: grpc.ClientDuplexStream<object, unknown>; close(): void }> {
  const Cluster = loadUpstream().lookupType("envoy.config.cluster.v3.Cluster");
  const client = adsClient(port, creds);
  // deno-lint-ignore no-explicit-any
  const call = (client as any).StreamAggregatedResources() as grpc.ClientDuplexStream<
    object,
    unknown
  >;
  const close = () => {
    call.cancel();
    client.close();
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      close();
      reject(new Error("no CDS response"));
    }, timeoutMs);
    call.on("error", (e: Error) => {
      clearTimeout(timer);
      close();
      reject(e);
    });
    call.once("data", (res: { type_url: string; resources?: { value: Uint8Array }[] }) => {
      clearTimeout(timer);
      if (res.type_url !== CDS_TYPE) return reject(new Error(`unexpected ${res.type_url}`));
      const clusters = (res.resources ?? []).map((a: { value: Uint8Array }) =>
        (Cluster.decode(a.value) as unknown as { name: string }).name
      );
      resolve({ clusters, call, close });
    });
    call.write({ node: { id: DEMO_NODE_ID, cluster: "sigma" }, type_url: CDS_TYPE });
  });
}

const read = (p: string) => Buffer.from(Deno.readTextFileSync(p));

/** TLS settings of the xDS cluster in a bootstrap, as grpc-js credentials (what Envoy would use). */
// deno-lint-ignore no-explicit-any
function credsFromBootstrap(bootstrap: any): grpc.ChannelCredentials {
  const cluster = bootstrap.static_resources.clusters.find((c: { name: string }) =>
    c.name === XDS_CLUSTER_NAME
  );
  const ctx = cluster.transport_socket.typed_config.common_tls_context;
  assert.deepEqual(ctx.alpn_protocols, ["h2"]);
  const cert = ctx.tls_certificates?.[0];
  return grpc.credentials.createSsl(
    read(ctx.validation_context.trusted_ca.filename),
    cert ? read(cert.private_key.filename) : null,
    cert ? read(cert.certificate_chain.filename) : null,
  );
}

async function startAgent(certs: TestCerts, extra: string[]) {
  const api = new DevApi({ seedDemo: true });
  const apiUrl = api.listen({ hostname: "127.0.0.1", port: 0 });
  const port = freePort();
  const agent = await spawnAgent({
    args: [
      "--metrics-port=0",
      "--interval=1",
      "--xds-poll-interval=1",
      "--xds-enabled",
      `--xds-port=${port}`,
      `--xds-tls-cert=${certs.serverCert}`,
      `--xds-tls-key=${certs.serverKey}`,
      ...extra,
    ],
    env: { SIGMA_API_URL: apiUrl, AGENT_HOSTNAME: "xds-tls" },
    etcDir: certs.dir,
  });
  return {
    port,
    agent,
    stop: async () => {
      await agent.stop();
      await api.close();
    },
  };
}

Deno.test("xds mTLS: the bootstrap's TLS settings get config; missing or wrong client certificates are refused; swapped certificates are used by the next connection", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-xds-tls-" }));
  const { port, agent, stop } = await startAgent(certs, [
    `--xds-tls-client-ca=${certs.caCert}`,
  ]);
  try {
    const cmd = envoyBootstrapCommand([
      "--node-id",
      DEMO_NODE_ID,
      `--xds-port=${port}`,
      "--tls",
      "--tls-ca",
      certs.caCert,
      "--tls-cert",
      certs.clientCert,
      "--tls-key",
      certs.clientKey,
    ]);
    assert.equal(cmd.exitCode, 0, cmd.stderr);
    const bootstrap = strictBootstrapFromYaml(cmd.stdout);
    const good = credsFromBootstrap(bootstrap);
    const first = await waitFor(
      () => openAds(port, good).catch(() => undefined),
      { timeoutMs: 60_000, message: "ADS over mTLS answers" },
    );
    assert.deepEqual(first.clusters, ["cluster-demo-echo"]);

    // No client certificate, or one signed by another CA: refused during the handshake.
    await assert.rejects(
      openAds(port, grpc.credentials.createSsl(read(certs.caCert))),
      /UNAVAILABLE/,
    );
    await assert.rejects(
      openAds(
        port,
        grpc.credentials.createSsl(
          read(certs.caCert),
          read(certs.otherClientKey),
          read(certs.otherClientCert),
        ),
      ),
      /UNAVAILABLE/,
    );
    // Plain HTTP/2 to a TLS port: refused too.
    await assert.rejects(openAds(port, grpc.credentials.createInsecure()), /UNAVAILABLE/);

    // Swap the server certificate on disk for one signed by the other CA (atomic renames).
    let streamError: Error | undefined;
    first.call.on("error", (e: Error) => (streamError = e));
    makeLeaf(certs.dir, "server-new", "other-ca", "serverAuth");
    Deno.renameSync(`${certs.dir}/server-new.key`, certs.serverKey);
    Deno.renameSync(`${certs.dir}/server-new.crt`, certs.serverCert);
    const trustNew = grpc.credentials.createSsl(
      read(certs.otherCaCert),
      read(certs.clientKey),
      read(certs.clientCert),
    );
    const next = await openAds(port, trustNew);
    assert.deepEqual(next.clusters, ["cluster-demo-echo"], "the next connection uses the new cert");
    next.close();
    await assert.rejects(openAds(port, good), /UNAVAILABLE/);
    // The stream opened before the swap is still up.
    first.call.write({ node: { id: DEMO_NODE_ID }, type_url: CDS_TYPE });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(streamError, undefined, "the stream opened before the swap stays up");
    first.close();

    const status = agent.records().find((r) => r.msg === "xds: serving ADS");
    assert.equal(status?.tls, "mtls");
  } finally {
    await stop();
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("xds TLS without a client CA: any client that trusts the agent gets config", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-xds-tls-" }));
  const { port, stop } = await startAgent(certs, []);
  try {
    const cmd = envoyBootstrapCommand([
      "--node-id",
      DEMO_NODE_ID,
      `--xds-port=${port}`,
      "--tls",
      `--tls-ca=${certs.caCert}`,
    ]);
    assert.equal(cmd.exitCode, 0, cmd.stderr);
    const ads = await waitFor(
      () =>
        openAds(port, credsFromBootstrap(strictBootstrapFromYaml(cmd.stdout))).catch(() =>
          undefined
        ),
      { timeoutMs: 60_000, message: "ADS over TLS answers" },
    );
    assert.deepEqual(ads.clusters, ["cluster-demo-echo"]);
    ads.close();
    // A client that does not trust the agent's CA refuses the agent.
    await assert.rejects(
      openAds(port, grpc.credentials.createSsl(read(certs.otherCaCert))),
      /UNAVAILABLE/,
    );
  } finally {
    await stop();
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("xds TLS: bad settings stop the agent at start with exit 2 and one clear line", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-xds-tls-" }));
  try {
    const cases: [string[], RegExp][] = [
      [[`--xds-tls-cert=${certs.serverCert}`], /--xds-tls-cert and --xds-tls-key/],
      [[`--xds-tls-client-ca=${certs.caCert}`], /--xds-tls-client-ca .*needs --xds-tls-cert/],
      [[
        `--xds-tls-cert=${certs.serverCert}`,
        `--xds-tls-key=${certs.clientKey}`,
      ], /invalid --xds-tls-cert.*(key|match|mismatch)/i],
      [[
        `--xds-tls-cert=${certs.dir}/missing.crt`,
        `--xds-tls-key=${certs.serverKey}`,
      ], /invalid --xds-tls-cert.*cannot read certificate/],
    ];
    for (const [args, re] of cases) {
      const agent = await spawnAgent({
        args: ["--metrics-port=0", "--xds-enabled", `--xds-port=${freePort()}`, ...args],
        etcDir: certs.dir,
      });
      const status = await agent.status;
      assert.equal(status.code, 2, args.join(" "));
      const text = agent.lines.filter((l) => l.trim() !== "");
      assert.equal(text.length, 1, text.join("\n"));
      assert.match(text[0], re);
    }
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
