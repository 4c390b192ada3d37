/**
 * sigma-agent entry point: parse the configuration, wire the features, run until SIGTERM/SIGINT,
 * then shut down in order within the 5 s budget.
 *
 * Flow: config -> collectors and clients -> state -> servers.
 *
 * @module
 */

import { SigmaClient } from "./lib/api/client.ts";
import type { DevApi } from "./lib/api/dev_server.ts";
import { Lifecycle } from "./lib/agent/lifecycle.ts";
import { type Config, ConfigError, envNames, parseConfig, VERSION } from "./lib/core/config.ts";
import type { AgentContext, Feature } from "./lib/core/context.ts";
import { startStaticSync } from "./lib/envoy_static/mod.ts";
import { resolveHostname } from "./lib/host/hostname.ts";
import { isPublic, localIps, normalizeIps } from "./lib/host/ips.ts";
import { PublicIpResolver } from "./lib/host/public_ip.ts";
import { collectSystemInfo } from "./lib/host/system_info.ts";
import { listenWebTls, type RunningHttpServer, startHttpServer } from "./lib/http/server.ts";
import type { WebConfig } from "./lib/http/web_config.ts";
import { createLogger, createRedactor, type Logger } from "./lib/core/log.ts";
import type { TlsFiles } from "./lib/tls/listener.ts";
import { MemoryReclaimer } from "./lib/core/memory.ts";
import { createMetrics } from "./lib/core/metrics.ts";
import { startPorts } from "./lib/ports/mod.ts";
import { StateStore } from "./lib/core/state_store.ts";
import { StatusBoard } from "./lib/status/board.ts";
import { writeListenRecord } from "./lib/status/listen.ts";
import { checkGrants, grantProblemLine } from "./lib/core/grants.ts";
import { statusPageRoute } from "./lib/status/page.ts";
import { startXds } from "./lib/xds/mod.ts";

/** Upper bound for a clean shutdown; systemd/Kubernetes usually allow more, we promise 5 s. */
const SHUTDOWN_BUDGET_MS = 4500;

function readEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const name of envNames()) {
    try {
      env[name] = Deno.env.get(name);
    } catch {
      // not granted: treated as unset
    }
  }
  return env;
}

/** TLS and web config loaded (and checked) before the agent starts. */
export interface Security {
  web?: WebConfig;
  xdsTls?: TlsFiles;
}

/**
 * Loads `--web-config-file` and the `--xds-tls-*` files, so a bad file or an unsupported
 * setting stops the agent at start (exit 2) instead of being ignored.
 *
 * @throws {ConfigError} naming the flag and the problem
 */
export async function loadSecurity(config: Config, log: Logger): Promise<Security> {
  const out: Security = {};
  // The TLS and web-config modules are loaded only when configured, so an agent without them
  // never holds their code in memory.
  if ((config.webConfigFile && config.metricsPort > 0) || config.xdsTlsCert) {
    await (await import("./lib/tls/listener.ts")).loadTlsSupport();
  }
  if (config.webConfigFile && config.metricsPort > 0) {
    const { WebConfig } = await import("./lib/http/web_config.ts");
    out.web = new WebConfig(config.webConfigFile, { log: log.child({ component: "http" }) });
    try {
      out.web.load();
    } catch (e) {
      throw new ConfigError(`invalid --web-config-file: ${(e as Error).message}`);
    }
  }
  if (config.xdsTlsCert && config.xdsTlsKey) {
    const { TlsFiles } = await import("./lib/tls/listener.ts");
    const xlog = log.child({ component: "xds" });
    out.xdsTls = new TlsFiles(
      {
        certFile: config.xdsTlsCert,
        keyFile: config.xdsTlsKey,
        clientCaFile: config.xdsTlsClientCa,
        clientAuth: config.xdsTlsClientCa ? "require" : "none",
        minVersion: "TLSv1.2",
      },
      (error) =>
        xlog.error("xds: TLS certificate reload failed; keeping the last good one", { error }),
    );
    try {
      out.xdsTls.load();
    } catch (e) {
      throw new ConfigError(
        `invalid --xds-tls-cert/--xds-tls-key/--xds-tls-client-ca: ${(e as Error).message}`,
      );
    }
  }
  return out;
}

/** Runs the agent; resolves with the process exit code. */
export async function runAgent(
  config: Config,
  log: Logger,
  security: Security = {},
): Promise<number> {
  const shutdown = new AbortController();
  const signal = shutdown.signal;
  const onSignal = (name: string) => () => {
    if (signal.aborted) return;
    log.info("shutting down", { signal: name });
    shutdown.abort();
  };
  const handlers: [Deno.Signal, () => void][] = [["SIGTERM", onSignal("SIGTERM")], [
    "SIGINT",
    onSignal("SIGINT"),
  ]];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);

  let devApi: DevApi | undefined;
  if (config.dev) {
    if (config.envoyConfigSync) await seedDevEnvoyConfig(config.envoyConfigPath, log);
    const { DevApi } = await import("./lib/api/dev_server.ts");
    devApi = new DevApi({ seedDemo: true, apiKey: config.apiKey });
    config = { ...config, apiUrl: devApi.listen({ hostname: "127.0.0.1", port: 0 }) };
    log.info("embedded dev sigma-api listening", { url: config.apiUrl });
  }

  const hostname = await resolveHostname({ override: config.hostname });
  const metrics = createMetrics(hostname, VERSION);
  const board = new StatusBoard();
  const store = new StateStore(config.stateDir);
  const api = new SigmaClient({
    baseUrl: config.apiUrl,
    apiKey: config.apiKey,
    basicAuth: config.apiUrlCredentials,
    timeoutMs: config.apiTimeout * 1000,
    userAgent: `sigma-agent/${VERSION}`,
    onRequest: (r) =>
      metrics.apiRequestDuration.observe(
        { endpoint: r.endpoint, method: r.method, result: r.kind },
        r.seconds,
      ),
  });
  log.info("sigma-api client", { url: api.baseUrl, transport: api.transport });
  const publicIp = new PublicIpResolver({
    urls: config.publicIpLookup,
    log: log.child({ component: "public_ip" }),
  });

  const collect = async () => {
    const ips = localIps();
    const needLookup = !ips.some((e) => isPublic(e.ip));
    const pub = await publicIp.get(needLookup);
    const all = pub && needLookup ? normalizeIps([...ips, { ip: pub, label: "" }]) : ips;
    return {
      ip_addresses: all,
      system_info: collectSystemInfo({
        diskPath: config.diskPath,
        metricsPort: config.metricsPort,
        publicIp: pub,
      }),
    };
  };

  const lifecycle = new Lifecycle({
    api,
    log: log.child({ component: "agent" }),
    metrics,
    store,
    hostname,
    alias: config.alias,
    sshPort: config.sshPort,
    intervalSec: config.interval,
    collect,
  });
  await lifecycle.loadPersisted();
  board.provide("agent", () => ({
    version: VERSION,
    hostname,
    api_url: api.baseUrl,
    ...lifecycle.status(),
    public_ip_lookup_error: publicIp.lastError ?? null,
  }));

  // One collection after a burst (a large xDS change, streams reconnecting, a scrape storm) gives
  // V8's grown heap back; a no-op unless the V8 flags expose gc (deploy/permissions.flags).
  // Bursts are noticed by RSS growth, so no feature has to announce them.
  const memory = new MemoryReclaimer();
  const stopWatchingMemory = memory.watchGrowth();
  const ctx: AgentContext = {
    config,
    log,
    api,
    metrics,
    board,
    store,
    hostname,
    signal,
    vpsId: () => lifecycle.vpsId,
    vpsIdReady: lifecycle.vpsIdReady,
    xdsTls: security.xdsTls,
  };
  const web = security.web;
  if (web) {
    const { registerWebConfigMetrics } = await import("./lib/http/web_config.ts");
    registerWebConfigMetrics(metrics.registry, web);
    board.provide("web_config", () => web.status());
  }

  const features: Feature[] = [];
  let http: RunningHttpServer | undefined;
  let exitCode = 0;
  try {
    features.push(startPorts({ ...ctx, log: log.child({ component: "ports" }) }));
    let xdsPort: number | undefined;
    if (config.xdsEnabled) {
      const xds = await startXds({ ...ctx, log: log.child({ component: "xds" }) });
      xdsPort = xds.port;
      features.push(xds);
    }
    if (config.envoyConfigSync) {
      features.push(startStaticSync({ ...ctx, log: log.child({ component: "static_sync" }) }));
    }
    if (config.metricsPort > 0) {
      const listener = await listenWebTls(
        web,
        config.metricsAddr,
        config.metricsPort,
        log.child({ component: "http" }),
      );
      http = startHttpServer({
        listener,
        web,
        redact: createRedactor(configSecrets(config)),
        hostname: config.metricsAddr,
        port: config.metricsPort,
        metrics,
        board,
        ready: [
          () => (lifecycle.registered ? undefined : "not registered with sigma-api yet"),
          ...features.flatMap((f) => f.ready ? [f.ready] : []),
        ],
        routes: features.flatMap((f) => f.routes ?? []),
        extra: [statusPageRoute()],
        log: log.child({ component: "http" }),
      });
    }
    // Where we really listen, for `sigma-agent status` and the container HEALTHCHECK.
    await writeListenRecord(store, {
      pid: Deno.pid,
      started_at: new Date().toISOString(),
      metrics: http ? { addr: config.metricsAddr, port: http.port } : null,
      xds: xdsPort !== undefined ? { addr: config.xdsAddr, port: xdsPort } : null,
    }).catch((e) =>
      log.warn("could not record the listen addresses; `sigma-agent status` needs --addr", {
        dir: store.dir,
        error: (e as Error).message,
      })
    );
  } catch (e) {
    log.error("startup failed; exiting", { error: (e as Error).message });
    exitCode = 1;
    shutdown.abort();
  }

  if (devApi && !signal.aborted) {
    lifecycle.vpsIdReady.then((id) => printDevBanner(config, hostname, id, http?.port)).catch(
      () => {},
    );
  }

  const running = exitCode === 0 ? lifecycle.run(signal) : Promise.resolve();
  // Start-up is a burst too (every module compiled, the first scan, sync and poll).
  if (exitCode === 0) memory.request();
  // A failed start has aborted already: waiting for the abort event would hang for ever.
  if (!signal.aborted) {
    await new Promise<void>((resolve) =>
      signal.addEventListener("abort", () => resolve(), { once: true })
    );
  }

  // Shut down in reverse order of data flow: servers first, then loops, then the dev API.
  const timer = setTimeout(() => {
    log.error("shutdown took too long; exiting");
    Deno.exit(exitCode);
  }, SHUTDOWN_BUDGET_MS);
  await Promise.allSettled([
    http?.shutdown(),
    ...features.map((f) => f.stop()),
    running,
  ]);
  await devApi?.close();
  stopWatchingMemory();
  memory.cancel();
  clearTimeout(timer);
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  log.info("stopped");
  return exitCode;
}

async function seedDevEnvoyConfig(paths: string[], log: Logger): Promise<void> {
  const path = paths.find((p) => !/[*?[]/.test(p));
  if (!path) return;
  try {
    await Deno.lstat(path);
  } catch {
    try {
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || ".", { recursive: true });
      const { DEMO_STATIC_ENVOY_YAML } = await import("./lib/api/dev_server.ts");
      await Deno.writeTextFile(path, DEMO_STATIC_ENVOY_YAML);
      log.info("wrote a demo envoy config for static sync", { path });
    } catch (e) {
      log.warn("could not write the demo envoy config", { path, error: (e as Error).message });
    }
  }
}

function printDevBanner(
  config: Config,
  hostname: string,
  vpsId: string,
  httpPort: number | undefined,
) {
  const lines = [
    "",
    "sigma-agent is running against the embedded dev sigma-api",
    `  registered VPS   ${vpsId} (hostname ${hostname})`,
    `  dev API          ${config.apiUrl}  (try: curl ${config.apiUrl}/vps)`,
    httpPort
      ? `  metrics          http://127.0.0.1:${httpPort}/metrics`
      : "  metrics          disabled",
    httpPort ? `  status           http://127.0.0.1:${httpPort}/status` : "",
    config.xdsEnabled
      ? `  xDS (ADS gRPC)   ${config.xdsAddr}:${config.xdsPort}  (demo node id: demo-envoy)`
      : "",
    config.envoyConfigSync
      ? `  static sync      ${config.envoyConfigPath.join(", ")} (edit it to trigger a sync)`
      : "",
    `  heartbeat        every ${config.interval} s \u2014 Ctrl-C to stop`,
    "",
  ].filter((l) => l !== "");
  console.log(lines.join("\n"));
}

function printResult(r: { exitCode: number; stdout: string; stderr: string }): number {
  if (r.stdout) console.log(r.stdout.replace(/\n$/, ""));
  if (r.stderr) console.error(r.stderr.replace(/\n$/, ""));
  return r.exitCode;
}

/** Every secret of the configuration: what logs, `/status` and `/metrics` must never show. */
export function configSecrets(config: Config): (string | undefined)[] {
  const creds = config.apiUrlCredentials;
  const password = creds === undefined ? undefined : creds.slice(creds.indexOf(":") + 1);
  // The Authorization header carries the credentials base64-encoded: that form is secret too.
  const basic = creds === undefined
    ? undefined
    : btoa(String.fromCharCode(...new TextEncoder().encode(creds)));
  // Userinfo of the public-IP lookup URLs (logged when a lookup fails) is never shown either.
  const lookups = config.publicIpLookup.flatMap((raw) => {
    try {
      const u = new URL(raw);
      const user = decodeURIComponent(u.username), pw = decodeURIComponent(u.password);
      // Decoded forms, plus the userinfo exactly as the URL spells it (percent-encoded).
      return pw ? [`${u.username}:${u.password}`, `${user}:${pw}`, pw] : user ? [user] : [];
    } catch {
      return [];
    }
  });
  return [config.apiKey, config.allocateToken, creds, password, basic, ...lookups];
}

/** Parses arguments and runs the right command; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  const env = readEnv();
  // Subcommands load their modules only when run, so the agent itself never holds them in memory.
  if (args[0] === "status") {
    const { statusCommand } = await import("./lib/status/cli.ts");
    return printResult(
      await statusCommand(args.slice(1), { env, color: Deno.stdout.isTerminal() }),
    );
  }
  if (args[0] === "check") {
    const { checkCommand } = await import("./lib/check/mod.ts");
    return printResult(await checkCommand(args.slice(1), env));
  }
  if (args[0] === "envoy-bootstrap") {
    const { envoyBootstrapCommand } = await import("./lib/xds/bootstrap.ts");
    return printResult(envoyBootstrapCommand(args.slice(1), env));
  }
  let parsed;
  try {
    parsed = parseConfig(args, env);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`sigma-agent: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (parsed.kind !== "config") {
    console.log(parsed.text);
    return 0;
  }
  const config = parsed.config;
  // Grants are fixed for the life of the process: a path outside them can never heal.
  const outside = await checkGrants(config);
  if (outside.length > 0) {
    const more = outside.length > 1
      ? ` [and ${outside.length - 1} more path(s): run \`sigma-agent check\`]`
      : "";
    console.error(`sigma-agent: ${grantProblemLine(outside[0])}${more}`);
    return 2;
  }
  const log = createLogger({
    format: config.logFormat,
    level: config.logLevel,
    secrets: configSecrets(config),
  });
  let security: Security;
  try {
    security = await loadSecurity(config, log);
  } catch (e) {
    console.error(`sigma-agent: ${(e as Error).message}`);
    return 2;
  }
  log.info("sigma-agent starting", { version: VERSION });
  return await runAgent(config, log, security);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
