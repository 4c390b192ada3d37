/**
 * The ports feature as main.ts starts it: the first scan runs at start and gates readiness, real
 * sockets opened in a small range show up in `available`, `in_use` and the per-source counts
 * (attributed by the real `ss`), a missing `ss` makes every used port `unknown` and is logged
 * once, and the `/status` section describes it all.
 */
import assert from "node:assert/strict";
import { PORT_SOURCES } from "../../lib/core/metrics.ts";
import { startPorts } from "../../lib/ports/mod.ts";
import { waitFor } from "../helpers.ts";
import { freeBlock, holdSockets, metricValue, portsContext } from "./support.ts";

const isRoot = Deno.uid() === 0;

Deno.test("ports: first scan at start → ready; available, in_use and attribution from real sockets", async () => {
  const range = freeBlock(16);
  const p = (i: number) => range.start + i;
  const deno = Deno.listen({ hostname: "0.0.0.0", port: p(1) });
  const envoy = await holdSockets(["name:envoy", `listen:0.0.0.0:${p(4)}`, `listen6only:${p(4)}`]);
  const nginx = await holdSockets(["name:nginx", `listen:[::]:${p(5)}`, "fork:2"]);
  const odd = await holdSockets([
    "name:odd proc",
    `listen:127.0.0.1:${p(6)}`,
    `bound:0.0.0.0:${p(7)}`,
  ]);
  const t = portsContext(["--port-scan", "--port-scan-range", `${range.start}-${range.end}`]);
  const feature = startPorts(t.ctx);
  try {
    assert.equal(feature.ready?.(), "first port scan not finished");
    await waitFor(() => feature.ready?.() === undefined, { message: "first scan" });

    const m = (name: string, labels?: Record<string, string>) => metricValue(t.ctx, name, labels);
    assert.equal(await m("sigma_ports_total"), 16);
    assert.equal(await m("sigma_ports_in_use"), 5, "p1, p4, p5, p6 listen; p7 is bound");
    assert.equal(await m("sigma_ports_available"), 11);
    assert.ok((await m("sigma_port_scan_duration_seconds"))! > 0);
    assert.equal(await m("sigma_port_scans_total", { result: "success" }), 1);
    assert.ok(
      Math.abs((await m("sigma_port_scan_last_timestamp_seconds"))! - Date.now() / 1000) < 60,
    );
    for (const source of PORT_SOURCES) {
      assert.notEqual(
        await m("sigma_ports_used", { source }),
        undefined,
        `source ${source} present`,
      );
    }
    if (isRoot) {
      // System-wide counts: other processes on this machine may add to them.
      assert.ok((await m("sigma_ports_used", { source: "envoy" }))! >= 1);
      assert.ok((await m("sigma_ports_used", { source: "nginx" }))! >= 1);
      assert.ok((await m("sigma_ports_other_detail", { process: "odd proc" }))! >= 1);
      assert.ok((await m("sigma_ports_other_detail", { process: "deno" }))! >= 1);
    }

    const status = t.ctx.board.snapshot().ports as Record<string, unknown>;
    assert.equal(status.enabled, true);
    assert.deepEqual(status.range, range);
    assert.equal(status.total, 16);
    assert.equal(status.available, 11);
    assert.equal(status.in_use, 5);
    assert.equal(status.attribution, "ss");
    assert.equal(typeof status.last_scan, "string");
    assert.equal(typeof status.last_scan_duration_seconds, "number");
    assert.deepEqual(Object.keys(status.used_by_source as object), [...PORT_SOURCES]);
    assert.deepEqual(status.reservations, []);
    assert.equal(status.allocate_auth, "open");
  } finally {
    await feature.stop();
    await Promise.all([envoy.close(), nginx.close(), odd.close()]);
    deno.close();
  }
});

Deno.test("ports: the loop rescans every interval and sees ports change", async () => {
  const range = freeBlock(8);
  const t = portsContext([
    "--port-scan",
    "--port-scan-range",
    `${range.start}-${range.end}`,
    "--port-scan-interval",
    "0.2",
  ]);
  const feature = startPorts(t.ctx);
  let listener: Deno.Listener | undefined;
  try {
    await waitFor(async () => (await metricValue(t.ctx, "sigma_ports_available")) === 8);
    listener = Deno.listen({ hostname: "127.0.0.1", port: range.start + 3 });
    await waitFor(async () => (await metricValue(t.ctx, "sigma_ports_in_use")) === 1, {
      message: "a new listener is seen by a later scan",
    });
    assert.ok((await metricValue(t.ctx, "sigma_port_scans_total", { result: "success" }))! >= 2);
  } finally {
    await feature.stop();
    listener?.close();
  }
});

Deno.test("ports: ss missing → scan completes, used ports all unknown, failure logged once", async () => {
  const range = freeBlock(10);
  const a = Deno.listen({ hostname: "0.0.0.0", port: range.start });
  const b = Deno.listen({ hostname: "0.0.0.0", port: range.start + 9 });
  const t = portsContext([
    "--port-scan",
    "--port-scan-range",
    `${range.start}-${range.end}`,
    "--port-scan-interval",
    "0.1",
  ]);
  const feature = startPorts(t.ctx, { ss: { command: "/nonexistent/ss" } });
  try {
    await waitFor(async () =>
      (await metricValue(t.ctx, "sigma_port_scans_total", { result: "success" }))! >= 3
    );
    assert.equal(feature.ready?.(), undefined, "a scan without attribution still counts");
    assert.equal(await metricValue(t.ctx, "sigma_ports_in_use"), 2);
    for (const source of PORT_SOURCES) {
      const want = source === "unknown" ? 2 : 0;
      assert.equal(await metricValue(t.ctx, "sigma_ports_used", { source }), want, source);
    }
    // Repeats go to debug only (issue 14: once, then a recovery line).
    const failures = t.records().filter((r) =>
      String(r.msg).startsWith("ss failed") && r.level !== "debug"
    );
    assert.equal(failures.length, 1, "logged once, not per scan");
    assert.equal(failures[0].level, "warn");
    assert.match(String(failures[0].error), /ss not found \(\/nonexistent\/ss\): install iproute2/);
    const status = t.ctx.board.snapshot().ports as Record<string, unknown>;
    assert.equal(status.attribution, "unavailable");
    assert.match(String(status.attribution_error), /not found/);
  } finally {
    await feature.stop();
    a.close();
    b.close();
  }
});

Deno.test("ports: ss failing (non-zero exit) is handled like a missing ss", async () => {
  const range = freeBlock(4);
  const t = portsContext(["--port-scan", "--port-scan-range", `${range.start}-${range.end}`]);
  const feature = startPorts(t.ctx, { ss: { args: ["--no-such-option"] } });
  try {
    await waitFor(() => feature.ready?.() === undefined);
    const status = t.ctx.board.snapshot().ports as Record<string, unknown>;
    assert.equal(status.attribution, "unavailable");
    assert.match(String(status.attribution_error), /exited with/);
    assert.equal(
      t.records().filter((r) => String(r.msg).startsWith("ss failed") && r.level !== "debug")
        .length,
      1,
    );
  } finally {
    await feature.stop();
  }
});

Deno.test("ports: scanning disabled → ready at once, no scan, zero gauges, allocate route present", async () => {
  const t = portsContext([]);
  const feature = startPorts(t.ctx);
  try {
    assert.equal(feature.ready?.(), undefined);
    assert.deepEqual(feature.routes?.map((r) => [r.path, r.methods]), [["/ports/allocate", [
      "POST",
    ]]]);
    assert.equal(await metricValue(t.ctx, "sigma_ports_total"), 0);
    assert.equal(await metricValue(t.ctx, "sigma_ports_used", { source: "envoy" }), 0);
    const status = t.ctx.board.snapshot().ports as Record<string, unknown>;
    assert.equal(status.enabled, false);
    assert.equal(status.last_scan, null);
  } finally {
    await feature.stop();
  }
});

Deno.test("ports: the agent's shutdown signal ends the loop; stop() is prompt", async () => {
  const range = freeBlock(4);
  const t = portsContext(["--port-scan", "--port-scan-range", `${range.start}-${range.end}`]);
  const feature = startPorts(t.ctx);
  await waitFor(() => feature.ready?.() === undefined);
  t.shutdown();
  const started = Date.now();
  await feature.stop();
  assert.ok(Date.now() - started < 2000);
});

Deno.test("ports: a scan over the default-sized range runs inline (workers are opt-in: they cost idle memory)", async () => {
  const t = portsContext(["--port-scan", "--port-scan-range", "20000-31999"]);
  const feature = startPorts(t.ctx);
  try {
    await waitFor(() => feature.ready?.() === undefined, { timeoutMs: 30_000 });
    const status = t.ctx.board.snapshot().ports as Record<string, unknown>;
    assert.equal(status.scan_method, "inline");
    assert.equal(status.total, 12000);
  } finally {
    await feature.stop();
  }
});
