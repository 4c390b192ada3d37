/**
 * The agent's own modules (`main.ts`, `lib/**`) are Latin-1 text. V8 keeps the (transpiled)
 * source of every loaded module in the heap for the life of the process (lazy compilation needs
 * it); one character above U+00FF (an em dash in a comment) makes V8 store that whole string at
 * two bytes per character. Keeping the sources Latin-1 saves about 0.3 MB of idle heap
 * (`process_heap_bytes`; three times that under `--inspect`, where the inline source maps are
 * part of the source). A string the agent shows (`—`, `…`, `→`) is written as a `\u` escape,
 * which gives the same string at run time.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT } from "../helpers.ts";

/** Every `.ts` file under `dir` (relative to the repository root), recursively. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...tsFiles(path));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** `file:line:column char` for every character above U+00FF in `text`. */
export function nonLatin1(file: string, text: string): string[] {
  const found: string[] = [];
  text.split("\n").forEach((line, i) => {
    let col = 0;
    for (const ch of line) {
      col++;
      const code = ch.codePointAt(0)!;
      if (code > 0xff) {
        found.push(`${file}:${i + 1}:${col} U+${code.toString(16).toUpperCase().padStart(4, "0")}`);
      }
    }
  });
  return found;
}

Deno.test("nonLatin1 finds characters that make V8 store a source two bytes per character", () => {
  assert.deepEqual(nonLatin1("a.ts", "// caf\u00e9 \u00a7 \u00d7 ok\nconst s = '\\u2014';"), []);
  assert.deepEqual(nonLatin1("a.ts", "ok\n/** a \u2014 b \u2192 c */"), [
    "a.ts:2:7 U+2014",
    "a.ts:2:11 U+2192",
  ]);
});

Deno.test("main.ts and every module under lib/ are Latin-1 (one-byte V8 source strings)", () => {
  const files = ["main.ts", ...tsFiles("lib")];
  assert.ok(files.length > 50, `found only ${files.length} modules`);
  const found = files.flatMap((f) => nonLatin1(f, Deno.readTextFileSync(`${ROOT}${f}`)));
  assert.deepEqual(
    found,
    [],
    "write these as ASCII in comments (-, ..., ->, <=) or as \\u escapes in strings",
  );
});
