/**
 * Integration tests of one file's sync loop against the real dev API (a loopback HTTP server)
 * with real files in a temp dir: initial sync, re-sync on change, nothing on touch, a change
 * within one second, broken/empty/missing files (no empty sync, last good routes kept), API
 * outage and 5xx (retried without a file change), disabled node, node lookup across pages,
 * duplicate-create race, node deleted meanwhile, waiting for the VPS id, file watcher.
 */
import assert from "node:assert/strict";
import { SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import type { StaticRouteEntry } from "../../lib/api/types.ts";
import { createLogger } from "../../lib/core/log.ts";
import { type AgentMetrics, createMetrics } from "../../lib/core/metrics.ts";
import {
  NODE_DESCRIPTION,
  StaticFileSync,
  type StaticSyncApi,
} from "../../lib/envoy_static/sync.ts";
import { TEST_SYSTEM_INFO, waitFor } from "../helpers.ts";

const HOST = "testhost";
const NODE = `static-${HOST}`;

/** A minimal but complete envoy.yaml: one TCP-proxy listener per `[listenPort, backendPort]`. */
function envoyYaml(routes: [number, number][]): string {
  const listeners = routes.map(([port], i) => `
    - name: l${i}
      address: { socket_address: { address: 0.0.0.0, port_value: ${port} } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config: { stat_prefix: s${i}, cluster: c${i} }`).join("");
  const clusters = routes.map(([, backend], i) => `
    - name: c${i}
      type: STRICT_DNS
      connect_timeout: 0.5s
      load_assignment:
        cluster_name: c${i}
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: backend.example, port_value: ${backend} } } } }] }]`)
    .join("");
  return `static_resources:\n  listeners:${listeners || " []"}\n  clusters:${clusters || " []"}\n`;
}

interface Harness {
  api: DevApi;
  client: SigmaClient;
  vpsId: string;
  dir: string;
  path: string;
  logs: string[];
  metrics: AgentMetrics;
  sync: StaticFileSync;
  /** Stops the loop, the API and removes the temp dir. */
  close(): Promise<void>;
}

interface SetupOptions {
  fileName?: string;
  /** Initial file content; `undefined` writes no file. */
  content?: string;
  intervalMs?: number;
  watch?: boolean;
  /** Runs before the loop starts (add nodes, faults…). */
  prepare?: (api: DevApi, vpsId: string) => void;
  /** Wraps the real client (only to make one call see stale data). */
  wrapApi?: (client: SigmaClient) => StaticSyncApi;
  /** Resolves the VPS id later. */
  vpsIdLater?: boolean;
  debounceMs?: number;
}

async function setup(opts: SetupOptions = {}): Promise<Harness & { resolveVps: () => void }> {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const client = new SigmaClient({ baseUrl: url, apiKey: undefined, timeoutMs: 5_000 });
  const vps = await client.register({
    hostname: HOST,
    ip_addresses: [],
    ssh_port: 22,
    system_info: TEST_SYSTEM_INFO,
  });
  api.requests.length = 0;
  opts.prepare?.(api, vps.id);
  const dir = await Deno.makeTempDir({ prefix: "envoy_sync_" });
  const path = `${dir}/${opts.fileName ?? "envoy.yaml"}`;
  if (opts.content !== undefined) await Deno.writeTextFile(path, opts.content);
  const logs: string[] = [];
  const metrics = createMetrics(HOST, "test");
  const ac = new AbortController();
  let resolveVps = () => {};
  const vpsId = opts.vpsIdLater
    ? new Promise<string>((r) => (resolveVps = () => r(vps.id)))
    : Promise.resolve(vps.id);
  const sync = new StaticFileSync({
    path,
    nodeId: NODE,
    api: opts.wrapApi ? opts.wrapApi(client) : client,
    vpsId,
    log: createLogger({ level: "debug", write: (l) => logs.push(l) }),
    metrics,
    intervalMs: opts.intervalMs ?? 250,
    signal: ac.signal,
    watch: opts.watch ?? true,
    debounceMs: opts.debounceMs ?? 30,
    retryBaseMs: 50,
    retryCapMs: 300,
  });
  const done = sync.run();
  return {
    api,
    client,
    vpsId: vps.id,
    dir,
    path,
    logs,
    metrics,
    sync,
    resolveVps,
    close: async () => {
      ac.abort();
      await done;
      await api.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function syncRequests(api: DevApi) {
  return api.requests.filter((r) =>
    r.method === "POST" && r.path === "/api/envoy-routes/sync-static"
  );
}

function nodeRow(api: DevApi, nodeId = NODE) {
  return api.nodes.find((n) => n.node_id === nodeId);
}

/** Static routes the API holds for our node, as `[listen_port, backend_port]`, by port. */
function apiRoutes(api: DevApi, nodeId = NODE): [number, number | null][] {
  const node = nodeRow(api, nodeId);
  return api.routes
    .filter((r) => node && r.envoy_node_id === node.id && r.source === "static")
    .sort((a, b) => a.listen_port - b.listen_port)
    .map((r) => [r.listen_port, r.backend_port]);
}

/** No request may ever have asked the API to delete every static route because of a failure. */
function assertNoEmptySync(api: DevApi): void {
  for (const r of syncRequests(api)) {
    const routes = (r.body as { routes: StaticRouteEntry[] }).routes;
    assert.ok(routes.length > 0, "an empty route list was sent");
  }
}

async function metricValue(
  metrics: AgentMetrics,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)!.get();
  const v = m.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

/**
 * Waits until the loop itself has seen its last POST succeed (the dev API records a request
 * before the loop reads the answer, so API-side checks alone race with the loop's status).
 */
async function settled(h: Harness): Promise<void> {
  await waitFor(() => {
    const s = h.sync.status();
    return s.last_result === "ok" && !s.pending && s.error === null;
  }, { message: "loop reports a successful sync" });
}

/** Waits until the loop has run at least one full pass that started after now. */
async function passesAfterNow(h: Harness, passes = 2, intervalMs = 250): Promise<void> {
  const since = Date.now() + (passes - 1) * intervalMs;
  await waitFor(() => Date.parse(h.sync.status().last_attempt_at ?? "") > since, {
    message: "sync loop passes",
  });
}

Deno.test("sync: initial sync creates the node and posts the routes", async () => {
  const h = await setup({ content: envoyYaml([[10001, 22], [10002, 443]]) });
  try {
    await waitFor(() => apiRoutes(h.api).length === 2, { message: "initial sync" });
    assert.deepEqual(apiRoutes(h.api), [[10001, 22], [10002, 443]]);
    const node = nodeRow(h.api)!;
    assert.equal(node.vps_id, h.vpsId);
    assert.equal(node.description, NODE_DESCRIPTION);
    const body = syncRequests(h.api)[0].body as {
      envoy_node_id: string;
      routes: StaticRouteEntry[];
    };
    assert.equal(body.envoy_node_id, node.id);
    assert.deepEqual(body.routes[0], {
      name: "static-10001",
      listen_port: 10001,
      backend_host: "backend.example",
      backend_port: 22,
      cluster_type: "strict_dns",
      connect_timeout_secs: 1,
      proxy_protocol: 0,
    });
    await settled(h);
    const st = h.sync.status();
    assert.equal(st.path, h.path);
    assert.equal(st.node_id, NODE);
    assert.equal(st.envoy_node_id, node.id);
    assert.equal(st.last_result, "ok");
    assert.equal(st.routes, 2);
    assert.equal(st.error, null);
    assert.ok(st.last_sync_at !== null);
    assert.equal(
      await metricValue(h.metrics, "sigma_static_sync_total", { node_id: NODE, result: "ok" }),
      1,
    );
    assert.equal(await metricValue(h.metrics, "sigma_static_routes", { node_id: NODE }), 2);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a change re-syncs (stale static routes deleted); a touch sends nothing", async () => {
  const h = await setup({ content: envoyYaml([[10001, 22], [10002, 443]]) });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "initial sync" });
    await Deno.writeTextFile(h.path, envoyYaml([[10001, 2222], [10003, 80]]));
    await waitFor(() => syncRequests(h.api).length === 2, { message: "re-sync after change" });
    assert.deepEqual(apiRoutes(h.api), [[10001, 2222], [10003, 80]]);

    // Touch: new mtime, same bytes (and a rewrite of identical content).
    const now = new Date();
    await Deno.utime(h.path, now, now);
    await Deno.writeTextFile(h.path, envoyYaml([[10001, 2222], [10003, 80]]));
    await passesAfterNow(h, 3);
    assert.equal(syncRequests(h.api).length, 2, "touch must not send anything");
    assertNoEmptySync(h.api);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a change within the same second (same mtime) is detected by the content hash", async () => {
  const h = await setup({ content: envoyYaml([[11001, 1]]), watch: false });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "initial sync" });
    const before = await Deno.stat(h.path);
    await Deno.writeTextFile(h.path, envoyYaml([[11001, 2]])); // same length, different bytes
    await Deno.utime(h.path, before.atime!, before.mtime!); // mtime put back exactly
    assert.equal((await Deno.stat(h.path)).mtime!.getTime(), before.mtime!.getTime());
    await waitFor(() => syncRequests(h.api).length === 2, {
      message: "re-sync with unchanged mtime",
    });
    assert.deepEqual(apiRoutes(h.api), [[11001, 2]]);
  } finally {
    await h.close();
  }
});

Deno.test("sync: broken, empty and missing files send nothing and keep the last good routes", async () => {
  const h = await setup({ content: envoyYaml([[12001, 1], [12002, 2]]) });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "initial sync" });

    await Deno.writeTextFile(h.path, "static_resources:\n  listeners:\n    - name: [unclosed\n");
    const parseErr = await waitFor(() => {
      const e = h.sync.status().error;
      return e?.includes("invalid YAML") ? e : undefined;
    });
    assert.ok(parseErr.startsWith(`${h.path}:`), parseErr);
    assert.match(
      parseErr,
      new RegExp(`^${h.path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}:[34]:\\d+: `),
    );
    assert.ok(
      h.logs.some((l) => l.includes('"level":"error"') && l.includes("invalid YAML")),
      "logged",
    );
    await passesAfterNow(h);
    assert.equal(syncRequests(h.api).length, 1);
    assert.equal(h.sync.status().routes, 2, "status keeps the last good route count");

    await Deno.writeTextFile(h.path, ""); // a file caught half-written
    await waitFor(() => h.sync.status().error?.includes("empty or not an Envoy bootstrap"), {
      message: "empty",
    });
    await Deno.remove(h.path);
    await waitFor(() => h.sync.status().error?.includes("file not found"), { message: "missing" });
    await passesAfterNow(h);

    assert.equal(syncRequests(h.api).length, 1, "nothing sent while the file was bad");
    assert.deepEqual(apiRoutes(h.api), [[12001, 1], [12002, 2]], "last good routes kept");
    assert.ok(
      await metricValue(h.metrics, "sigma_static_sync_total", {
        node_id: NODE,
        result: "parse_error",
      }) >= 2,
    );
    assert.ok(
      await metricValue(h.metrics, "sigma_static_sync_total", {
        node_id: NODE,
        result: "read_error",
      }) >= 1,
    );

    await Deno.writeTextFile(h.path, envoyYaml([[12003, 3]]));
    await waitFor(() => syncRequests(h.api).length === 2, {
      message: "sync after the file is fixed",
    });
    assert.deepEqual(apiRoutes(h.api), [[12003, 3]]);
    await settled(h);
    assertNoEmptySync(h.api);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a file caught mid-write (a valid prefix) is not synced; the finished file is", async () => {
  const full = envoyYaml([[12501, 1], [12502, 2], [12503, 3]]);
  const h = await setup({
    content: envoyYaml([[12500, 9]]),
    watch: false,
    intervalMs: 100,
    debounceMs: 1000,
  });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "initial" });
    // The first listener only: valid YAML, but clusters and two listeners are still missing.
    const prefix = full.slice(0, full.indexOf("    - name: l1"));
    await Deno.writeTextFile(h.path, prefix);
    await new Promise((r) => setTimeout(r, 250)); // over a poll interval, under the settle time
    await Deno.writeTextFile(h.path, full);
    await waitFor(() => syncRequests(h.api).length === 2, { message: "finished file synced" });
    await passesAfterNow(h, 2, 100);
    assert.equal(syncRequests(h.api).length, 2, "the half-written file was never sent");
    assert.deepEqual(apiRoutes(h.api), [[12501, 1], [12502, 2], [12503, 3]]);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a file that is broken from the start sends nothing until fixed", async () => {
  const h = await setup({ content: "static_resources: {listeners: [\n" });
  try {
    await waitFor(() => h.sync.status().error?.includes(`${h.path}:`), {
      message: "parse error reported",
    });
    await passesAfterNow(h);
    assert.equal(syncRequests(h.api).length, 0);
    assert.equal(h.api.requests.length, 0, "no API call at all without a good parse");
    await Deno.writeTextFile(h.path, envoyYaml([[13001, 1]]));
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "sync after fix" });
  } finally {
    await h.close();
  }
});

Deno.test("sync: a missing file at start is retried later", async () => {
  const h = await setup({ content: undefined });
  try {
    await waitFor(() => h.sync.status().error?.includes("file not found"), {
      message: "missing reported",
    });
    assert.equal(h.api.requests.length, 0);
    await Deno.writeTextFile(h.path, envoyYaml([[13501, 1]]));
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "sync once the file appears" });
  } finally {
    await h.close();
  }
});

Deno.test("sync: a deliberate config without listeners is a real empty list and is sent", async () => {
  const h = await setup({ content: envoyYaml([[14001, 1]]) });
  try {
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "initial" });
    await Deno.writeTextFile(h.path, "node: { id: x }\nstatic_resources:\n  listeners: []\n");
    await waitFor(() => syncRequests(h.api).length === 2, { message: "empty sync" });
    assert.deepEqual(apiRoutes(h.api), []);
  } finally {
    await h.close();
  }
});

Deno.test("sync: API outage (server down) is retried later without any file change", async () => {
  const h = await setup({ content: envoyYaml([[15001, 1]]) });
  try {
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "initial" });
    await h.api.stop();
    await Deno.writeTextFile(h.path, envoyYaml([[15001, 1], [15002, 2]]));
    await waitFor(() => h.sync.status().error?.includes("sync to sigma-api failed"), {
      message: "outage seen",
    });
    assert.equal(h.sync.status().pending, true);
    await waitFor(
      async () =>
        (await metricValue(h.metrics, "sigma_static_sync_total", {
          node_id: NODE,
          result: "api_error",
        })) >= 2,
      { message: "retried while down" },
    );
    h.api.listen(); // same port
    await waitFor(() => apiRoutes(h.api).length === 2, {
      message: "synced after the API came back",
    });
    assert.deepEqual(apiRoutes(h.api), [[15001, 1], [15002, 2]]);
    await settled(h);
    const st = h.sync.status();
    assert.equal(st.error, null);
    assert.equal(st.pending, false);
    assert.match(st.last_error ?? "", /sync to sigma-api failed/);
    assertNoEmptySync(h.api);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a failing POST (HTTP 500) is retried with backoff until it succeeds", async () => {
  const h = await setup({
    content: envoyYaml([[16001, 1]]),
    prepare: (api) => (api.fault = { status: 500, pathPrefix: "/envoy-routes/sync-static" }),
  });
  try {
    await waitFor(() => syncRequests(h.api).filter((r) => r.status === 500).length >= 3, {
      message: "several failed attempts",
    });
    assert.equal(apiRoutes(h.api).length, 0);
    h.api.fault = undefined;
    await waitFor(() => apiRoutes(h.api).length === 1, {
      message: "success after the fault clears",
    });
    const okAfter = syncRequests(h.api).filter((r) => r.status === 200).length;
    await passesAfterNow(h);
    assert.equal(
      syncRequests(h.api).filter((r) => r.status === 200).length,
      okAfter,
      "no resend once synced",
    );
  } finally {
    await h.close();
  }
});

Deno.test("sync: a disabled node is reported, nothing is sent, and the loop keeps going", async () => {
  const h = await setup({
    content: envoyYaml([[17001, 1]]),
    prepare: (api, vpsId) => void api.addNode(vpsId, NODE, "disabled"),
  });
  try {
    const err = await waitFor(() => h.sync.status().error, { message: "disabled node reported" });
    assert.match(err, new RegExp(`envoy node "${NODE}" .* status is "disabled"`));
    assert.ok(
      h.logs.some((l) => l.includes('"level":"error"') && l.includes("disabled")),
      "logged as error",
    );
    assert.equal(h.sync.status().last_result, "node_error");
    await passesAfterNow(h);
    assert.equal(syncRequests(h.api).length, 0);
    assert.equal(
      h.api.requests.filter((r) => r.method === "POST" && r.path === "/api/envoy-nodes").length,
      0,
    );
    assert.ok(
      await metricValue(h.metrics, "sigma_static_sync_total", {
        node_id: NODE,
        result: "node_error",
      }) >= 2,
    );

    nodeRow(h.api)!.status = "active"; // the operator re-enables it
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "synced once enabled" });
    await settled(h);
  } finally {
    await h.close();
  }
});

Deno.test("sync: the node is found on page 2+ of /envoy-nodes (no duplicate create)", async () => {
  let target = "";
  const h = await setup({
    content: envoyYaml([[18001, 1]]),
    prepare: (api, vpsId) => {
      target = api.addNode(vpsId, NODE).id; // oldest: last page (the API lists created_at DESC)
      for (let i = 0; i < 230; i++) api.addNode(vpsId, `other-${i}`);
      api.addNode(crypto.randomUUID(), NODE); // same id on another VPS must not be picked
    },
  });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "sync" });
    assert.equal((syncRequests(h.api)[0].body as { envoy_node_id: string }).envoy_node_id, target);
    assert.equal(
      h.api.requests.filter((r) => r.method === "POST" && r.path === "/api/envoy-nodes").length,
      0,
    );
    const pages = h.api.requests.filter((r) => r.path === "/api/envoy-nodes").map((r) =>
      r.query.page
    );
    assert.ok(pages.includes("3"), `pages fetched: ${pages}`);
    assert.ok(
      h.api.requests.filter((r) => r.path === "/api/envoy-nodes").every((r) =>
        r.query.status === undefined
      ),
    );
  } finally {
    await h.close();
  }
});

Deno.test("sync: create answered 500 'Database error' (duplicate) → looked up again and used", async () => {
  let existing = "";
  let calls = 0;
  const h = await setup({
    content: envoyYaml([[19001, 1]]),
    prepare: (api, vpsId) => (existing = api.addNode(vpsId, NODE).id),
    // The first lookup sees a list from before another writer created the node.
    wrapApi: (client) => ({
      listEnvoyNodes: (q) => (++calls === 1 ? Promise.resolve([]) : client.listEnvoyNodes(q)),
      createEnvoyNode: (b) => client.createEnvoyNode(b),
      syncStaticRoutes: (id, r) => client.syncStaticRoutes(id, r),
    }),
  });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "sync" });
    const create = h.api.requests.filter((r) =>
      r.method === "POST" && r.path === "/api/envoy-nodes"
    );
    assert.equal(create.length, 1);
    assert.equal(create[0].status, 500);
    assert.equal(
      (syncRequests(h.api)[0].body as { envoy_node_id: string }).envoy_node_id,
      existing,
    );
    assert.equal(h.api.nodes.filter((n) => n.node_id === NODE).length, 1);
  } finally {
    await h.close();
  }
});

Deno.test("sync: a node deleted in the API meanwhile is created again", async () => {
  const h = await setup({ content: envoyYaml([[20001, 1]]) });
  try {
    await waitFor(() => apiRoutes(h.api).length === 1, { message: "initial" });
    const first = nodeRow(h.api)!.id;
    h.api.nodes.splice(h.api.nodes.findIndex((n) => n.id === first), 1);
    await Deno.writeTextFile(h.path, envoyYaml([[20001, 1], [20002, 2]]));
    await waitFor(() => nodeRow(h.api) && apiRoutes(h.api).length === 2, {
      message: "re-created and synced",
    });
    assert.notEqual(nodeRow(h.api)!.id, first);
  } finally {
    await h.close();
  }
});

Deno.test("sync: nothing reaches the API before the VPS id is known; parse errors show already", async () => {
  const h = await setup({ content: envoyYaml([[21001, 1]]), vpsIdLater: true });
  try {
    await waitFor(() => h.sync.status().routes === 1, { message: "parsed" });
    await passesAfterNow(h);
    assert.equal(h.api.requests.length, 0);
    assert.equal(h.sync.status().waiting_for_vps_id, true);
    assert.equal(h.sync.status().pending, true);
    h.resolveVps();
    await waitFor(() => apiRoutes(h.api).length === 1, {
      message: "sync once the VPS id is known",
    });
    assert.equal(h.sync.status().waiting_for_vps_id, false);
  } finally {
    await h.close();
  }
});

Deno.test("sync: the file watcher picks up a change long before the poll interval", async () => {
  const h = await setup({ content: envoyYaml([[22001, 1]]), intervalMs: 600_000, watch: true });
  try {
    await waitFor(() => syncRequests(h.api).length === 1, { message: "initial" });
    assert.equal(h.sync.status().watching, true);
    // An editor-style atomic replace: write a temp file, rename it over the config.
    await Deno.writeTextFile(`${h.dir}/.envoy.yaml.tmp`, envoyYaml([[22001, 1], [22002, 2]]));
    await Deno.rename(`${h.dir}/.envoy.yaml.tmp`, h.path);
    await waitFor(() => apiRoutes(h.api).length === 2, {
      message: "re-sync via watcher",
      timeoutMs: 15_000,
    });
    await Deno.writeTextFile(h.path, envoyYaml([[22003, 3]])); // in-place write
    await waitFor(() => apiRoutes(h.api).length === 1 && apiRoutes(h.api)[0][0] === 22003, {
      message: "re-sync via watcher after in-place write",
      timeoutMs: 15_000,
    });
  } finally {
    await h.close();
  }
});

Deno.test("sync: a non-UTF-8 file is a parse error naming the line", async () => {
  const h = await setup({ content: undefined });
  try {
    const bytes = new TextEncoder().encode("static_resources:\n  listeners: []\n# caf\u00e9\n");
    const bad = new Uint8Array([...bytes.slice(0, bytes.length - 3), 0xff, 0x0a]);
    await Deno.writeFile(h.path, bad);
    const err = await waitFor(() => {
      const e = h.sync.status().error;
      return e?.includes("UTF-8") ? e : undefined;
    });
    assert.equal(err, `${h.path}:3: not valid UTF-8 text`);
    assert.equal(h.api.requests.length, 0);
  } finally {
    await h.close();
  }
});
