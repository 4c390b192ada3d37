/**
 * Agent configuration: command-line flags, environment variables and defaults.
 *
 * The option table below is the single source of truth (names and defaults follow the seed spec).
 * Precedence is flag > environment variable > default. Every invalid value raises a
 * {@linkcode ConfigError} whose message names the flag or variable and the bad value; `main.ts`
 * prints it on one line and exits with code 2.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * const result = parseConfig(["--interval", "30"], {});
 * if (result.kind === "config") console.log(result.config.interval); // 30
 * ```
 *
 * @module
 */

/** The agent version, reported by `--version`, logs and the build-info metric. */
export const VERSION = "0.1.0";

/** Public-IP lookup services of the seed, asked in order when no public address is local. */
export const DEFAULT_PUBLIC_IP_LOOKUP =
  "https://icanhazip.com,https://ifconfig.me/ip,https://api.ipify.org";

/** Fully parsed and validated agent configuration. */
export interface Config {
  apiUrl: string;
  apiKey: string | undefined;
  apiTimeout: number;
  interval: number;
  hostname: string | undefined;
  alias: string | undefined;
  sshPort: number;
  metricsPort: number;
  metricsAddr: string;
  portScan: boolean;
  portScanRange: { start: number; end: number };
  portScanInterval: number;
  allocateToken: string | undefined;
  allocateReservation: number;
  xdsEnabled: boolean;
  xdsPort: number;
  xdsAddr: string;
  xdsPollInterval: number;
  envoyConfigPath: string[];
  envoyConfigExclude: string | undefined;
  envoyConfigSync: boolean;
  envoyConfigSyncInterval: number;
  stateDir: string;
  diskPath: string;
  publicIpLookup: string[];
  logFormat: "json" | "text";
  logLevel: "debug" | "info" | "warn" | "error";
  dev: boolean;
  /** `user:password` taken out of `--api-url` (sent as HTTP Basic auth, never shown). */
  apiUrlCredentials: string | undefined;
  webConfigFile: string | undefined;
  xdsTlsCert: string | undefined;
  xdsTlsKey: string | undefined;
  xdsTlsClientCa: string | undefined;
}

type Kind = "string" | "secret" | "url" | "port" | "positive" | "bool" | "range" | "list" | "enum";

interface OptionSpec {
  key: keyof Config;
  flag: string;
  env?: string;
  kind: Kind;
  default?: string;
  choices?: string[];
  help: string;
}

/** Every option the agent accepts, in `--help` order. */
export const OPTIONS: readonly OptionSpec[] = [
  {
    key: "apiUrl",
    flag: "api-url",
    env: "SIGMA_API_URL",
    kind: "url",
    default: "http://localhost:3000/api",
    help: "sigma-api base URL (includes /api)",
  },
  {
    key: "apiKey",
    flag: "api-key",
    env: "SIGMA_API_KEY",
    kind: "secret",
    help: "API key sent as X-Api-Key",
  },
  {
    key: "apiTimeout",
    flag: "api-timeout",
    env: "AGENT_API_TIMEOUT",
    kind: "positive",
    default: "10",
    help: "timeout of one API request (seconds)",
  },
  {
    key: "interval",
    flag: "interval",
    env: "AGENT_INTERVAL",
    kind: "positive",
    default: "60",
    help: "heartbeat interval (seconds)",
  },
  {
    key: "hostname",
    flag: "hostname",
    env: "AGENT_HOSTNAME",
    kind: "string",
    help: "override the detected hostname",
  },
  {
    key: "alias",
    flag: "alias",
    env: "AGENT_ALIAS",
    kind: "string",
    help: "alias sent at registration",
  },
  {
    key: "sshPort",
    flag: "ssh-port",
    env: "AGENT_SSH_PORT",
    kind: "port",
    default: "22",
    help: "SSH port to report",
  },
  {
    key: "metricsPort",
    flag: "metrics-port",
    env: "AGENT_METRICS_PORT",
    kind: "port",
    default: "9102",
    help: "port of /metrics, /ports/allocate, /status (0 disables)",
  },
  {
    key: "metricsAddr",
    flag: "metrics-addr",
    env: "AGENT_METRICS_ADDR",
    kind: "string",
    default: "0.0.0.0",
    help: "listen address of the metrics port",
  },
  {
    key: "portScan",
    flag: "port-scan",
    env: "AGENT_PORT_SCAN",
    kind: "bool",
    default: "false",
    help: "enable port scanning",
  },
  {
    key: "portScanRange",
    flag: "port-scan-range",
    env: "AGENT_PORT_SCAN_RANGE",
    kind: "range",
    default: "10000-30000",
    help: "port scan range START-END",
  },
  {
    key: "portScanInterval",
    flag: "port-scan-interval",
    env: "AGENT_PORT_SCAN_INTERVAL",
    kind: "positive",
    default: "60",
    help: "port scan interval (seconds)",
  },
  {
    key: "allocateToken",
    flag: "allocate-token",
    env: "AGENT_ALLOCATE_TOKEN",
    kind: "secret",
    help: "bearer token required by POST /ports/allocate (unset: open)",
  },
  {
    key: "allocateReservation",
    flag: "allocate-reservation",
    env: "AGENT_ALLOCATE_RESERVATION",
    kind: "positive",
    default: "30",
    help: "seconds an allocated port is held back from later allocations",
  },
  {
    key: "xdsEnabled",
    flag: "xds-enabled",
    env: "AGENT_XDS_ENABLED",
    kind: "bool",
    default: "false",
    help: "enable the xDS gRPC server",
  },
  {
    key: "xdsPort",
    flag: "xds-port",
    env: "AGENT_XDS_PORT",
    kind: "port",
    default: "18000",
    help: "xDS gRPC listen port",
  },
  {
    key: "xdsAddr",
    flag: "xds-addr",
    env: "AGENT_XDS_ADDR",
    kind: "string",
    default: "127.0.0.1",
    help: "xDS gRPC listen address",
  },
  {
    key: "xdsPollInterval",
    flag: "xds-poll-interval",
    env: "AGENT_XDS_POLL_INTERVAL",
    kind: "positive",
    default: "10",
    help: "xDS config poll interval (seconds)",
  },
  {
    key: "envoyConfigPath",
    flag: "envoy-config-path",
    env: "AGENT_ENVOY_CONFIG_PATH",
    kind: "list",
    default: "/etc/envoy/envoy.yaml",
    help: "comma-separated Envoy config files (globs allowed)",
  },
  {
    key: "envoyConfigExclude",
    flag: "envoy-config-exclude",
    env: "AGENT_ENVOY_CONFIG_EXCLUDE",
    kind: "string",
    help: "glob of file names to skip",
  },
  {
    key: "envoyConfigSync",
    flag: "envoy-config-sync",
    env: "AGENT_ENVOY_CONFIG_SYNC",
    kind: "bool",
    default: "false",
    help: "enable static config sync",
  },
  {
    key: "envoyConfigSyncInterval",
    flag: "envoy-config-sync-interval",
    env: "AGENT_ENVOY_CONFIG_SYNC_INTERVAL",
    kind: "positive",
    default: "60",
    help: "file poll interval (seconds)",
  },
  {
    key: "stateDir",
    flag: "state-dir",
    env: "AGENT_STATE_DIR",
    kind: "string",
    default: "/var/lib/sigma-agent",
    help: "directory for the VPS id and last xDS snapshots",
  },
  {
    key: "diskPath",
    flag: "disk-path",
    env: "AGENT_DISK_PATH",
    kind: "string",
    default: "/etc/os-release",
    help: "a file on the filesystem whose size is reported (root fs by default)",
  },
  {
    key: "publicIpLookup",
    flag: "public-ip-lookup",
    env: "AGENT_PUBLIC_IP_LOOKUP",
    kind: "list",
    default: DEFAULT_PUBLIC_IP_LOOKUP,
    help: "public-IP lookup URLs, in order (empty: never look up)",
  },
  {
    key: "logFormat",
    flag: "log-format",
    env: "AGENT_LOG_FORMAT",
    kind: "enum",
    choices: ["json", "text"],
    default: "json",
    help: "log format",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "AGENT_LOG_LEVEL",
    kind: "enum",
    choices: ["debug", "info", "warn", "error"],
    default: "info",
    help: "minimum log level",
  },
  {
    key: "webConfigFile",
    flag: "web-config-file",
    env: "AGENT_WEB_CONFIG_FILE",
    kind: "string",
    help: "exporter-toolkit web config (TLS, basic auth, headers) of the metrics port",
  },
  {
    key: "xdsTlsCert",
    flag: "xds-tls-cert",
    env: "AGENT_XDS_TLS_CERT",
    kind: "string",
    help: "PEM certificate chain of the xDS port (enables TLS, ALPN h2)",
  },
  {
    key: "xdsTlsKey",
    flag: "xds-tls-key",
    env: "AGENT_XDS_TLS_KEY",
    kind: "string",
    help: "PEM private key of --xds-tls-cert",
  },
  {
    key: "xdsTlsClientCa",
    flag: "xds-tls-client-ca",
    env: "AGENT_XDS_TLS_CLIENT_CA",
    kind: "string",
    help: "PEM CA bundle; xDS clients must present a certificate it signed (mTLS)",
  },
  {
    key: "dev",
    flag: "dev",
    kind: "bool",
    default: "false",
    help: "run against an embedded in-memory sigma-api (development)",
  },
];

/** An invalid flag, variable or value. The message names the culprit. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** What {@linkcode parseConfig} found on the command line. */
export type ParseResult =
  | { kind: "config"; config: Config }
  | { kind: "help"; text: string }
  | { kind: "version"; text: string };

const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

function source(spec: OptionSpec, fromFlag: boolean): string {
  return fromFlag || !spec.env ? `--${spec.flag}` : spec.env;
}

/** Printable ASCII without spaces: what a key or token may contain (it travels in a header). */
const SECRET_CHARS = /^[\x21-\x7e]+$/;

/**
 * A URL as it may be shown: userinfo (`user:password@`) replaced by `<redacted>@`. Text that
 * does not parse as a URL loses everything up to its last `@`, so a password never shows.
 *
 * @example
 * ```ts
 * import { displayUrl } from "./config.ts";
 * displayUrl("http://u:pw@example.net/api"); // "http://<redacted>@example.net/api"
 * ```
 */
export function displayUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.username === "" && u.password === "") return raw;
    u.username = "";
    u.password = "";
    return u.href.replace("//", "//<redacted>@");
  } catch {
    const at = raw.lastIndexOf("@");
    return at < 0 ? raw : `<redacted>${raw.slice(at)}`;
  }
}

function convert(spec: OptionSpec, raw: string, fromFlag: boolean): unknown {
  const where = source(spec, fromFlag);
  // Secrets (and URL userinfo) are never echoed back, even in errors.
  const shown = spec.kind === "secret"
    ? "<redacted>"
    : JSON.stringify(spec.kind === "url" ? displayUrl(raw.trim()) : raw);
  const fail = (why: string): never => {
    throw new ConfigError(`invalid ${where}=${shown}: ${why}`);
  };
  switch (spec.kind) {
    case "string": {
      const v = raw.trim();
      return v === "" ? undefined : v;
    }
    case "secret": {
      const v = raw.trim();
      if (v !== "" && !SECRET_CHARS.test(v)) {
        // One line naming the source; the value (or any part of it) is never shown.
        throw new ConfigError(
          `invalid ${where}: contains whitespace, a control character or a non-ASCII character (value not shown)`,
        );
      }
      return v === "" ? undefined : v;
    }
    case "url": {
      let u: URL;
      try {
        u = new URL(raw.trim());
      } catch {
        return fail("not a URL");
      }
      if (u.protocol !== "http:" && u.protocol !== "https:") fail("scheme must be http or https");
      if (u.username !== "" || u.password !== "") {
        let creds: string;
        try {
          creds = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
        } catch {
          return fail("user or password is not valid percent-encoding");
        }
        // deno-lint-ignore no-control-regex
        if (/[\x00-\x1f\x7f]/.test(creds)) fail("user or password contains a control character");
        u.username = "";
        u.password = "";
        return { url: u.href.replace(/\/+$/, ""), credentials: creds };
      }
      return raw.trim().replace(/\/+$/, "");
    }
    case "port": {
      if (!/^\d+$/.test(raw.trim())) fail("not a port number (0-65535)");
      const n = Number(raw.trim());
      if (n > 65535) fail("port outside 0-65535");
      return n;
    }
    case "positive": {
      const n = Number(raw.trim());
      if (raw.trim() === "" || !Number.isFinite(n)) fail("not a number");
      if (n <= 0) fail("must be greater than 0");
      return n;
    }
    case "bool": {
      const v = raw.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      return fail("not a boolean (true/false)");
    }
    case "range": {
      const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(raw);
      if (!m) return fail("expected START-END, e.g. 10000-30000");
      const start = Number(m[1]), end = Number(m[2]);
      if (start < 1 || end > 65535) fail("ports must be within 1-65535");
      if (start > end) fail("START is greater than END");
      return { start, end };
    }
    case "list":
      return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
    case "enum": {
      const v = raw.trim().toLowerCase();
      if (!spec.choices!.includes(v)) fail(`expected one of ${spec.choices!.join(", ")}`);
      return v;
    }
  }
}

/**
 * Parses command-line arguments and environment variables into a {@linkcode Config}.
 *
 * @param args the command-line arguments (without the program name)
 * @param env the environment to read; pass `{}` to ignore it
 * @throws {ConfigError} for unknown flags and invalid values
 *
 * @example
 * ```ts
 * const r = parseConfig([], { AGENT_PORT_SCAN: "true" });
 * // r.kind === "config" && r.config.portScan === true
 * ```
 */
export function parseConfig(args: string[], env: Record<string, string | undefined>): ParseResult {
  const byFlag = new Map(OPTIONS.map((o) => [o.flag, o]));
  const fromFlags = new Map<OptionSpec, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") return { kind: "help", text: helpText() };
    if (arg === "--version" || arg === "-V") {
      return { kind: "version", text: `sigma-agent ${VERSION}` };
    }
    if (!arg.startsWith("--")) {
      throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (see --help)`);
    }
    const eq = arg.indexOf("=");
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = byFlag.get(name);
    if (!spec) throw new ConfigError(`unknown flag --${name} (see --help)`);
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (spec.kind === "bool") {
      // `--port-scan` alone means true; `--port-scan false` is accepted too.
      const next = args[i + 1];
      if (next !== undefined && (TRUE.has(next.toLowerCase()) || FALSE.has(next.toLowerCase()))) {
        value = next;
        i++;
      } else value = "true";
    } else {
      if (i + 1 >= args.length) throw new ConfigError(`missing value for --${name}`);
      value = args[++i];
    }
    fromFlags.set(spec, value);
  }
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const flagValue = fromFlags.get(spec);
    const envValue = spec.env ? env[spec.env] : undefined;
    if (flagValue !== undefined) out[spec.key] = convert(spec, flagValue, true);
    else if (envValue !== undefined) out[spec.key] = convert(spec, envValue, false);
    else out[spec.key] = spec.default === undefined ? undefined : convert(spec, spec.default, true);
  }
  // Credentials in --api-url are moved out of the URL, so the URL can be shown anywhere.
  const api = out.apiUrl as string | { url: string; credentials: string };
  if (typeof api === "object") {
    out.apiUrl = api.url;
    out.apiUrlCredentials = api.credentials;
  }
  checkXdsTls(out as unknown as Config);
  return { kind: "config", config: out as unknown as Config };
}

/** The xDS TLS flags only make sense together: a key needs a certificate and back. */
function checkXdsTls(c: Config): void {
  if ((c.xdsTlsCert === undefined) !== (c.xdsTlsKey === undefined)) {
    throw new ConfigError(
      "--xds-tls-cert and --xds-tls-key (AGENT_XDS_TLS_CERT, AGENT_XDS_TLS_KEY) must be set together",
    );
  }
  if (c.xdsTlsClientCa !== undefined && c.xdsTlsCert === undefined) {
    throw new ConfigError(
      "--xds-tls-client-ca (AGENT_XDS_TLS_CLIENT_CA) needs --xds-tls-cert and --xds-tls-key",
    );
  }
}

/** The `--help` text: every option with its environment variable and default. */
export function helpText(): string {
  const rows = OPTIONS.map((o) => {
    const left = `  --${o.flag}${o.kind === "bool" ? "[=BOOL]" : " VALUE"}`;
    const def = o.default === undefined ? "" : ` [default: ${o.default === "" ? '""' : o.default}]`;
    const env = o.env ? ` [env: ${o.env}]` : "";
    return `${left.padEnd(40)} ${o.help}${env}${def}`;
  });
  return [
    `sigma-agent ${VERSION} \u2014 host agent for the sigma VPS platform`,
    "",
    "Usage:",
    "  sigma-agent [OPTIONS]                      run the agent",
    "  sigma-agent check [OPTIONS] [--json]       preflight: paths, grants, API, ss, ports",
    "  sigma-agent status [--addr HOST:PORT]      summarise a running agent's /status",
    "  sigma-agent envoy-bootstrap --node-id ID   print an Envoy bootstrap for this agent",
    "",
    "Options (flag > environment variable > default):",
    ...rows,
    `  ${"--help".padEnd(38)} show this help`,
    `  ${"--version".padEnd(38)} print the version`,
  ].join("\n");
}

/** The names of every environment variable the agent reads. */
export function envNames(): string[] {
  return OPTIONS.flatMap((o) => (o.env ? [o.env] : []));
}
