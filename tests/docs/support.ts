/**
 * Reading the documentation for the doc tests: the pages (README.md and docs/**.md), their text
 * without code, their links, their headings as GitHub anchors, and the repository paths they name.
 *
 * @module
 */

import { ROOT } from "../helpers.ts";

export { ROOT };

/** One documentation page: its path relative to the repository root and its text. */
export interface Page {
  path: string;
  text: string;
}

/** README.md and every Markdown page under docs/, sorted by path. */
export function pages(): Page[] {
  const found: string[] = ["README.md"];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) walk(rel);
      else if (e.name.endsWith(".md")) found.push(rel);
    }
  };
  walk("docs");
  return found.sort().map((path) => ({ path, text: Deno.readTextFileSync(`${ROOT}${path}`) }));
}

/** The page's fenced code blocks, each with its info string. */
export function fencedBlocks(text: string): { lang: string; body: string }[] {
  return [...text.matchAll(/^```([^\n]*)\n([^]*?)^```/gm)].map((m) => ({
    lang: m[1].trim(),
    body: m[2],
  }));
}

/** The page's prose: fenced code blocks and HTML comments removed. */
export function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[^]*?^```/gm, "").replace(/<!--[^]*?-->/g, "");
}

/** The inline code spans of the prose. */
export function codeSpans(text: string): string[] {
  return [...prose(text).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
}

/** Every Markdown link and image target in the prose. */
export function linkTargets(text: string): string[] {
  const withoutCode = prose(text).replace(/`[^`\n]*`/g, "code");
  return [...withoutCode.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]);
}

/**
 * The anchors GitHub generates for the page's headings: the rendered text lower-cased, everything
 * but letters, digits, spaces, `_` and `-` dropped, spaces turned into `-`, duplicates numbered.
 */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(text).matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const rendered = m[1].replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/[`*]/g, "");
    const base = rendered.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Resolves `target` (relative to the page `from`) to a path relative to the repository root. */
export function resolveFrom(from: string, target: string): string {
  const url = new URL(target, `file:///repo/${from}`);
  return decodeURIComponent(url.pathname.slice("/repo/".length));
}
