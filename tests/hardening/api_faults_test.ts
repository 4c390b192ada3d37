/**
 * Fault injection: the agent process against a sigma-api that misbehaves on command. For every
 * fault the agent stays up, reports the condition in logs and metrics, and recovers when the API
 * does.
 */
import assert from "node:assert/strict";
import { DevApi, type Fault } from "../../lib/api/dev_server.ts";
import { freePort, spawnAgent, waitFor } from "../helpers.ts";

const FAULTS: { name: string; fault: Fault; log: RegExp }[] = [
  { name: "500 errors", fault: { status: 500 }, log: /HTTP 500: Internal error: injected/ },
  {
    name: "slow beyond the client timeout",
    fault: { delayMs: 2500, status: 200, body: "{}" },
    log: /: timed out after 1 s$/,
  },
  {
    name: "non-JSON body",
    fault: { status: 200, body: "<html>bad gateway</html>" },
    log: /not JSON: <html>bad gateway<\/html>/,
  },
  { name: "truncated JSON", fault: { status: 200, body: '{"id": "abc", "hostn' }, log: /not JSON/ },
  {
    name: "JSON of the wrong shape",
    fault: { status: 200, body: '{"unexpected": true}' },
    log: /unexpected response: VPS/,
  },
  {
    name: "huge body",
    fault: { status: 200, hugeBytes: 20 * 1024 * 1024 },
    log: /body larger than/,
  },
  { name: "401 rejected key", fault: { status: 401, body: "" }, log: /HTTP 401/ },
  {
    name: "429 with Retry-After",
    fault: { status: 429, retryAfter: "2" },
    log: /HTTP 429 \(rate limited\): Too Many Requests/,
  },
];

async function metric(port: number, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
}

Deno.test("every API fault: agent stays up, logs and counts it, recovers", async () => {
  const api = new DevApi();
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const port = freePort();
  const agent = await spawnAgent({
    args: [
      "--interval=1",
      "--api-timeout=1",
      `--metrics-port=${port}`,
      "--metrics-addr=127.0.0.1",
      "--hostname=faulty-1",
    ],
    env: { SIGMA_API_URL: url },
  });
  const failures = /sigma_agent_heartbeat_total\{[^}]*result="failure"[^}]*\} (\d+)/;
  try {
    await waitFor(() =>
      api.requests.some((r) => r.path === "/api/agent/heartbeat" && r.status === 200)
    );
    for (const { name, fault, log } of FAULTS) {
      const seen = agent.lines.length;
      const failedBefore = await metric(port, failures);
      api.fault = fault;
      const since = (from: number) =>
        agent.lines.slice(from).flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        });
      const rec = await waitFor(
        () =>
          since(seen).find((r) =>
            // A rejected key is logged at error level with what to do (issue 14).
            (r.msg === "heartbeat failed" || /rejected the API key/.test(String(r.msg))) &&
            log.test(String(r.error))
          ),
        { timeoutMs: 20_000, message: `${name}: failure logged` },
      );
      assert.ok(rec);
      assert.ok(await metric(port, failures) > failedBefore, `${name}: failure counted`);
      if (fault.status === 429) {
        const r429 = agent.records().slice(-5).find((r) =>
          r.msg === "heartbeat failed" && /429/.test(String(r.error))
        );
        assert.ok(
          r429 && (r429.retry_in_ms as number) >= 1000,
          `${name}: Retry-After honoured (capped at interval)`,
        );
      }
      const health = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
      assert.equal(health.status, "ok", `${name}: still alive`);
      api.fault = undefined;
      const okAfter = api.requests.length;
      await waitFor(
        () =>
          api.requests.slice(okAfter).some((r) =>
            r.path === "/api/agent/heartbeat" && r.status === 200
          ),
        { timeoutMs: 20_000, message: `${name}: recovered` },
      );
      assert.ok(agent.lines.length > seen);
    }
  } finally {
    api.fault = undefined;
    const st = await agent.stop();
    await api.close();
    assert.equal(st.code, 0);
  }
});

Deno.test("least privilege: state outside the granted directory fails closed: exit 2 before any write", async () => {
  const granted = await Deno.makeTempDir({ prefix: "sigma-granted-" });
  const outside = await Deno.makeTempDir({ prefix: "sigma-outside-" });
  // The permission flags grant `granted`; the agent is told to use `outside`. Grants are fixed
  // for the life of the process, so this could never heal: it is a configuration error (issue 14).
  const agent = await spawnAgent({
    stateDir: granted,
    args: ["--metrics-port=0", `--state-dir=${outside}`, "--hostname=lp-1"],
    env: { SIGMA_API_URL: "http://127.0.0.1:9/api" },
  });
  try {
    const st = await agent.status;
    assert.equal(st.code, 2);
    assert.match(agent.lines.join("\n"), /--state-dir .* is outside the permission grants/);
    assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside the grant");
  } finally {
    await Deno.remove(granted, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});
