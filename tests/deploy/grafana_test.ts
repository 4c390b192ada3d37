/**
 * deploy/grafana/port-scan.json: the panels the seed and issue #6 ask for exist, every query is
 * valid PromQL (promtool parses it), and every metric and label it queries is one a real agent
 * exports (checked against the `/metrics` of a running agent).
 */
import assert from "node:assert/strict";
import { createMetrics } from "../../lib/core/metrics.ts";
import {
  expandGrafanaVariables,
  exportedNames,
  parseExposition,
  promqlSelectors,
  requireTool,
  ROOT,
  run,
  scrapeRealAgent,
  skipWithout,
} from "./support.ts";

const DASHBOARD = `${ROOT}deploy/grafana/port-scan.json`;

interface Target {
  expr?: string;
  refId?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  datasource?: { type?: string; uid?: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}

function loadDashboard(text = Deno.readTextFileSync(DASHBOARD)): Dashboard {
  return JSON.parse(text) as Dashboard;
}

/** Every PromQL expression of the dashboard with where it comes from. */
function queries(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of d.panels) {
    for (const t of p.targets ?? []) {
      if (t.expr !== undefined) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
    }
  }
  for (const v of d.templating.list) {
    const q = typeof v.query === "string" ? v.query : (v.query as { query?: string })?.query;
    const lv = q ? /^label_values\(\s*([^,]+),\s*(\w+)\s*\)$/.exec(q) : null;
    if (lv) out.push({ where: `variable ${v.name}`, expr: `${lv[1]}{${lv[2]}!=""}` });
    else if (q && v.type === "query") out.push({ where: `variable ${v.name}`, expr: q });
  }
  return out;
}

/** Problems: metrics a query uses that the exposition lacks, and labels the metric lacks. */
function unknownMetricsAndLabels(
  d: Dashboard,
  exported: Set<string>,
  labelsOf: (metric: string) => Set<string> | undefined,
): string[] {
  const problems: string[] = [];
  for (const { where, expr } of queries(d)) {
    for (const sel of promqlSelectors(expr)) {
      if (!exported.has(sel.metric)) {
        problems.push(`${where}: metric ${sel.metric} is not exported by the agent`);
        continue;
      }
      const known = labelsOf(sel.metric);
      for (const l of sel.labels) {
        if (known && !known.has(l)) problems.push(`${where}: ${sel.metric} has no label "${l}"`);
      }
    }
  }
  return problems;
}

/** Label names each metric can carry, from the agent's own metric definitions. */
function definedLabels(): (metric: string) => Set<string> | undefined {
  const m = createMetrics("h", "0.0.0");
  const byName = new Map<string, Set<string>>();
  for (const metric of m.registry.getMetricsAsArray()) {
    const names = new Set<string>([
      "hostname",
      ...((metric as unknown as { labelNames?: string[] }).labelNames ?? []),
    ]);
    const base = (metric as unknown as { name: string }).name;
    byName.set(base, names);
    for (const s of ["_bucket", "_sum", "_count"]) byName.set(base + s, new Set([...names, "le"]));
  }
  // Labels Prometheus adds at scrape time.
  for (const names of byName.values()) for (const l of ["job", "instance"]) names.add(l);
  return (metric) => byName.get(metric);
}

Deno.test("grafana: the dashboard has the seed's panels plus the xDS row", () => {
  const d = loadDashboard();
  assert.ok(d.uid && d.title);
  const ids = d.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  const usesMetric = (p: Panel, metric: string) =>
    (p.targets ?? []).some((t) => promqlSelectors(t.expr ?? "").some((s) => s.metric === metric));
  const stat = d.panels.filter((p) => p.type === "stat");
  for (
    const metric of [
      "sigma_ports_total",
      "sigma_ports_available",
      "sigma_ports_in_use",
      "sigma_port_scan_duration_seconds",
    ]
  ) {
    assert.ok(stat.some((p) => usesMetric(p, metric)), `a stat card shows ${metric}`);
  }
  assert.ok(
    stat.some((p) =>
      (p.targets ?? []).some((t) =>
        /1 - .*sigma_ports_available.*\/.*sigma_ports_total/.test(t.expr ?? "")
      )
    ),
    "a stat card shows utilization = 1 - available/total",
  );
  const series = d.panels.filter((p) => p.type === "timeseries");
  assert.ok(series.some((p) => usesMetric(p, "sigma_ports_available")), "availability over time");
  assert.ok(
    series.some((p) =>
      (p.targets ?? []).some((t) =>
        /by \(source\)/.test(t.expr ?? "") && /sigma_ports_used/.test(t.expr ?? "")
      )
    ),
    "usage by process over time",
  );
  assert.ok(
    d.panels.some((p) => p.type === "piechart" && usesMetric(p, "sigma_ports_used")),
    "pie by source",
  );
  const table = d.panels.find((p) => p.type === "table");
  assert.ok(
    table && (table.targets ?? []).every((t) => /by \(hostname\)/.test(t.expr ?? "")),
    "multi-host table",
  );
  const rows = d.panels.filter((p) => p.type === "row").map((p) => p.title);
  assert.ok(rows.some((r) => /xDS/.test(r)), "an xDS row");
  for (
    const metric of [
      "sigma_xds_connected_streams",
      "sigma_xds_pushes_total",
      "sigma_xds_nacks_total",
    ]
  ) {
    assert.ok(d.panels.some((p) => usesMetric(p, metric)), `an xDS panel uses ${metric}`);
  }
  const hostVar = d.templating.list.find((v) => v.name === "hostname");
  assert.equal(hostVar?.definition, "label_values(sigma_ports_total, hostname)");
  for (const p of d.panels.filter((p) => p.type !== "row")) {
    assert.equal(
      p.datasource?.uid,
      "${datasource}",
      `panel "${p.title}" uses the datasource variable`,
    );
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" fits the 24-column grid`);
  }
});

Deno.test("grafana: every query and label is one the real agent exports", async () => {
  const text = await scrapeRealAgent();
  const exported = exportedNames(parseExposition(text));
  const labels = definedLabels();
  assert.deepEqual(unknownMetricsAndLabels(loadDashboard(), exported, labels), []);

  // The same check rejects a dashboard that queries a metric the agent does not export, or a
  // label the metric does not have.
  const broken = loadDashboard(
    Deno.readTextFileSync(DASHBOARD)
      .replace("sum(sigma_ports_in_use{", "sum(sigma_ports_inuse{")
      .replace(
        "sum by (source) (sigma_ports_used{",
        'sum by (source) (sigma_ports_used{process=\\"x\\",',
      ),
  );
  const problems = unknownMetricsAndLabels(broken, exported, labels);
  assert.ok(
    problems.some((p) => p.includes("sigma_ports_inuse is not exported")),
    problems.join("\n"),
  );
  assert.ok(
    problems.some((p) => p.includes('sigma_ports_used has no label "process"')),
    problems.join("\n"),
  );
});

Deno.test({
  name: "grafana: every query is valid PromQL (promtool check rules)",
  ignore: skipWithout("promtool", "prometheus"),
  async fn() {
    const promtool = requireTool("promtool", "prometheus");
    const check = async (d: Dashboard) => {
      const rules = queries(d).map((q, i) => ({
        record: `dashboard:query_${i}`,
        expr: expandGrafanaVariables(q.expr),
      }));
      const dir = await Deno.makeTempDir({ prefix: "sigma-grafana-" });
      try {
        const file = `${dir}/rules.json`;
        // JSON is YAML: promtool reads it as a rule file.
        await Deno.writeTextFile(file, JSON.stringify({ groups: [{ name: "dashboard", rules }] }));
        return await run(promtool, ["check", "rules", file]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    };
    const ok = await check(loadDashboard());
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const broken = await check(
      loadDashboard(
        Deno.readTextFileSync(DASHBOARD).replace(
          "sum(sigma_ports_total{",
          "sum(sigma_ports_total{{",
        ),
      ),
    );
    assert.notEqual(broken.code, 0, "a syntax error in a panel query is caught");
  },
});

Deno.test("grafana: the PromQL selector extractor finds metrics, not functions or labels", () => {
  assert.deepEqual(
    promqlSelectors(
      'histogram_quantile(0.95, sum by (le, endpoint) (rate(sigma_x_bucket{hostname=~"$hostname", a!="b"}[$__rate_interval])))',
    ),
    [{ metric: "sigma_x_bucket", labels: ["hostname", "a"] }],
  );
  assert.deepEqual(
    promqlSelectors(
      '1 - sum(a{h="x"}) / sum(b) and on(h) c offset 5m unless ignoring(result) d > bool 1e3',
    ),
    [
      { metric: "a", labels: ["h"] },
      { metric: "b", labels: [] },
      { metric: "c", labels: [] },
      { metric: "d", labels: [] },
    ],
  );
  assert.deepEqual(promqlSelectors("time() - max by (hostname) (ts_seconds)"), [{
    metric: "ts_seconds",
    labels: [],
  }]);
});
