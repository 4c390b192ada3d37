/** docs/troubleshooting.md stays true: its check items are the ones `sigma-agent check` reports. */
import assert from "node:assert/strict";
import { runChecks } from "../../lib/check/mod.ts";
import { parseConfig } from "../../lib/core/config.ts";
import { freePort, ROOT } from "../helpers.ts";

Deno.test("troubleshooting: the documented check items are exactly the reported ones", async () => {
  const doc = await Deno.readTextFile(`${ROOT}docs/troubleshooting.md`);
  const table = doc.slice(doc.indexOf("| Item "), doc.indexOf("Sample ("));
  const documented = [...table.matchAll(/^\| `([^`]+)`/gm)].map((m) => m[1]);
  const dir = await Deno.makeTempDir();
  try {
    const parsed = parseConfig([
      `--state-dir=${dir}`,
      `--api-url=http://127.0.0.1:${freePort()}/api`,
      "--metrics-port=0",
    ], {});
    assert.equal(parsed.kind, "config");
    if (parsed.kind !== "config") return;
    const reported = [...new Set((await runChecks(parsed.config)).map((i) => i.item))];
    assert.deepEqual(documented, reported);
    // The sample's lines have the shape renderChecks prints.
    const sample = doc.slice(doc.indexOf("```text", doc.indexOf("Sample (")));
    const lines = sample.split("\n").slice(1, sample.split("\n").indexOf("```"));
    for (const l of lines.slice(0, -1)) assert.match(l, /^(ok|warn|fail) +\S+( \S+)? +\S/);
    assert.match(lines.at(-1)!, /^\d+ ok, \d+ warn, \d+ fail$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
