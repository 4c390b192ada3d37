/**
 * The README's promises stay true: it opens with the two quick-start commands (which `.ci/run`
 * runs verbatim), stays a short front door, and every `deno task` it or a docs/ page names exists.
 * Every option is documented in docs/configuration.md (see configuration_test.ts).
 */
import assert from "node:assert/strict";
import { pages, ROOT } from "./support.ts";

const readme = Deno.readTextFileSync(`${ROOT}README.md`);
const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks as Record<string, string>;

/** The front door's length limit (issue 16): depth goes to docs/. */
const README_MAX_LINES = 250;

Deno.test("README opens with the two quick-start commands, and .ci/run runs the test one verbatim", () => {
  const firstBlock = /```sh\n([^]*?)```/.exec(readme)![1];
  const commands = firstBlock.split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l);
  assert.deepEqual(commands, ["npx --yes deno@2.9.6 task dev", "npx --yes deno@2.9.6 task test"]);
  const ci = Deno.readTextFileSync(`${ROOT}.ci/run`);
  assert.ok(ci.split("\n").some((l) => l.trim() === "npx --yes deno@2.9.6 task test"));
});

Deno.test(`README is a front door of at most ${README_MAX_LINES} lines`, () => {
  const lines = readme.endsWith("\n") ? readme.split("\n").length - 1 : readme.split("\n").length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines`);
});

Deno.test("README links every docs/ page", () => {
  const linked = new Set([...readme.matchAll(/\]\(docs\/([\w.-]+\.md)/g)].map((m) => m[1]));
  for (const page of pages()) {
    if (!page.path.startsWith("docs/") || page.path.split("/").length > 2) continue;
    const name = page.path.slice("docs/".length);
    assert.ok(linked.has(name), `README.md does not link docs/${name}`);
  }
});

Deno.test("every `deno task X` the README and docs/ name exists", () => {
  const named = new Set<string>();
  for (const page of pages()) {
    for (const m of page.text.matchAll(/deno(?:@2\.9\.6)? task ([a-z0-9:-]+)/g)) {
      assert.ok(m[1] in tasks, `${page.path}: deno task ${m[1]}`);
      named.add(m[1]);
    }
  }
  assert.ok(named.size >= 10, `${named.size} tasks named`);
});

Deno.test("one Deno version everywhere", () => {
  assert.match(Deno.readTextFileSync(`${ROOT}Dockerfile`), /^ARG DENO_VERSION=2\.9\.6$/m);
  const files = [".ci/run", "Dockerfile", ...pages().map((p) => p.path)];
  assert.ok(files.includes("README.md"));
  for (const f of files) {
    const text = Deno.readTextFileSync(`${ROOT}${f}`);
    const versions = new Set([...text.matchAll(/deno@(\d+\.\d+\.\d+)/g)].map((m) => m[1]));
    for (const v of versions) assert.equal(v, "2.9.6", `${f} pins deno ${v}`);
  }
});
