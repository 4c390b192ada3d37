/**
 * Every relative link in README.md and docs/ resolves: the file or folder exists and, for a link
 * into a Markdown page, the `#anchor` is one of its headings. Every repository path the pages name
 * in code (`lib/…`, `tests/…`, `deploy/…`, …) exists too, so a moved file cannot leave a stale page.
 */
import assert from "node:assert/strict";
import {
  anchors,
  codeSpans,
  fencedBlocks,
  linkTargets,
  pages,
  resolveFrom,
  ROOT,
} from "./support.ts";

function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}${path}`);
    return true;
  } catch {
    return false;
  }
}

const all = pages();

Deno.test("docs: every relative link and anchor in README.md and docs/ resolves", () => {
  const broken: string[] = [];
  let checked = 0;
  for (const page of all) {
    for (const target of linkTargets(page.text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      const [path, fragment] = target.split("#", 2) as [string, string | undefined];
      const resolved = path === "" ? page.path : resolveFrom(page.path, path);
      checked++;
      if (!exists(resolved)) {
        broken.push(`${page.path}: ${target} → ${resolved} does not exist`);
        continue;
      }
      if (fragment !== undefined && resolved.endsWith(".md")) {
        const text = resolved === page.path
          ? page.text
          : Deno.readTextFileSync(`${ROOT}${resolved}`);
        if (!anchors(text).has(fragment)) {
          broken.push(`${page.path}: ${target} → no heading #${fragment} in ${resolved}`);
        }
      }
    }
  }
  assert.deepEqual(broken, []);
  assert.ok(checked > 100, `only ${checked} links checked`);
});

Deno.test("docs: every repository path named in README.md and docs/ exists", () => {
  const pathLike =
    /^(?:lib|tests|bench|deploy|proto|docs|\.ci)\/[\w./-]*$|^(?:main\.ts|Dockerfile|compose\.yaml|deno\.json)$/;
  const missing: string[] = [];
  let checked = 0;
  for (const page of all) {
    const words = [
      ...codeSpans(page.text).flatMap((s) => s.split(/[\s,]+/)),
      ...fencedBlocks(page.text).flatMap((b) => b.body.split(/\s+/)),
    ];
    for (const word of words) {
      if (!pathLike.test(word)) continue;
      checked++;
      if (!exists(word)) missing.push(`${page.path}: ${word}`);
    }
  }
  assert.deepEqual(missing, []);
  assert.ok(checked > 50, `only ${checked} paths checked`);
});

Deno.test("docs: the anchor rules match GitHub's", () => {
  const text = [
    "# Binary + systemd",
    "## Operator visibility: `/status`, the status page, `sigma-agent status`",
    "## Churn and NACK storm (`deno task bench:xds-churn`)",
    "## Tests",
    "## Tests",
    "```sh",
    "# not a heading",
    "```",
  ].join("\n");
  assert.deepEqual([...anchors(text)], [
    "binary--systemd",
    "operator-visibility-status-the-status-page-sigma-agent-status",
    "churn-and-nack-storm-deno-task-benchxds-churn",
    "tests",
    "tests-1",
  ]);
});
