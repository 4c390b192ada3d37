/**
 * Regenerates the option table of `docs/configuration.md` from {@linkcode OPTIONS} in
 * `lib/core/config.ts`, the single source of truth for flags, environment variables and defaults.
 * Run it with `deno task docs:options` after adding or changing an option.
 *
 * The table sits between the {@linkcode BEGIN} and {@linkcode END} markers of the page; everything
 * else on the page is left alone. `tests/docs/configuration_test.ts` checks that the committed page
 * holds exactly the table this module renders.
 *
 * @example
 * ```ts
 * import { optionsTable } from "./generate_options.ts";
 * console.log(optionsTable()); // | Flag | Env var | Default | Meaning | …
 * ```
 *
 * @module
 */

import { OPTIONS } from "../lib/core/config.ts";

/** The page that carries the table. */
export const CONFIGURATION_PAGE: URL = new URL("./configuration.md", import.meta.url);
/** Opening marker of the generated table. */
export const BEGIN =
  "<!-- options:begin (generated from lib/core/config.ts: deno task docs:options) -->";
/** Closing marker of the generated table. */
export const END = "<!-- options:end -->";

/** The four cells of one option's row, as Markdown (flag, env var, default, meaning). */
export function optionRows(): string[][] {
  return OPTIONS.map((o) => {
    const def = o.default === undefined ? "(none)" : o.default === "" ? '`""`' : `\`${o.default}\``;
    const choices = o.choices ? ` (${o.choices.map((c) => `\`${c}\``).join(", ")})` : "";
    return [`\`--${o.flag}\``, o.env ? `\`${o.env}\`` : "—", def, `${o.help}${choices}`];
  });
}

/**
 * The option table as Markdown, columns padded the way `deno fmt` lays them out.
 *
 * @example
 * ```ts
 * import { optionsTable } from "./generate_options.ts";
 * optionsTable().split("\n").length; // header + separator + one line per option
 * ```
 */
export function optionsTable(): string {
  const rows = [["Flag", "Env var", "Default", "Meaning"], ...optionRows()];
  const widths = rows[0].map((_, i) => Math.max(3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  const separator = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(rows[0]), separator, ...rows.slice(1).map(line)].join("\n");
}

/**
 * `page` with the text between the markers replaced by the current table.
 *
 * @example
 * ```ts
 * import { BEGIN, END, withOptionsTable } from "./generate_options.ts";
 * withOptionsTable(`intro\n${BEGIN}\nold\n${END}\n`); // intro, markers, fresh table
 * ```
 */
export function withOptionsTable(page: string): string {
  const start = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (start < 0 || end < start) throw new Error(`the page lacks the markers ${BEGIN} … ${END}`);
  return `${page.slice(0, start + BEGIN.length)}\n\n${optionsTable()}\n\n${page.slice(end)}`;
}

/**
 * Rewrites the table in the page at `path` (default: `docs/configuration.md`); returns whether
 * anything changed.
 *
 * @example
 * ```ts
 * import { regenerate } from "./generate_options.ts";
 * if (regenerate()) console.log("docs/configuration.md updated");
 * ```
 */
export function regenerate(path: URL | string = CONFIGURATION_PAGE): boolean {
  const page = Deno.readTextFileSync(path);
  const updated = withOptionsTable(page);
  if (updated === page) return false;
  Deno.writeTextFileSync(path, updated);
  return true;
}

if (import.meta.main) {
  console.log(
    `docs/configuration.md: option table ${regenerate() ? "regenerated" : "up to date"}`,
  );
}
