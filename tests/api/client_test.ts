/** The API client against real local HTTP servers (the dev API and a misbehaving one). */
import assert from "node:assert/strict";
import { ApiError, parseRetryAfter, SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { TEST_SYSTEM_INFO } from "../helpers.ts";

async function withApi(fn: (api: DevApi, client: SigmaClient) => Promise<void>, key?: string) {
  const api = new DevApi({ apiKey: key });
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await fn(api, new SigmaClient({ baseUrl: url + "/", apiKey: key, timeoutMs: 1000 }));
  } finally {
    await api.close();
  }
}

Deno.test("X-Api-Key only when a key is set", async () => {
  await withApi(async (api, client) => {
    await client.register({
      hostname: "h",
      ip_addresses: [],
      ssh_port: 22,
      system_info: TEST_SYSTEM_INFO,
    });
    assert.equal(api.requests[0].headers["x-api-key"], "k1");
    assert.equal(api.requests[0].path, "/api/agent/register", "trailing slash of base removed");
  }, "k1");
  await withApi(async (api, client) => {
    await client.register({
      hostname: "h",
      ip_addresses: [],
      ssh_port: 22,
      system_info: TEST_SYSTEM_INFO,
    });
    assert.ok(!("x-api-key" in api.requests[0].headers));
  });
});

Deno.test("errors are classified: 4xx with the API text, 401, 404, 5xx, 429 + Retry-After, non-JSON", async () => {
  await withApi(async (api, client) => {
    await assert.rejects(
      () =>
        client.heartbeat({ hostname: "ghost", ip_addresses: [], system_info: TEST_SYSTEM_INFO }),
      (e) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.kind, "client");
        assert.equal(e.status, 404);
        assert.equal(e.apiMessage, "Not found");
        return true;
      },
    );
    await assert.rejects(
      () =>
        client.register({
          hostname: " ",
          ip_addresses: [],
          ssh_port: 22,
          system_info: TEST_SYSTEM_INFO,
        }),
      {
        kind: "client",
        status: 400,
        apiMessage: "Bad request: hostname is required",
      },
    );
    api.fault = { status: 500 };
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "server", status: 500 });
    api.fault = { status: 429, retryAfter: "7" };
    await assert.rejects(() => client.listEnvoyNodes({}), {
      kind: "rate_limited",
      status: 429,
      retryAfterMs: 7000,
    });
    api.fault = { status: 200, body: "<html>proxy error</html>" };
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "bad_body" });
    api.fault = { status: 200, body: '{"data": [{"id": "x"' };
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "bad_body" });
    api.fault = { status: 200, body: '{"data": [{"no_id": 1}], "total": 1}' };
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "bad_body" });
  });
  const locked = new DevApi({ apiKey: "secret" });
  const url = locked.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const wrongKey = new SigmaClient({ baseUrl: url, apiKey: "not-the-key" });
    await assert.rejects(() => wrongKey.listEnvoyNodes({}), (e) => {
      assert.ok(e instanceof ApiError && e.kind === "client" && e.status === 401);
      assert.ok(!e.message.includes("not-the-key"));
      return true;
    });
  } finally {
    await locked.close();
  }
});

Deno.test("timeout and network errors", async () => {
  await withApi(async (api, client) => {
    api.fault = { delayMs: 1500, status: 200, body: "{}" };
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "timeout" });
    api.fault = undefined;
    await api.stop();
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "network" });
  });
});

Deno.test("oversized bodies are refused", async () => {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    api.fault = { hugeBytes: 2 * 1024 * 1024 };
    const client = new SigmaClient({ baseUrl: url, apiKey: undefined, maxBodyBytes: 1024 * 1024 });
    await assert.rejects(() => client.listEnvoyNodes({}), { kind: "bad_body" });
  } finally {
    await api.close();
  }
});

Deno.test("pagination follows every page with per_page=100", async () => {
  await withApi(async (api, client) => {
    const vps = api.vps;
    await client.register({
      hostname: "h",
      ip_addresses: [],
      ssh_port: 22,
      system_info: TEST_SYSTEM_INFO,
    });
    const id = vps[0].id;
    for (let i = 0; i < 250; i++) api.addNode(id, `node-${i}`);
    const nodes = await client.listEnvoyNodes({ vps_id: id });
    assert.equal(nodes.length, 250);
    assert.equal(new Set(nodes.map((n) => n.node_id)).size, 250);
    const lists = api.requests.filter((r) => r.path === "/api/envoy-nodes");
    assert.deepEqual(lists.map((r) => r.query.page), ["1", "2", "3"]);
    assert.ok(lists.every((r) => r.query.per_page === "100" && r.query.vps_id === id));

    const node = nodes[0];
    for (let i = 0; i < 150; i++) {
      api.addRoute(node.id, {
        name: `r${i}`,
        listen_port: 20000 + i,
        backend_host: "10.0.0.1",
        backend_port: 80,
      });
    }
    const routes = await client.listEnvoyRoutes({
      envoy_node_id: node.id,
      status: "active",
      source: "dynamic",
    });
    assert.equal(routes.length, 150);
  });
});

Deno.test("Retry-After parses seconds and HTTP dates", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
  assert.equal(parseRetryAfter("soon"), undefined);
});

Deno.test("observer sees every request with endpoint and result", async () => {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: string[] = [];
  try {
    const client = new SigmaClient({
      baseUrl: url,
      apiKey: undefined,
      onRequest: (r) => seen.push(`${r.method} ${r.endpoint} ${r.kind}`),
    });
    await client.listEnvoyNodes({ vps_id: "00000000-0000-0000-0000-000000000000" });
    await client.heartbeat({ hostname: "x", ip_addresses: [], system_info: TEST_SYSTEM_INFO })
      .catch(
        () => {},
      );
    assert.deepEqual(seen, ["GET /envoy-nodes ok", "POST /agent/heartbeat client"]);
  } finally {
    await api.close();
  }
});
