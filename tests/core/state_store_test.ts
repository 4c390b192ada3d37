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
