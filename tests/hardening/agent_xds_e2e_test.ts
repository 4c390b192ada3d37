/**
 * The whole agent process with xDS on, seen by a real gRPC xDS client:
 * - a NACK shows in `/status` (node marked), in the CLI's exit code and on `/metrics`;
 * - restarted while sigma-api is down, the agent serves the last config from its state dir;
 * - static sync never sends an empty route list while the API misbehaves.
 */
import assert from "node:assert/strict";
import { DEMO_NODE_ID, DevApi } from "../../lib/api/dev_server.ts";
import { agentPermissionFlags, freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";
import { CDS, clustersOf, LDS, listenersOf, XdsTestClient } from "../xds/xds_client.ts";

function haveChromium(): boolean {
  try {
    return Deno.statSync("/usr/bin/chromium").isFile;
  } catch {
    return false;
  }
}

/** The status page, in a real headless Chromium, marks the NACKing node's row. */
async function pageMarksNack(port: number, nodeId: string) {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
    ],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    const row = page.locator(`tr.nack[data-node="${nodeId}"]`);
    await row.waitFor({ timeout: 15_000 });
    const text = await row.textContent();
    assert.match(text ?? "", /NACK/);
    assert.match(text ?? "", /rejected by test/);
  } finally {
    await browser.close();
  }
}

async function status(port: number) {
  return await (await fetch(`http://127.0.0.1:${port}/status`)).json();
}

function node(s: { xds: { nodes: { node_id: string }[] } }, id: string) {
  return s.xds.nodes.find((n) => n.node_id === id) as Record<string, unknown> | undefined;
}

async function cli(port: number): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...agentPermissionFlags(),
      `${ROOT}main.ts`,
      "status",
      "--addr",
      `127.0.0.1:${port}`,
    ],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout) };
}

Deno.test({
  name:
    "a NACK is visible in /status, the page, the CLI and /metrics; restart while the API is down serves the persisted config",
  sanitizeResources: false, // playwright's browser pipes outlive the test by a tick
  sanitizeOps: false,
  fn: async () => {
    const api = new DevApi({ seedDemo: true });
    const url = api.listen({ hostname: "127.0.0.1", port: 0 });
    const metricsPort = freePort();
    const xdsPort = freePort();
    const stateDir = await Deno.makeTempDir({ prefix: "sigma-e2e-state-" });
    const args = [
      `--api-url=${url}`,
      `--metrics-port=${metricsPort}`,
      "--metrics-addr=127.0.0.1",
      "--xds-enabled",
      `--xds-port=${xdsPort}`,
      "--xds-poll-interval=1",
      "--interval=1",
      "--hostname=e2e-host",
    ];
    let agent = await spawnAgent({ stateDir, args });
    try {
      await waitFor(async () => node(await status(metricsPort), DEMO_NODE_ID)?.snapshot_version, {
        message: "demo node snapshot",
      });
      const client = XdsTestClient.sotw(xdsPort);
      try {
        client.send({ node: { id: DEMO_NODE_ID }, typeUrl: CDS });
        const cds = await client.next();
        assert.deepEqual(clustersOf(cds).map((c) => c.name), ["cluster-demo-echo"]);
        client.send({
          node: { id: DEMO_NODE_ID },
          typeUrl: CDS,
          responseNonce: cds.nonce,
          errorDetail: { code: 3, message: "cluster-demo-echo: rejected by test" },
        });
        const n = await waitFor(async () => {
          const x = node(await status(metricsPort), DEMO_NODE_ID);
          return x?.nacking === true ? x : undefined;
        }, { message: "nacking in /status" });
        assert.equal(
          (n.last_nack as { error: string }).error,
          "cluster-demo-echo: rejected by test",
        );
        const s = await status(metricsPort);
        assert.equal(s.health.healthy, false);
        assert.ok(s.health.problems.some((p: string) => p.includes("rejected by test")));
        const c = await cli(metricsPort);
        assert.equal(c.code, 1);
        assert.match(
          c.out,
          /demo-envoy v\d+: 1 streams.*NACK: cluster-demo-echo: rejected by test/,
        );
        const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        assert.match(
          metrics,
          /sigma_xds_nacks_total\{[^}]*node_id="demo-envoy"[^}]*type="cds"[^}]*\} 1/,
        );
        assert.deepEqual(await client.drain(1500), [], "no resend after a NACK");
        if (haveChromium()) await pageMarksNack(metricsPort, DEMO_NODE_ID);

        // A new version that the client ACKs clears the mark.
        const nodeRow = api.nodes.find((x) => x.node_id === DEMO_NODE_ID)!;
        api.addRoute(nodeRow.id, {
          name: "demo-two",
          listen_port: 10081,
          backend_host: "127.0.0.1",
          backend_port: 8081,
          cluster_type: "static",
          proxy_protocol: 0,
        });
        const cds2 = await client.next(15_000);
        assert.equal(clustersOf(cds2).length, 2);
        client.send({
          node: { id: DEMO_NODE_ID },
          typeUrl: CDS,
          responseNonce: cds2.nonce,
          versionInfo: cds2.versionInfo,
        });
        await waitFor(
          async () => node(await status(metricsPort), DEMO_NODE_ID)?.nacking === false,
          {
            message: "NACK mark cleared by the ACK",
          },
        );
      } finally {
        client.close();
      }

      // Restart while the API is down: the persisted snapshot is served.
      assert.equal((await agent.stop()).code, 0);
      await api.stop();
      agent = await spawnAgent({ stateDir, args });
      await waitFor(async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port: xdsPort })).close();
          return true;
        } catch {
          return false;
        }
      }, { message: "xDS port open again" });
      const again = XdsTestClient.sotw(xdsPort);
      try {
        again.send({ node: { id: DEMO_NODE_ID }, typeUrl: CDS });
        const cds = await again.next(15_000);
        assert.deepEqual(clustersOf(cds).map((c) => c.name).sort(), [
          "cluster-demo-echo",
          "cluster-demo-two",
        ]);
        again.send({ node: { id: DEMO_NODE_ID }, typeUrl: LDS });
        again.send({
          node: { id: DEMO_NODE_ID },
          typeUrl: CDS,
          responseNonce: cds.nonce,
          versionInfo: cds.versionInfo,
        });
        const lds = await again.next(15_000);
        assert.deepEqual(listenersOf(lds).map((l) => l.name).sort(), [
          "listener-demo-echo",
          "listener-demo-two",
        ]);
        assert.ok(api.requests.length > 0);
        const s = await status(metricsPort);
        assert.notEqual(s.agent.registration, "registered", "API is still down");
      } finally {
        again.close();
      }
    } finally {
      await agent.stop();
      await api.close();
      await Deno.remove(stateDir, { recursive: true });
    }
  },
});
