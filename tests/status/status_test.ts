/// <reference lib="dom" />
/**
 * Operator visibility against a real agent process and the dev API: `/status` JSON, the
 * `sigma-agent status` CLI, and the HTML page in a real headless Chromium.
 */
import assert from "node:assert/strict";
import { DevApi } from "../../lib/api/dev_server.ts";
import { assessHealth } from "../../lib/status/health.ts";
import { renderStatus } from "../../lib/status/cli.ts";
import { agentPermissionFlags, freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (!haveChromium && Deno.env.get("CI")) {
  throw new Error(`${CHROMIUM} is required in CI (apt-get install chromium)`);
}

async function statusCli(addr: string): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...agentPermissionFlags(), `${ROOT}main.ts`, "status", "--addr", addr],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

async function getStatus(port: number): Promise<Record<string, unknown>> {
  return await (await fetch(`http://127.0.0.1:${port}/status`)).json();
}

Deno.test({
  name: "status JSON, CLI and page agree, healthy then unhealthy",
  sanitizeResources: false, // playwright keeps internal handles until the browser process is reaped
  sanitizeOps: false,
  async fn() {
    const key = "sk_sigma_status_test_key_0000000000000000";
    const api = new DevApi({ apiKey: key });
    const url = api.listen({ hostname: "127.0.0.1", port: 0 });
    const port = freePort();
    const agent = await spawnAgent({
      args: [
        "--interval=1",
        `--metrics-port=${port}`,
        "--metrics-addr=127.0.0.1",
        "--hostname=status-host",
      ],
      env: { SIGMA_API_URL: url, SIGMA_API_KEY: key },
    });
    try {
      const healthy = await waitFor(async () => {
        const s = await getStatus(port);
        const a = s.agent as Record<string, unknown>;
        return a.registration === "registered" && (a.last_heartbeat as { ok?: boolean } | null)?.ok
          ? s
          : undefined;
      }, { message: "registered + heartbeat in /status" });
      const a = healthy.agent as Record<string, unknown>;
      assert.equal(a.hostname, "status-host");
      assert.equal(a.vps_id, api.vps[0].id);
      assert.match(String(a.version), /^\d+\.\d+\.\d+/);
      assert.deepEqual(healthy.health, { healthy: true, problems: [] });
      assert.ok(!JSON.stringify(healthy).includes(key));

      const ok = await statusCli(`127.0.0.1:${port}`);
      assert.equal(ok.code, 0, ok.err);
      assert.match(ok.out, /status-host — HEALTHY/);
      assert.ok(ok.out.includes(api.vps[0].id));
      assert.ok(!ok.out.includes("\x1b["), "no colour when not a TTY");

      if (haveChromium) await checkPage(port, "healthy", "status-host");

      // The API goes away: the next heartbeat fails and every view says unhealthy.
      await api.stop();
      await waitFor(
        async () => ((await getStatus(port)).health as { healthy: boolean }).healthy === false,
        {
          message: "unhealthy after API outage",
        },
      );
      const bad = await statusCli(`127.0.0.1:${port}`);
      assert.equal(bad.code, 1);
      assert.match(bad.out, /UNHEALTHY/);
      assert.match(bad.out, /last heartbeat failed/);
      if (haveChromium) await checkPage(port, "unhealthy", "last heartbeat failed");
    } finally {
      await agent.stop();
      await api.close();
    }
    const gone = await statusCli(`127.0.0.1:${port}`);
    assert.equal(gone.code, 3, "unreachable agent");
    assert.match(gone.err, /cannot reach/);
    const usage = await statusCli("not-an-addr");
    assert.equal(usage.code, 2);
  },
});

async function checkPage(port: number, badge: string, text: string) {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // a phone
    const external: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(`http://127.0.0.1:${port}/`)) external.push(r.url());
    });
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction((b) => document.getElementById("health")?.textContent === b, badge, {
      timeout: 15_000,
    });
    const body = await page.textContent("body");
    assert.ok(body?.includes(text), `page shows ${text}`);
    assert.match(body ?? "", /\d+ s ago|min ago/, "relative times");
    assert.deepEqual(external, [], "no external assets");
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `fits a phone screen (scrollWidth ${width})`);

    // Screenshot check: the rendered badge has the verdict's colour in the captured pixels.
    const png = await page.screenshot({ fullPage: true });
    assert.ok(png.length > 5000, "non-trivial screenshot");
    const box = (await page.locator("#health").boundingBox())!;
    const expected = badge === "healthy" ? [26, 127, 55] : [207, 34, 46];
    // Decode the PNG in a blank page (the status page's CSP rightly forbids data: images).
    const scratch = await browser.newPage();
    const found = await scratch.evaluate(async ({ b64, box, expected }) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext("2d")!;
      g.drawImage(img, 0, 0);
      const d = g.getImageData(box.x, box.y, box.width, box.height).data;
      let hits = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (
          Math.abs(d[i] - expected[0]) < 40 && Math.abs(d[i + 1] - expected[1]) < 40 &&
          Math.abs(d[i + 2] - expected[2]) < 40
        ) hits++;
      }
      return hits / (d.length / 4);
    }, { b64: png.toString("base64"), box, expected });
    assert.ok(
      found > 0.2,
      `badge colour in screenshot (${(found * 100).toFixed(0)}% of its pixels)`,
    );
  } finally {
    await browser.close();
  }
}

Deno.test("health verdict and CLI rendering of NACKing nodes and failing sync", () => {
  const doc = {
    agent: {
      version: "0.1.0",
      hostname: "h1",
      vps_id: "v1",
      registration: "registered",
      last_heartbeat: { ok: true, at: new Date(0).toISOString() },
      ip_addresses: [{ ip: "10.0.0.1", label: "internal" }],
    },
    ports: {
      enabled: true,
      range: { start: 10000, end: 10010 },
      total: 11,
      available: 9,
      in_use: 2,
      used_by_source: { envoy: 2, sshd: 0 },
      last_scan: new Date(0).toISOString(),
      reservations: [{ port: 10001, expires_at: new Date(0).toISOString() }],
    },
    static_sync: {
      enabled: true,
      files: [{
        path: "/etc/envoy/envoy.yaml",
        node_id: "static-h1",
        routes: 3,
        error: "line 4: bad indentation",
        last_sync_at: null,
      }],
    },
    xds: {
      enabled: true,
      nodes: [
        {
          node_id: "edge-a",
          connected_streams: 1,
          snapshot_version: "7",
          last_acked: {
            cds: { version: "7", at: new Date(0).toISOString() },
            lds: { version: "6", at: new Date(0).toISOString() },
          },
          nacking: true,
          last_nack: { type: "lds", error: "port 80 in use", at: new Date(0).toISOString() },
        },
        {
          node_id: "edge-b",
          connected_streams: 2,
          snapshot_version: "3",
          last_acked: { cds: { version: "3", at: new Date(0).toISOString() } },
          nacking: false,
        },
      ],
    },
  };
  const health = assessHealth(doc);
  assert.equal(health.healthy, false);
  assert.deepEqual(health.problems, [
    "static sync /etc/envoy/envoy.yaml: line 4: bad indentation",
    "xDS node edge-a rejected its config: port 80 in use",
  ]);
  const text = renderStatus({ ...doc, health }, false, 10_000);
  assert.match(text, /sigma-agent 0\.1\.0 on h1 — UNHEALTHY/);
  assert.match(
    text,
    /ports\s+10000-10010: 9\/11 available; used envoy 2; 1 reserved; scanned 10 s ago/,
  );
  assert.match(text, /edge-a v7: 1 streams, acked cds 7 lds 6 NACK: port 80 in use/);
  assert.match(text, /! xDS node edge-a rejected its config/);
  const lines = text.split("\n").slice(1, 6);
  const col = lines.map((l) => l.search(/\S/) + l.trim().split(/\s{2,}/)[0].length);
  assert.ok(col.every((c) => c <= Math.max(...col)), "aligned");
  assert.ok(renderStatus({ ...doc, health }, true, 10_000).includes("\x1b[31mUNHEALTHY"));
  assert.deepEqual(assessHealth({ agent: { registration: "key_rejected" } }).problems, [
    "not registered: sigma-api rejected the API key",
  ]);
});
