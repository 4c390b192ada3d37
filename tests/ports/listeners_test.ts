/**
 * Running the real `ss`: it sees a listener this test opens; a missing, failing, hanging or
 * forbidden `ss` is a clear SsError.
 */
import assert from "node:assert/strict";
import { readListeningPorts, SsError } from "../../lib/ports/listeners.ts";
import { freeBlock, holdSockets } from "./support.ts";

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

Deno.test("listeners: the real ss attributes a listener to its process", async () => {
  const { start: port } = freeBlock(1);
  const held = await holdSockets(["name:envoy", `listen:[::]:${port}`]);
  try {
    const ports = await readListeningPorts();
    assert.ok(ports.has(port), `ss lists port ${port}`);
    // Only root sees other processes' sockets (ss reads /proc/<pid>/fd).
    if (Deno.uid() === 0) assert.equal(ports.get(port), "envoy");
  } finally {
    await held.close();
  }
});

Deno.test("listeners: a missing ss is an SsError naming the package", async () => {
  await assert.rejects(
    readListeningPorts({ command: "/nonexistent/ss" }),
    (e: Error) => e instanceof SsError && /not found.*iproute2/.test(e.message),
  );
});

Deno.test("listeners: ss exiting non-zero is an SsError with its stderr", async () => {
  await assert.rejects(
    readListeningPorts({ args: ["--no-such-option"] }),
    (e: Error) => e instanceof SsError && /exited with \d+/.test(e.message),
  );
});

Deno.test("listeners: a hanging ss is killed after the timeout", async () => {
  const started = Date.now();
  await assert.rejects(
    readListeningPorts({ command: "sleep", args: ["30"], timeoutMs: 200 }),
    (e: Error) => e instanceof SsError && /timed out after 200 ms/.test(e.message),
  );
  assert.ok(Date.now() - started < 10_000);
});

Deno.test("listeners: without --allow-run=ss the error says which permission is missing", async () => {
  const mod = new URL("../../lib/ports/listeners.ts", import.meta.url).href;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    file,
    `import { readListeningPorts } from "${mod}";
     await readListeningPorts().then(() => console.log("ran"), (e) => console.log(e.name, e.message));`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", "--quiet", "--config", CONFIG, "--allow-run=ls", file],
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(file);
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /SsError not permitted to run ss.*--allow-run=ss/, text);
});
