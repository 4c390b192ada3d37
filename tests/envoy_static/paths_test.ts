/**
 * Tests of the config path list: literal paths, globs, the file-name exclude, sorting and
 * de-duplication on a real temporary directory; node ids from file names.
 */
import assert from "node:assert/strict";
import {
  baseName,
  dirName,
  globToRegExp,
  resolveConfigPaths,
  staticNodeId,
} from "../../lib/envoy_static/paths.ts";

async function tree(files: string[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "envoy_paths_" });
  for (const f of files) {
    const p = `${dir}/${f}`;
    await Deno.mkdir(dirName(p), { recursive: true });
    await Deno.writeTextFile(p, "static_resources: {}\n");
  }
  return dir;
}

Deno.test("staticNodeId: envoy.yaml → static-<host>, others → static-<host>-<stem>", () => {
  assert.equal(staticNodeId("/etc/envoy/envoy.yaml", "myhost"), "static-myhost");
  assert.equal(staticNodeId("/etc/envoy/envoy.yml", "myhost"), "static-myhost");
  assert.equal(staticNodeId("/etc/envoy/envoy-relay.yaml", "myhost"), "static-myhost-envoy-relay");
  assert.equal(staticNodeId("/etc/envoy/envoy-exit.yaml", "myhost"), "static-myhost-envoy-exit");
  assert.equal(staticNodeId("edge.v2.yaml", "h"), "static-h-edge.v2");
  assert.equal(staticNodeId("/etc/envoy/envoy", "h"), "static-h");
});

Deno.test("globToRegExp: *, ?, classes, negation, no leading dot", () => {
  assert.ok(globToRegExp("envoy-*.yaml").test("envoy-relay.yaml"));
  assert.ok(!globToRegExp("envoy-*.yaml").test("envoy.yaml"));
  assert.ok(globToRegExp("*.yaml").test("envoy.yaml"));
  assert.ok(!globToRegExp("*.yaml").test(".envoy.yaml.swp.yaml"));
  assert.ok(!globToRegExp("*").test("..data"));
  assert.ok(globToRegExp(".*.yaml").test(".hidden.yaml"));
  assert.ok(globToRegExp("envoy-?.yaml").test("envoy-1.yaml"));
  assert.ok(!globToRegExp("envoy-?.yaml").test("envoy-12.yaml"));
  assert.ok(globToRegExp("envoy-[ab].yaml").test("envoy-b.yaml"));
  assert.ok(!globToRegExp("envoy-[!ab].yaml").test("envoy-a.yaml"));
  assert.ok(globToRegExp("envoy-[!ab].yaml").test("envoy-c.yaml"));
  assert.ok(globToRegExp("envoy-[0-9].yaml").test("envoy-7.yaml"));
  assert.ok(globToRegExp("a+b(c).yaml").test("a+b(c).yaml")); // regex characters are literal
  assert.ok(globToRegExp("x[.yaml").test("x[.yaml")); // unclosed class is literal
});

Deno.test("baseName and dirName", () => {
  assert.equal(baseName("/etc/envoy/envoy.yaml"), "envoy.yaml");
  assert.equal(baseName("envoy.yaml"), "envoy.yaml");
  assert.equal(dirName("/etc/envoy/envoy.yaml"), "/etc/envoy");
  assert.equal(dirName("envoy.yaml"), ".");
  assert.equal(dirName("/envoy.yaml"), "/");
});

Deno.test("resolveConfigPaths: literal + glob, sorted, de-duplicated, missing literal kept", async () => {
  const dir = await tree([
    "envoy.yaml",
    "envoy-relay.yaml",
    "envoy-exit.yaml",
    "notes.txt",
    ".envoy-hidden.yaml",
  ]);
  try {
    const { files, warnings } = await resolveConfigPaths([
      `${dir}/envoy.yaml`,
      `${dir}/envoy-*.yaml`,
      ` ${dir}//envoy-relay.yaml `, // same file spelled differently
      `${dir}/missing.yaml`,
      "",
    ]);
    assert.deepEqual(files, [
      `${dir}/envoy-exit.yaml`,
      `${dir}/envoy-relay.yaml`,
      `${dir}/envoy.yaml`,
      `${dir}/missing.yaml`,
    ]);
    assert.deepEqual(warnings, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveConfigPaths: exclude globs match the file name only, literal paths too", async () => {
  const dir = await tree([
    "envoy.yaml",
    "envoy-relay.yaml",
    "envoy-test.yaml",
    "envoy-relay.bak.yaml",
  ]);
  try {
    const { files } = await resolveConfigPaths(
      [`${dir}/*.yaml`, `${dir}/envoy-test.yaml`],
      "envoy-test*.yaml, *.bak.yaml",
    );
    assert.deepEqual(files, [`${dir}/envoy-relay.yaml`, `${dir}/envoy.yaml`]);
    // A pattern naming the directory never matches: only the name is compared.
    const { files: all } = await resolveConfigPaths([`${dir}/envoy.yaml`], `${baseName(dir)}*`);
    assert.deepEqual(all, [`${dir}/envoy.yaml`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolveConfigPaths: globs in directory segments, only files match", async () => {
  const dir = await tree(["a/envoy.yaml", "b/envoy.yaml", "b/sub.yaml/inner.yaml", "c/other.yaml"]);
  try {
    const { files } = await resolveConfigPaths([`${dir}/*/envoy.yaml`, `${dir}/b/*.yaml`]);
    assert.deepEqual(files, [`${dir}/a/envoy.yaml`, `${dir}/b/envoy.yaml`]); // b/sub.yaml is a directory
    const none = await resolveConfigPaths([`${dir}/nope/*.yaml`, `${dir}/*/nothing-*.yaml`]);
    assert.deepEqual(none.files, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
