/**
 * Code the running agent needs only in some configurations, or never, is not in `main.ts`'s
 * static import graph: it is loaded by `await import()` where it is used. A module once loaded
 * stays in memory for the life of the process (V8 keeps its source, Deno its module record), so
 * every static import of such a module costs idle memory on every host
 * (`deno task bench:footprint`). This test follows the value imports (not `import type`, which
 * the emit drops) from `main.ts` and fails when one of these modules is reachable.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT } from "../helpers.ts";

/** Modules the agent loads only when needed, and when that is. */
const LAZY: Record<string, string> = {
  "lib/tls/listener.ts": "TLS on the metrics port or the xDS port",
  "lib/http/web_config.ts": "--web-config-file",
  "lib/api/dev_server.ts": "--dev",
  "lib/status/cli.ts": "`sigma-agent status`",
  "lib/check/mod.ts": "`sigma-agent check`",
  "lib/xds/bootstrap.ts": "`sigma-agent envoy-bootstrap`",
};

/**
 * The relative specifiers a module imports at load time: static `import`/`export ... from`
 * statements that are not type-only (an `import { type A, type B }` is type-only too).
 */
export function staticValueImports(source: string): string[] {
  const out: string[] = [];
  const re = /^(?:import|export)\s+(type\s+)?([^;]*?)\s*from\s*"(\.[^"]+)";/gms;
  for (const m of source.matchAll(re)) {
    if (m[1]) continue;
    const named = /^\{([^}]*)\}$/s.exec(m[2].trim());
    if (named) {
      const names = named[1].split(",").map((n) => n.trim()).filter((n) => n !== "");
      if (names.length > 0 && names.every((n) => n.startsWith("type "))) continue;
    }
    out.push(m[3]);
  }
  for (const m of source.matchAll(/^import\s+"(\.[^"]+)";/gm)) out.push(m[1]);
  return out;
}

/** Every module reachable from `entry` through static value imports (paths relative to ROOT). */
function staticClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const path = todo.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const base = new URL(path, `file://${ROOT}`);
    for (const spec of staticValueImports(Deno.readTextFileSync(base))) {
      todo.push(new URL(spec, base).pathname.slice(ROOT.length));
    }
  }
  return seen;
}

Deno.test("staticValueImports skips type-only imports and keeps value imports", () => {
  const src = [
    'import type { A } from "./a.ts";',
    'import { type B, type C } from "./b.ts";',
    'import {\n  type D,\n  e,\n} from "./d.ts";',
    'import { f } from "../f.ts";',
    'export { g } from "./g.ts";',
    'export type { H } from "./h.ts";',
    'import "./side.ts";',
    'const x = await import("./lazy.ts");',
  ].join("\n");
  assert.deepEqual(staticValueImports(src), ["./d.ts", "../f.ts", "./g.ts", "./side.ts"]);
});

Deno.test("main.ts does not statically load modules needed only in some configurations", () => {
  const loaded = staticClosure("main.ts");
  assert.ok(loaded.has("lib/grpc/h2_server.ts") && loaded.size > 40, [...loaded].join(" "));
  const eager = Object.keys(LAZY).filter((m) => loaded.has(m));
  assert.deepEqual(
    eager,
    [],
    `loaded at start although needed only for: ${eager.map((m) => LAZY[m]).join("; ")}`,
  );
});
