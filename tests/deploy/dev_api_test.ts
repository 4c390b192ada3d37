/**
 * deploy/dev_api.ts, the dev sigma-api of `docker compose --profile dev`: run as its own process
 * with only `--allow-net=127.0.0.1` (as compose runs it), it serves the agent API on the given
 * port, seeds the demo Envoy node on the first registration, and exits 0 on SIGTERM.
 */
import assert from "node:assert/strict";
import { DEMO_NODE_ID } from "../../lib/api/dev_server.ts";
import { freePort, waitFor } from "../helpers.ts";
import { ROOT, run } from "./support.ts";

Deno.test("dev API: serves registration on the given port, seeds the demo node, stops on SIGTERM", async () => {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net=127.0.0.1",
      `${ROOT}deploy/dev_api.ts`,
      "--port",
      String(port),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  const base = `http://127.0.0.1:${port}/api`;
  try {
    const reg = await waitFor(async () => {
      const res = await fetch(`${base}/agent/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          hostname: "compose-dev",
          alias: "",
          ip_addresses: [],
          ssh_port: 22,
          system_info: {},
        }),
      });
      return res.ok ? await res.json() : (await res.body?.cancel(), undefined);
    }, { timeoutMs: 30_000, message: "dev API answers register" });
    assert.equal(reg.hostname, "compose-dev");
    const nodes = await (await fetch(`${base}/envoy-nodes?vps_id=${reg.id}&status=active`)).json();
    assert.deepEqual(nodes.data.map((n: { node_id: string }) => n.node_id), [DEMO_NODE_ID]);
  } finally {
    child.kill("SIGTERM");
  }
  const out = await output;
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const banner = JSON.parse(new TextDecoder().decode(out.stdout).split("\n")[0]);
  assert.equal(banner.url, `${base}`);
  assert.equal(banner.demo_node_id, DEMO_NODE_ID);
});

Deno.test("dev API: a bad port is refused with exit code 2", async () => {
  const r = await run(Deno.execPath(), [
    "run",
    "--quiet",
    "--allow-net=127.0.0.1",
    `${ROOT}deploy/dev_api.ts`,
    "--port",
    "http",
  ]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid --port "http"/);
});
