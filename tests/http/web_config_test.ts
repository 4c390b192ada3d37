/**
 * `--web-config-file` (exporter-toolkit format) on the metrics port, checked with real clients
 * against a real agent process: `curl` and `openssl s_client` for TLS versions, client
 * certificates (accepted, missing, wrong CA), HTTP Basic auth (right, wrong, missing), the
 * configured headers, `/healthz` without credentials, the allocate token on top of basic auth,
 * and reloads (users, certificates, a broken file keeping the last good one: log, `/status`,
 * metric). Unsupported settings stop the agent at start with exit 2.
 */
import assert from "node:assert/strict";
import bcrypt from "bcryptjs";
import { parseWebConfig, WebConfigError } from "../../lib/http/web_config.ts";
import { makeCerts, makeLeaf, type TestCerts } from "../security/certs.ts";
import { type AgentProcess, freePort, spawnAgent, waitFor } from "../helpers.ts";

const dec = new TextDecoder();

/** Runs a command; resolves with its exit code and output. */
export async function run(
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).spawn();
  if (stdin !== undefined) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await p.output();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

/** curl's arguments to trust `ca` and present the client certificate `cert` with its `key`. */
function tlsClient(ca: string, cert: string, key: string): string[] {
  return ["--cacert", ca, "--cert", cert, "--key", key];
}

/** `curl` against the agent: status code (0 when no HTTP response), headers, body. */
export async function curl(
  url: string,
  args: string[],
): Promise<{ status: number; headers: string; body: string; stderr: string }> {
  const r = await run("curl", ["-sS", "--max-time", "10", "-D", "-", ...args, url]);
  const split = r.stdout.indexOf("\r\n\r\n");
  const headers = split < 0 ? r.stdout : r.stdout.slice(0, split);
  const m = /^HTTP\/1\.1 (\d{3})/.exec(headers);
  return {
    status: m ? Number(m[1]) : 0,
    headers: headers.toLowerCase(),
    body: split < 0 ? "" : r.stdout.slice(split + 4),
    stderr: r.stderr,
  };
}

/** `openssl s_client` handshake: the negotiated protocol, or undefined when refused. */
async function handshake(port: number, args: string[]): Promise<string | undefined> {
  const r = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
    "-ign_eof",
    ...args,
  ], "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  // A completed handshake and an answer: "Protocol: TLSv1.3" and the HTTP response.
  if (!/HTTP\/1\.1 \d{3}/.test(r.stdout)) return undefined;
  return /Protocol *: *(TLSv1\.\d)/.exec(r.stdout)?.[1] ?? /New, (TLSv1\.\d)/.exec(r.stdout)?.[1];
}

const PASSWORD = "correct horse battery staple";

async function startAgent(
  certs: TestCerts,
  webConfig: string,
  extra: string[] = [],
): Promise<{ agent: AgentProcess; port: number; file: string }> {
  const file = `${certs.dir}/web-config.yml`;
  Deno.writeTextFileSync(file, webConfig);
  const port = freePort();
  const agent = await spawnAgent({
    args: [
      "--metrics-addr=127.0.0.1",
      `--metrics-port=${port}`,
      `--web-config-file=${file}`,
      "--api-url=http://127.0.0.1:9/api",
      "--api-timeout=1",
      ...extra,
    ],
    etcDir: certs.dir,
  });
  return { agent, port, file };
}

function mtlsConfig(users: Record<string, string>): string {
  return [
    "tls_server_config:",
    "  cert_file: server.crt", // relative: to the file's directory, as exporter-toolkit does
    "  key_file: server.key",
    "  client_auth_type: RequireAndVerifyClientCert",
    "  client_ca_file: ca.crt",
    "  min_version: TLS13",
    "http_server_config:",
    "  headers:",
    "    X-Frame-Options: deny",
    "    Strict-Transport-Security: max-age=31536000",
    "basic_auth_users:",
    ...Object.entries(users).map(([u, h]) => `  ${u}: "${h}"`),
    "",
  ].join("\n");
}

Deno.test("web config: TLS 1.3 + client certificates + basic auth + headers on the metrics port", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-web-" }));
  const hash = bcrypt.hashSync(PASSWORD, 4);
  const { agent, port, file } = await startAgent(certs, mtlsConfig({ prometheus: hash }), [
    "--port-scan",
    "--port-scan-range=40000-40010",
    "--allocate-token=alloc-token-1",
  ]);
  const url = (path: string) => `https://localhost:${port}${path}`;
  const tlsArgs = tlsClient(certs.caCert, certs.clientCert, certs.clientKey);
  const auth = ["-u", `prometheus:${PASSWORD}`];
  try {
    await waitFor(() => curl(url("/healthz"), tlsArgs).then((r) => r.status === 200), {
      message: "the metrics port answers over TLS",
    });

    // TLS versions: 1.3 only (min_version: TLS13).
    assert.equal(
      await handshake(port, ["-tls1_3", "-CAfile", certs.caCert, ...certArgs(certs)]),
      "TLSv1.3",
    );
    assert.equal(
      await handshake(port, ["-tls1_2", "-CAfile", certs.caCert, ...certArgs(certs)]),
      undefined,
      "TLS 1.2 is refused",
    );
    assert.equal((await curl(url("/healthz"), [...tlsArgs, "--tls-max", "1.2"])).status, 0);

    // Client certificates: accepted, missing, signed by another CA.
    assert.equal((await curl(url("/metrics"), [...tlsArgs, ...auth])).status, 200);
    assert.equal((await curl(url("/healthz"), ["--cacert", certs.caCert])).status, 0);
    assert.equal(await handshake(port, ["-tls1_3", "-CAfile", certs.caCert]), undefined);
    const wrongCa = tlsClient(certs.caCert, certs.otherClientCert, certs.otherClientKey);
    assert.equal((await curl(url("/healthz"), wrongCa)).status, 0);
    assert.equal(
      await handshake(port, [
        "-CAfile",
        certs.caCert,
        "-cert",
        certs.otherClientCert,
        "-key",
        certs.otherClientKey,
      ]),
      undefined,
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert.equal((await curl(`http://127.0.0.1:${port}/healthz`, [])).status, 0);

    // Basic auth: right, wrong, missing; /healthz is open to liveness probes.
    const ok = await curl(url("/metrics"), [...tlsArgs, ...auth]);
    assert.equal(ok.status, 200);
    assert.match(ok.body, /sigma_agent_web_config_last_reload_successful\{[^}]*\} 1/);
    const wrong = await curl(url("/metrics"), [...tlsArgs, "-u", "prometheus:nope"]);
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers, /www-authenticate: basic realm="sigma-agent"/);
    assert.equal(
      (await curl(url("/metrics"), [...tlsArgs, "-u", `nobody:${PASSWORD}`])).status,
      401,
    );
    for (const path of ["/metrics", "/status", "/readyz", "/"]) {
      assert.equal((await curl(url(path), tlsArgs)).status, 401, path);
    }
    assert.equal((await curl(url("/healthz"), tlsArgs)).status, 200);

    // Headers from http_server_config, on every response (401 too).
    for (const r of [ok, wrong]) {
      assert.match(r.headers, /x-frame-options: deny/);
      assert.match(r.headers, /strict-transport-security: max-age=31536000/);
    }

    // POST /ports/allocate: basic auth and the allocate token, both.
    const allocate = (extra: string[]) =>
      curl(url("/ports/allocate"), [
        ...tlsArgs,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data",
        '{"count":1}',
        ...extra,
      ]);
    assert.equal((await allocate(["-H", "x-allocate-token: alloc-token-1"])).status, 401);
    assert.equal((await allocate([...auth])).status, 401, "basic auth alone is not enough");
    assert.equal((await allocate([...auth, "-H", "x-allocate-token: wrong"])).status, 401);
    const allocated = await waitFor(async () => {
      const r = await allocate([...auth, "-H", "x-allocate-token: alloc-token-1"]);
      return r.status === 200 ? r : undefined; // 503 until the first scan
    }, { message: "allocation with basic auth + token" });
    assert.match(allocated.body, /"ports":\[\d+\]/);

    // /status shows the web config state.
    const status = JSON.parse((await curl(url("/status"), [...tlsArgs, ...auth])).body);
    assert.equal(status.web_config.tls, true);
    assert.equal(status.web_config.client_auth, "require");
    assert.equal(status.web_config.last_reload_successful, true);
    assert.equal(status.web_config.path, file);

    // Reload: a new user set applies without a restart (exporter-toolkit re-reads per request).
    const hash2 = bcrypt.hashSync("second-password", 4);
    Deno.writeTextFileSync(file, mtlsConfig({ grafana: hash2 }));
    await waitFor(async () =>
      (await curl(url("/metrics"), [...tlsArgs, "-u", "grafana:second-password"])).status === 200
    );
    assert.equal((await curl(url("/metrics"), [...tlsArgs, ...auth])).status, 401);

    // A broken file keeps the last good configuration; reported in log, /status and metric.
    Deno.writeTextFileSync(file, "basic_auth_users: [this is: not valid\n");
    const g = ["-u", "grafana:second-password"];
    const broken = JSON.parse((await curl(url("/status"), [...tlsArgs, ...g])).body);
    assert.equal(broken.web_config.last_reload_successful, false);
    assert.match(broken.web_config.error, /not valid YAML/);
    const metrics = await curl(url("/metrics"), [...tlsArgs, ...g]);
    assert.match(metrics.body, /sigma_agent_web_config_last_reload_successful\{[^}]*\} 0/);
    assert.ok(
      agent.records().some((r) =>
        r.msg === "web config reload failed; keeping the last good configuration"
      ),
    );
    // A change only a restart can apply is refused the same way.
    Deno.writeTextFileSync(
      file,
      mtlsConfig({ grafana: hash2 }).replace("RequireAndVerifyClientCert", "NoClientCert")
        .replace("  client_ca_file: ca.crt\n", ""),
    );
    const refused = JSON.parse((await curl(url("/status"), [...tlsArgs, ...g])).body);
    assert.match(refused.web_config.error, /changing client_auth_type needs a restart/);
    assert.equal((await curl(url("/healthz"), ["--cacert", certs.caCert])).status, 0);
    // Fixed again: reload succeeds.
    Deno.writeTextFileSync(file, mtlsConfig({ grafana: hash2 }));
    const fixed = JSON.parse((await curl(url("/status"), [...tlsArgs, ...g])).body);
    assert.equal(fixed.web_config.last_reload_successful, true);

    // Certificates swapped on disk are used by the next connection.
    makeLeaf(certs.dir, "server-new", "other-ca", "serverAuth");
    Deno.renameSync(`${certs.dir}/server-new.key`, certs.serverKey);
    Deno.renameSync(`${certs.dir}/server-new.crt`, certs.serverCert);
    const newCa = tlsClient(certs.otherCaCert, certs.clientCert, certs.clientKey);
    assert.equal((await curl(url("/healthz"), newCa)).status, 200);
    assert.equal((await curl(url("/healthz"), tlsArgs)).status, 0, "old CA no longer matches");
  } finally {
    await agent.stop();
    await Deno.remove(certs.dir, { recursive: true });
  }
});

function certArgs(c: TestCerts): string[] {
  return ["-cert", c.clientCert, "-key", c.clientKey];
}

Deno.test("web config: VerifyClientCertIfGiven and TLS 1.2 — no certificate is fine, a wrong one is not", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-web-" }));
  const { agent, port } = await startAgent(
    certs,
    [
      "tls_server_config:",
      `  cert_file: ${certs.serverCert}`,
      `  key_file: ${certs.serverKey}`,
      "  client_auth_type: VerifyClientCertIfGiven",
      `  client_ca_file: ${certs.caCert}`,
      "",
    ].join("\n"),
  );
  const url = `https://localhost:${port}/metrics`;
  try {
    await waitFor(() => curl(url, ["--cacert", certs.caCert]).then((r) => r.status === 200));
    assert.equal(await handshake(port, ["-tls1_2", "-CAfile", certs.caCert]), "TLSv1.2");
    assert.equal(await handshake(port, ["-tls1_3", "-CAfile", certs.caCert]), "TLSv1.3");
    assert.equal(
      (await curl(url, tlsClient(certs.caCert, certs.clientCert, certs.clientKey)))
        .status,
      200,
    );
    const wrong = await curl(
      url,
      tlsClient(certs.caCert, certs.otherClientCert, certs.otherClientKey),
    );
    assert.equal(wrong.status, 0, "a certificate from another CA is refused");
    // No basic_auth_users: no credentials needed.
    assert.equal((await curl(url, ["--cacert", certs.caCert])).status, 200);
  } finally {
    await agent.stop();
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("web config: settings sigma-agent cannot honour are refused, never ignored", () => {
  const base = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n";
  const cases: [string, RegExp][] = [
    [base + "  min_version: TLS10\n", /min_version TLS10 is not supported.*TLS 1\.2 and 1\.3/],
    [base + "  min_version: TLS11\n", /min_version TLS11 is not supported/],
    [base + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", /cipher_suites is not supported/],
    [base + "  curve_preferences: [X25519]\n", /curve_preferences is not supported/],
    [base + "  client_allowed_sans: [a]\n", /client_allowed_sans is not supported/],
    [base + "  client_auth_type: RequireAnyClientCert\n", /RequireAnyClientCert is not supported/],
    [base + "  client_auth_type: RequestClientCert\n", /RequestClientCert is not supported/],
    [base + "  client_auth_type: RequireAndVerifyClientCert\n", /needs client_ca_file/],
    [base + "  client_auth_type: Nope\n", /unknown "Nope"/],
    [
      base + "  client_ca_file: ca.crt\n",
      /client_ca_file is set but client_auth_type is NoClientCert/,
    ],
    [base + "  cert: inline\n", /inline certificates/],
    [base + "  min_version: TLS13\n  max_version: TLS12\n", /min_version is above max_version/],
    ["tls_server_config:\n  cert_file: a.crt\n", /cert_file and key_file are both required/],
    ["tls_server_config:\n  certfile: a.crt\n", /unknown field "certfile"/],
    ["http_server_config:\n  http2: true\n", /http2 is not supported.*HTTP\/1\.1/],
    ["http_server_config:\n  headers:\n    Server: x\n", /"Server" is not allowed/],
    ["basic_auth_users:\n  u: plaintext-password\n", /not a bcrypt hash \(value not shown\)/],
    ["basic_users: {}\n", /unknown field "basic_users"/],
    ["[1, 2]\n", /expected a mapping/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseWebConfig(text, "/etc/sigma-agent"), WebConfigError, text);
    assert.throws(() => parseWebConfig(text, "/etc/sigma-agent"), re, text);
  }
  assert.doesNotThrow(() => parseWebConfig("", "/"));
  const hash = bcrypt.hashSync("pw", 4);
  const ok = parseWebConfig(
    base + "  prefer_server_cipher_suites: true\n  min_version: TLS13\n" +
      `basic_auth_users:\n  u: "${hash}"\nhttp_server_config:\n  http2: false\n`,
    "/etc/sigma-agent",
  );
  assert.equal(ok.tls?.certFile, "/etc/sigma-agent/a.crt");
  assert.equal(ok.tls?.minVersion, "TLSv1.3");
  assert.equal(ok.users.get("u"), hash);
});

Deno.test("web config: a bad file stops the agent at start with exit 2 and one line", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-web-" }));
  try {
    const cases: [string, RegExp][] = [
      [
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS11\n",
        /invalid --web-config-file: web config .*min_version TLS11 is not supported/,
      ],
      [
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
        /cannot read certificate .*missing\.crt/,
      ],
      [
        "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n",
        /private key does not match/,
      ],
      ["basic_auth_users:\n  u: hunter2\n", /not a bcrypt hash \(value not shown\)/],
    ];
    for (const [text, re] of cases) {
      const { agent } = await startAgent(certs, text);
      const status = await agent.status;
      assert.equal(status.code, 2, text);
      const lines = agent.lines.filter((l) => l.trim() !== "");
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(lines[0], re);
      assert.doesNotMatch(lines[0], /hunter2/);
    }
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
