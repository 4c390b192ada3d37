/**
 * The agent as a real process with its real permission flags against the dev sigma-api on
 * loopback: register/heartbeat bodies, outage recovery, re-registration after a 404, a rejected
 * key, and a clean SIGTERM exit.
 */
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import os from "node:os";
import { DevApi, type RecordedRequest } from "../../lib/api/dev_server.ts";
import { freePort, readProc, spawnAgent, waitFor } from "../helpers.ts";

const KEY = "sk_sigma_0123456789abcdef0123456789abcdef01234567";

function calls(api: DevApi, path: string): RecordedRequest[] {
  return api.requests.filter((r) => r.path === `/api${path}`);
}

function meminfoTotalMb(): number {
  const line = readProc("/proc/meminfo").split("\n").find((l) => l.startsWith("MemTotal:"))!;
  return Math.floor(Number(line.split(/\s+/)[1]) / 1024);
}

Deno.test("agent registers and heartbeats with the contract's bodies", async () => {
  const api = new DevApi({ apiKey: KEY });
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = freePort();
  const agent = await spawnAgent({
    args: [
      "--interval=1",
      `--metrics-port=${metricsPort}`,
      "--metrics-addr=127.0.0.1",
      "--alias=edge-1",
      "--ssh-port=2222",
    ],
    env: { SIGMA_API_URL: url, SIGMA_API_KEY: KEY, AGENT_HOSTNAME: "it-host-1" },
  });
  try {
    await waitFor(
      () => calls(api, "/agent/heartbeat").filter((r) => r.status === 200).length >= 2,
      {
        message: "two heartbeats",
      },
    );
    const reg = calls(api, "/agent/register")[0];
    assert.equal(reg.status, 200);
    assert.equal(reg.headers["x-api-key"], KEY);
    assert.equal(reg.headers["content-type"], "application/json");
    const body = reg.body as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), [
      "alias",
      "hostname",
      "ip_addresses",
      "ssh_port",
      "system_info",
    ]);
    assert.equal(body.hostname, "it-host-1");
    assert.equal(body.alias, "edge-1");
    assert.equal(body.ssh_port, 2222);
    const ips = body.ip_addresses as { ip: string; label: string }[];
    assert.ok(Array.isArray(ips));
    for (const e of ips) {
      assert.deepEqual(Object.keys(e).sort(), ["ip", "label"]);
      assert.ok(e.label === "" || e.label === "internal");
      assert.ok(!e.ip.startsWith("127.") && e.ip !== "::1", `loopback reported: ${e.ip}`);
    }
    const sorted = [...ips].map((e) => e.ip).sort();
    assert.deepEqual(ips.map((e) => e.ip), [...new Set(sorted)]);

    const info = body.system_info as Record<string, unknown>;
    assert.deepEqual(
      Object.keys(info).sort(),
      [
        "cpu_cores",
        "disk_gb",
        "disk_used_gb",
        "load_avg",
        "metrics_port",
        "ram_mb",
        "uptime_seconds",
      ],
    );
    assert.equal(info.metrics_port, metricsPort);
    assert.equal(info.cpu_cores, os.cpus().length);
    assert.equal(info.ram_mb, meminfoTotalMb());
    const fs = statfsSync("/");
    const frsize = Number((fs as unknown as { frsize?: number }).frsize ?? fs.bsize);
    assert.equal(info.disk_gb, Math.floor((Number(fs.blocks) * frsize) / 2 ** 30));
    const upNow = Number(readProc("/proc/uptime").split(" ")[0]);
    assert.ok(
      Math.abs((info.uptime_seconds as number) - upNow) < 30,
      "uptime close to /proc/uptime",
    );
    assert.ok(Array.isArray(info.load_avg) && (info.load_avg as unknown[]).length === 3);

    const hb = calls(api, "/agent/heartbeat")[0].body as Record<string, unknown>;
    assert.deepEqual(Object.keys(hb).sort(), ["hostname", "ip_addresses", "system_info"]);
    assert.equal(hb.hostname, "it-host-1");

    // The VPS id is persisted for the next start.
    const saved = JSON.parse(await Deno.readTextFile(`${agent.stateDir}/vps.json`));
    assert.equal(saved.id, api.vps[0].id);

    // /readyz is ready once registered; the key never shows in logs, metrics or status.
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const status = await (await fetch(`http://127.0.0.1:${metricsPort}/status`)).text();
    assert.match(metrics, /sigma_agent_heartbeat_total\{[^}]*result="success"[^}]*\} [1-9]/);
    for (const text of [metrics, status, agent.lines.join("\n"), agent.stdout()]) {
      assert.ok(!text.includes(KEY), "API key leaked");
    }
  } finally {
    const t0 = performance.now();
    const st = await agent.stop("SIGTERM");
    const took = performance.now() - t0;
    await api.close();
    assert.equal(st.code, 0, "clean exit on SIGTERM");
    assert.ok(took < 5000, `exit took ${took} ms`);
  }
});

Deno.test("agent survives an API outage and re-registers after a 404", async () => {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const agent = await spawnAgent({
    args: ["--interval=1", "--metrics-port=0", `--api-url=${url}`, "--hostname=it-host-2"],
  });
  try {
    await waitFor(() => calls(api, "/agent/heartbeat").some((r) => r.status === 200), {
      message: "first heartbeat",
    });

    // Outage: the API refuses connections, then comes back on the same port.
    await api.stop();
    await waitFor(() => agent.records().some((r) => r.msg === "heartbeat failed"), {
      message: "failure logged",
    });
    const before = api.requests.length;
    api.listen();
    await waitFor(
      () =>
        api.requests.slice(before).some((r) =>
          r.path === "/api/agent/heartbeat" && r.status === 200
        ),
      { message: "heartbeat after outage" },
    );

    // The VPS row disappears: the heartbeat gets 404 and the agent registers again.
    const oldId = api.vps[0].id;
    api.vps.splice(0, api.vps.length);
    await waitFor(() => api.vps.length === 1, { message: "re-registration" });
    assert.notEqual(api.vps[0].id, oldId);
    const idx404 = api.requests.findIndex((r) =>
      r.path === "/api/agent/heartbeat" && r.status === 404
    );
    assert.ok(idx404 >= 0);
    assert.ok(
      api.requests.slice(idx404).some((r) => r.path === "/api/agent/register" && r.status === 200),
    );
    await waitFor(
      async () =>
        JSON.parse(await Deno.readTextFile(`${agent.stateDir}/vps.json`)).id === api.vps[0].id,
      {
        message: "new id persisted",
      },
    );
  } finally {
    const st = await agent.stop("SIGINT");
    await api.close();
    assert.equal(st.code, 0);
  }
});

Deno.test("agent started while the API is down keeps retrying with backoff, then registers", async () => {
  const api = new DevApi();
  const port = freePort();
  const url = `http://127.0.0.1:${port}/api`;
  const agent = await spawnAgent({
    args: ["--interval=1", "--metrics-port=0", `--api-url=${url}`, "--hostname=it-host-3"],
  });
  try {
    // Issue 14: the failure names the call, the URL and the cause, and is logged once, not at
    // every retry; the recovery line counts the failures in between.
    const first = await waitFor(
      () => agent.records().find((r) => r.msg === "registration failed; retrying"),
      { message: "failure logged" },
    );
    assert.equal(first.error, `POST ${url}/agent/register: connection refused`);
    assert.match(String(first.next), /^retry in [\d.]+ s$/);
    assert.ok((first.retry_in_ms as number) <= 60_000);
    await new Promise((r) => setTimeout(r, 2500)); // the 2nd attempt comes within 1 s
    assert.equal(
      agent.records().filter((r) => r.msg === "registration failed; retrying").length,
      1,
      "a repeated failure is not logged again",
    );
    api.listen({ hostname: "127.0.0.1", port });
    await waitFor(() => api.vps.length === 1, {
      timeoutMs: 30_000,
      message: "registered after API came up",
    });
    const recovered = await waitFor(() =>
      agent.records().find((r) => r.msg === "registration recovered")
    );
    assert.ok((recovered.failures as number) >= 2, JSON.stringify(recovered));
  } finally {
    const st = await agent.stop();
    await api.close();
    assert.equal(st.code, 0);
  }
});

Deno.test("a rejected API key is logged clearly and never printed", async () => {
  const api = new DevApi({ apiKey: "sk_sigma_right" });
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const wrong = "sk_sigma_wrong_key_value_123";
  const agent = await spawnAgent({
    args: ["--metrics-port=0", `--api-url=${url}`, "--hostname=it-host-4"],
    env: { SIGMA_API_KEY: wrong },
  });
  try {
    const rec = await waitFor(
      () => agent.records().find((r) => String(r.msg).includes("rejected the API key")),
      {
        message: "key rejection logged",
      },
    );
    assert.equal(rec.level, "error");
    assert.equal(rec.status, 401);
    assert.equal(rec.retry_in_ms, 60_000, "retries at the cap");
    assert.match(
      String(rec.error),
      /^POST http:\/\/127\.0\.0\.1:\d+\/api\/agent\/register: HTTP 401/,
    );
    assert.ok(!agent.lines.join("\n").includes(wrong));
  } finally {
    await agent.stop();
    await api.close();
  }
});
