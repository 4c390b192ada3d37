import assert from "node:assert/strict";
import { StateStore } from "../../lib/core/state_store.ts";

Deno.test("atomic JSON round trip, no temp files left, private mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(`${dir}/nested/state`);
    assert.equal(await store.read("vps.json"), undefined);
    await store.write("vps.json", { id: "a" });
    await store.write("vps.json", { id: "b" });
    assert.deepEqual(await store.read("vps.json"), { id: "b" });
    const names = [...Deno.readDirSync(`${dir}/nested/state`)].map((e) => e.name);
    assert.deepEqual(names, ["vps.json"]);
    assert.equal((await Deno.stat(`${dir}/nested/state/vps.json`)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corrupt file is an error the caller can ignore; bad names refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/x.json`, "{not json");
    const store = new StateStore(dir);
    await assert.rejects(() => store.read("x.json"), SyntaxError);
    assert.throws(() => store.path("../etc/passwd"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeParts: the file is exactly the parts joined, across buffer boundaries and in any script", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    // Pieces that straddle the 64 KiB encoding buffer: multi-byte characters, a surrogate pair
    // at every offset, a part longer than the buffer, empty parts.
    const parts = ["{", ""];
    for (let i = 0; i < 3000; i++) parts.push(`"k${i}":"ü東${"x".repeat(i % 37)}😀",`);
    parts.push(`"big":"${"é".repeat(100_000)}😀"`, "", "}");
    await store.writeParts("doc.json", parts);
    assert.equal(await Deno.readTextFile(`${dir}/doc.json`), parts.join(""));
    assert.equal((await store.read<Record<string, string>>("doc.json"))!.k7, "ü東xxxxxxx😀");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["doc.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeParts: a failure while writing leaves the old file and no temp file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new StateStore(dir);
    await store.write("doc.json", { v: 1 });
    const failing = function* (): Generator<string> {
      yield '{"v":';
      throw new Error("source gone");
    };
    await assert.rejects(() => store.writeParts("doc.json", failing()), /source gone/);
    assert.deepEqual(await store.read("doc.json"), { v: 1 });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["doc.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
