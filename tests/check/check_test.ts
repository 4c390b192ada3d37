/**
 * `sigma-agent check` run as a real process with the agent's real permission flags, against real
 * failures of each kind (API down, wrong key, unwritable state dir, broken envoy.yaml, port in
 * use, path outside the grants, no `ss`) and a passing case. One process per case.
 */
import assert from "node:assert/strict";
import { DevApi } from "../../lib/api/dev_server.ts";
import { runChecks } from "../../lib/check/mod.ts";
import { parseConfig } from "../../lib/core/config.ts";
import { freePort, ROOT, spawnAgent } from "../helpers.ts";

const GOOD_YAML = await Deno.readTextFile(`${ROOT}tests/envoy_static/fixtures/basic.yaml`);

interface Item {
  item: string;
  status: "ok" | "warn" | "fail";
  detail: string;
  fix?: string;
}

interface Setup {
  api: DevApi;
  url: string;
  envoyDir: string;
  stateDir: string;
  close(): Promise<void>;
}

async function setup(): Promise<Setup> {
  const api = new DevApi({ apiKey: "sk_sigma_check_key" });
  const url = api.listen({ hostname: "127.0.0.1", port: 0 });
  const envoyDir = await Deno.makeTempDir({ prefix: "check-envoy-" });
  const stateDir = await Deno.makeTempDir({ prefix: "check-state-" });
  await Deno.writeTextFile(`${envoyDir}/envoy.yaml`, GOOD_YAML);
  return {
    api,
    url,
    envoyDir,
    stateDir,
    close: async () => {
      await api.close();
      await Deno.remove(envoyDir, { recursive: true });
      await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `main.ts check --json` with the agent's flags; returns the exit code and the items. */
async function check(
  s: Setup,
  extra: string[] = [],
  opts: { env?: Record<string, string>; stateDir?: string; json?: boolean } = {},
): Promise<{ code: number; items: Item[]; stdout: string; stderr: string }> {
  const p = await spawnAgent({
    args: [
      "check",
      ...(opts.json === false ? [] : ["--json"]),
      `--api-url=${s.url}`,
      "--envoy-config-sync",
      `--envoy-config-path=${s.envoyDir}/*.yaml`,
      "--xds-enabled",
      `--xds-port=${freePort()}`,
      "--metrics-addr=127.0.0.1",
      `--metrics-port=${freePort()}`,
      ...extra,
    ],
    env: { SIGMA_API_KEY: "sk_sigma_check_key", ...opts.env },
    stateDir: opts.stateDir ?? s.stateDir,
    envoyDir: s.envoyDir,
  });
  const st = await p.status;
  const stdout = p.stdout();
  const items = opts.json === false ? [] : (JSON.parse(stdout) as { items: Item[] }).items;
  return { code: st.code, items, stdout, stderr: p.lines.join("\n") };
}

function only(items: Item[], name: string): Item[] {
  return items.filter((i) => i.item === name);
}

function failures(items: Item[]): Item[] {
  return items.filter((i) => i.status === "fail");
}

Deno.test("check: a healthy setup passes (exit 0), every item ok or warn, routes counted", async () => {
  const s = await setup();
  try {
    const r = await check(s);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(failures(r.items), []);
    const names = new Set(r.items.map((i) => i.item));
    for (
      const n of [
        "config",
        "grants",
        "state dir",
        "sigma-api",
        "ss",
        "envoy config",
        "metrics port",
        "xds port",
        "system info",
      ]
    ) assert.ok(names.has(n), `item ${n}`);
    assert.match(only(r.items, "envoy config")[0].detail, /envoy\.yaml: 1 route\(s\)/);
    assert.match(only(r.items, "sigma-api")[0].detail, /accepts the API key/);
    assert.equal(only(r.items, "grants").length, 3, "state dir, envoy glob, disk path");
    assert.deepEqual([...Deno.readDirSync(s.stateDir)], [], "the probe file is removed");
    // The text form: one line per item and a summary; nothing failed.
    const text = await check(s, [], { json: false });
    assert.equal(text.code, 0);
    const lines = text.stdout.trim().split("\n");
    assert.equal(lines.length, r.items.length + 1);
    for (const l of lines.slice(0, -1)) assert.match(l, /^(ok|warn) {2,}\S/);
    assert.match(lines.at(-1)!, /^\d+ ok, \d+ warn, 0 fail$/);
  } finally {
    await s.close();
  }
});

Deno.test("check: sigma-api down and a rejected key fail with the URL, the cause and what to do", async () => {
  const s = await setup();
  try {
    const closed = freePort();
    const down = await check(s, [`--api-url=http://127.0.0.1:${closed}/api`]);
    assert.equal(down.code, 1);
    const [api] = failures(down.items);
    assert.equal(api.item, "sigma-api");
    assert.equal(
      api.detail,
      `GET http://127.0.0.1:${closed}/api/envoy-nodes?page=1&per_page=1: connection refused`,
    );
    assert.match(api.fix!, /--api-url/);

    const wrong = await check(s, [], { env: { SIGMA_API_KEY: "sk_sigma_wrong" } });
    assert.equal(wrong.code, 1);
    const [key] = failures(wrong.items);
    assert.equal(key.item, "sigma-api");
    assert.match(key.detail, /: HTTP 401 \(API key rejected: check SIGMA_API_KEY\)/);
    assert.ok(!wrong.stdout.includes("sk_sigma_wrong"), "the key is never printed");
    assert.ok(s.api.requests.length >= 1, "the API was asked");
    assert.ok(
      s.api.requests.every((r) => r.method === "GET" && r.path === "/api/envoy-nodes"),
      "read-only calls only",
    );
    assert.equal(s.api.vps.length, 0, "nothing registered");
  } finally {
    await s.close();
  }
});

Deno.test("check: an unwritable state dir, a broken envoy.yaml and a port in use each fail", async () => {
  const s = await setup();
  try {
    // A state dir that is a file cannot be written, whoever runs the check (root included).
    const file = `${s.stateDir}/not-a-dir`;
    await Deno.writeTextFile(file, "");
    const st = await check(s, [`--state-dir=${file}`], { stateDir: s.stateDir });
    assert.equal(st.code, 1);
    assert.deepEqual(failures(st.items).map((i) => i.item), ["state dir"]);
    assert.match(failures(st.items)[0].detail, /not-a-dir is not writable/);

    await Deno.writeTextFile(`${s.envoyDir}/envoy-broken.yaml`, "static_resources:\n  - [\n");
    const broken = await check(s);
    assert.equal(broken.code, 1);
    const [bad] = failures(broken.items);
    assert.equal(bad.item, "envoy config");
    assert.match(bad.detail, /envoy-broken\.yaml:\d+/);
    assert.equal(
      only(broken.items, "envoy config").filter((i) => i.status === "ok").length,
      1,
      "the good file is still counted",
    );
    await Deno.remove(`${s.envoyDir}/envoy-broken.yaml`);

    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (held.addr as Deno.NetAddr).port;
    try {
      const busy = await check(s, [`--metrics-port=${port}`]);
      assert.equal(busy.code, 1);
      const [inUse] = failures(busy.items);
      assert.equal(inUse.item, "metrics port");
      assert.equal(inUse.detail, `127.0.0.1:${port} is already in use`);
      assert.match(inUse.fix!, /--metrics-port/);
    } finally {
      held.close();
    }
  } finally {
    await s.close();
  }
});

Deno.test("check: a path outside the grants fails with the grant that would cover it; no ss fails a port scan", async () => {
  const s = await setup();
  try {
    const outside = await check(s, ["--disk-path=/etc/passwd"]);
    assert.equal(outside.code, 1);
    const [g] = failures(outside.items);
    assert.equal(g.item, "grants");
    assert.match(
      g.detail,
      /^--disk-path \(AGENT_DISK_PATH\) \/etc\/passwd is outside the permission grants: it needs --allow-read=\/etc\/passwd \(grants are defined in deploy\/permissions\.flags/,
    );

    const noSs = await check(s, ["--port-scan"], { env: { PATH: "/nonexistent" } });
    assert.equal(noSs.code, 1);
    const [ss] = failures(noSs.items);
    assert.equal(ss.item, "ss");
    assert.match(ss.detail, /ss not found/);
    assert.match(ss.fix!, /iproute2/);

    const badConfig = await check(s, ["--interval=soon"]);
    assert.equal(badConfig.code, 1);
    assert.deepEqual(badConfig.items.map((i) => [i.item, i.status]), [["config", "fail"]]);
    assert.match(badConfig.items[0].detail, /--interval="soon"/);
  } finally {
    await s.close();
  }
});

const isRoot = (() => {
  const out = new Deno.Command("id", { args: ["-u"], stdout: "piped" }).outputSync();
  return new TextDecoder().decode(out.stdout).trim() === "0";
})();

Deno.test({
  name: "check: ss run as an unprivileged user cannot name root's listener, and says so (warn)",
  ignore: !isRoot,
  async fn() {
    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 }); // owned by root
    const dir = await Deno.makeTempDir();
    // The real ss, run as nobody: it sees the socket but not its process.
    const wrapper = `${dir}/ss-as-nobody`;
    await Deno.writeTextFile(
      wrapper,
      '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups ss "$@"\n',
    );
    await Deno.chmod(wrapper, 0o755);
    try {
      const parsed = parseConfig(["--state-dir", dir, "--api-url=http://127.0.0.1:9/api"], {});
      assert.equal(parsed.kind, "config");
      if (parsed.kind !== "config") return;
      const items = await runChecks(parsed.config, { ssCommand: wrapper });
      const ss = items.find((i) => i.item === "ss")!;
      assert.equal(ss.status, "warn", ss.detail);
      assert.match(ss.detail, /listening ports show no process/);
      assert.match(ss.fix!, /CAP_SYS_PTRACE/);
      // As root, the same ss names more owners (all of them, unless another PID namespace hides some).
      const hidden = (i: { detail: string }) =>
        Number(/(\d+) of \d+ listening/.exec(i.detail)?.[1] ?? 0);
      const asRoot = (await runChecks(parsed.config, {})).find((i) => i.item === "ss")!;
      assert.ok(hidden(ss) > hidden(asRoot), `${ss.detail} / ${asRoot.detail}`);
    } finally {
      held.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
