import assert from "node:assert/strict";
import { type Config, ConfigError, OPTIONS, parseConfig } from "../../lib/core/config.ts";
import { agentPermissionFlags, ROOT } from "../helpers.ts";
import { PROXY_ENV_VARS } from "../../lib/api/http1_client.ts";

function cfg(args: string[], env: Record<string, string> = {}): Config {
  const r = parseConfig(args, env);
  if (r.kind !== "config") throw new Error(`expected a config, got ${r.kind}`);
  return r.config;
}

Deno.test("defaults follow the seed table", () => {
  const c = cfg([]);
  assert.equal(c.apiUrl, "http://localhost:3000/api");
  assert.equal(c.apiKey, undefined);
  assert.equal(c.interval, 60);
  assert.equal(c.sshPort, 22);
  assert.equal(c.metricsPort, 9102);
  assert.equal(c.portScan, false);
  assert.deepEqual(c.portScanRange, { start: 10000, end: 30000 });
  assert.equal(c.portScanInterval, 60);
  assert.equal(c.xdsEnabled, false);
  assert.equal(c.xdsPort, 18000);
  assert.equal(c.xdsAddr, "127.0.0.1");
  assert.equal(c.xdsPollInterval, 10);
  assert.deepEqual(c.envoyConfigPath, ["/etc/envoy/envoy.yaml"]);
  assert.equal(c.envoyConfigSync, false);
  assert.equal(c.envoyConfigSyncInterval, 60);
  assert.equal(c.stateDir, "/var/lib/sigma-agent");
  assert.equal(c.apiTimeout, 10);
  assert.equal(c.allocateReservation, 30);
  assert.equal(c.logFormat, "json");
  assert.deepEqual(c.publicIpLookup, [
    "https://icanhazip.com",
    "https://ifconfig.me/ip",
    "https://api.ipify.org",
  ]);
});

Deno.test("precedence is flag > env > default", () => {
  assert.equal(cfg([], { AGENT_INTERVAL: "30" }).interval, 30);
  assert.equal(cfg(["--interval", "15"], { AGENT_INTERVAL: "30" }).interval, 15);
  assert.equal(cfg(["--interval=5"], { AGENT_INTERVAL: "30" }).interval, 5);
  assert.equal(
    cfg([], { SIGMA_API_URL: "https://api.example/api/" }).apiUrl,
    "https://api.example/api",
  );
  assert.equal(cfg(["--alias", "edge"], { AGENT_ALIAS: "x" }).alias, "edge");
  assert.equal(cfg([], { AGENT_STATE_DIR: "/srv/state" }).stateDir, "/srv/state");
  assert.deepEqual(cfg([], { AGENT_ENVOY_CONFIG_PATH: " /a.yaml, /b/*.yaml ,," }).envoyConfigPath, [
    "/a.yaml",
    "/b/*.yaml",
  ]);
  assert.deepEqual(cfg(["--public-ip-lookup="]).publicIpLookup, []);
});

Deno.test("booleans: bare flag, explicit values, env spellings", () => {
  assert.equal(cfg(["--port-scan"]).portScan, true);
  assert.equal(cfg(["--port-scan", "false"]).portScan, false);
  assert.equal(cfg(["--port-scan=false"], { AGENT_PORT_SCAN: "true" }).portScan, false);
  assert.equal(cfg([], { AGENT_XDS_ENABLED: "1" }).xdsEnabled, true);
  assert.equal(cfg([], { AGENT_XDS_ENABLED: "TRUE" }).xdsEnabled, true);
  assert.equal(cfg(["--xds-enabled", "--interval", "3"]).interval, 3);
});

Deno.test("invalid values name the flag or variable and the value", () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--api-url", "not a url"], {}, /--api-url="not a url"/],
    [[], { SIGMA_API_URL: "ftp://x" }, /SIGMA_API_URL="ftp:\/\/x".*http/],
    [["--metrics-port", "70000"], {}, /--metrics-port="70000".*0-65535/],
    [[], { AGENT_XDS_PORT: "-1" }, /AGENT_XDS_PORT="-1"/],
    [[], { AGENT_SSH_PORT: "22a" }, /AGENT_SSH_PORT="22a"/],
    [["--port-scan-range", "3000-2000"], {}, /--port-scan-range="3000-2000".*greater/],
    [[], { AGENT_PORT_SCAN_RANGE: "abc" }, /AGENT_PORT_SCAN_RANGE="abc".*START-END/],
    [[], { AGENT_PORT_SCAN_RANGE: "0-10" }, /1-65535/],
    [["--interval", "0"], {}, /--interval="0".*greater than 0/],
    [[], { AGENT_INTERVAL: "-5" }, /AGENT_INTERVAL="-5"/],
    [[], { AGENT_XDS_POLL_INTERVAL: "soon" }, /AGENT_XDS_POLL_INTERVAL="soon".*not a number/],
    [["--bogus"], {}, /unknown flag --bogus/],
    [[], { AGENT_PORT_SCAN: "maybe" }, /AGENT_PORT_SCAN="maybe".*boolean/],
    [["--port-scan=perhaps"], {}, /--port-scan="perhaps"/],
    [["--log-format", "xml"], {}, /--log-format="xml".*json, text/],
    [["--interval"], {}, /missing value for --interval/],
    [["stray"], {}, /unexpected argument "stray"/],
  ];
  for (const [args, env, re] of cases) {
    assert.throws(() => parseConfig(args, env), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${args} ${JSON.stringify(env)}`);
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("--help lists every option with its env var and default; --version prints it", () => {
  const r = parseConfig(["--help"], {});
  assert.equal(r.kind, "help");
  const text = (r as { text: string }).text;
  for (const o of OPTIONS) {
    assert.ok(text.includes(`--${o.flag}`), o.flag);
    if (o.env) assert.ok(text.includes(`[env: ${o.env}]`), o.env);
    if (o.default) assert.ok(text.includes(`[default: ${o.default}]`), `${o.flag} default`);
  }
  const v = parseConfig(["--version"], {});
  assert.equal(v.kind, "version");
  assert.match((v as { text: string }).text, /^sigma-agent \d+\.\d+\.\d+/);
});

Deno.test("the process exits 2 with one clear line on bad config", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...agentPermissionFlags(), `${ROOT}main.ts`, "--metrics-port=99999"],
    clearEnv: true,
    env: { AGENT_PORT_SCAN_RANGE: "10-5", PATH: Deno.env.get("PATH") ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.equal(err.split("\n").length, 1, err);
  assert.match(err, /--metrics-port="99999"/);
});

Deno.test("start task uses the permission file and never -A", () => {
  const deno = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  for (const task of ["start", "compile", "dev"]) {
    assert.match(deno.tasks[task], /\$\(cat deploy\/permissions\.flags\)/, task);
    assert.doesNotMatch(deno.tasks[task], /(^|\s)(-A|--allow-all)(\s|$)/, task);
  }
  const flags = agentPermissionFlags();
  assert.ok(
    flags.every((f) =>
      !/^(-A|--allow-all|--allow-ffi|--allow-run$|--allow-read$|--allow-write$)/.test(f)
    ),
  );
  assert.ok(flags.includes("--allow-run=ss"));
  assert.ok(flags.some((f) => f.startsWith("--allow-sys=")));
  // Every env var the agent reads is granted.
  const envFlag = flags.find((f) => f.startsWith("--allow-env="))!;
  const granted = envFlag.slice("--allow-env=".length).split(",").sort();
  // Exactly the agent's own variables (and the proxy variables the sigma-api client checks before
  // it bypasses fetch): nothing a dependency might read is granted on the side.
  assert.deepEqual(
    granted,
    [...OPTIONS.flatMap((o) => (o.env ? [o.env] : [])), ...PROXY_ENV_VARS].sort(),
  );
});
