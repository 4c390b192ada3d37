/**
 * compose.yaml: Debian's `docker-compose config` (schema validation and interpolation, no engine
 * needed) accepts it and rejects broken copies; the rendered services have what issue #6 asks
 * for, and the Envoy sidecar's bootstrap is strictly valid and points at the agent's ADS port.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { strictBootstrapFromYaml } from "../support/upstream_protos.ts";
import { requireTool, ROOT, run, skipWithout } from "./support.ts";
import { freePort, waitFor } from "../helpers.ts";

const ignore = skipWithout("docker-compose", "docker-compose");

interface Service {
  image?: string;
  network_mode?: string;
  pid?: string;
  user?: string;
  cap_add?: string[];
  cap_drop?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  command?: string[];
  entrypoint?: string[];
  profiles?: string[];
  depends_on?: unknown;
  healthcheck?: { test?: string[]; disable?: boolean };
}

async function composeConfig(
  dir: string,
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; services: Record<string, Service> }> {
  const bin = requireTool("docker-compose", "docker-compose");
  const r = await run(bin, ["--project-directory", dir, "-f", `${dir}/compose.yaml`, "config"], {
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: dir,
      AGENT_ALLOCATE_TOKEN: "compose-test-token",
      ...env,
    },
  });
  const services = r.code === 0
    ? (parseYaml(r.stdout) as { services: Record<string, Service> }).services
    : {};
  return { code: r.code, out: r.stdout + r.stderr, services };
}

function flagValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
  }
  return undefined;
}

Deno.test({
  name: "compose: docker-compose config accepts compose.yaml; the agent has host access",
  ignore,
  async fn() {
    const { code, out, services } = await composeConfig(ROOT.replace(/\/$/, ""));
    assert.equal(code, 0, out);
    const agent = services.agent;
    assert.equal(agent.network_mode, "host");
    assert.equal(agent.pid, "host");
    assert.ok(agent.cap_add?.includes("SYS_PTRACE"), "SYS_PTRACE for ss -p");
    assert.ok(
      agent.volumes?.includes("/etc/hostname:/etc/host_hostname:ro"),
      "host hostname, read-only",
    );
    assert.ok(agent.volumes?.some((v) => v.endsWith(":/var/lib/sigma-agent:rw")), "a state volume");
    const env = agent.environment ?? {};
    assert.equal(env.AGENT_DISK_PATH, "/etc/host_hostname");
    assert.equal(env.AGENT_XDS_ENABLED, "true");
    assert.equal(env.AGENT_ALLOCATE_TOKEN, "compose-test-token", "the allocate token is set");
    assert.ok(
      "SIGMA_API_URL" in env && "SIGMA_API_KEY" in env,
      "API settings come from the environment",
    );
    assert.equal(agent.profiles, undefined, "the agent runs without a profile");
    assert.equal(services.envoy.profiles, undefined, "the sidecar runs without a profile");
  },
});

Deno.test({
  name: "compose: the Envoy sidecar's bootstrap is strictly valid and targets the agent's ADS port",
  ignore,
  async fn() {
    const { code, out, services } = await composeConfig(ROOT.replace(/\/$/, ""));
    assert.equal(code, 0, out);
    const envoy = services.envoy;
    assert.equal(envoy.network_mode, "host");
    const inContainer = flagValue(envoy.command ?? [], "--config-path");
    assert.ok(inContainer, "envoy is started with --config-path");
    const mount = envoy.volumes?.find((v) => v.split(":")[1] === inContainer);
    assert.ok(mount, `the bootstrap ${inContainer} is mounted`);
    const hostFile = mount.split(":")[0];
    assert.equal(hostFile, `${ROOT}deploy/envoy/bootstrap.yaml`);
    // deno-lint-ignore no-explicit-any
    const b = strictBootstrapFromYaml(await Deno.readTextFile(hostFile)) as any;
    const sa = b.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint
      .address.socket_address;
    const agentEnv = services.agent.environment ?? {};
    assert.equal(
      String(sa.port_value),
      agentEnv.AGENT_XDS_PORT,
      "bootstrap port = agent's AGENT_XDS_PORT",
    );
    assert.equal(sa.address, agentEnv.AGENT_XDS_ADDR, "bootstrap address = agent's AGENT_XDS_ADDR");
    assert.ok(flagValue(envoy.command ?? [], "--service-node"), "the node id is set per host");
  },
});

Deno.test({
  name: "compose: the dev profile adds the dev API where the agent's default API URL points",
  ignore,
  async fn() {
    const { code, out, services } = await composeConfig(ROOT.replace(/\/$/, ""));
    assert.equal(code, 0, out);
    const dev = services["dev-api"];
    assert.deepEqual(dev.profiles, ["dev"]);
    assert.equal(dev.network_mode, "host");
    const script = (dev.entrypoint ?? []).find((a) => a.endsWith(".ts"));
    assert.equal(script, "/opt/sigma-agent/deploy/dev_api.ts");
    assert.ok((await Deno.stat(`${ROOT}deploy/dev_api.ts`)).isFile);
    const apiUrl = new URL(services.agent.environment!.SIGMA_API_URL);
    assert.equal(flagValue(dev.command ?? [], "--port"), apiUrl.port);
    assert.equal(flagValue(dev.command ?? [], "--hostname"), apiUrl.hostname);

    // With a real sigma-api configured, the agent follows the environment.
    const prod = await composeConfig(ROOT.replace(/\/$/, ""), {
      SIGMA_API_URL: "https://sigma.example.net/api",
      SIGMA_API_KEY: "sk_test",
    });
    assert.equal(prod.code, 0, prod.out);
    assert.equal(prod.services.agent.environment!.SIGMA_API_URL, "https://sigma.example.net/api");
    assert.equal(prod.services.agent.environment!.SIGMA_API_KEY, "sk_test");
  },
});

Deno.test({
  name: "compose: dev-api has a health check of its own, and it tells up from down for real",
  ignore,
  async fn() {
    const { code, out, services } = await composeConfig(ROOT.replace(/\/$/, ""));
    assert.equal(code, 0, out);
    const test = services["dev-api"].healthcheck?.test ?? [];
    // Not the image's HEALTHCHECK (`sigma-agent status`, which asks the agent).
    assert.equal(test[0], "CMD");
    assert.ok(!test.some((a) => /sigma-agent/.test(a)), JSON.stringify(test));
    const port = flagValue(services["dev-api"].command ?? [], "--port");
    assert.ok(port);
    assert.ok(test.includes(`--allow-net=127.0.0.1:${port}`), "network for that port only");
    assert.ok(test.some((a) => a.includes(`http://127.0.0.1:${port}/api/`)), "asks its own port");

    // Run the probe for real (the image's deno → this deno) against deploy/dev_api.ts.
    const free = String(freePort());
    const argv = test.slice(1).map((a) => a.replaceAll(`127.0.0.1:${port}`, `127.0.0.1:${free}`));
    assert.equal(argv[0], "/usr/local/bin/deno");
    const probe = () => run(Deno.execPath(), argv.slice(1), { cwd: "/" });
    assert.notEqual((await probe()).code, 0, "unhealthy while nothing listens");
    const api = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-net=127.0.0.1",
        `${ROOT}deploy/dev_api.ts`,
        `--port=${free}`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitFor(async () => (await probe()).code === 0, { message: "healthy once it serves" });
    } finally {
      api.kill("SIGTERM");
      await api.status;
    }
  },
});

Deno.test({
  name: "compose: docker-compose config rejects a broken compose.yaml",
  ignore,
  async fn() {
    const good = await Deno.readTextFile(`${ROOT}compose.yaml`);
    const broken: [string, string][] = [
      [
        "an unknown service key",
        good.replace("    network_mode: host\n    # See", "    network_mod: host\n    # See"),
      ],
      [
        "a wrong type",
        good.replace("    cap_add: [SYS_PTRACE, DAC_READ_SEARCH]", "    cap_add: 5"),
      ],
      ["bad YAML", good.replace("services:", "services: [")],
    ];
    for (const [what, text] of broken) {
      assert.notEqual(text, good, what);
      const dir = await Deno.makeTempDir({ prefix: "sigma-compose-" });
      try {
        await Deno.writeTextFile(`${dir}/compose.yaml`, text);
        const r = await composeConfig(dir);
        assert.notEqual(r.code, 0, `docker-compose config rejects ${what}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});

Deno.test({
  name:
    "compose: without an allocate token compose refuses to start (POST /ports/allocate never open)",
  ignore,
  async fn() {
    const r = await composeConfig(ROOT.replace(/\/$/, ""), { AGENT_ALLOCATE_TOKEN: "" });
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /set AGENT_ALLOCATE_TOKEN in \.env/);
  },
});
