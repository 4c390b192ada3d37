/** The README's promises stay true: the quick start, every option, every task it names. */
import assert from "node:assert/strict";
import { OPTIONS } from "../../lib/core/config.ts";
import { ROOT } from "../helpers.ts";

const readme = Deno.readTextFileSync(`${ROOT}README.md`);
const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<string, string>;

Deno.test("README opens with the two quick-start commands, and .ci/run runs the test one verbatim", () => {
  const firstBlock = /```sh\n([^]*?)```/.exec(readme)![1];
  const commands = firstBlock.split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l);
  assert.deepEqual(commands, ["npx --yes deno@2.9.6 task dev", "npx --yes deno@2.9.6 task test"]);
  const ci = Deno.readTextFileSync(`${ROOT}.ci/run`);
  assert.ok(ci.split("\n").some((l) => l.trim() === "npx --yes deno@2.9.6 task test"));
});

Deno.test("README documents every flag and environment variable", () => {
  // The README is the front door; depth (e.g. docs/security.md) lives in docs/.
  const docs = [...Deno.readDirSync(`${ROOT}docs`)].filter((e) => e.name.endsWith(".md"))
    .map((e) => Deno.readTextFileSync(`${ROOT}docs/${e.name}`)).join("\n");
  const text = readme + docs;
  for (const o of OPTIONS) {
    assert.ok(text.includes(`--${o.flag}`), `--${o.flag}`);
    if (o.env) assert.ok(text.includes(o.env), o.env);
  }
});

Deno.test("every `deno task X` the README names exists", () => {
  const named = new Set(
    [...readme.matchAll(/deno(?:@2\.9\.6)? task ([a-z:-]+)/g)].map((m) => m[1]),
  );
  for (const t of named) assert.ok(t in tasks, `deno task ${t}`);
  assert.ok(named.size >= 6);
});

Deno.test("one Deno version everywhere", () => {
  assert.match(Deno.readTextFileSync(`${ROOT}Dockerfile`), /^ARG DENO_VERSION=2\.9\.6$/m);
  for (const f of [".ci/run", "Dockerfile", "README.md"]) {
    const text = Deno.readTextFileSync(`${ROOT}${f}`);
    const versions = new Set([...text.matchAll(/deno@(\d+\.\d+\.\d+)/g)].map((m) => m[1]));
    for (const v of versions) assert.equal(v, "2.9.6", `${f} pins deno ${v}`);
  }
});
