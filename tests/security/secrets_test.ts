/**
 * Secrets never leak: a malformed API key, allocate token or URL password is refused at start
 * (exit 2, one line naming the flag or variable, never the value); credentials in `--api-url` are
 * sent as Basic auth but never shown (`/status` `api_url`, logs, page, metrics, the status CLI);
 * and a property test generates keys, tokens and URL passwords, runs real agent processes
 * against an API that echoes every request back in its errors, and scans every output surface
 * for them in raw, JSON-escaped and URL-encoded form.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createLogger, createRedactor } from "../../lib/core/log.ts";
import { ConfigError, displayUrl, helpText, parseConfig } from "../../lib/core/config.ts";
import { freePort, spawnAgent, waitFor } from "../helpers.ts";
import { leakForms, leaks, outputSurfaces, startEchoApi } from "./support.ts";

Deno.test("secrets: a key, token or URL password with whitespace or control characters is refused at start", async () => {
  const cases: { args?: string[]; env?: Record<string, string>; names: RegExp; parts: string[] }[] =
    [
      {
        env: { SIGMA_API_KEY: "sk_sigma_abc\nsecond" },
        names: /SIGMA_API_KEY/,
        parts: ["sk_sigma_abc", "second"],
      },
      {
        args: ["--api-key", "sk_sigma_abc\r\nInjected: 1"],
        names: /--api-key/,
        parts: ["sk_sigma_abc", "Injected"],
      },
      { args: ["--api-key=sk_sigma abc"], names: /--api-key/, parts: ["sk_sigma"] },
      {
        env: { AGENT_ALLOCATE_TOKEN: "tokQ8\ten-part" },
        names: /AGENT_ALLOCATE_TOKEN/,
        parts: ["tokQ8", "en-part"],
      },
      { args: ["--allocate-token=tokQ7\u0007x"], names: /--allocate-token/, parts: ["tokQ7"] },
      { args: ["--api-key=skE_\u00e9\u00e9\u00e9"], names: /--api-key/, parts: ["skE_"] },
      {
        args: ["--api-url=http://user:pa%0Ass@127.0.0.1:9/api"],
        names: /--api-url/,
        parts: ["pa%0Ass", "pa\nss", "user:"],
      },
    ];
  for (const c of cases) {
    const agent = await spawnAgent({ args: [...(c.args ?? []), "--metrics-port=0"], env: c.env });
    const status = await agent.status;
    assert.equal(status.code, 2, JSON.stringify(c));
    const lines = agent.lines.filter((l) => l.trim() !== "");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /^sigma-agent: invalid /);
    assert.match(lines[0], c.names);
    for (const part of c.parts) {
      for (const form of leakForms(part)) {
        assert.ok(
          !lines[0].includes(form),
          `${JSON.stringify(lines[0])} shows ${JSON.stringify(form)}`,
        );
      }
    }
    assert.equal(agent.stdout(), "");
  }
});

Deno.test("secrets: credentials in --api-url are sent as Basic auth and shown nowhere", async () => {
  const api = startEchoApi();
  const port = freePort();
  const apiUrl = api.url.replace("http://", "http://agent-user:s3cr%40t-pw@");
  const agent = await spawnAgent({
    args: [
      `--api-url=${apiUrl}`,
      `--metrics-port=${port}`,
      "--metrics-addr=127.0.0.1",
      "--interval=1",
    ],
    env: { SIGMA_API_KEY: "sk_sigma_e2e_key_123" },
  });
  try {
    await waitFor(() => api.requests.length >= 2, { message: "registration attempts" });
    const seen = api.requests[0];
    assert.equal(seen.headers["authorization"], `Basic ${btoa("agent-user:s3cr@t-pw")}`);
    assert.equal(seen.headers["x-api-key"], "sk_sigma_e2e_key_123");
    assert.ok(!seen.url.includes("s3cr"), "the password is not in the request URL");
    const surfaces = await waitFor(async () => {
      const s = await outputSurfaces(agent, port);
      return s.status.includes("last_register") ? s : undefined;
    });
    const status = JSON.parse(surfaces.status);
    assert.equal(status.agent.api_url, api.url, "api_url without userinfo");
    for (
      const secret of [
        "s3cr@t-pw",
        "agent-user:s3cr@t-pw",
        "sk_sigma_e2e_key_123",
        btoa("agent-user:s3cr@t-pw"),
      ]
    ) {
      assert.deepEqual(leaks(surfaces, secret), [], secret);
    }
    assert.match(surfaces.logs, /<redacted>/, "the echoed secrets were redacted, not absent");
  } finally {
    await agent.stop();
    await api.close();
  }
});

Deno.test("secrets: the redactor covers raw, JSON-escaped, URL-encoded and userinfo forms", () => {
  const secret = 'k3y/"with"\\odd@chars?&=';
  const redact = createRedactor([secret, undefined, ""]);
  const u = new URL("http://h/");
  u.password = secret;
  const texts = [
    `raw ${secret}`,
    `json ${JSON.stringify({ e: secret })}`,
    `twice ${JSON.stringify(JSON.stringify({ e: secret }))}`,
    `uri ${encodeURIComponent(secret)}`,
    `lower ${encodeURIComponent(secret).toLowerCase()}`,
    `form ${new URLSearchParams({ k: secret })}`,
    `userinfo ${u.href}`,
    `header Invalid header value: ${JSON.stringify(secret)}`,
  ];
  for (const t of texts) {
    const out = redact(t);
    assert.match(out, /<redacted>/, t);
    for (const form of leakForms(secret)) assert.ok(!out.includes(form), `${t} -> ${out}`);
  }
  // The logger redacts messages and fields in both formats, and nested values.
  for (const format of ["json", "text"] as const) {
    const lines: string[] = [];
    const log = createLogger({ format, secrets: [secret], write: (l) => lines.push(l) });
    log.error(`failed: ${secret}`, {
      error: new Error(`bad ${JSON.stringify(secret)}`),
      nested: { a: [secret] },
    });
    for (const form of leakForms(secret)) assert.ok(!lines[0].includes(form), lines[0]);
  }
  assert.equal(displayUrl("http://u:p@h.example/api"), "http://<redacted>@h.example/api");
  assert.equal(displayUrl("not a url u:p@h"), "<redacted>@h");
  assert.equal(displayUrl("http://h.example/api"), "http://h.example/api");
});

/** Printable ASCII without spaces, long enough never to appear by chance. */
const secretArb = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
  minLength: 12,
  maxLength: 40,
});

Deno.test("secrets: generated keys, tokens and URL passwords never reach any output surface (property, real agents)", async () => {
  await fc.assert(
    fc.asyncProperty(secretArb, secretArb, secretArb, async (key, token, password) => {
      const api = startEchoApi();
      const port = freePort();
      const apiUrl = api.url.replace("http://", `http://sigma:${encodeURIComponent(password)}@`);
      const agent = await spawnAgent({
        args: [
          `--metrics-port=${port}`,
          "--metrics-addr=127.0.0.1",
          "--interval=1",
          `--api-url=${apiUrl}`,
        ],
        env: { SIGMA_API_KEY: key, AGENT_ALLOCATE_TOKEN: token, AGENT_LOG_FORMAT: "text" },
      });
      try {
        await waitFor(() => api.requests.length >= 2, { message: "registration attempts" });
        // The secrets did flow: the API saw them and echoed them back in its error.
        assert.equal(api.requests[0].headers["x-api-key"], key);
        const surfaces = await waitFor(async () => {
          const s = await outputSurfaces(agent, port);
          return s.status.includes("last_register") ? s : undefined;
        });
        // A request with the token, so it is compared and refused/accepted by the route.
        await fetch(`http://127.0.0.1:${port}/ports/allocate`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}x`, "content-type": "application/json" },
          body: "{}",
        }).then((r) => r.body?.cancel());
        surfaces.logs = agent.lines.join("\n");
        for (const secret of [key, token, password, `sigma:${password}`]) {
          assert.deepEqual(leaks(surfaces, secret), [], `leak of ${JSON.stringify(secret)}`);
        }
      } finally {
        await agent.stop();
        await api.close();
      }
    }),
    { numRuns: 4, endOnFailure: true },
  );
});

Deno.test("config: the TLS and web config options, their variables and defaults", () => {
  const parse = (args: string[], env: Record<string, string> = {}) => {
    const r = parseConfig(args, env);
    if (r.kind !== "config") throw new Error(r.kind);
    return r.config;
  };
  const d = parse([]);
  assert.equal(d.webConfigFile, undefined);
  assert.equal(d.xdsTlsCert, undefined);
  assert.equal(d.xdsTlsKey, undefined);
  assert.equal(d.xdsTlsClientCa, undefined);
  assert.equal(d.apiUrlCredentials, undefined);
  const c = parse([], {
    AGENT_WEB_CONFIG_FILE: "/etc/sigma-agent/web-config.yml",
    AGENT_XDS_TLS_CERT: "/etc/sigma-agent/xds.crt",
    AGENT_XDS_TLS_KEY: "/etc/sigma-agent/xds.key",
    AGENT_XDS_TLS_CLIENT_CA: "/etc/sigma-agent/ca.crt",
    SIGMA_API_URL: "https://u%40corp:p%3Aw@api.example.net/api/",
  });
  assert.equal(c.webConfigFile, "/etc/sigma-agent/web-config.yml");
  assert.equal(c.xdsTlsClientCa, "/etc/sigma-agent/ca.crt");
  assert.equal(c.apiUrl, "https://api.example.net/api");
  assert.equal(c.apiUrlCredentials, "u@corp:p:w");
  const help = helpText();
  for (const flag of ["web-config-file", "xds-tls-cert", "xds-tls-key", "xds-tls-client-ca"]) {
    assert.match(help, new RegExp(`--${flag} VALUE`));
  }
  assert.match(help, /\[env: AGENT_WEB_CONFIG_FILE\]/);
  // A URL that does not parse never shows what precedes its "@".
  assert.throws(() => parse(["--api-url=ftp://u:hunter2@h/api"]), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.doesNotMatch(e.message, /hunter2/);
    return true;
  });
});

Deno.test("secrets: every secret of the configuration is registered for redaction", async () => {
  const { configSecrets } = await import("../../main.ts");
  const r = parseConfig([
    "--api-key=sk_k",
    "--allocate-token=tok_t",
    "--api-url=https://u:p%3Fw@api.example.net/api",
    "--public-ip-lookup=https://ipu:ip%40pw@ip.example.net/,https://ip.example.net/",
  ], {});
  assert.equal(r.kind, "config");
  if (r.kind !== "config") return;
  const secrets = configSecrets(r.config);
  for (const s of ["sk_k", "tok_t", "u:p?w", "p?w", btoa("u:p?w"), "ipu:ip@pw", "ip@pw"]) {
    assert.ok(secrets.includes(s), s);
  }
  const redact = createRedactor(secrets);
  assert.equal(
    redact("lookup https://ipu:ip%40pw@ip.example.net/ failed"),
    "lookup https://<redacted>@ip.example.net/ failed",
  );
});
