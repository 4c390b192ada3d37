/**
 * deploy/prometheus/: the scrape config and alert rules pass `promtool check`, the alert unit
 * tests pass `promtool test rules` (and fail when a rule is broken), every metric the rules use is
 * exported by a real agent, and the real `/metrics` passes `promtool check metrics` apart from the
 * seed's gauge name `sigma_ports_total`.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import {
  assertPromtoolAcceptsMetrics,
  exportedNames,
  parseExposition,
  promqlSelectors,
  requireTool,
  ROOT,
  run,
  scrapeRealAgent,
  skipWithout,
} from "./support.ts";

const DIR = `${ROOT}deploy/prometheus`;
const ignore = skipWithout("promtool", "prometheus");

/** A temporary copy of deploy/prometheus with `edit` applied to alerts.yml. */
async function copyWithAlerts(edit: (text: string) => string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sigma-prom-" });
  for (const f of ["prometheus.yml", "alerts.yml", "alerts_test.yml"]) {
    await Deno.copyFile(`${DIR}/${f}`, `${dir}/${f}`);
  }
  const alerts = await Deno.readTextFile(`${DIR}/alerts.yml`);
  const edited = edit(alerts);
  assert.notEqual(edited, alerts, "the edit changes the rules");
  await Deno.writeTextFile(`${dir}/alerts.yml`, edited);
  return dir;
}

Deno.test({
  name: "prometheus: promtool check config and check rules accept the shipped files",
  ignore,
  async fn() {
    const promtool = requireTool("promtool", "prometheus");
    const config = await run(promtool, ["check", "config", "prometheus.yml"], { cwd: DIR });
    assert.equal(config.code, 0, config.stdout + config.stderr);
    assert.match(config.stdout, /1 rule files found/);
    const rules = await run(promtool, ["check", "rules", "alerts.yml"], { cwd: DIR });
    assert.equal(rules.code, 0, rules.stdout + rules.stderr);
  },
});

Deno.test({
  name: "prometheus: promtool test rules passes, and fails when a rule is broken",
  ignore,
  async fn() {
    const promtool = requireTool("promtool", "prometheus");
    const ok = await run(promtool, ["test", "rules", "alerts_test.yml"], { cwd: DIR });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /SUCCESS/);

    // Each mutation breaks one alert; the unit tests must notice every one.
    const mutations: [string, (t: string) => string][] = [
      ["pool threshold", (t) => t.replace("< 0.10", "< 0.01")],
      ["agent down delay", (t) => t.replace(/(alert: SigmaAgentDown\n.*\n\s+for: )5m/, "$115m")],
      [
        "heartbeat success ignored",
        (t) => t.replace('{result="success"}[10m]) > 0', '{result="success"}[10m]) > 100'),
      ],
      [
        "nack metric",
        (t) =>
          t.replace("increase(sigma_xds_nacks_total[10m])", "increase(sigma_xds_acks_total[10m])"),
      ],
      [
        "not-registered value",
        (t) => t.replace("sigma_agent_registered == 0", "sigma_agent_registered == 1"),
      ],
    ];
    for (const [what, edit] of mutations) {
      const dir = await copyWithAlerts(edit);
      try {
        const r = await run(promtool, ["test", "rules", "alerts_test.yml"], { cwd: dir });
        assert.notEqual(r.code, 0, `the unit tests catch a broken rule (${what})`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});

Deno.test("prometheus: alerts cover the four required conditions, on exported metrics", async () => {
  const doc = parseYaml(await Deno.readTextFile(`${DIR}/alerts.yml`)) as {
    groups: { rules: { alert: string; expr: string; labels: { severity: string } }[] }[];
  };
  const rules = doc.groups.flatMap((g) => g.rules);
  const uses = (metric: string) =>
    rules.some((r) => promqlSelectors(r.expr).some((s) => s.metric === metric));
  assert.ok(uses("up"), "agent down");
  assert.ok(
    uses("sigma_ports_available") && uses("sigma_ports_total"),
    "port pool nearly exhausted",
  );
  assert.ok(uses("sigma_agent_heartbeat_total"), "heartbeats failing");
  assert.ok(uses("sigma_xds_nacks_total"), "xDS NACKs");
  for (const r of rules) {
    assert.ok(["warning", "critical"].includes(r.labels.severity), `${r.alert} has a severity`);
  }

  const exported = exportedNames(parseExposition(await scrapeRealAgent()));
  exported.add("up"); // added by Prometheus for every target
  const unknown = rules.flatMap((r) =>
    promqlSelectors(r.expr).filter((s) => !exported.has(s.metric)).map((s) =>
      `${r.alert}: ${s.metric}`
    )
  );
  assert.deepEqual(unknown, []);
});

Deno.test({
  name: "prometheus: the real /metrics passes promtool check metrics (but for the seed's names)",
  ignore,
  async fn() {
    const promtool = requireTool("promtool", "prometheus");
    const text = await scrapeRealAgent();
    await assertPromtoolAcceptsMetrics(promtool, text);
  },
});
