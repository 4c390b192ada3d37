/**
 * deploy/systemd/: `systemd-analyze verify` accepts the unit with no warning at all (systemd
 * exits 0 on "Unknown key" and parse warnings, so any output is a failure here), inside a
 * throw-away root that holds the unit, the system units it depends on, and the launcher we ship
 * at /usr/local/bin/sigma-agent (where the docs install the binary); `systemd-analyze security --offline` rates the sandbox; the example
 * environment file only sets variables the agent reads, with valid values.
 */
import assert from "node:assert/strict";
import { envNames, parseConfig } from "../../lib/core/config.ts";
import { requireTool, ROOT, run, skipWithout } from "./support.ts";

const UNIT = `${ROOT}deploy/systemd/sigma-agent.service`;
const ENV_EXAMPLE = `${ROOT}deploy/systemd/sigma-agent.env.example`;
const ignore = skipWithout("systemd-analyze", "systemd");
/** Exposure score (0 = locked down, 10 = unprotected) the unit must stay at or under. */
const MAX_EXPOSURE = 3.0;

/** `Key=Value` pairs of a unit section, in order (no continuation lines are used). */
function unitSettings(text: string, section: string): [string, string][] {
  const out: [string, string][] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) current = head[1];
    else if (current === section) {
      const eq = line.indexOf("=");
      out.push([line.slice(0, eq), line.slice(eq + 1)]);
    }
  }
  return out;
}

/**
 * A root directory for `systemd-analyze --root`: the unit (as `text`), the host's system units
 * (for its dependencies), and the shipped launcher at /usr/local/bin/sigma-agent.
 */
async function makeRoot(text: string): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "sigma-systemd-root-" });
  await Deno.mkdir(`${root}/etc/systemd/system`, { recursive: true });
  await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
  const cp = await run("cp", ["-a", "/usr/lib/systemd/system", `${root}/usr/lib/systemd/`]);
  assert.equal(cp.code, 0, cp.stderr);
  await Deno.writeTextFile(`${root}/etc/systemd/system/sigma-agent.service`, text);
  // The launcher is installed where the docs put the binary; a unit pointing elsewhere fails.
  await Deno.mkdir(`${root}/usr/local/bin`, { recursive: true });
  await Deno.copyFile(`${ROOT}deploy/bin/sigma-agent`, `${root}/usr/local/bin/sigma-agent`);
  await Deno.chmod(`${root}/usr/local/bin/sigma-agent`, 0o755);
  return root;
}

async function verify(text: string): Promise<{ code: number; output: string }> {
  const bin = requireTool("systemd-analyze", "systemd");
  const root = await makeRoot(text);
  try {
    const r = await run(bin, ["verify", "--man=no", `--root=${root}`, "sigma-agent.service"]);
    return { code: r.code, output: (r.stdout + r.stderr).trim() };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function exposure(text: string): Promise<number> {
  const bin = requireTool("systemd-analyze", "systemd");
  const root = await makeRoot(text);
  try {
    const r = await run(bin, [
      "security",
      "--offline=yes",
      "--no-pager",
      `--root=${root}`,
      "sigma-agent.service",
    ]);
    const m = /Overall exposure level for sigma-agent\.service: ([\d.]+)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    return Number(m[1]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test({
  name: "systemd: systemd-analyze verify accepts the unit without a single warning",
  ignore,
  async fn() {
    const r = await verify(await Deno.readTextFile(UNIT));
    assert.equal(r.code, 0, r.output);
    assert.equal(r.output, "", "no warnings");
  },
});

Deno.test({
  name: "systemd: verify catches typos, bad values and a missing binary",
  ignore,
  async fn() {
    const good = await Deno.readTextFile(UNIT);
    const broken: [string, string, RegExp][] = [
      ["a misspelt key", good.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"), /Unknown key/],
      [
        "a bad value",
        good.replace("ProtectSystem=strict", "ProtectSystem=stricter"),
        /ProtectSystem|protect system/i,
      ],
      ["a bad time", good.replace("RestartSec=5s", "RestartSec=5x"), /sec value|RestartSec/],
      [
        "a missing binary",
        good.replace(
          "ExecStart=/usr/local/bin/sigma-agent",
          "ExecStart=/usr/local/bin/sigma-agnet",
        ),
        /not executable/,
      ],
    ];
    for (const [what, text, re] of broken) {
      assert.notEqual(text, good, what);
      const r = await verify(text);
      assert.ok(r.code !== 0 || r.output !== "", `verify flags ${what}`);
      assert.match(r.output, re, what);
    }
  },
});

Deno.test({
  name: `systemd: the sandbox keeps the exposure level at or below ${MAX_EXPOSURE}`,
  ignore,
  async fn() {
    const text = await Deno.readTextFile(UNIT);
    const score = await exposure(text);
    assert.ok(score <= MAX_EXPOSURE, `exposure ${score}`);
    // The score measures the sandbox: without its options the unit is far more exposed.
    const sandbox =
      /^(NoNewPrivileges|ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|Protect\w+|Restrict\w+|LockPersonality|SystemCall\w+|CapabilityBoundingSet|DynamicUser|RemoveIPC|UMask)=.*\n/gm;
    const bare = text.replace(sandbox, "");
    assert.ok((await exposure(bare)) > score + 3, "removing the sandbox raises the exposure");
  },
});

Deno.test("systemd: the unit runs the binary with an env file and the required sandboxing", async () => {
  const text = await Deno.readTextFile(UNIT);
  const service = new Map(unitSettings(text, "Service"));
  assert.equal(service.get("ExecStart"), "/usr/local/bin/sigma-agent");
  assert.equal(service.get("EnvironmentFile"), "/etc/sigma-agent/sigma-agent.env");
  assert.equal(service.get("NoNewPrivileges"), "yes");
  assert.equal(service.get("ProtectSystem"), "strict");
  assert.equal(
    service.get("StateDirectory"),
    "sigma-agent",
    "/var/lib/sigma-agent, the only writable path",
  );
  // Exactly what `ss -p` needs to attribute other users' ports, nothing more.
  assert.equal(service.get("CapabilityBoundingSet"), "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH");
  assert.equal(service.get("AmbientCapabilities"), "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH");
  // V8 needs writable+executable pages: the option would kill the agent at start.
  assert.ok(!service.has("MemoryDenyWriteExecute"));
  assert.equal(new Map(unitSettings(text, "Install")).get("WantedBy"), "multi-user.target");
});

Deno.test("systemd: the example env file sets only the agent's variables, all valid", async () => {
  const env: Record<string, string> = {};
  for (const raw of (await Deno.readTextFile(ENV_EXAMPLE)).split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    assert.ok(m, `KEY=VALUE line: ${line}`);
    env[m[1]] = m[2];
  }
  const known = new Set(envNames());
  for (const k of Object.keys(env)) assert.ok(known.has(k), `${k} is read by the agent`);
  for (const k of ["SIGMA_API_URL", "SIGMA_API_KEY", "AGENT_ALLOCATE_TOKEN"]) {
    assert.ok(k in env, `${k} is in the example`);
  }
  const parsed = parseConfig([], env);
  assert.equal(parsed.kind, "config");
  if (parsed.kind === "config") {
    assert.equal(parsed.config.apiUrl, env.SIGMA_API_URL);
    assert.equal(parsed.config.xdsEnabled, true);
    assert.equal(parsed.config.portScan, true);
  }
});
