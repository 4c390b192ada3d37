/**
 * Checks that the committed `proto/gen/` is exactly what `deno task proto` generates from `proto/`
 * (same files, byte for byte). Needs node/npm: buf and protoc-gen-es come from npm via npx.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { generateProtos, REPO_ROOT } from "../../proto/generate.ts";

async function listFiles(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  async function walk(d: string): Promise<void> {
    for await (const entry of Deno.readDir(d)) {
      const path = join(d, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile) files.set(relative(dir, path), await Deno.readFile(path));
    }
  }
  await walk(dir);
  return files;
}

Deno.test("proto/gen is up to date with proto/*.proto (run `deno task proto`)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "sigma-proto-gen-" });
  try {
    await generateProtos(tmp);
    const fresh = await listFiles(join(tmp, "proto", "gen"));
    const committed = await listFiles(join(REPO_ROOT, "proto", "gen"));
    assert.ok(fresh.size > 0, "generator produced no files");
    assert.deepEqual(
      [...committed.keys()].sort(),
      [...fresh.keys()].sort(),
      "proto/gen has missing or extra files; run `deno task proto`",
    );
    const decoder = new TextDecoder();
    for (const [path, bytes] of fresh) {
      assert.equal(
        decoder.decode(committed.get(path)),
        decoder.decode(bytes),
        `proto/gen/${path} is stale; run \`deno task proto\``,
      );
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
