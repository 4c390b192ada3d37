import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { resolveHostname } from "../../lib/host/hostname.ts";
import { collectSystemInfo } from "../../lib/host/system_info.ts";
import { PublicIpResolver } from "../../lib/host/public_ip.ts";
import { readProc } from "../helpers.ts";

function procValue(file: string, key: string): number {
  const line = readProc(file).split("\n").find((l) => l.startsWith(key))!;
  return Number(line.split(/\s+/)[1]);
}

Deno.test("system info equals what the kernel reports", () => {
  const info = collectSystemInfo({
    diskPath: "/etc/os-release",
    metricsPort: 9102,
    publicIp: "203.0.113.9",
  });
  const cpuinfo = readProc("/proc/cpuinfo").split("\n").filter((l) => l.startsWith("processor"))
    .length;
  assert.equal(info.cpu_cores, cpuinfo);
  assert.equal(info.ram_mb, Math.floor(procValue("/proc/meminfo", "MemTotal:") / 1024));
  const fs = statfsSync("/");
  const frsize = Number((fs as unknown as { frsize?: number }).frsize ?? fs.bsize);
  assert.equal(info.disk_gb, Math.floor((Number(fs.blocks) * frsize) / 2 ** 30));
  assert.equal(
    info.disk_used_gb,
    Math.floor(((Number(fs.blocks) - Number(fs.bfree)) * frsize) / 2 ** 30),
  );
  const uptime = Number(readProc("/proc/uptime").split(" ")[0]);
  assert.ok(Math.abs(info.uptime_seconds - Math.floor(uptime)) <= 2);
  const load = readProc("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  assert.equal(info.load_avg.length, 3);
  info.load_avg.forEach((v, i) => assert.ok(Math.abs(v - load[i]) < 0.5));
  assert.equal(info.metrics_port, 9102);
  assert.equal(info.public_ip, "203.0.113.9");
});

Deno.test("metrics_port omitted when 0, public_ip when unknown; bad disk path → 0", () => {
  const info = collectSystemInfo({ diskPath: "/nonexistent/path", metricsPort: 0 });
  assert.ok(!("metrics_port" in info));
  assert.ok(!("public_ip" in info));
  assert.equal(info.disk_gb, 0);
  assert.equal(info.disk_used_gb, 0);
});

Deno.test("hostname precedence: override > /etc/host_hostname > system", async () => {
  assert.equal(
    await resolveHostname({ override: " web-1 ", readHostFile: () => Promise.resolve("host") }),
    "web-1",
  );
  assert.equal(
    await resolveHostname({
      override: undefined,
      readHostFile: () => Promise.resolve(" host-a\n"),
    }),
    "host-a",
  );
  assert.equal(
    await resolveHostname({
      override: "",
      readHostFile: () => Promise.resolve("  \n"),
      systemHostname: () => "sys",
    }),
    "sys",
  );
  assert.equal(
    await resolveHostname({
      override: undefined,
      readHostFile: () => Promise.resolve(undefined),
      systemHostname: () => "",
    }),
    "unknown",
  );
  assert.equal(
    await resolveHostname({ override: undefined, readHostFile: () => Promise.resolve(undefined) }),
    Deno.hostname(),
  );
});

Deno.test("public IP lookup: services in order, first IP wins, cached for 30 min", async () => {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    hits++;
    const p = new URL(req.url).pathname;
    if (p === "/bad") return new Response("<html>nope</html>");
    if (p === "/fail") return new Response("x", { status: 500 });
    return new Response("203.0.113.50\n");
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  let now = 0;
  const r = new PublicIpResolver({
    urls: [`${base}/fail`, `${base}/bad`, `${base}/ok`],
    now: () => now,
  });
  try {
    assert.equal(await r.get(true), "203.0.113.50");
    assert.equal(hits, 3);
    assert.equal(await r.get(true), "203.0.113.50");
    assert.equal(hits, 3, "cached");
    now += 31 * 60_000;
    await r.get(true);
    assert.equal(hits, 6, "refreshed after 30 min");
    assert.equal(await r.get(false), "203.0.113.50");
    assert.equal(hits, 6, "no lookup when not needed");
    // An unreachable service is logged, not thrown.
    const dead = new PublicIpResolver({ urls: ["http://127.0.0.1:1/"], timeoutMs: 500 });
    assert.equal(await dead.get(true), undefined);
  } finally {
    await server.shutdown();
  }
});
