/**
 * The real `/metrics` (lib/http/server.ts) after a real scan passes `promtool check metrics`
 * (Debian `prometheus`; skipped when missing, failing on CI), carries every port source with the
 * `hostname` label, and escapes odd process names in label values.
 */
import assert from "node:assert/strict";
import { startHttpServer } from "../../lib/http/server.ts";
import { PORT_SOURCES } from "../../lib/core/metrics.ts";
import { startPorts } from "../../lib/ports/mod.ts";
import { assertPromtoolAcceptsMetrics, requireTool, skipWithout } from "../deploy/support.ts";
import { waitFor } from "../helpers.ts";
import { freeBlock, holdSockets, portsContext } from "./support.ts";

/** Starts the feature and the HTTP server, scans once, returns the `/metrics` text. */
async function scrapeAfterScan(): Promise<string> {
  const range = freeBlock(6);
  // A process name with a quote and a backslash: label values must be escaped.
  const held = await holdSockets(['name:we"ird\\x', `listen:0.0.0.0:${range.start + 2}`]);
  const t = portsContext(["--port-scan", "--port-scan-range", `${range.start}-${range.end}`]);
  const feature = startPorts(t.ctx);
  const http = startHttpServer({
    hostname: "127.0.0.1",
    port: 0,
    metrics: t.ctx.metrics,
    board: t.ctx.board,
    ready: [feature.ready!],
    routes: feature.routes!,
    log: t.ctx.log,
  });
  try {
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${http.port}/readyz`);
      await res.body?.cancel();
      return res.status === 200;
    }, { message: "/readyz turns 200 after the first scan" });
    const res = await fetch(`http://127.0.0.1:${http.port}/metrics`);
    assert.equal(res.status, 200);
    return await res.text();
  } finally {
    await http.shutdown();
    await feature.stop();
    await held.close();
  }
}

Deno.test("metrics: port gauges with hostname label, every source, escaped process names", async () => {
  const text = await scrapeAfterScan();
  assert.match(text, /^sigma_ports_total\{hostname="test-host"\} 6$/m);
  assert.match(text, /^sigma_ports_available\{hostname="test-host"\} 5$/m);
  assert.match(text, /^sigma_ports_in_use\{hostname="test-host"\} 1$/m);
  assert.match(text, /^sigma_port_scan_duration_seconds\{hostname="test-host"\} [0-9.e-]+$/m);
  const sources = [
    ...text.matchAll(/^sigma_ports_used\{source="([a-z_]+)",hostname="test-host"\} \d+$/gm),
  ]
    .map((m) => m[1]);
  assert.deepEqual(sources, [...PORT_SOURCES], "every source, in the contract's order");
  if (Deno.uid() === 0) {
    assert.match(
      text,
      /^sigma_ports_other_detail\{process="we\\"ird\\\\x",hostname="test-host"\} 1$/m,
    );
  }
});

Deno.test({
  name: "metrics: the real /metrics after a scan passes promtool check metrics",
  ignore: skipWithout("promtool", "prometheus"),
  async fn() {
    const promtool = requireTool("promtool", "prometheus");
    const text = await scrapeAfterScan();
    await assertPromtoolAcceptsMetrics(promtool, text);
  },
});
