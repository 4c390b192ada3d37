import assert from "node:assert/strict";
import { createLogger } from "../../lib/core/log.ts";

Deno.test("json lines with level filter and child fields", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (l) => lines.push(l), now: () => new Date(0) });
  log.debug("hidden");
  log.child({ component: "xds" }).warn("nack", { node_id: "n1" });
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0]), {
    ts: "1970-01-01T00:00:00.000Z",
    level: "warn",
    msg: "nack",
    component: "xds",
    node_id: "n1",
  });
});

Deno.test("secrets are redacted everywhere, in both formats", () => {
  for (const format of ["json", "text"] as const) {
    const lines: string[] = [];
    const secret = "sk_sigma_deadbeef";
    const log = createLogger({
      format,
      secrets: [secret, undefined, ""],
      write: (l) => lines.push(l),
    });
    log.error(`failed with ${secret}`, {
      url: `http://x/?k=${secret}`,
      err: new Error(`bad ${secret}`),
    });
    assert.equal(lines.length, 1);
    assert.ok(!lines[0].includes(secret), lines[0]);
    assert.ok(lines[0].includes("<redacted>"));
  }
});

Deno.test("text format is human readable", () => {
  const lines: string[] = [];
  createLogger({ format: "text", write: (l) => lines.push(l), now: () => new Date(0) }).info(
    "hello",
    { a: 1 },
  );
  assert.equal(lines[0], "1970-01-01T00:00:00.000Z INFO  hello a=1");
});
