/**
 * The metric reference of docs/ports-and-metrics.md lists every metric the agent registers, with
 * its type and labels, and no page names a metric the agent does not export.
 */
import assert from "node:assert/strict";
import { createMetrics } from "../../lib/core/metrics.ts";
import { registerWebConfigMetrics, WebConfig } from "../../lib/http/web_config.ts";
import { pages, prose, ROOT } from "./support.ts";

interface Registered {
  name: string;
  type: string;
  labels: string[];
}

async function registered(): Promise<Registered[]> {
  const { registry } = createMetrics("docs-host", "0.0.0");
  // Registered beside the others when --web-config-file is set.
  const webConfig = await Deno.makeTempFile({ suffix: ".yml" });
  await Deno.writeTextFile(webConfig, "{}\n");
  registerWebConfigMetrics(registry, new WebConfig(webConfig));
  const out: Registered[] = [];
  for (const object of registry.getMetricsAsArray()) {
    // prom-client's metric classes: `get()` gives name and type, `labelNames` the declared labels.
    const metric = object as unknown as {
      get(): Promise<{ name: string; type: unknown }>;
      labelNames?: string[];
    };
    const { name, type } = await metric.get();
    const labels = metric.labelNames ?? [];
    out.push({ name, type: String(type), labels: [...labels] });
  }
  await Deno.remove(webConfig);
  return out;
}

/** Rows of the table under `## Metric reference`: the metric cell (name{labels}) and the type. */
function referenceRows(): Map<string, string> {
  const text = Deno.readTextFileSync(`${ROOT}docs/ports-and-metrics.md`);
  const start = text.indexOf("## Metric reference");
  assert.ok(start >= 0, "docs/ports-and-metrics.md has a Metric reference section");
  const section = text.slice(start).split(/\n## /)[0];
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([^`]+)` +\| (\w+) +\|/gm)) rows.set(m[1], m[2]);
  return rows;
}

Deno.test("docs: the metric reference lists every registered metric with its type and labels", async () => {
  const metrics = await registered();
  assert.ok(metrics.length >= 25, `${metrics.length} metrics`);
  const rows = referenceRows();
  const expected = new Map(
    metrics.map((m) => [m.labels.length ? `${m.name}{${m.labels.join(",")}}` : m.name, m.type]),
  );
  assert.deepEqual(rows, expected);
});

Deno.test("docs: every metric name a page mentions is one the agent exports", async () => {
  const names = (await registered()).map((m) => m.name);
  const known = (word: string) =>
    names.some((n) =>
      word === n || [`${n}_bucket`, `${n}_sum`, `${n}_count`].includes(word) ||
      (n.startsWith(word) && n[word.length] === "_") // a prefix, as in `grep '^sigma_port'`
    );
  const unknown: string[] = [];
  for (const page of pages()) {
    for (const m of page.text.matchAll(/\b(?:sigma|process)_[a-z0-9_]+/g)) {
      if (!known(m[0])) unknown.push(`${page.path}: ${m[0]}`);
    }
  }
  assert.deepEqual(unknown, []);
  // The pages do talk about metrics (so an empty match cannot pass silently).
  assert.ok(pages().some((p) => prose(p.text).includes("sigma_xds_nacks_total")));
});
