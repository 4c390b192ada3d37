/**
 * The compiled binary: `deno task compile` → `dist/sigma-agent` with the flags of
 * deploy/permissions.flags baked in, then `--version`, `--help`, `envoy-bootstrap` and a short
 * real run against the dev sigma-api.
 *
 * `deno compile` needs Deno's runtime base (`denort`), which it downloads from dl.deno.land — not
 * a package registry, so unreachable on these machines. The test runs where a denort is at hand:
 * `DENORT_BIN` pointing at one (`DENORT_BIN=/path/to/denort deno task test`), or one already in
 * Deno's download cache. Elsewhere it is skipped with that explanation; launcher_test.ts runs the
 * same checks against the launcher the container image uses, with the same flags.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/core/config.ts";
import { strictBootstrapFromYaml } from "../support/upstream_protos.ts";
import { canUseProductionStateDir, ROOT, run, shortRealRun } from "./support.ts";

/** Where `deno compile` finds (or caches) its runtime base, if it is available offline. */
function denortAvailable(): boolean {
  const explicit = Deno.env.get("DENORT_BIN");
  if (explicit) {
    try {
      return Deno.statSync(explicit).isFile;
    } catch {
      return false;
    }
  }
  const denoDir = Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  const cached = `${denoDir}/dl/release/v${Deno.version.deno}/denort-x86_64-unknown-linux-gnu.zip`;
  try {
    return Deno.statSync(cached).isFile;
  } catch {
    console.warn(
      "skipping the compiled-binary test: deno compile needs denort from dl.deno.land, which is " +
        "unreachable here; set DENORT_BIN to a denort " + Deno.version.deno + " binary to run it",
    );
    return false;
  }
}

Deno.test({
  name: "binary: deno task compile builds dist/sigma-agent that runs the agent",
  ignore: !denortAvailable(),
  async fn(t) {
    const binary = `${ROOT}dist/sigma-agent`;
    await t.step("deno task compile", async () => {
      const r = await run(Deno.execPath(), ["task", "compile"], { cwd: ROOT });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok((Deno.statSync(binary).mode ?? 0) & 0o100, "executable");
    });
    const env = { NO_COLOR: "1" };
    await t.step("--version, --help, envoy-bootstrap", async () => {
      const v = await run(binary, ["--version"], { env });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout.trim(), `sigma-agent ${VERSION}`);
      const h = await run(binary, ["--help"], { env });
      assert.equal(h.code, 0, h.stderr);
      assert.match(h.stdout, /--api-url/);
      const b = await run(binary, ["envoy-bootstrap", "--node-id", "edge-1"], { env });
      assert.equal(b.code, 0, b.stderr);
      strictBootstrapFromYaml(b.stdout);
    });
    await t.step({
      name: "a short real run against the dev API (state under /var/lib/sigma-agent)",
      ignore: !canUseProductionStateDir(),
      fn: () => shortRealRun(binary, env),
    });
  },
});
