/**
 * Failures that explain themselves (issue 14 §1): every failed sigma-api call, public-IP lookup
 * and static-sync post names the method, the full URL without userinfo, and the cause in an
 * operator's words — against real local servers for each cause: a closed port, a name that does
 * not resolve, a TLS server with a self-signed certificate made by openssl, a server that never
 * answers, and a 500 with a long body.
 */
import assert from "node:assert/strict";
import { ApiError, SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { createLogger } from "../../lib/core/log.ts";
import { PublicIpResolver } from "../../lib/host/public_ip.ts";
import { StaticFileSync } from "../../lib/envoy_static/sync.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { SnapshotCache } from "../../lib/xds/cache.ts";
import { SnapshotPoller } from "../../lib/xds/poller.ts";
import { freePort, ROOT, spawnAgent, TEST_SYSTEM_INFO, waitFor } from "../helpers.ts";

/** A self-signed v3 certificate for 127.0.0.1 made by openssl. */
async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "sigma-tls-" });
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=serverAuth",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const r = {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
  await Deno.remove(dir, { recursive: true });
  return r;
}

/** Local servers, one per cause; `close()` stops them all. */
async function causes() {
  const closed = freePort();
  const { cert, key } = await selfSignedCert();
  const tls = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  const tlsDone = (async () => {
    for await (const c of tls) c.handshake().catch(() => {}).finally(() => c.close());
  })().catch(() => {});
  // Accepts connections and never answers.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const silentDone = (async () => {
    for await (const c of silent) held.push(c);
  })().catch(() => {});
  const longBody = "E".repeat(150) + " middle " + "F".repeat(300) + " TAIL-NOT-SHOWN";
  const ac = new AbortController();
  const http500 = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => new Response(longBody, { status: 500 }),
  );
  return {
    refused: `http://127.0.0.1:${closed}`,
    dns: "http://nonexistent.invalid",
    tls: `https://127.0.0.1:${(tls.addr as Deno.NetAddr).port}`,
    silent: `http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}`,
    http500: `http://127.0.0.1:${http500.addr.port}`,
    close: async () => {
      tls.close();
      silent.close();
      for (const c of held) c.close();
      ac.abort();
      await Promise.all([tlsDone, silentDone, http500.finished]);
    },
  };
}

/** What each cause must say, as a pattern after "METHOD URL: ". */
const EXPECTED: Record<string, { cause: RegExp; kind: string }> = {
  refused: { cause: /^connection refused$/, kind: "network" },
  dns: { cause: /^host not found$/, kind: "network" },
  tls: { cause: /^TLS certificate problem \(.+\)$/, kind: "network" },
  silent: { cause: /^timed out after 0\.4 s$/, kind: "timeout" },
  http500: { cause: /^HTTP 500: E{150} middle F{42}…$/, kind: "server" },
};

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("sigma-api client: method, full URL without userinfo, and the cause for each failure", async () => {
  const s = await causes();
  try {
    for (const [name, want] of Object.entries(EXPECTED)) {
      const base = (s as unknown as Record<string, string>)[name];
      const withUser = base.replace("://", "://operator:hunter2@") + "/api";
      const client = new SigmaClient({ baseUrl: withUser, apiKey: "sk_test", timeoutMs: 400 });
      const e = await client.register({
        hostname: "h",
        ip_addresses: [],
        ssh_port: 22,
        system_info: TEST_SYSTEM_INFO,
      }).then(() => undefined, (e) => e);
      assert.ok(e instanceof ApiError, `${name}: ${e}`);
      const prefix = `POST ${base}/api/agent/register: `;
      assert.ok(e.message.startsWith(prefix), `${name}: ${e.message}`);
      assert.match(e.message.slice(prefix.length), want.cause, name);
      assert.equal(e.kind, want.kind, name);
      assert.ok(!/hunter2|operator|sk_test/.test(e.message), `${name}: no credentials shown`);
      assert.equal(client.baseUrl, `${base}/api`, "baseUrl has no userinfo either");
    }
  } finally {
    await s.close();
  }
});

Deno.test("sigma-api client: 401 says the key was rejected; a read-only GET names its query", async () => {
  const api = new DevApi({ apiKey: "right" });
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const client = new SigmaClient({ baseUrl: url, apiKey: "wrong", timeoutMs: 2000 });
    const e = await client.listEnvoyNodes({ vps_id: "v1" }).catch((e) => e);
    assert.ok(e instanceof ApiError);
    assert.equal(
      e.message,
      `GET ${url}/envoy-nodes?vps_id=v1&page=1&per_page=100: ` +
        "HTTP 401 (API key rejected: check SIGMA_API_KEY): (empty body)",
    );
  } finally {
    await api.close();
  }
});

Deno.test("public-IP lookup: each URL's failure named, logged once, then a recovery line with the count", async () => {
  const s = await causes();
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  let now = 0;
  let answer = false;
  const ac = new AbortController();
  const good = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => answer ? new Response("203.0.113.7\n") : new Response("<html>busy</html>"),
  );
  const goodUrl = `http://127.0.0.1:${good.addr.port}/ip`;
  try {
    const urls = Object.keys(EXPECTED).map((k) =>
      (s as unknown as Record<string, string>)[k] + "/ip"
    );
    const r = new PublicIpResolver({
      urls: [...urls, goodUrl],
      timeoutMs: 400,
      refreshMs: 60_000,
      log,
      now: () => now,
    });
    assert.equal(await r.get(true), undefined);
    const err = r.lastError ?? "";
    for (const [i, [name, want]] of Object.entries(EXPECTED).entries()) {
      const part = new RegExp(`GET ${escape(urls[i])}: ([^;]+)`).exec(err);
      assert.ok(part, `${name} named in: ${err}`);
      assert.match(part[1], want.cause, name);
    }
    assert.match(err, new RegExp(`GET ${escape(goodUrl)}: HTTP 200 but no IP address: <html>`));
    const warns = () => lines.filter((l) => l.level === "warn");
    assert.equal(warns().length, 1);
    assert.match(String(warns()[0].msg), /reporting local addresses only, next try in 1 min$/);
    now += 61_000;
    await r.get(true);
    assert.equal(warns().length, 1, "the same failure is not logged again at warn");
    assert.equal(lines.filter((l) => l.level === "debug" && l.repeats === 2).length, 1);
    answer = true;
    now += 61_000;
    assert.equal(await r.get(true), "203.0.113.7");
    const rec = lines.find((l) => l.msg === "public IP lookup recovered");
    assert.ok(rec, JSON.stringify(lines.map((l) => l.msg)));
    assert.equal(rec.failures, 2);
    assert.equal(r.lastError, undefined);
  } finally {
    ac.abort();
    await good.finished;
    await s.close();
  }
});

Deno.test("static sync: a failed post names POST, the URL and the HTTP status with the body's start", async () => {
  const api = new DevApi({});
  api.fault = { pathPrefix: "/envoy-routes/sync-static", status: 500, body: "X".repeat(400) };
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/envoy.yaml`;
  await Deno.copyFile(`${ROOT}tests/envoy_static/fixtures/basic.yaml`, path);
  const ac = new AbortController();
  const lines: string[] = [];
  const client = new SigmaClient({ baseUrl: url, apiKey: undefined, timeoutMs: 2000 });
  const vps = await client.register({
    hostname: "h",
    ip_addresses: [],
    ssh_port: 22,
    system_info: TEST_SYSTEM_INFO,
  });
  const sync = new StaticFileSync({
    path,
    nodeId: "static-h",
    api: client,
    vpsId: Promise.resolve(vps.id),
    log: createLogger({ write: (l) => lines.push(l) }),
    intervalMs: 60_000,
    signal: ac.signal,
    watch: false,
    debounceMs: 10,
    retryBaseMs: 50,
    retryCapMs: 100,
  });
  const done = sync.run();
  try {
    const err = await waitFor(() => sync.status().error, { message: "sync error" });
    assert.equal(
      err,
      `sync to sigma-api failed: POST ${url}/envoy-routes/sync-static: HTTP 500: ${
        "X".repeat(200)
      }…; keeping the last good routes, retrying with backoff`,
    );
    await waitFor(() => api.requests.filter((r) => r.path.endsWith("sync-static")).length >= 3);
    const errors = lines.map((l) => JSON.parse(l)).filter((l) => l.level === "error");
    assert.equal(errors.length, 1, "logged once while nothing changes");
    api.fault = undefined;
    await waitFor(() => sync.status().last_result === "ok", { message: "recovery" });
    const rec = lines.map((l) => JSON.parse(l)).find((l) => /recovered/.test(l.msg));
    assert.ok(rec && rec.failures >= 3, JSON.stringify(rec));
  } finally {
    ac.abort();
    await done;
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("xDS poller: a failing poll names the call and is logged once, then a recovery line", async () => {
  const port = freePort();
  const url = `http://127.0.0.1:${port}/api`;
  const lines: Record<string, unknown>[] = [];
  const dir = await Deno.makeTempDir();
  const ac = new AbortController();
  const poller = new SnapshotPoller({
    api: new SigmaClient({ baseUrl: url, apiKey: undefined, timeoutMs: 2000 }),
    cache: new SnapshotCache(),
    store: new StateStore(dir),
    log: createLogger({ write: (l) => lines.push(JSON.parse(l)) }),
    vpsId: () => "00000000-0000-4000-8000-000000000001",
    vpsIdReady: Promise.resolve("00000000-0000-4000-8000-000000000001"),
    intervalMs: 10_000,
    signal: ac.signal,
  });
  const api = new DevApi({});
  try {
    for (let i = 0; i < 3; i++) assert.equal((await poller.pollOnce()).result, "failure");
    const warns = lines.filter((l) => l.level === "warn");
    assert.equal(warns.length, 1, JSON.stringify(lines));
    assert.match(
      String(warns[0].error),
      new RegExp(`^GET ${escape(url)}/envoy-nodes\\?vps_id=[^ ]+: connection refused$`),
    );
    assert.equal(warns[0].next, "retry in 10 s");
    api.listen({ hostname: "127.0.0.1", port });
    assert.equal((await poller.pollOnce()).result, "success");
    const rec = lines.find((l) => l.msg === "xds: poll recovered");
    assert.equal(rec?.failures, 3);
  } finally {
    ac.abort();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("agent process: /status shows the failed call with its URL and cause, never the userinfo", async () => {
  const closed = freePort();
  const metricsPort = freePort();
  const agent = await spawnAgent({
    args: [
      `--api-url=http://operator:hunter2@127.0.0.1:${closed}/api`,
      `--metrics-port=${metricsPort}`,
      "--metrics-addr=127.0.0.1",
    ],
  });
  try {
    const a = await waitFor(async () => {
      const s = await (await fetch(`http://127.0.0.1:${metricsPort}/status`)).json();
      return s.agent?.last_register?.error ? s.agent : undefined;
    }, { message: "registration error in /status" });
    assert.equal(a.api_url, `http://127.0.0.1:${closed}/api`);
    assert.equal(
      a.last_register.error,
      `POST http://127.0.0.1:${closed}/api/agent/register: connection refused`,
    );
    const text = agent.lines.join("\n") + JSON.stringify(a);
    assert.ok(!text.includes("hunter2"), "the password is never shown");
  } finally {
    await agent.stop();
  }
});
