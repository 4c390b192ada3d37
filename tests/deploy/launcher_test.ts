/**
 * The install tree the container image is built from: `deploy/install.sh` (the Dockerfile's build
 * stage runs it) installs the agent, and its launcher `bin/sigma-agent` (the image's ENTRYPOINT
 * and HEALTHCHECK) runs the agent with exactly the flags of deploy/permissions.flags — the one
 * definition `deno task start` and `deno task compile` use. Here the tree is really built and the
 * launcher really run: `--version`, `--help`, `envoy-bootstrap`, a short run against the dev
 * sigma-api with the production state dir, the `status` health check, and a non-root start with
 * an unwritable Deno cache (the image's USER and read-only root).
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/core/config.ts";
import { strictBootstrapFromYaml } from "../support/upstream_protos.ts";
import { canUseProductionStateDir, ROOT, run, shortRealRun, which } from "./support.ts";

const DENO_DIR_OF_TESTS = Deno.execPath().replace(/\/[^/]+$/, "");

Deno.test("launcher: one definition of the permission flags, used by start, compile and the launcher", () => {
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<
    string,
    string
  >;
  for (const name of ["start", "compile"]) {
    assert.match(
      tasks[name],
      /\$\(cat deploy\/permissions\.flags\)/,
      `${name} uses the flags file`,
    );
    assert.doesNotMatch(tasks[name], /--allow-|-A\b/, `${name} adds no permission of its own`);
  }
  assert.match(tasks.compile, /--output dist\/sigma-agent main\.ts/);
  const launcher = Deno.readTextFileSync(`${ROOT}deploy/bin/sigma-agent`);
  assert.match(launcher, /deploy\/permissions\.flags/);
  assert.doesNotMatch(
    launcher.replace(/^#.*$/gm, ""),
    /--allow-|-A\b/,
    "the launcher adds no permission",
  );
  const flags = Deno.readTextFileSync(`${ROOT}deploy/permissions.flags`).split("\n").filter((l) =>
    l.trim()
  );
  for (const f of flags) assert.match(f, /^--[a-z0-9-]+(=\S+)?$/, "one flag per line, no spaces");
  assert.ok(
    !flags.some((f) =>
      /^--allow-(all|ffi)\b/.test(f) || f === "--allow-run" || f === "--allow-read"
    ),
  );
});

Deno.test("launcher: install.sh builds a tree whose launcher runs the agent", async (t) => {
  const prefix = await Deno.makeTempDir({ prefix: "sigma-install-" });
  const env = { PATH: `${DENO_DIR_OF_TESTS}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` };
  const launcherEnv = { DENO: Deno.execPath(), NO_COLOR: "1" };
  const launcher = `${prefix}/bin/sigma-agent`;
  try {
    await t.step("install.sh installs sources, locked npm packages and the launcher", async () => {
      const r = await run("sh", [`${ROOT}deploy/install.sh`, prefix], { env });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok((Deno.statSync(launcher).mode ?? 0) & 0o100, "launcher is executable");
      for (
        const f of [
          "main.ts",
          "deno.lock",
          "deploy/permissions.flags",
          "deploy/dev_api.ts",
          "node_modules/prom-client/package.json",
        ]
      ) {
        assert.ok(Deno.statSync(`${prefix}/${f}`).isFile, f);
      }
      assert.throws(() => Deno.statSync(`${prefix}/tests`), "no tests in the image");
    });

    await t.step("--version and --help", async () => {
      const v = await run(launcher, ["--version"], { env: launcherEnv });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout.trim(), `sigma-agent ${VERSION}`);
      const h = await run(launcher, ["--help"], { env: launcherEnv });
      assert.equal(h.code, 0, h.stderr);
      assert.match(h.stdout, /--api-url/);
      assert.match(h.stdout, /envoy-bootstrap --node-id/);
      const bad = await run(launcher, ["--no-such-flag"], { env: launcherEnv });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /unknown flag --no-such-flag/);
    });

    await t.step(
      "envoy-bootstrap prints a strictly valid bootstrap for the agent's xDS port",
      async () => {
        const r = await run(launcher, ["envoy-bootstrap", "--node-id", "edge-1"], {
          env: { ...launcherEnv, AGENT_XDS_PORT: "18042" },
        });
        assert.equal(r.code, 0, r.stderr);
        // deno-lint-ignore no-explicit-any
        const b = strictBootstrapFromYaml(r.stdout) as any;
        assert.equal(b.node.id, "edge-1");
        assert.equal(
          b.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint
            .address
            .socket_address.port_value,
          18042,
        );
        const missing = await run(launcher, ["envoy-bootstrap"], { env: launcherEnv });
        assert.equal(missing.code, 2);
        assert.match(missing.stderr, /--node-id is required/);
      },
    );

    await t.step({
      name: "runs as a non-root user with an unwritable Deno cache (image USER, read-only root)",
      ignore: Deno.uid() !== 0 || !which("setpriv"),
      fn: async () => {
        const cache = await Deno.makeTempDir({ prefix: "sigma-ro-cache-" });
        // The test runner's deno may sit under /root (npx's cache), which the unprivileged user
        // cannot reach; give it a copy it can execute, as the image's /usr/local/bin would be.
        const bin = await Deno.makeTempDir({ prefix: "sigma-deno-bin-" });
        const deno = `${bin}/deno`;
        try {
          await Deno.copyFile(Deno.execPath(), deno);
          await Deno.chmod(deno, 0o755);
          await Deno.chmod(bin, 0o755);
          await Deno.chmod(cache, 0o555);
          await Deno.chmod(prefix, 0o755);
          const r = await run("setpriv", [
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            `DENO=${deno}`,
            `DENO_DIR=${cache}`,
            launcher,
            "--version",
          ]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.trim(), `sigma-agent ${VERSION}`);
        } finally {
          await Deno.remove(cache, { recursive: true });
          await Deno.remove(bin, { recursive: true });
        }
      },
    });

    await t.step({
      name: "a short real run with the production state dir; `status` is the health check",
      // The baked-in flags only allow /var/lib/sigma-agent, which only root may create.
      ignore: !canUseProductionStateDir(),
      fn: () => shortRealRun(launcher, launcherEnv),
    });
  } finally {
    await Deno.remove(prefix, { recursive: true });
  }
});
