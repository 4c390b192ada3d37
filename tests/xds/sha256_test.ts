/** The synchronous SHA-256 of resource hashes against WebCrypto, at every padding boundary. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { sha256Hex } from "../../lib/xds/sha256.ts";

async function webcrypto(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes.slice()));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("sha256Hex equals WebCrypto for lengths 0..300 and random inputs, split or whole", async () => {
  for (let n = 0; n <= 300; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 131 + n) & 0xff);
    assert.equal(sha256Hex(bytes), await webcrypto(bytes), `length ${n}`);
  }
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.nat(), async (bytes, cut) => {
      const at = bytes.length ? cut % bytes.length : 0;
      const expected = await webcrypto(bytes);
      assert.equal(sha256Hex(bytes), expected);
      assert.equal(sha256Hex(bytes.subarray(0, at), bytes.subarray(at)), expected);
    }),
    { numRuns: 200 },
  );
});
