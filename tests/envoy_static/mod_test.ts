/**
 * The static sync feature as `main.ts` starts it: several files (literal + glob, exclude), one
 * node per file, status section and metrics, a file added later, two files that would share a
 * node id, the disabled switch; and the real agent process under its real permission flags.
 */
import assert from "node:assert/strict";
import { SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { parseConfig } from "../../lib/core/config.ts";
import type { AgentContext } from "../../lib/core/context.ts";
import { startStaticSync } from "../../lib/envoy_static/mod.ts";
import { silentLogger } from "../../lib/core/log.ts";
import { createMetrics } from "../../lib/core/metrics.ts";
import { StateStore } from "../../lib/core/state_store.ts";
import { StatusBoard } from "../../lib/status/board.ts";
import { freePort, spawnAgent, TEST_SYSTEM_INFO, waitFor } from "../helpers.ts";

const HOST = "h1";

function yaml(port: number, backend: number): string {
  return `static_resources:
  listeners:
    - name: l
      address: { socket_address: { address: 0.0.0.0, port_value: ${port} } }
      filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { stat_prefix: s, cluster: c } }] }]
  clusters:
    - name: c
      connect_timeout: 1s
      load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: ${backend} } } } }] }] }
`;
}

interface FeatureHarness {
  api: DevApi;
  ctx: AgentContext;
  abort: AbortController;
  dir: string;
  close(): Promise<void>;
}

async function harness(
  args: (dir: string) => string[],
  files: Record<string, string>,
): Promise<FeatureHarness> {
  const dir = await Deno.makeTempDir({ prefix: "envoy_static_mod_" });
  for (const [name, content] of Object.entries(files)) {
    const p = `${dir}/${name}`;
    await Deno.mkdir(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(p, content);
  }
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const parsed = parseConfig([...args(dir), `--api-url=${url}`], {});
  assert.equal(parsed.kind, "config");
  const config = parsed.kind === "config" ? parsed.config : undefined!;
  const client = new SigmaClient({ baseUrl: url, apiKey: undefined, timeoutMs: 5_000 });
  const vps = await client.register({
    hostname: HOST,
    ip_addresses: [],
    ssh_port: 22,
    system_info: TEST_SYSTEM_INFO,
  });
  api.requests.length = 0;
  const abort = new AbortController();
  const ctx: AgentContext = {
    config,
    log: silentLogger,
    api: client,
    metrics: createMetrics(HOST, "test"),
    board: new StatusBoard(),
    store: new StateStore(`${dir}/.state`),
    hostname: HOST,
    signal: abort.signal,
    vpsId: () => vps.id,
    vpsIdReady: Promise.resolve(vps.id),
  };
  return {
    api,
    ctx,
    abort,
    dir,
    close: async () => {
      abort.abort();
      await api.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function routesOf(api: DevApi, nodeId: string): number[] {
  const node = api.nodes.find((n) => n.node_id === nodeId);
  if (!node) return [];
  return api.routes.filter((r) => r.envoy_node_id === node.id).map((r) => r.listen_port).sort();
}

type FileStatus = {
  path: string;
  node_id: string;
  last_sync_at: string | null;
  last_result: string | null;
  routes: number;
  error: string | null;
  last_error: string | null;
};

function section(
  ctx: AgentContext,
): { enabled: boolean; files: FileStatus[]; conflicts: unknown[] } {
  return ctx.board.snapshot().static_sync as {
    enabled: boolean;
    files: FileStatus[];
    conflicts: unknown[];
  };
}

Deno.test("feature: disabled unless --envoy-config-sync; says so in /status", async () => {
  const h = await harness((dir) => [`--envoy-config-path=${dir}/envoy.yaml`], {
    "envoy.yaml": yaml(1000, 1),
  });
  try {
    const f = startStaticSync(h.ctx);
    await f.stop();
    assert.deepEqual(h.ctx.board.snapshot().static_sync, { enabled: false });
    assert.equal(h.api.requests.length, 0);
  } finally {
    await h.close();
  }
});

Deno.test("feature: one node per file (literal + glob, exclude), status and metrics, late files", async () => {
  const h = await harness(
    (dir) => [
      "--envoy-config-sync",
      `--envoy-config-path=${dir}/envoy.yaml, ${dir}/envoy-*.yaml`,
      "--envoy-config-exclude=envoy-test*.yaml",
      "--envoy-config-sync-interval=0.3",
    ],
    {
      "envoy.yaml": yaml(1001, 1),
      "envoy-relay.yaml": yaml(1002, 2),
      "envoy-test.yaml": yaml(1003, 3),
      "notes.txt": "not yaml: [",
    },
  );
  const f = startStaticSync(h.ctx, { retryBaseMs: 50, retryCapMs: 300, debounceMs: 30 });
  try {
    await waitFor(
      () =>
        routesOf(h.api, `static-${HOST}`).length === 1 &&
        routesOf(h.api, `static-${HOST}-envoy-relay`).length === 1,
      {
        message: "both files synced",
      },
    );
    assert.deepEqual(routesOf(h.api, `static-${HOST}`), [1001]);
    assert.deepEqual(routesOf(h.api, `static-${HOST}-envoy-relay`), [1002]);
    assert.equal(
      h.api.nodes.some((n) => n.node_id.includes("envoy-test")),
      false,
      "excluded file not synced",
    );
    // The API records a POST before the loop reads the answer: wait for the loops' own view.
    await waitFor(() => section(h.ctx).files.every((x) => x.last_result === "ok"), {
      message: "loops report success",
    });

    const s = section(h.ctx);
    assert.equal(s.enabled, true);
    assert.deepEqual(s.files.map((x) => [x.path, x.node_id]), [
      [`${h.dir}/envoy-relay.yaml`, `static-${HOST}-envoy-relay`],
      [`${h.dir}/envoy.yaml`, `static-${HOST}`],
    ]);
    for (const x of s.files) {
      assert.equal(x.last_result, "ok");
      assert.equal(x.routes, 1);
      assert.equal(x.error, null);
      assert.ok(x.last_sync_at);
      assert.ok("last_error" in x);
    }
    const text = await h.ctx.metrics.registry.metrics();
    assert.match(
      text,
      new RegExp(
        `sigma_static_sync_total\\{node_id="static-${HOST}",result="ok",hostname="${HOST}"\\} 1`,
      ),
    );
    assert.match(
      text,
      new RegExp(
        `sigma_static_routes\\{node_id="static-${HOST}-envoy-relay",hostname="${HOST}"\\} 1`,
      ),
    );

    // A file that appears later is picked up by the next glob expansion.
    await Deno.writeTextFile(`${h.dir}/envoy-exit.yaml`, yaml(1004, 4));
    await waitFor(() => routesOf(h.api, `static-${HOST}-envoy-exit`).length === 1, {
      message: "late file synced",
    });
    assert.equal(section(h.ctx).files.length, 3);
  } finally {
    await f.stop();
    await h.close();
  }
});

Deno.test("feature: two files with one node id: only the first is synced, the other is reported", async () => {
  const h = await harness(
    (
      dir,
    ) => [
      "--envoy-config-sync",
      `--envoy-config-path=${dir}/b/envoy.yaml,${dir}/a/envoy.yaml`,
      "--envoy-config-sync-interval=0.3",
    ],
    { "a/envoy.yaml": yaml(2001, 1), "b/envoy.yaml": yaml(2002, 2) },
  );
  const f = startStaticSync(h.ctx, { retryBaseMs: 50, retryCapMs: 300 });
  try {
    await waitFor(() => routesOf(h.api, `static-${HOST}`).length === 1, {
      message: "first file synced",
    });
    assert.deepEqual(routesOf(h.api, `static-${HOST}`), [2001]); // sorted order: a/ before b/
    const s = section(h.ctx);
    assert.equal(s.files.length, 1);
    assert.deepEqual(s.conflicts, [{
      path: `${h.dir}/b/envoy.yaml`,
      node_id: `static-${HOST}`,
      conflicts_with: `${h.dir}/a/envoy.yaml`,
    }]);
  } finally {
    await f.stop();
    await h.close();
  }
});

Deno.test("feature: stops when the agent's signal aborts", async () => {
  const h = await harness(
    (
      dir,
    ) => [
      "--envoy-config-sync",
      `--envoy-config-path=${dir}/envoy.yaml`,
      "--envoy-config-sync-interval=60",
    ],
    { "envoy.yaml": yaml(3001, 1) },
  );
  const f = startStaticSync(h.ctx);
  try {
    await waitFor(() => routesOf(h.api, `static-${HOST}`).length === 1, { message: "synced" });
    h.abort.abort();
    await f.stop(); // resolves promptly: loops, watchers and the rescan loop have ended
  } finally {
    await h.close();
  }
});

Deno.test("agent process: static sync under the real permission flags (envoy dir swapped for a temp dir)", async () => {
  const envoyDir = await Deno.makeTempDir({ prefix: "envoy_etc_" });
  await Deno.writeTextFile(`${envoyDir}/envoy.yaml`, yaml(4001, 1));
  await Deno.writeTextFile(`${envoyDir}/envoy-relay.yaml`, yaml(4002, 2));
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = freePort();
  const agent = await spawnAgent({
    args: [
      "--envoy-config-sync",
      `--envoy-config-path=${envoyDir}/*.yaml`,
      "--envoy-config-sync-interval=1",
      `--metrics-port=${metricsPort}`,
      "--metrics-addr=127.0.0.1",
    ],
    env: { SIGMA_API_URL: url, AGENT_HOSTNAME: "proc-host" },
    envoyDir,
  });
  try {
    await waitFor(
      () =>
        routesOf(api, "static-proc-host").length === 1 &&
        routesOf(api, "static-proc-host-envoy-relay").length === 1,
      { message: "both files synced by the agent process", timeoutMs: 30_000 },
    ).catch((e) => {
      throw new Error(`${e.message}\nagent log:\n${agent.lines.join("\n")}`);
    });
    // A change is picked up by the process too.
    await Deno.writeTextFile(`${envoyDir}/envoy.yaml`, yaml(4005, 5));
    await waitFor(() => routesOf(api, "static-proc-host")[0] === 4005, {
      message: "re-sync",
      timeoutMs: 30_000,
    });

    // A path outside the granted directory is refused at start: see tests/core/grants_test.ts.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(
      metrics,
      /sigma_static_sync_total\{[^}]*node_id="static-proc-host"[^}]*result="ok"/,
    );
  } finally {
    await agent.stop();
    await api.close();
    await Deno.remove(envoyDir, { recursive: true });
  }
});
