/**
 * Test support for the secrets tests: a hostile sigma-api that echoes every request (URL and
 * headers, so the API key and the Basic credentials) back in its error message, and a scan of
 * every output surface of a running agent for a secret in raw, JSON-escaped and URL-encoded form.
 *
 * @module
 */

import { type AgentProcess, ROOT } from "../helpers.ts";

/** What the hostile API received. */
export interface EchoApi {
  url: string;
  requests: { url: string; headers: Record<string, string> }[];
  close(): Promise<void>;
}

/** Starts an API on 127.0.0.1 that answers every request 400 with the request echoed back. */
export function startEchoApi(): EchoApi {
  const requests: EchoApi["requests"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const seen = { url: req.url, headers: Object.fromEntries(req.headers) };
    requests.push(seen);
    return Response.json({ error: `echo ${JSON.stringify(seen)}` }, { status: 400 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/api`,
    requests,
    close: () => server.shutdown(),
  };
}

/** The forms a secret may leak in: raw, JSON-escaped (once, twice), URL-encoded. */
export function leakForms(secret: string): string[] {
  const json = (s: string) => JSON.stringify(s).slice(1, -1);
  const u = new URL("http://h/");
  u.password = secret;
  return [
    ...new Set([secret, json(secret), json(json(secret)), encodeURIComponent(secret), u.password]),
  ];
}

/** Every output surface of a running agent, as text: logs, stdout, /status, page, /metrics, CLI. */
export async function outputSurfaces(
  agent: AgentProcess,
  metricsPort: number,
): Promise<Record<string, string>> {
  const get = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
    return await r.text();
  };
  const dec = new TextDecoder();
  const statusCli = async (extra: string[]) => {
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-net=127.0.0.1",
        `${ROOT}main.ts`,
        "status",
        ...extra,
        `--addr=127.0.0.1:${metricsPort}`,
      ],
      clearEnv: true,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return dec.decode(o.stdout) + dec.decode(o.stderr);
  };
  return {
    logs: agent.lines.join("\n"),
    stdout: agent.stdout(),
    status: await get("/status"),
    page: await get("/"),
    metrics: await get("/metrics"),
    cli: await statusCli([]),
    cli_json: await statusCli(["--json"]),
  };
}

/** Surfaces × forms where `secret` shows up (empty: no leak). */
export function leaks(surfaces: Record<string, string>, secret: string): string[] {
  const out: string[] = [];
  for (const [name, text] of Object.entries(surfaces)) {
    for (const form of leakForms(secret)) {
      if (text.includes(form)) out.push(`${name}: ${JSON.stringify(form)}`);
    }
  }
  return out;
}
