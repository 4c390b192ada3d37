/**
 * The docs/ pages keep their shape and follow the code they describe: one title per page, the
 * index lists every page, and the least-privilege page explains every line of
 * deploy/permissions.flags.
 */
import assert from "node:assert/strict";
import { linkTargets, pages, prose, resolveFrom, ROOT } from "./support.ts";

const all = pages();

Deno.test("docs: every page has exactly one `#` title, first", () => {
  for (const page of all) {
    const titles = [...prose(page.text).matchAll(/^# .+$/gm)];
    assert.equal(titles.length, 1, `${page.path}: ${titles.length} titles`);
    assert.ok(page.text.startsWith("# "), `${page.path} starts with its title`);
  }
});

Deno.test("docs: the index docs/README.md links every page", () => {
  const index = all.find((p) => p.path === "docs/README.md")!;
  const linked = new Set(
    linkTargets(index.text).map((t) => resolveFrom(index.path, t.split("#")[0])),
  );
  for (const page of all) {
    if (page.path === "README.md" || page.path === "docs/README.md") continue;
    assert.ok(linked.has(page.path), `docs/README.md does not link ${page.path}`);
  }
});

Deno.test("docs/least-privilege.md explains every line of deploy/permissions.flags", () => {
  const doc = Deno.readTextFileSync(`${ROOT}docs/least-privilege.md`);
  const flags = Deno.readTextFileSync(`${ROOT}deploy/permissions.flags`).split("\n")
    .map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  assert.ok(flags.length >= 6);
  for (const flag of flags) {
    // The environment list is long: the page names it `--allow-env=<the agent's variables>`.
    const shown = flag.startsWith("--allow-env=") ? "--allow-env=<the agent's variables>" : flag;
    assert.ok(doc.includes(`| \`${shown}\``), `docs/least-privilege.md lacks a row for ${flag}`);
  }
});
