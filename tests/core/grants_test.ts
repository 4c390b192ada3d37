/**
 * Paths outside the permission grants are a configuration error (issue 14 §2): the agent, run
 * with its real permission flags, exits 2 at start with one line naming the option, the path,
 * the grant that would cover it and deploy/permissions.flags — and writes nothing anywhere.
 */
import assert from "node:assert/strict";
import { OPTIONS, parseConfig } from "../../lib/core/config.ts";
import { configuredPaths, globBase, PATH_OPTIONS } from "../../lib/core/grants.ts";
import { spawnAgent } from "../helpers.ts";

async function startFails(args: string[], envoyDir?: string) {
  const agent = await spawnAgent({ args: ["--metrics-port=0", ...args], envoyDir });
  // Exit at start is the point: an agent still running after 15 s fails the test (and is stopped).
  let timer: ReturnType<typeof setTimeout> | undefined;
  const st = await Promise.race([
    agent.status,
    new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), 15_000)),
  ]);
  clearTimeout(timer);
  if (!st) {
    await agent.stop();
    assert.fail(`the agent kept running:\n${agent.lines.join("\n")}`);
  }
  return { code: st.code, lines: agent.lines.filter((l) => l.trim() !== ""), agent };
}

Deno.test("grants: a state dir outside the grants stops the agent with exit 2 and one line", async () => {
  const outside = await Deno.makeTempDir({ prefix: "sigma-outside-" });
  try {
    const r = await startFails([
      `--state-dir=${outside}/state`,
      "--api-url=http://127.0.0.1:9/api",
    ]);
    assert.equal(r.code, 2);
    assert.deepEqual(r.lines, [
      `sigma-agent: --state-dir (AGENT_STATE_DIR) ${outside}/state is outside the permission ` +
      `grants: it needs --allow-read=${outside}/state --allow-write=${outside}/state (grants are ` +
      "defined in deploy/permissions.flags; add the path to the matching line there, or use a " +
      "path that is already granted)",
    ]);
    assert.deepEqual([...Deno.readDirSync(outside)], [], "nothing written outside the grant");
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("grants: an envoy config glob is checked at its base directory, only when sync is on", async () => {
  const envoyDir = await Deno.makeTempDir({ prefix: "sigma-envoy-granted-" });
  const outside = await Deno.makeTempDir({ prefix: "sigma-envoy-outside-" });
  try {
    const paths = `--envoy-config-path=${envoyDir}/envoy.yaml,${outside}/conf.d/*.yaml`;
    const r = await startFails(["--envoy-config-sync", paths], envoyDir);
    assert.equal(r.code, 2);
    assert.equal(r.lines.length, 1);
    assert.match(
      r.lines[0],
      new RegExp(
        `^sigma-agent: --envoy-config-path \\(AGENT_ENVOY_CONFIG_PATH\\) ${outside}/conf\\.d/\\*\\.yaml ` +
          `\\(glob base ${outside}/conf\\.d\\) is outside the permission grants: it needs ` +
          `--allow-read=${outside}/conf\\.d \\(grants are defined in deploy/permissions\\.flags`,
      ),
    );
    // With static sync off the path is not used, so it is not a problem: the agent starts.
    const agent = await spawnAgent({ args: ["--metrics-port=0", paths], envoyDir });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(!agent.lines.some((l) => l.includes("outside the permission grants")));
      assert.ok(
        agent.records().some((r) => r.msg === "sigma-agent starting"),
        agent.lines.join("\n"),
      );
    } finally {
      await agent.stop();
    }
  } finally {
    await Deno.remove(envoyDir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("grants: a disk path outside the grants, and two problems in one line", async () => {
  const outside = await Deno.makeTempDir({ prefix: "sigma-outside-" });
  try {
    const r = await startFails([`--state-dir=${outside}`, "--disk-path=/etc/passwd"]);
    assert.equal(r.code, 2);
    assert.equal(r.lines.length, 1);
    assert.match(r.lines[0], /--state-dir \(AGENT_STATE_DIR\)/);
    assert.match(r.lines[0], /\[and 1 more path\(s\): run `sigma-agent check`\]$/);
    const disk = await startFails(["--disk-path=/etc/passwd"]);
    assert.equal(disk.code, 2);
    assert.match(
      disk.lines[0],
      /--disk-path \(AGENT_DISK_PATH\) \/etc\/passwd .* --allow-read=\/etc\/passwd /,
    );
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("grants: every path option is in PATH_OPTIONS; globs reduce to their base directory", () => {
  assert.equal(globBase("/etc/envoy/*.yaml"), "/etc/envoy");
  assert.equal(globBase("/etc/envoy/conf.d/[ab]*/x.yaml"), "/etc/envoy/conf.d");
  assert.equal(globBase("*.yaml"), ".");
  assert.equal(globBase("/etc/envoy/envoy.yaml"), "/etc/envoy/envoy.yaml");
  const parsed = parseConfig(
    ["--envoy-config-sync", "--envoy-config-path=/a/*.yaml,/b/c.yaml"],
    {},
  );
  assert.equal(parsed.kind, "config");
  if (parsed.kind !== "config") return;
  assert.deepEqual(
    configuredPaths(parsed.config).map((p) => [p.key, p.grantPath, p.access.join("+")]),
    [
      ["stateDir", "/var/lib/sigma-agent", "read+write"],
      ["envoyConfigPath", "/a", "read"],
      ["envoyConfigPath", "/b/c.yaml", "read"],
      ["diskPath", "/etc/os-release", "read"],
    ],
  );
  // An option named like a path (…-path, -dir, -file, -cert, -key, -ca) that is not a secret must
  // be declared in PATH_OPTIONS, so a new file option cannot skip the grant check.
  const pathLike = OPTIONS.filter((o) =>
    /-(path|dir|file|cert|key|ca)$/.test(o.flag) && o.kind !== "secret"
  );
  assert.ok(pathLike.length >= 3);
  for (const o of pathLike) {
    assert.ok(PATH_OPTIONS.some((p) => p.key === o.key), `--${o.flag} is in PATH_OPTIONS`);
  }
});
