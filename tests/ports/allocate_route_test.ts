/**
 * `POST /ports/allocate` through the agent's real HTTP server (lib/http/server.ts) with the ports
 * feature started as main.ts starts it: success on real sockets, concurrent callers, every error
 * status with its JSON body, the bearer token, and the allocation counters.
 */
import assert from "node:assert/strict";
import type { Feature } from "../../lib/core/context.ts";
import { type RunningHttpServer, startHttpServer } from "../../lib/http/server.ts";
import { isLoopbackAddress } from "../../lib/ports/allocate_route.ts";
import { startPorts } from "../../lib/ports/mod.ts";
import type { PortRange } from "../../lib/ports/scanner.ts";
import { freeBlock, holdSockets, metricValue, portsContext, type TestContext } from "./support.ts";

interface Running {
  t: TestContext;
  feature: Feature;
  http: RunningHttpServer;
  url: string;
  post(body: unknown, headers?: Record<string, string>): Promise<Response>;
  stop(): Promise<void>;
}

function start(range: PortRange, extra: string[] = []): Running {
  const t = portsContext([
    "--port-scan",
    "--port-scan-range",
    `${range.start}-${range.end}`,
    "--metrics-addr",
    "127.0.0.1",
    ...extra,
  ]);
  const feature = startPorts(t.ctx, { scanner: { workers: 0 } });
  const http = startHttpServer({
    hostname: "127.0.0.1",
    port: 0,
    metrics: t.ctx.metrics,
    board: t.ctx.board,
    ready: feature.ready ? [feature.ready] : [],
    routes: feature.routes ?? [],
    log: t.ctx.log,
  });
  const url = `http://127.0.0.1:${http.port}/ports/allocate`;
  return {
    t,
    feature,
    http,
    url,
    post: (body, headers = { "content-type": "application/json" }) =>
      fetch(url, {
        method: "POST",
        headers,
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    stop: async () => {
      await http.shutdown();
      await feature.stop();
    },
  };
}

/** Status and parsed JSON body; asserts the body is JSON. */
async function json(res: Response): Promise<[number, Record<string, unknown>]> {
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return [res.status, await res.json()];
}

Deno.test("allocate: free ports ascending from the range start, occupied ones skipped", async () => {
  const range = freeBlock(12);
  const p = (i: number) => range.start + i;
  const listener = Deno.listen({ hostname: "0.0.0.0", port: p(0) });
  const held = await holdSockets([`bound:0.0.0.0:${p(1)}`, `listen:[::]:${p(3)}`]);
  const agent = start(range);
  try {
    assert.deepEqual(await json(await agent.post({ count: 3 })), [200, {
      ports: [p(2), p(4), p(5)],
    }]);
    // Held back for the reservation window: the next caller gets the following ones.
    assert.deepEqual(await json(await agent.post({ count: 2 })), [200, { ports: [p(6), p(7)] }]);
    assert.equal(
      await metricValue(agent.t.ctx, "sigma_port_allocations_total", { result: "success" }),
      2,
    );
    assert.equal(await metricValue(agent.t.ctx, "sigma_ports_reserved"), 5);
    const status = agent.t.ctx.board.snapshot().ports as { reservations: { port: number }[] };
    assert.deepEqual(status.reservations.map((r) => r.port), [p(2), p(4), p(5), p(6), p(7)]);
  } finally {
    await agent.stop();
    await held.close();
    listener.close();
  }
});

Deno.test("allocate: two concurrent callers never get the same port", async () => {
  const range = freeBlock(30);
  const agent = start(range);
  try {
    const [a, b] = await Promise.all([agent.post({ count: 10 }), agent.post({ count: 10 })]);
    const [sa, ja] = await json(a);
    const [sb, jb] = await json(b);
    assert.equal(sa, 200);
    assert.equal(sb, 200);
    const all = [...(ja.ports as number[]), ...(jb.ports as number[])];
    assert.equal(new Set(all).size, 20);
    assert.deepEqual(
      all.sort((x, y) => x - y),
      Array.from({ length: 20 }, (_, i) => range.start + i),
    );
  } finally {
    await agent.stop();
  }
});

Deno.test("allocate: 409 when fewer ports are free than asked, nothing reserved", async () => {
  const range = freeBlock(6);
  const busy = Deno.listen({ hostname: "0.0.0.0", port: range.start + 2 });
  const agent = start(range);
  try {
    assert.deepEqual(await json(await agent.post({ count: 6 })), [409, {
      error: `only 5 available ports found in ${range.start}-${range.end}, requested 6`,
    }]);
    const [status, body] = await json(await agent.post({ count: 5 }));
    assert.equal(status, 200);
    assert.equal((body.ports as number[]).length, 5);
    assert.equal(
      await metricValue(agent.t.ctx, "sigma_port_allocations_total", { result: "insufficient" }),
      1,
    );
  } finally {
    await agent.stop();
    busy.close();
  }
});

Deno.test("allocate: 400 for a bad count, bad JSON or a wrong content type", async () => {
  const agent = start(freeBlock(4));
  try {
    const countError = "count must be an integer between 1 and 100";
    for (
      const body of [
        { count: 0 },
        { count: 101 },
        { count: -3 },
        { count: 2.5 },
        { count: "3" },
        {},
        [3],
        null,
      ]
    ) {
      assert.deepEqual(
        await json(await agent.post(body)),
        [400, { error: countError }],
        JSON.stringify(body),
      );
    }
    const [status, bad] = await json(await agent.post("{count: 3"));
    assert.equal(status, 400);
    assert.match(String(bad.error), /^invalid JSON: /);
    const typeError = { error: "content-type must be application/json" };
    assert.deepEqual(await json(await agent.post({ count: 1 }, { "content-type": "text/plain" })), [
      400,
      typeError,
    ]);
    assert.deepEqual(await json(await agent.post({ count: 1 }, {})), [400, typeError]);
    const withCharset = { "content-type": "Application/JSON; charset=utf-8" };
    assert.equal((await json(await agent.post({ count: 1 }, withCharset)))[0], 200);
    assert.equal(
      await metricValue(agent.t.ctx, "sigma_port_allocations_total", { result: "bad_request" }),
      11,
    );
  } finally {
    await agent.stop();
  }
});

Deno.test("allocate: 413 for an oversized body (route cap and transport cap)", async () => {
  const agent = start(freeBlock(4));
  try {
    const [status, body] = await json(await agent.post({ count: 1, pad: "x".repeat(5000) }));
    assert.equal(status, 413);
    assert.match(String(body.error), /over 4096 bytes/);
    const [huge] = await json(await agent.post({ count: 1, pad: "x".repeat(200_000) }));
    assert.equal(huge, 413);
  } finally {
    await agent.stop();
  }
});

Deno.test("allocate: 503 when port scanning is disabled; 405 for other methods", async () => {
  const t = portsContext(["--metrics-addr", "127.0.0.1"]);
  const feature = startPorts(t.ctx);
  const http = startHttpServer({
    hostname: "127.0.0.1",
    port: 0,
    metrics: t.ctx.metrics,
    board: t.ctx.board,
    ready: [],
    routes: feature.routes ?? [],
    log: t.ctx.log,
  });
  const url = `http://127.0.0.1:${http.port}/ports/allocate`;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"count":1}',
    });
    assert.deepEqual(await json(res), [503, {
      error: "port scanning is not enabled (start the agent with --port-scan)",
    }]);
    const get = await fetch(url);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    await get.body?.cancel();
    assert.equal(
      await metricValue(t.ctx, "sigma_port_allocations_total", { result: "disabled" }),
      1,
    );
  } finally {
    await http.shutdown();
    await feature.stop();
  }
});

Deno.test("allocate: with --allocate-token the bearer token is required", async () => {
  const token = "s3cret-allocate-token";
  const agent = start(freeBlock(4), ["--allocate-token", token]);
  try {
    for (
      const headers of <Record<string, string>[]> [
        { "content-type": "application/json" },
        { "content-type": "application/json", authorization: "Bearer wrong" },
        { "content-type": "application/json", authorization: `Bearer ${token}x` },
        { "content-type": "application/json", authorization: `Basic ${token}` },
      ]
    ) {
      const res = await agent.post({ count: 1 }, headers);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="sigma-agent"');
      assert.deepEqual(await json(res), [401, { error: "missing or invalid bearer token" }]);
    }
    const ok = await agent.post({ count: 1 }, {
      "content-type": "application/json",
      authorization: `Bearer ${token}`,
    });
    assert.equal((await json(ok))[0], 200);
    assert.equal(
      await metricValue(agent.t.ctx, "sigma_port_allocations_total", { result: "unauthorized" }),
      4,
    );
    assert.ok(!agent.t.lines.some((l) => l.includes(token)), "the token is never logged");
  } finally {
    await agent.stop();
  }
});

Deno.test("allocate: an open endpoint on a non-loopback address is logged once at start", async () => {
  const warned = (args: string[]) => {
    const t = portsContext(args);
    const feature = startPorts(t.ctx);
    const n =
      t.records().filter((r) =>
        r.level === "warn" && String(r.msg).startsWith("POST /ports/allocate is open")
      ).length;
    return feature.stop().then(() => n);
  };
  assert.equal(await warned([]), 1, "default 0.0.0.0, no token");
  assert.equal(await warned(["--metrics-addr", "::"]), 1);
  assert.equal(await warned(["--allocate-token", "t"]), 0);
  assert.equal(await warned(["--metrics-addr", "127.0.0.1"]), 0);
  assert.equal(await warned(["--metrics-addr", "::1"]), 0);
  assert.equal(await warned(["--metrics-port", "0"]), 0, "no metrics port, no endpoint");
});

Deno.test("allocate: isLoopbackAddress", () => {
  for (const a of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]) {
    assert.equal(isLoopbackAddress(a), true, a);
  }
  for (const a of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "127.0.0.1.example", ""]) {
    assert.equal(isLoopbackAddress(a), false, a);
  }
});
