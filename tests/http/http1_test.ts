/** The metrics-port transport against raw TCP clients: limits, keep-alive, errors. */
import assert from "node:assert/strict";
import { type Http1Limits, serveHttp1 } from "../../lib/http/http1.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function withServer(limits: Partial<Http1Limits>, fn: (port: number) => Promise<void>) {
  const srv = serveHttp1({ hostname: "127.0.0.1", port: 0, limits }, async (req, info) => {
    const body = req.body ? await req.text() : "";
    return Response.json({
      method: req.method,
      path: new URL(req.url).pathname,
      body,
      remote: info.remoteAddr,
    });
  });
  try {
    await fn(srv.port);
  } finally {
    await srv.shutdown();
  }
}

/** Sends raw bytes and reads until the peer closes or `until` matches. */
async function raw(
  port: number,
  data: string,
  opts: { until?: RegExp; timeoutMs?: number } = {},
): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    if (data) await conn.write(enc.encode(data));
    let out = "";
    const buf = new Uint8Array(65536);
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    while (Date.now() < deadline) {
      const n = await Promise.race([
        conn.read(buf),
        new Promise<"t">((r) => setTimeout(() => r("t"), Math.max(1, deadline - Date.now()))),
      ]);
      if (n === "t" || n === null) break;
      out += dec.decode(buf.subarray(0, n));
      if (opts.until?.test(out)) break;
    }
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("ordinary requests through fetch, POST bodies, HEAD", async () => {
  await withServer({}, async (port) => {
    const r = await fetch(`http://127.0.0.1:${port}/x?y=1`);
    assert.deepEqual(await r.json(), { method: "GET", path: "/x", body: "", remote: "127.0.0.1" });
    const p = await fetch(`http://127.0.0.1:${port}/ports/allocate`, {
      method: "POST",
      body: '{"count":2}',
    });
    assert.equal((await p.json()).body, '{"count":2}');
    const h = await raw(port, "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert.match(h, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(h, /content-length: \d+/);
    assert.ok(h.endsWith("\r\n\r\n"), "HEAD has no body");
  });
});

Deno.test("keep-alive and pipelining on one connection", async () => {
  await withServer({}, async (port) => {
    const req = (p: string, close = false) =>
      `GET ${p} HTTP/1.1\r\nHost: a\r\n${close ? "Connection: close\r\n" : ""}\r\n`;
    const out = await raw(port, req("/a") + req("/b") + req("/c", true));
    const statuses = out.match(/HTTP\/1\.1 200 OK/g) ?? [];
    assert.equal(statuses.length, 3);
    assert.ok(
      out.indexOf('"/a"') < out.indexOf('"/b"') && out.indexOf('"/b"') < out.indexOf('"/c"'),
    );
  });
});

Deno.test("slowloris: an incomplete head gets 408 and the connection is closed; others still served", async () => {
  await withServer({ headerTimeoutMs: 300 }, async (port) => {
    const slow = raw(port, "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Slow: ", { timeoutMs: 5000 });
    const ok = await fetch(`http://127.0.0.1:${port}/ok`);
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    const out = await slow;
    assert.match(out, /^HTTP\/1\.1 408 Request Timeout/);
    assert.match(out, /"error":"request head not received in time"/);
  });
});

Deno.test("a silent connection is closed after the header deadline", async () => {
  await withServer({ headerTimeoutMs: 200 }, async (port) => {
    const t0 = Date.now();
    const out = await raw(port, "", { timeoutMs: 5000 });
    assert.ok(Date.now() - t0 < 3000, "closed by the server");
    assert.match(out, /408/);
  });
});

Deno.test("a slow body gets 408", async () => {
  await withServer({ bodyTimeoutMs: 300 }, async (port) => {
    const out = await raw(port, 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n{"c"', {
      timeoutMs: 5000,
    });
    assert.match(out, /^HTTP\/1\.1 408/);
    assert.match(out, /request body not received in time/);
  });
});

Deno.test("oversized, chunked and malformed requests get clear errors", async () => {
  await withServer({ maxHeaderBytes: 1024, maxBodyBytes: 100 }, async (port) => {
    const big = await raw(port, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(5000)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431/);
    const body = await raw(port, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
    assert.match(body, /^HTTP\/1\.1 413[^]*request body larger than 100 bytes/);
    const chunked = await raw(
      port,
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert.match(chunked, /^HTTP\/1\.1 411[^]*send Content-Length/);
    for (
      const bad of [
        "garbage\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET http://x/ HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "\x00\x01\x02\r\n\r\n",
      ]
    ) {
      const out = await raw(port, bad);
      assert.match(out, /^HTTP\/1\.1 400/, JSON.stringify(bad));
    }
  });
});

Deno.test("Expect: 100-continue is honoured", async () => {
  await withServer({}, async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(
        enc.encode(
          "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        ),
      );
      const buf = new Uint8Array(1024);
      const n = (await conn.read(buf))!;
      assert.match(dec.decode(buf.subarray(0, n)), /^HTTP\/1\.1 100 Continue\r\n\r\n/);
      await conn.write(enc.encode("{}"));
      let out = "";
      for (let m = await conn.read(buf); m !== null; m = await conn.read(buf)) {
        out += dec.decode(buf.subarray(0, m));
      }
      assert.match(out, /HTTP\/1\.1 200[^]*"body":"\{\}"/);
    } finally {
      conn.close();
    }
  });
});

Deno.test("connections beyond the cap are refused with 503, the server stays usable", async () => {
  await withServer({ maxConnections: 5, headerTimeoutMs: 5000 }, async (port) => {
    const held = await Promise.all(
      Array.from({ length: 5 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    try {
      await new Promise((r) => setTimeout(r, 100));
      const out = await raw(port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
      assert.match(out, /^HTTP\/1\.1 503[^]*too many connections/);
    } finally {
      held.forEach((c) => c.close());
    }
    await new Promise((r) => setTimeout(r, 100));
    const r = await fetch(`http://127.0.0.1:${port}/after`);
    assert.equal(r.status, 200);
    await r.body?.cancel();
  });
});

Deno.test("a throwing handler gives 500, not a crash", async () => {
  const srv = serveHttp1({ hostname: "127.0.0.1", port: 0 }, () => {
    throw new Error("boom");
  });
  try {
    const r = await fetch(`http://127.0.0.1:${srv.port}/`);
    assert.equal(r.status, 500);
    assert.deepEqual(await r.json(), { error: "internal error" });
  } finally {
    await srv.shutdown();
  }
});
