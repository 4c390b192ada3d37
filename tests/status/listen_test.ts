/**
 * Health that tells the truth (issue 14 §4): the running agent records where it really listens in
 * its state dir, and `sigma-agent status` (the image's HEALTHCHECK) finds it with no flags and no
 * AGENT_METRICS_* variables, however the port was given. Real processes, real permission flags.
 */
import assert from "node:assert/strict";
import { DevApi } from "../../lib/api/dev_server.ts";
import { dialAddress, LISTEN_FILE, readListenRecord } from "../../lib/status/listen.ts";
import { agentPermissionFlags, freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";

/** `main.ts status …` with the agent's flags and only the given variables. */
async function status(stateDir: string, args: string[], env: Record<string, string> = {}) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...agentPermissionFlags({ stateDir }),
      `${ROOT}main.ts`,
      "status",
      ...args,
    ],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", AGENT_STATE_DIR: stateDir, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

Deno.test("status finds an agent started with --metrics-port as an argument (wildcard → loopback)", async () => {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = freePort();
  const xdsPort = freePort();
  const agent = await spawnAgent({
    // Flags only: the default metrics address 0.0.0.0 is a wildcard.
    args: [
      `--metrics-port=${metricsPort}`,
      "--xds-enabled",
      `--xds-port=${xdsPort}`,
      `--api-url=${url}`,
      "--hostname=listen-host",
    ],
  });
  try {
    const rec = await waitFor(() => readListenRecord(agent.stateDir), {
      message: `${LISTEN_FILE} written`,
    });
    assert.equal(rec.pid, agent.child.pid);
    assert.deepEqual(rec.metrics, { addr: "0.0.0.0", port: metricsPort });
    assert.deepEqual(rec.xds, { addr: "127.0.0.1", port: xdsPort });
    await waitFor(() => api.vps.length === 1, { message: "registered" });

    // No flags, no AGENT_METRICS_PORT: the recorded address is used.
    const r = await waitFor(async () => {
      const s = await status(agent.stateDir, []);
      return s.code === 0 ? s : undefined;
    }, { message: "status healthy with no flags" });
    assert.match(r.out, /listen-host — HEALTHY/);

    // A stale environment does not mislead it either; flags still override.
    const env = await status(agent.stateDir, [], { AGENT_METRICS_PORT: String(freePort()) });
    assert.equal(env.code, 0, env.err);
    const closed = freePort();
    const flag = await status(agent.stateDir, ["--addr", `127.0.0.1:${closed}`]);
    assert.equal(flag.code, 3);
    assert.match(flag.err, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${closed}/status`));
  } finally {
    await agent.stop();
    await api.close();
  }
});

Deno.test("status without a record falls back to AGENT_METRICS_ADDR/PORT; a disabled port is said plainly", async () => {
  const empty = await Deno.makeTempDir({ prefix: "listen-empty-" });
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = freePort();
  const agent = await spawnAgent({
    args: [`--metrics-port=${metricsPort}`, "--metrics-addr=127.0.0.1", `--api-url=${url}`],
  });
  const off = await spawnAgent({ args: ["--metrics-port=0", `--api-url=${url}`] });
  try {
    await waitFor(() => readListenRecord(agent.stateDir));
    await waitFor(() => api.vps.length >= 1);
    const viaEnv = await waitFor(async () => {
      const s = await status(empty, [], {
        AGENT_METRICS_ADDR: "127.0.0.1",
        AGENT_METRICS_PORT: String(metricsPort),
      });
      return s.code === 0 ? s : undefined;
    });
    assert.match(viaEnv.out, /HEALTHY/);

    const rec = await waitFor(() => readListenRecord(off.stateDir));
    assert.equal(rec.metrics, null);
    const disabled = await status(off.stateDir, []);
    assert.equal(disabled.code, 3);
    assert.match(disabled.err, /runs without a metrics port \(--metrics-port 0\)/);
  } finally {
    await agent.stop();
    await off.stop();
    await api.close();
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("dialAddress: wildcards map to loopback, IPv6 gets brackets", () => {
  assert.equal(dialAddress("0.0.0.0", 9102), "127.0.0.1:9102");
  assert.equal(dialAddress("::", 9102), "[::1]:9102");
  assert.equal(dialAddress("[::]", 1), "[::1]:1");
  assert.equal(dialAddress("10.0.0.5", 9102), "10.0.0.5:9102");
  assert.equal(dialAddress("fd00::1", 18000), "[fd00::1]:18000");
});
