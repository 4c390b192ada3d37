/**
 * A real Prometheus server (Debian's `/usr/bin/prometheus`, on loopback with a temporary data
 * dir) scrapes a real agent over TLS with a client certificate and basic auth, using
 * `deploy/prometheus/prometheus.yml` with its commented TLS block turned on: the HTTP API reports
 * `up == 1` for the agent, and the shipped alert rules load in that server.
 */
import assert from "node:assert/strict";
import bcrypt from "bcryptjs";
import { parse as parseYaml } from "yaml";
import { makeCerts } from "./certs.ts";
import { freePort, ROOT, spawnAgent, waitFor } from "../helpers.ts";

const PROM_DIR = `${ROOT}deploy/prometheus`;

/** The shipped scrape config with the TLS block uncommented and our files and target filled in. */
function tlsScrapeConfig(
  files: { ca: string; cert: string; key: string; password: string },
  target: string,
): string {
  const text = Deno.readTextFileSync(`${PROM_DIR}/prometheus.yml`);
  const lines = text.split("\n");
  const start = lines.findIndex((l) => l.includes("job_name: sigma-agent"));
  const end = lines.findIndex((l, i) => i > start && l.includes("static_configs:"));
  assert.ok(start > 0 && end > start, "the sigma-agent job and its static_configs");
  const block = lines.slice(start + 1, end).map((l) =>
    /^ {4}# ( {0,2}[a-z_]+:.*)$/.test(l) ? l.replace(/^( {4})# /, "$1") : l
  );
  const turned = [...lines.slice(0, start + 1), ...block, ...lines.slice(end)].join("\n")
    .replaceAll("/etc/prometheus/sigma-agent/ca.crt", files.ca)
    .replaceAll("/etc/prometheus/sigma-agent/client.crt", files.cert)
    .replaceAll("/etc/prometheus/sigma-agent/client.key", files.key)
    .replaceAll("/etc/prometheus/sigma-agent/password", files.password);
  // deno-lint-ignore no-explicit-any
  const doc = parseYaml(turned) as any;
  const job = doc.scrape_configs.find((j: { job_name: string }) => j.job_name === "sigma-agent");
  assert.equal(job.scheme, "https", "the shipped TLS block was uncommented");
  assert.equal(job.basic_auth.username, "prometheus");
  assert.equal(job.tls_config.cert_file, files.cert);
  // Only our loopback target, scraped every second; the Kubernetes job needs cluster DNS.
  job.static_configs = [{ targets: [target] }];
  doc.scrape_configs = [job];
  doc.global = { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "900ms" };
  return JSON.stringify(doc);
}

Deno.test("prometheus: a real Prometheus scrapes the agent over TLS + client cert + basic auth (up == 1) and loads the alert rules", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sigma-prom-tls-" });
  const certs = makeCerts(dir);
  const password = "scrape-password-7";
  Deno.writeTextFileSync(`${dir}/password`, password);
  Deno.writeTextFileSync(
    `${dir}/web-config.yml`,
    [
      "tls_server_config:",
      "  cert_file: server.crt",
      "  key_file: server.key",
      "  client_auth_type: RequireAndVerifyClientCert",
      "  client_ca_file: ca.crt",
      "basic_auth_users:",
      `  prometheus: "${bcrypt.hashSync(password, 4)}"`,
      "",
    ].join("\n"),
  );
  const agentPort = freePort();
  const agent = await spawnAgent({
    args: [
      "--metrics-addr=127.0.0.1",
      `--metrics-port=${agentPort}`,
      `--web-config-file=${dir}/web-config.yml`,
      "--api-url=http://127.0.0.1:9/api",
      "--api-timeout=1",
    ],
    etcDir: dir,
  });

  const promDir = `${dir}/prometheus`;
  Deno.mkdirSync(`${promDir}/data`, { recursive: true });
  Deno.copyFileSync(`${PROM_DIR}/alerts.yml`, `${promDir}/alerts.yml`);
  Deno.writeTextFileSync(
    `${promDir}/prometheus.yml`,
    tlsScrapeConfig(
      {
        ca: certs.caCert,
        cert: certs.clientCert,
        key: certs.clientKey,
        password: `${dir}/password`,
      },
      `127.0.0.1:${agentPort}`,
    ),
  );
  const promPort = freePort();
  const prom = new Deno.Command("prometheus", {
    args: [
      `--config.file=${promDir}/prometheus.yml`,
      `--storage.tsdb.path=${promDir}/data`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      "--log.level=warn",
    ],
    cwd: promDir,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const promLog = new Response(prom.stderr).text();
  prom.stdout.cancel();
  const api = (path: string) => fetch(`http://127.0.0.1:${promPort}${path}`).then((r) => r.json());
  try {
    type Sample = { metric: Record<string, string>; value: [number, string] };
    const up = await waitFor(async () => {
      const r = await api(`/api/v1/query?query=${encodeURIComponent('up{job="sigma-agent"}')}`);
      const s = (r.data?.result ?? []) as Sample[];
      return s.length === 1 && s[0].value[1] === "1" ? s[0] : undefined;
    }, { timeoutMs: 30_000, message: "Prometheus reports up == 1 for the agent" });
    assert.equal(up.metric.instance, `127.0.0.1:${agentPort}`);

    // The scraped series are the agent's (a metric only the agent exports).
    const build = await api(
      `/api/v1/query?query=${encodeURIComponent('sigma_agent_build_info{job="sigma-agent"}')}`,
    );
    assert.equal(build.data.result.length, 1);
    const targets = await api("/api/v1/targets");
    const t = targets.data.activeTargets[0];
    assert.equal(t.health, "up", JSON.stringify(t));
    assert.equal(t.scrapeUrl, `https://127.0.0.1:${agentPort}/metrics`);

    // The shipped alert rules loaded, every one healthy.
    const shipped = (parseYaml(Deno.readTextFileSync(`${PROM_DIR}/alerts.yml`)) as {
      groups: { rules: { alert: string }[] }[];
    }).groups.flatMap((g) => g.rules.map((r) => r.alert));
    const rules = await api("/api/v1/rules");
    const loaded = (rules.data.groups as { rules: { name: string; health: string }[] }[])
      .flatMap((g) => g.rules);
    assert.deepEqual(loaded.map((r) => r.name).sort(), [...shipped].sort());
    for (const r of loaded) assert.notEqual(r.health, "err", r.name);
  } finally {
    try {
      prom.kill("SIGTERM");
    } catch {
      // exited
    }
    const status = await prom.status;
    await agent.stop();
    const log = await promLog;
    await Deno.remove(dir, { recursive: true });
    assert.ok(status.code === 0 || status.signal === "SIGTERM", log);
  }
});
