/**
 * The option table of docs/configuration.md is the one `deno task docs:options` renders from
 * `OPTIONS` in lib/core/config.ts: every option, its flag, environment variable, default and help.
 */
import assert from "node:assert/strict";
import { OPTIONS } from "../../lib/core/config.ts";
import {
  BEGIN,
  CONFIGURATION_PAGE,
  END,
  optionRows,
  optionsTable,
  regenerate,
  withOptionsTable,
} from "../../docs/generate_options.ts";
import { ROOT } from "./support.ts";

const page = Deno.readTextFileSync(CONFIGURATION_PAGE);

/** The cells of the committed table's body rows. */
function committedRows(): string[][] {
  const start = page.indexOf(BEGIN), end = page.indexOf(END);
  assert.ok(start >= 0 && end > start, "docs/configuration.md has the option table markers");
  return page.slice(start + BEGIN.length, end).trim().split("\n").slice(2)
    .map((line) => line.replace(/^\|\s*|\s*\|$/g, "").split(/\s+\|\s+/));
}

Deno.test("docs/configuration.md: the option table is the one generated from OPTIONS", () => {
  assert.equal(
    withOptionsTable(page),
    page,
    "the option table is stale: run `deno task docs:options`",
  );
});

Deno.test("docs/configuration.md: one row per option with its flag, env var and default", () => {
  const rows = committedRows();
  assert.equal(rows.length, OPTIONS.length);
  OPTIONS.forEach((o, i) => {
    const [flag, env, def, meaning] = rows[i];
    assert.equal(flag, `\`--${o.flag}\``);
    assert.equal(env, o.env ? `\`${o.env}\`` : "—");
    assert.equal(def, o.default === undefined ? "(none)" : `\`${o.default || '""'}\``);
    assert.ok(meaning.startsWith(o.help), `--${o.flag}: ${meaning}`);
    for (const c of o.choices ?? []) assert.ok(meaning.includes(`\`${c}\``), `--${o.flag}: ${c}`);
  });
  assert.deepEqual(rows, optionRows());
});

Deno.test("docs:options rewrites a stale table and leaves a fresh one alone", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/configuration.md`;
    Deno.writeTextFileSync(path, `# Configuration\n\n${BEGIN}\n\n| old |\n\n${END}\n\nafter\n`);
    assert.equal(regenerate(path), true);
    const text = Deno.readTextFileSync(path);
    assert.ok(text.includes(optionsTable()));
    assert.ok(!text.includes("| old |"));
    assert.ok(text.startsWith("# Configuration\n\n") && text.endsWith(`${END}\n\nafter\n`));
    assert.equal(regenerate(path), false);
    assert.throws(() => withOptionsTable("no markers"), /markers/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).tasks;
  assert.match(tasks["docs:options"], /docs\/generate_options\.ts$/);
});

Deno.test("docs/configuration.md: the generated table is already in `deno fmt` layout", async () => {
  const fmt = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--check", "docs/configuration.md"],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  });
  const { code, stderr } = await fmt.output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
});
