/**
 * Idle footprint and load/soak figures for the agent process, every feature on:
 *
 * - idle RSS and CPU over a window (targets: RSS ≤ 60 MB, CPU ≤ 1 % of a core);
 * - 1,000 concurrent `/metrics` scrapes (errors, time, RSS and open fds before/after);
 * - 100 concurrent `POST /ports/allocate` calls (no port handed out twice);
 * - RSS and fds back to baseline afterwards (leak check).
 *
 * Run: `deno task bench:footprint` (reads /proc of the child, so it needs no agent privileges).
 *
 * @module
 */

import { DEMO_STATIC_ENVOY_YAML, DevApi } from "../lib/api/dev_server.ts";
import { freePort, openFds, readProc, spawnAgent, waitFor } from "../tests/helpers.ts";

const IDLE_WINDOW_S = Number(Deno.env.get("IDLE_WINDOW_S") ?? 30);
const TICKS = 100; // USER_HZ on Linux

function procStatus(pid: number): { rssKb: number; cpuTicks: number; fds: number } {
  const status = readProc(`/proc/${pid}/status`);
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
  const fds = openFds(pid);
  return { rssKb, cpuTicks, fds };
}

const rows: [string, string, string][] = [];
const row = (what: string, value: string, target = "") => {
  rows.push([what, value, target]);
  console.log(`${what.padEnd(48)} ${value.padEnd(26)} ${target}`);
};

const api = new DevApi({ seedDemo: true });
const url = api.listen({ hostname: "127.0.0.1", port: 0 });
const envoyDir = await Deno.makeTempDir({ prefix: "sigma-bench-envoy-" });
await Deno.writeTextFile(`${envoyDir}/envoy.yaml`, DEMO_STATIC_ENVOY_YAML);
const metricsPort = freePort();
const xdsPort = freePort();
// Pass allocator tuning through to the agent exactly as a unit file or container would set it.
const agentEnv: Record<string, string> = {};
for (const name of ["MALLOC_ARENA_MAX"]) {
  const v = Deno.env.get(name);
  if (v !== undefined) agentEnv[name] = v;
}
const agent = await spawnAgent({
  envoyDir,
  env: agentEnv,
  args: [
    `--api-url=${url}`,
    `--metrics-port=${metricsPort}`,
    "--metrics-addr=127.0.0.1",
    "--port-scan",
    "--port-scan-range=20000-30000",
    "--port-scan-interval=60",
    "--xds-enabled",
    `--xds-port=${xdsPort}`,
    "--envoy-config-sync",
    `--envoy-config-path=${envoyDir}/envoy.yaml`,
    "--hostname=bench-host",
  ],
});
const pid = agent.child.pid;
try {
  await waitFor(
    async () => (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status === 200,
    {
      timeoutMs: 60_000,
      message: "agent ready",
    },
  );
  // Let start-up work (first scan, first sync, first poll) settle before measuring idle.
  await new Promise((r) => setTimeout(r, 3000));

  const a = procStatus(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_WINDOW_S * 1000));
  const b = procStatus(pid);
  const cpuPct = ((b.cpuTicks - a.cpuTicks) / TICKS) / ((performance.now() - t0) / 1000) * 100;
  row(
    "idle RSS, every feature on",
    `${(b.rssKb / 1024).toFixed(1)} MB`,
    `target ≤ 60 MB ${b.rssKb <= 60 * 1024 ? "met" : "NOT MET"}`,
  );
  row(`idle CPU over ${IDLE_WINDOW_S} s`, `${cpuPct.toFixed(2)} % of a core`, "target ≤ 1 %");
  const baseline = procStatus(pid);

  // 1,000 concurrent scrapes, on a client whose connections are closed afterwards.
  const client = Deno.createHttpClient({});
  const scrape = async () => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { client });
    const t = await r.text();
    return r.status === 200 && t.includes("sigma_ports_total");
  };
  const s0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: 1000 }, scrape));
  const okCount = results.filter((r) => r.status === "fulfilled" && r.value).length;
  row(
    "1,000 concurrent /metrics scrapes",
    `${okCount} ok in ${((performance.now() - s0) / 1000).toFixed(2)} s`,
    "all ok",
  );

  // 100 concurrent allocations of 1 port each.
  const alloc = async () => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/ports/allocate`, {
      client,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ count: 1 }),
    });
    const j = await r.json();
    return (j.ports ?? []) as number[];
  };
  const a0 = performance.now();
  const ports = (await Promise.all(Array.from({ length: 100 }, alloc))).flat();
  row(
    "100 concurrent allocate calls",
    `${ports.length} ports, ${new Set(ports).size} distinct, ${
      ((performance.now() - a0) / 1000).toFixed(2)
    } s`,
    "no duplicates",
  );

  client.close();
  await new Promise((r) => setTimeout(r, 5000));
  const after = procStatus(pid);
  row(
    "RSS after load vs before",
    `${(after.rssKb / 1024).toFixed(1)} vs ${(baseline.rssKb / 1024).toFixed(1)} MB`,
  );
  row("open fds after load vs before", `${after.fds} vs ${baseline.fds}`, "back to baseline");
  await new Promise((r) => setTimeout(r, 30_000));
  const later = procStatus(pid);
  row("RSS 30 s after load", `${(later.rssKb / 1024).toFixed(1)} MB`, "back towards baseline");
  row("load average (1, 5, 15 min)", readProc("/proc/loadavg").split(" ").slice(0, 3).join(" "));
} finally {
  await agent.stop();
  await api.close();
  await Deno.remove(envoyDir, { recursive: true });
}
