/**
 * The sigma-api client's keep-alive HTTP/1.1 transport (lib/api/http1_client.ts) against real
 * local servers: a raw TCP server that writes exactly the bytes each case needs (chunked bodies,
 * early closes, stalls, 1xx, redirects), `Deno.serve` over TLS with an openssl certificate, and a
 * forward proxy for the `fetch` fallback. No mocks.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ApiError, formQuery, SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { Http1Client, parseOrigin, PROXY_ENV_VARS } from "../../lib/api/http1_client.ts";
import { freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";
import { makeCerts } from "../security/certs.ts";

const KEY = "sk_http1_secret_key_value";

interface Seen {
  /** Connection number (0, 1, …) of the request. */
  conn: number;
  head: string;
  body: string;
}

/**
 * A raw HTTP/1.1 server on 127.0.0.1. `answer` writes the response for each request and says
 * whether to keep reading the connection; every request and the raw bytes received are kept.
 */
function rawServer(
  answer: (conn: Deno.Conn, req: Seen, n: number) => Promise<"keep" | "close" | "hold">,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Seen[] = [];
  const conns: Deno.Conn[] = [];
  let raw = "";
  const eofs: number[] = [];
  const serveConn = async (conn: Deno.Conn, id: number) => {
    const dec = new TextDecoder();
    let buf = "";
    const buf8 = new Uint8Array(65536);
    try {
      for (;;) {
        let end: number;
        while ((end = buf.indexOf("\r\n\r\n")) < 0) {
          const n = await conn.read(buf8);
          if (n === null) return eofs.push(id);
          const s = dec.decode(buf8.subarray(0, n));
          raw += s;
          buf += s;
        }
        const head = buf.slice(0, end);
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        while (buf.length < end + 4 + len) {
          const n = await conn.read(buf8);
          if (n === null) return eofs.push(id);
          const s = dec.decode(buf8.subarray(0, n));
          raw += s;
          buf += s;
        }
        const req = { conn: id, head, body: buf.slice(end + 4, end + 4 + len) };
        buf = buf.slice(end + 4 + len);
        seen.push(req);
        const next = await answer(conn, req, seen.length);
        if (next === "close") return conn.close();
        if (next === "hold") return;
      }
    } catch {
      // the client went away
    }
  };
  const accepting = (async () => {
    let id = 0;
    for await (const c of listener) {
      conns.push(c);
      serveConn(c, id++);
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/api`,
    seen,
    eofs,
    raw: () => raw,
    connections: () => conns.length,
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed already
        }
      }
      await accepting;
    },
  };
}

const enc = new TextEncoder();
async function write(conn: Deno.Conn, s: string): Promise<void> {
  const b = enc.encode(s);
  for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
}
function json(body: string, extra = ""): string {
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${extra}content-length: ${
    enc.encode(body).length
  }\r\n\r\n${body}`;
}
const EMPTY_PAGE = '{"data":[],"total":0,"page":1,"per_page":100}';

Deno.test("http1: one keep-alive connection for sequential requests, at most 8 for 8 in flight", async () => {
  const s = rawServer(async (c) => (await write(c, json(EMPTY_PAGE)), "keep"));
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY });
  try {
    assert.equal(client.transport, "http1");
    for (let i = 0; i < 20; i++) await client.listEnvoyNodes({ vps_id: `v${i}` });
    assert.equal(s.connections(), 1, "20 sequential GETs on one connection");
    await Promise.all(Array.from({ length: 8 }, () => client.listEnvoyNodes({})));
    await Promise.all(Array.from({ length: 8 }, () => client.listEnvoyNodes({})));
    assert.ok(s.connections() <= 8, `${s.connections()} connections`);
    const head = s.seen[0].head;
    assert.match(head, /^GET \/api\/envoy-nodes\?vps_id=v0&page=1&per_page=100 HTTP\/1\.1\r\n/);
    assert.match(head, new RegExp(`\r\nhost: 127\\.0\\.0\\.1:\\d+\r\n`));
    assert.match(head, /\r\naccept: application\/json\r\n/);
    assert.match(head, /\r\nuser-agent: sigma-agent\r\n/);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: a POST carries its JSON with content-type and content-length; Basic auth from the URL", async () => {
  const s = rawServer(async (c) => (await write(c, json('{"upserted":1,"deleted":0}')), "keep"));
  const client = new SigmaClient({
    baseUrl: s.url.replace("://", "://op%20er:p%C3%A4ss@"),
    apiKey: undefined,
  });
  try {
    const r = await client.syncStaticRoutes("n1", []);
    assert.deepEqual(r, { upserted: 1, deleted: 0 });
    const { head, body } = s.seen[0];
    assert.match(head, /^POST \/api\/envoy-routes\/sync-static HTTP\/1\.1\r\n/);
    assert.match(head, /\r\ncontent-type: application\/json\r\n/);
    assert.match(head, new RegExp(`\r\ncontent-length: ${enc.encode(body).length}(\r\n|$)`));
    assert.deepEqual(JSON.parse(body), { envoy_node_id: "n1", routes: [] });
    const auth = /\r\nauthorization: Basic (\S+)/.exec(head)?.[1] ?? "";
    assert.equal(
      new TextDecoder().decode(Uint8Array.from(atob(auth), (c) => c.charCodeAt(0))),
      "op er:päss",
    );
    assert.ok(!/x-api-key/i.test(head), "no key set, no header");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: chunked bodies (split writes, extensions, trailers), 1xx skipped, case-insensitive headers", async () => {
  const body = JSON.stringify({
    data: [],
    total: 0,
    page: 1,
    per_page: 100,
    pad: "x".repeat(5000),
  });
  const s = rawServer(async (c, _req, n) => {
    if (n === 1) {
      await write(
        c,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      );
      for (let i = 0; i < body.length; i += 1000) {
        const part = body.slice(i, i + 1000);
        await write(c, `${part.length.toString(16)};ext=1\r\n`);
        await write(c, `${part}\r\n`);
      }
      await write(c, "0\r\nX-Trailer: t\r\n\r\n");
    } else {
      await write(
        c,
        "HTTP/1.1 429 Too Many Requests\r\nRETRY-AFTER: 3\r\nContent-Length: 17\r\n\r\nToo Many Requests",
      );
    }
    return "keep";
  });
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY });
  try {
    assert.deepEqual(await client.listEnvoyNodes({}), []);
    await assert.rejects(() => client.listEnvoyNodes({}), (e) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.kind, "rate_limited");
      assert.equal(e.status, 429);
      assert.equal(e.retryAfterMs, 3000);
      assert.match(e.message, /: HTTP 429 \(rate limited\): Too Many Requests$/);
      return true;
    });
    assert.equal(s.connections(), 1, "the chunked answer left the connection reusable");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: the body cap holds for content-length, chunked and read-to-close bodies", async () => {
  const big = "y".repeat(3000);
  const answers = [
    `HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n${big}`,
    `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${(1500).toString(16)}\r\n${
      big.slice(0, 1500)
    }\r\n${(1500).toString(16)}\r\n${big.slice(0, 1500)}\r\n0\r\n\r\n`,
    `HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n${big}`,
  ];
  const s = rawServer(async (c, _r, n) => {
    await write(c, answers[n - 1]);
    return "close";
  });
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY, maxBodyBytes: 2048 });
  try {
    for (let i = 0; i < answers.length; i++) {
      await assert.rejects(() => client.listEnvoyNodes({}), (e) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.kind, "bad_body", `answer ${i}`);
        assert.match(e.message, /: HTTP 200, reading the body: body larger than 2048 bytes$/);
        return true;
      });
    }
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: a pooled connection the server closed is replaced; a GET sent into a dying one is sent again, a POST never", async () => {
  // 1: answer then close (no Connection: close); 2: answer and keep; 3: read a request, close
  // without answering (the race of a keep-alive timeout); then answer normally.
  let mode: "answer-close" | "answer" | "drop" = "answer-close";
  const s = rawServer(async (c) => {
    if (mode === "drop") {
      mode = "answer";
      return "close";
    }
    await write(c, json(EMPTY_PAGE));
    return mode === "answer-close" ? "close" : "keep";
  });
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY });
  try {
    await client.listEnvoyNodes({});
    await waitFor(() => s.eofs.length === 0 || true);
    mode = "answer";
    await client.listEnvoyNodes({}); // the pooled connection was closed by the server
    assert.equal(s.seen.length, 2);
    mode = "drop";
    await client.listEnvoyNodes({}); // sent on the pooled connection, dropped, sent again
    assert.equal(s.seen.length, 4, "the GET was sent twice");
    assert.equal(s.seen[2].conn, s.seen[1].conn, "first on the pooled connection");
    assert.notEqual(s.seen[3].conn, s.seen[2].conn, "then on a fresh one");
    mode = "drop";
    const before = s.seen.length;
    await assert.rejects(
      () => client.syncStaticRoutes("n1", []),
      (e) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.kind, "network");
        assert.match(e.message, /: the server closed the connection without answering$/);
        return true;
      },
    );
    assert.equal(s.seen.length, before + 1, "the POST was sent once");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: `Connection: close` answers are not pooled", async () => {
  const s = rawServer(async (
    c,
  ) => (await write(c, json(EMPTY_PAGE, "connection: close\r\n")), "keep"));
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY });
  try {
    for (let i = 0; i < 3; i++) await client.listEnvoyNodes({});
    assert.equal(s.connections(), 3);
    assert.deepEqual(s.seen.map((r) => r.conn), [0, 1, 2]);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: the timeout covers the body; a timed-out connection is closed, never reused", async () => {
  let stall = true;
  const s = rawServer(async (c) => {
    if (!stall) return (await write(c, json(EMPTY_PAGE)), "keep");
    await write(c, `HTTP/1.1 200 OK\r\ncontent-length: ${EMPTY_PAGE.length}\r\n\r\n{"data":`);
    return "keep"; // the rest never comes
  });
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY, timeoutMs: 300 });
  try {
    await assert.rejects(() => client.listEnvoyNodes({}), (e) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.kind, "timeout");
      assert.match(e.message, /: HTTP 200, reading the body: timed out after 0\.3 s$/);
      return true;
    });
    await waitFor(() => s.eofs.includes(0) || undefined, { message: "the client closed it" });
    stall = false;
    await client.listEnvoyNodes({});
    assert.equal(s.seen.at(-1)?.conn, 1, "a new connection after the timeout");
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: a redirect is not followed; the error names the Location without userinfo", async () => {
  const s = rawServer(async (c) => {
    await write(
      c,
      "HTTP/1.1 301 Moved Permanently\r\nlocation: https://u:pw@api.example/api/envoy-nodes\r\ncontent-length: 0\r\n\r\n",
    );
    return "keep";
  });
  const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY });
  try {
    await assert.rejects(() => client.listEnvoyNodes({}), (e) => {
      assert.ok(e instanceof ApiError);
      assert.equal(e.kind, "client");
      assert.equal(e.status, 301);
      assert.match(
        e.message,
        /: HTTP 301: redirected to https:\/\/api\.example\/api\/envoy-nodes, not followed: sigma-api does not redirect, check --api-url$/,
      );
      return true;
    });
    assert.equal(s.seen.length, 1);
  } finally {
    client.close();
    await s.close();
  }
});

Deno.test("http1: the API key is sent once, in X-Api-Key, and never in an error", async () => {
  const cases: Record<string, (c: Deno.Conn) => Promise<"keep" | "close" | "hold">> = {
    drop: () => Promise.resolve("close"),
    garbage: async (c) => (await write(c, "SSH-2.0-OpenSSH\r\n\r\n"), "close"),
    badChunk: async (
      c,
    ) => (await write(c, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"), "close"),
    short: async (c) => (await write(c, "HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"), "close"),
    stall: () => Promise.resolve("hold"),
    error: async (
      c,
    ) => (await write(c, json('{"error":"nope"}').replace("200 OK", "400 Bad Request")), "keep"),
  };
  for (const [name, answer] of Object.entries(cases)) {
    const s = rawServer((c) => answer(c));
    const client = new SigmaClient({ baseUrl: s.url, apiKey: KEY, timeoutMs: 300 });
    try {
      const e = await client.listEnvoyNodes({ vps_id: "v" }).then(() => undefined, (e) => e);
      assert.ok(e instanceof ApiError, name);
      let text = `${e.message} ${e.stack} ${e.apiMessage}`;
      for (let c: unknown = e.cause; c; c = (c as Error).cause) text += ` ${(c as Error).message}`;
      assert.ok(!text.includes(KEY), `${name}: ${text}`);
      const raw = s.raw();
      assert.equal(raw.split(KEY).length - 1, s.seen.length, `${name}: once per request`);
      for (const r of s.seen) assert.match(r.head, new RegExp(`\r\nx-api-key: ${KEY}(\r\n|$)`));
    } finally {
      client.close();
      await s.close();
    }
  }
});

Deno.test("formQuery writes exactly what URLSearchParams writes", () => {
  assert.equal(
    formQuery({ a: "x y", "b&c": "é/?#%+~!*'()" }),
    new URLSearchParams({ a: "x y", "b&c": "é/?#%+~!*'()" }).toString(),
  );
  for (const v of ["~", "a~b", "*-._", "a b", "+", "", "\ud800"]) {
    assert.equal(formQuery({ k: v }), new URLSearchParams({ k: v }).toString(), JSON.stringify(v));
  }
  fc.assert(
    fc.property(
      fc.dictionary(fc.string({ unit: "binary" }), fc.string({ unit: "binary" })),
      (q) => {
        assert.equal(formQuery(q), new URLSearchParams(q).toString());
      },
    ),
    { numRuns: 500 },
  );
});

/** A `Deno.serve` over TLS with a certificate of a test CA, counting client connections. */
async function tlsApi() {
  const dir = await Deno.makeTempDir({ prefix: "sigma-http1-tls-" });
  const certs = makeCerts(dir);
  const cert = await Deno.readTextFile(certs.serverCert);
  const key = await Deno.readTextFile(certs.serverKey);
  const ports = new Set<number>();
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert, key, signal: ac.signal, onListen: () => {} },
    (_req, info) => {
      ports.add(info.remoteAddr.port);
      return new Response(EMPTY_PAGE, { headers: { "content-type": "application/json" } });
    },
  );
  return {
    url: `https://127.0.0.1:${server.addr.port}/api`,
    caFile: certs.caCert,
    connections: () => ports.size,
    close: async () => {
      ac.abort();
      await server.finished;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs the client in a child process (the root store is read at start) and returns its JSON. */
async function childClient(url: string, env: Record<string, string>, requests = 5) {
  const code = `
    import { SigmaClient } from "${ROOT}lib/api/client.ts";
    const c = new SigmaClient({ baseUrl: ${JSON.stringify(url)}, apiKey: "k", timeoutMs: 3000 });
    const out = { transport: c.transport, ok: 0, error: "" };
    try {
      for (let i = 0; i < ${requests}; i++) { await c.listEnvoyNodes({}); out.ok++; }
    } catch (e) { out.error = e.message; }
    c.close();
    console.log(JSON.stringify(out));`;
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(p.stdout).trim();
  assert.ok(p.success, new TextDecoder().decode(p.stderr));
  return JSON.parse(stdout) as { transport: string; ok: number; error: string };
}

Deno.test("http1: https with SNI/ALPN http/1.1, trusted through DENO_CERT as fetch is, one connection", async () => {
  const api = await tlsApi();
  try {
    const untrusted = await childClient(api.url, {}, 1);
    assert.equal(untrusted.transport, "http1");
    assert.match(untrusted.error, /: TLS certificate problem \(.*UnknownIssuer.*\)$/);
    const before = api.connections();
    const trusted = await childClient(api.url, { DENO_CERT: api.caFile });
    assert.deepEqual(trusted, { transport: "http1", ok: 5, error: "" });
    assert.equal(api.connections() - before, 1, "five requests over one TLS connection");
  } finally {
    await api.close();
  }
});

Deno.test("a proxy variable for the API's scheme switches the client to fetch", () => {
  const saved = PROXY_ENV_VARS.map((n) => [n, Deno.env.get(n)] as const);
  try {
    for (const n of PROXY_ENV_VARS) Deno.env.delete(n);
    assert.equal(
      new SigmaClient({ baseUrl: "http://127.0.0.1:1/api", apiKey: undefined }).transport,
      "http1",
    );
    Deno.env.set("HTTPS_PROXY", "http://127.0.0.1:3128");
    assert.equal(
      new SigmaClient({ baseUrl: "http://127.0.0.1:1/api", apiKey: undefined }).transport,
      "http1",
      "HTTPS_PROXY is for https URLs",
    );
    assert.equal(
      new SigmaClient({ baseUrl: "https://127.0.0.1:1/api", apiKey: undefined }).transport,
      "fetch",
    );
    for (const n of ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]) {
      Deno.env.delete("HTTPS_PROXY");
      Deno.env.set(n, "http://127.0.0.1:3128");
      assert.equal(
        new SigmaClient({ baseUrl: "http://127.0.0.1:1/api", apiKey: undefined }).transport,
        "fetch",
        n,
      );
      Deno.env.delete(n);
    }
  } finally {
    for (const [n, v] of saved) v === undefined ? Deno.env.delete(n) : Deno.env.set(n, v);
  }
});

Deno.test("agent process: with HTTP_PROXY its API calls go through a real forward proxy; without, straight", async () => {
  const api = new DevApi({ apiKey: KEY });
  const apiUrl = api.listen({ hostname: "127.0.0.1", port: 0 });
  const viaProxy: string[] = [];
  const ac = new AbortController();
  // A forward proxy: absolute-form request lines, forwarded with fetch.
  const proxy = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    viaProxy.push(`${req.method} ${req.url}`);
    const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body });
    return new Response(await res.arrayBuffer(), { status: res.status, headers: res.headers });
  });
  const run = async (env: Record<string, string>): Promise<string> => {
    const agent = await spawnAgent({
      args: [
        `--api-url=${apiUrl}`,
        `--metrics-port=${freePort()}`,
        "--metrics-addr=127.0.0.1",
        "--interval=1",
      ],
      env: { SIGMA_API_KEY: KEY, ...env },
    });
    try {
      await waitFor(
        () => api.requests.some((r) => r.path === "/api/agent/heartbeat") || undefined,
        {
          message: "register + heartbeat",
        },
      );
      return agent.lines.join("\n");
    } finally {
      await agent.stop();
    }
  };
  try {
    const proxied = await run({ HTTP_PROXY: `http://127.0.0.1:${proxy.addr.port}` });
    assert.match(proxied, /"msg":"sigma-api client".*"transport":"fetch"/);
    assert.ok(viaProxy.includes(`POST ${apiUrl}/agent/register`), viaProxy.join("\n"));
    assert.ok(viaProxy.includes(`POST ${apiUrl}/agent/heartbeat`), viaProxy.join("\n"));
    viaProxy.length = 0;
    api.requests.length = 0;
    const straight = await run({});
    assert.match(
      straight,
      /"msg":"sigma-api client".*"transport":"http1"/,
      "the agent's flags let it read the proxy variables",
    );
    assert.deepEqual(viaProxy, [], "no proxy variable: straight to the API");
  } finally {
    ac.abort();
    await proxy.finished;
    await api.close();
  }
});

Deno.test("http1 and fetch give the same results and errors for the same answers", async () => {
  const long = "E".repeat(150) + " middle " + "F".repeat(300);
  const answers = [
    json('{"data":[],"total":0,"page":1,"per_page":100}'),
    `HTTP/1.1 500 Internal Server Error\r\ncontent-length: ${long.length}\r\n\r\n${long}`,
    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 17\r\n\r\nToo Many Requests",
    "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n" +
    '{"error":"Not found"}',
    "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n",
    json("<html>proxy error</html>"),
    json('{"data":[{"no_id":1}],"total":1}'),
    `HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n${"z".repeat(5000)}`,
  ];
  let i = 0;
  const s = rawServer(async (c) => (await write(c, answers[i % answers.length]), "keep"));
  const outcome = async (client: SigmaClient) => {
    try {
      return { ok: await client.listEnvoyNodes({ vps_id: "v" }) };
    } catch (e) {
      const { kind, status, retryAfterMs, apiMessage, message } = e as ApiError;
      return { kind, status, retryAfterMs, apiMessage, message };
    }
  };
  const lean = new SigmaClient({ baseUrl: s.url, apiKey: KEY, maxBodyBytes: 4096 });
  const viaFetch = new SigmaClient({
    baseUrl: s.url,
    apiKey: KEY,
    maxBodyBytes: 4096,
    transport: "fetch",
  });
  try {
    assert.equal(viaFetch.transport, "fetch");
    for (i = 0; i < answers.length; i++) {
      const a = await outcome(lean);
      const b = await outcome(viaFetch);
      assert.deepEqual(a, b, answers[i].split("\r\n")[0]);
    }
    const closed = `http://127.0.0.1:${freePort()}/api`;
    const c1 = new SigmaClient({ baseUrl: closed, apiKey: KEY });
    const c2 = new SigmaClient({ baseUrl: closed, apiKey: KEY, transport: "fetch" });
    assert.deepEqual(await outcome(c1), await outcome(c2));
  } finally {
    lean.close();
    await s.close();
  }
});

Deno.test("Http1Client: the pool holds at most maxIdlePerOrigin, and drops a connection the server closes", async () => {
  let closeAfter = false;
  const s = rawServer(async (c) => {
    await new Promise((r) => setTimeout(r, 20)); // keep 12 requests in flight together
    await write(c, json(EMPTY_PAGE));
    return closeAfter ? "close" : "keep";
  });
  const http = new Http1Client({ maxIdlePerOrigin: 8 });
  const origin = parseOrigin(s.url);
  const get = () =>
    http.request(origin, {
      method: "GET",
      path: "/api/envoy-nodes",
      headers: "",
      timeoutMs: 2000,
      maxBodyBytes: 1 << 20,
    });
  try {
    const all = await Promise.all(Array.from({ length: 12 }, get));
    assert.ok(all.every((r) => r.status === 200 && r.body.length === EMPTY_PAGE.length));
    assert.equal(s.connections(), 12);
    assert.equal(http.idleCount(origin), 8, "bounded idle pool");
    closeAfter = true;
    await get();
    await waitFor(() => http.idleCount(origin) === 7 || undefined, {
      message: "the closed connection left the pool",
    });
  } finally {
    http.close();
    await s.close();
  }
});
