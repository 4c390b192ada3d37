/**
 * The shape of `lib/` (docs/architecture.md): no loose modules at the top, a `mod.ts` with a
 * module doc in every folder, and every import across folders allowed by that folder's
 * "May import:" line, so the one-way flow config → collectors and clients → state → servers is
 * checked, not just described.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT } from "../helpers.ts";

const LIB = `${ROOT}lib/`;

function folders(): string[] {
  return [...Deno.readDirSync(LIB)].filter((e) => e.isDirectory).map((e) => e.name).sort();
}

function modules(folder: string): string[] {
  return [...Deno.readDirSync(`${LIB}${folder}`)]
    .filter((e) => e.isFile && e.name.endsWith(".ts")).map((e) => e.name).sort();
}

/** The folders a `mod.ts` doc allows, and which of them only for types. */
export function allowedImports(modDoc: string): { any: Set<string>; typesOnly: Set<string> } {
  // The rule runs to the end of its paragraph or to the "Must not" sentence that follows it.
  const line = /^ \* May import: (.*(?:\n \* (?!Must not)\S.*)*)/m.exec(modDoc);
  if (!line) throw new Error("no 'May import:' line");
  const text = line[1].replace(/\n \* +/g, " ");
  const any = new Set<string>();
  const typesOnly = new Set<string>();
  for (const m of text.matchAll(/`([a-z_]+)(?:\/gen\/)?`( \(types only)?/g)) {
    (m[2] ? typesOnly : any).add(m[1]);
  }
  return { any, typesOnly };
}

/** Imports of a module that leave its folder: target folder and whether type-only. */
export function crossImports(
  source: string,
): { folder: string; typeOnly: boolean; spec: string }[] {
  const out = [];
  for (const m of source.matchAll(/^(import|export)( type)?[^;]*?from "(\.\.\/[^"]+)";/gms)) {
    const spec = m[3];
    // "../x/y.ts" is lib/x; "../../proto/gen/…" is the top-level proto/ folder.
    const folder = spec.split("/").filter((p) => p !== "..")[0];
    out.push({ folder, typeOnly: m[2] !== undefined, spec });
  }
  return out;
}

Deno.test("layout: lib/ has no loose modules; every module lives in a folder named for its job", () => {
  const loose = [...Deno.readDirSync(LIB)].filter((e) => e.isFile).map((e) => e.name);
  assert.deepEqual(loose, []);
});

Deno.test("layout: every lib/ folder has a mod.ts with a module doc that states its imports", () => {
  for (const folder of folders()) {
    const path = `${LIB}${folder}/mod.ts`;
    const doc = Deno.readTextFileSync(path);
    assert.match(doc, /^\/\*\*\n/, `${folder}/mod.ts starts with its module doc`);
    assert.match(doc, /@module/, `${folder}/mod.ts has @module`);
    assert.doesNotThrow(() => allowedImports(doc), `${folder}/mod.ts has a 'May import:' line`);
  }
});

Deno.test("layout: imports across lib/ folders are the ones each mod.ts allows", () => {
  const wrong: string[] = [];
  for (const folder of folders()) {
    const allowed = allowedImports(Deno.readTextFileSync(`${LIB}${folder}/mod.ts`));
    for (const file of modules(folder)) {
      for (const imp of crossImports(Deno.readTextFileSync(`${LIB}${folder}/${file}`))) {
        if (allowed.any.has(imp.folder)) continue;
        if (allowed.typesOnly.has(imp.folder) && imp.typeOnly) continue;
        wrong.push(`lib/${folder}/${file} imports ${imp.spec}`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("layout: the import rule is read as written (a folder not named is refused)", () => {
  const doc = "/**\n * May import: `core`, `status` (types only, in\n * `context.ts`), `api`.\n" +
    " * Must not import a feature (`ports`, `xds`).\n */";
  const allowed = allowedImports(doc);
  assert.deepEqual([...allowed.any], ["core", "api"]);
  assert.deepEqual([...allowed.typesOnly], ["status"]);
  const imports = crossImports(
    'import type { A } from "../status/board.ts";\nimport { B } from "../xds/cache.ts";\n',
  );
  assert.deepEqual(imports.map((i) => [i.folder, i.typeOnly]), [["status", true], ["xds", false]]);
});
