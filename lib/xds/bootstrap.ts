/**
 * Envoy bootstrap generation: options -> the YAML an Envoy needs to connect to this agent's ADS
 * (xDS) server, so operators never hand-write one (like `consul connect envoy -bootstrap`).
 *
 * The output is plain data with no I/O; `sigma-agent envoy-bootstrap` prints it through
 * {@linkcode envoyBootstrapCommand}, which parses its own flags so `main.ts` only dispatches.
 *
 * The seed's sample bootstrap wrote `explicit_http_version`, a field that does not exist in
 * `HttpProtocolOptions` (Envoy rejects the file); the upstream field is `explicit_http_config`.
 *
 * @example
 * ```ts
 * import { envoyBootstrapYaml } from "./bootstrap.ts";
 * const yaml = envoyBootstrapYaml({ nodeId: "layer4-01", xdsPort: 18000 });
 * // yaml starts with a comment, then `node: { id: layer4-01, cluster: sigma }` ...
 * ```
 *
 * @module
 */

import { stringify } from "yaml";
import { isIpLiteral } from "../host/ips.ts";

/** Name of the static cluster that points at the agent (the static sync skips it by name). */
export const XDS_CLUSTER_NAME = "xds_cluster";

/** Defaults shared by the generator and the `envoy-bootstrap` subcommand. */
export const BOOTSTRAP_DEFAULTS = {
  cluster: "sigma",
  xdsAddr: "127.0.0.1",
  xdsPort: 18000,
  adminAddr: "127.0.0.1",
  adminPort: 9901,
} as const;

/** What the generated bootstrap connects to and how the Envoy identifies itself. */
export interface EnvoyBootstrapOptions {
  /** `node.id`: the envoy node id known to sigma-api (the agent keys snapshots by it). */
  nodeId: string;
  /** `node.cluster` (default `sigma`). */
  cluster?: string;
  /**
   * Address of the agent's xDS server (default `127.0.0.1`). A wildcard listen address
   * (`0.0.0.0`, `::`) is replaced by the loopback address of the same family; a DNS name makes
   * the xDS cluster `STRICT_DNS` instead of `STATIC`.
   */
  xdsAddr?: string;
  /** Port of the agent's xDS server (default 18000). */
  xdsPort?: number;
  /** Envoy admin listener port on `adminAddr` (default 9901); 0 leaves the admin interface out. */
  adminPort?: number;
  /** Envoy admin listen address (default `127.0.0.1`: the admin API must never face the network). */
  adminAddr?: string;
  /** Connect to the agent over TLS (the agent runs with `--xds-tls-cert`). */
  tls?: BootstrapTls;
}

/** TLS from Envoy to the agent's xDS port: paths as Envoy sees them. */
export interface BootstrapTls {
  /** CA bundle that signed the agent's xDS certificate (required: Envoy must verify the agent). */
  caFile: string;
  /** Envoy's client certificate and key, for an agent with `--xds-tls-client-ca` (mTLS). */
  certFile?: string;
  keyFile?: string;
}

/** An option value the generator refuses; the message names the option. */
export class BootstrapOptionError extends Error {
  override name = "BootstrapOptionError";
}

const DNS_NAME =
  /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

/** Classifies an xDS address: an IP literal (STATIC cluster) or a DNS name (STRICT_DNS). */
function resolveXdsAddress(raw: string): { address: string; isIp: boolean } {
  let a = raw.trim();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  if (a === "0.0.0.0") return { address: "127.0.0.1", isIp: true };
  if (a === "::" || a === "::0") return { address: "::1", isIp: true };
  if (isIpLiteral(a)) return { address: a, isIp: true };
  // All-numeric names are mistyped IPv4 addresses, not host names.
  if (DNS_NAME.test(a) && !/^[\d.]+$/.test(a)) return { address: a, isIp: false };
  throw new BootstrapOptionError(
    `invalid --xds-addr ${JSON.stringify(raw)}: not an IP address or DNS name`,
  );
}

function checkPort(name: string, port: number, allowZero: boolean): number {
  if (!Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw new BootstrapOptionError(
      `invalid --${name} ${JSON.stringify(String(port))}: expected a port number (${
        allowZero ? 0 : 1
      }-65535)`,
    );
  }
  return port;
}

function checkName(name: string, value: string): string {
  if (value.trim() === "") throw new BootstrapOptionError(`invalid --${name}: must not be empty`);
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new BootstrapOptionError(
      `invalid --${name} ${JSON.stringify(value)}: control characters are not allowed`,
    );
  }
  return value;
}

/**
 * Builds the bootstrap as plain data in the proto3 JSON field naming Envoy accepts in YAML.
 *
 * @throws {BootstrapOptionError} for an empty node id, a bad address or port
 *
 * @example
 * ```ts
 * import { envoyBootstrap } from "./bootstrap.ts";
 * const b = envoyBootstrap({ nodeId: "edge-1" });
 * // (b.node as { id: string }).id === "edge-1"
 * ```
 */
export function envoyBootstrap(opts: EnvoyBootstrapOptions): Record<string, unknown> {
  const nodeId = checkName("node-id", opts.nodeId);
  const cluster = checkName("cluster", opts.cluster ?? BOOTSTRAP_DEFAULTS.cluster);
  const xds = resolveXdsAddress(opts.xdsAddr ?? BOOTSTRAP_DEFAULTS.xdsAddr);
  const xdsPort = checkPort("xds-port", opts.xdsPort ?? BOOTSTRAP_DEFAULTS.xdsPort, false);
  const adminPort = checkPort("admin-port", opts.adminPort ?? BOOTSTRAP_DEFAULTS.adminPort, true);
  const adminAddr = opts.adminAddr ?? BOOTSTRAP_DEFAULTS.adminAddr;
  if (!isIpLiteral(adminAddr)) {
    throw new BootstrapOptionError(
      `invalid admin address ${JSON.stringify(adminAddr)}: not an IP address`,
    );
  }

  const transportSocket = opts.tls ? upstreamTls(opts.tls, xds) : undefined;
  const adsSource = { ads: {}, resource_api_version: "V3" };
  const bootstrap: Record<string, unknown> = {
    node: { id: nodeId, cluster },
    dynamic_resources: {
      ads_config: {
        api_type: "GRPC",
        transport_api_version: "V3",
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER_NAME } }],
        // The agent keys a stream by the node of its first request (xds-protocol.md).
        set_node_on_first_message_only: true,
      },
      cds_config: adsSource,
      lds_config: adsSource,
    },
    static_resources: {
      clusters: [{
        name: XDS_CLUSTER_NAME,
        type: xds.isIp ? "STATIC" : "STRICT_DNS",
        connect_timeout: "5s",
        load_assignment: {
          cluster_name: XDS_CLUSTER_NAME,
          endpoints: [{
            lb_endpoints: [{
              endpoint: {
                address: { socket_address: { address: xds.address, port_value: xdsPort } },
              },
            }],
          }],
        },
        typed_extension_protocol_options: {
          "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            // gRPC needs HTTP/2; keepalive pings notice a vanished agent within ~35 s.
            explicit_http_config: {
              http2_protocol_options: { connection_keepalive: { interval: "30s", timeout: "5s" } },
            },
          },
        },
        ...(transportSocket ? { transport_socket: transportSocket } : {}),
      }],
    },
  };
  if (adminPort !== 0) {
    bootstrap.admin = {
      address: { socket_address: { address: adminAddr, port_value: adminPort } },
    };
  }
  return bootstrap;
}

/**
 * The `UpstreamTlsContext` of the xDS cluster: ALPN h2, the agent verified against the CA and
 * its certificate's subject alternative name (the xDS address: IP SAN or DNS SAN plus SNI), and
 * Envoy's client certificate when given.
 */
function upstreamTls(t: BootstrapTls, xds: { address: string; isIp: boolean }) {
  const path = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    return checkName(name, v);
  };
  const ca = path("tls-ca", t.caFile)!;
  const cert = path("tls-cert", t.certFile), key = path("tls-key", t.keyFile);
  if ((cert === undefined) !== (key === undefined)) {
    throw new BootstrapOptionError("--tls-cert and --tls-key must be given together");
  }
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      common_tls_context: {
        alpn_protocols: ["h2"],
        ...(cert && key
          ? {
            tls_certificates: [{
              certificate_chain: { filename: cert },
              private_key: { filename: key },
            }],
          }
          : {}),
        validation_context: {
          trusted_ca: { filename: ca },
          match_typed_subject_alt_names: [{
            san_type: xds.isIp ? "IP_ADDRESS" : "DNS",
            matcher: { exact: xds.address },
          }],
        },
      },
      ...(xds.isIp ? {} : { sni: xds.address }),
    },
  };
}

/** The command line that regenerates a bootstrap, written into its header comment. */
function regenerateCommand(opts: EnvoyBootstrapOptions): string {
  const parts = ["sigma-agent envoy-bootstrap", `--node-id ${shellQuote(opts.nodeId)}`];
  if (opts.cluster !== undefined && opts.cluster !== BOOTSTRAP_DEFAULTS.cluster) {
    parts.push(`--cluster ${shellQuote(opts.cluster)}`);
  }
  if (opts.xdsAddr !== undefined && opts.xdsAddr !== BOOTSTRAP_DEFAULTS.xdsAddr) {
    parts.push(`--xds-addr ${shellQuote(opts.xdsAddr)}`);
  }
  if (opts.xdsPort !== undefined && opts.xdsPort !== BOOTSTRAP_DEFAULTS.xdsPort) {
    parts.push(`--xds-port ${opts.xdsPort}`);
  }
  if (opts.adminPort !== undefined && opts.adminPort !== BOOTSTRAP_DEFAULTS.adminPort) {
    parts.push(`--admin-port ${opts.adminPort}`);
  }
  if (opts.tls) {
    parts.push(`--tls --tls-ca ${shellQuote(opts.tls.caFile)}`);
    if (opts.tls.certFile) parts.push(`--tls-cert ${shellQuote(opts.tls.certFile)}`);
    if (opts.tls.keyFile) parts.push(`--tls-key ${shellQuote(opts.tls.keyFile)}`);
  }
  return parts.join(" ");
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9._:@%+=,/-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;
}

/**
 * Renders the bootstrap as YAML with a header comment naming the command that regenerates it.
 *
 * @throws {BootstrapOptionError} for invalid options
 *
 * @example
 * ```ts
 * import { envoyBootstrapYaml } from "./bootstrap.ts";
 * await Deno.writeTextFile("/etc/envoy/bootstrap.yaml", envoyBootstrapYaml({ nodeId: "edge-1" }));
 * ```
 */
export function envoyBootstrapYaml(opts: EnvoyBootstrapOptions): string {
  const body = stringify(envoyBootstrap(opts), { lineWidth: 0, aliasDuplicateObjects: false });
  const { address, isIp } = resolveXdsAddress(opts.xdsAddr ?? BOOTSTRAP_DEFAULTS.xdsAddr);
  const port = opts.xdsPort ?? BOOTSTRAP_DEFAULTS.xdsPort;
  const target = isIp && address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
  return [
    `# Envoy bootstrap for the sigma-agent xDS (ADS) server at ${target}.`,
    `# Generated by: ${regenerateCommand(opts)}`,
    "# Listeners and clusters arrive over ADS; `envoy --service-node ID` overrides node.id.",
    body,
  ].join("\n");
}

/** Result of a CLI subcommand: what to print and the exit code. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

const USAGE = `Usage: sigma-agent envoy-bootstrap --node-id ID [OPTIONS]

Prints an Envoy bootstrap (YAML) that connects an Envoy to this agent's xDS (ADS) server.

Options:
  --node-id ID        Envoy node id, as registered in sigma-api (required)
  --cluster NAME      node.cluster [default: ${BOOTSTRAP_DEFAULTS.cluster}]
  --xds-addr HOST     agent xDS address; 0.0.0.0 means loopback [env: AGENT_XDS_ADDR] [default: ${BOOTSTRAP_DEFAULTS.xdsAddr}]
  --xds-port PORT     agent xDS port [env: AGENT_XDS_PORT] [default: ${BOOTSTRAP_DEFAULTS.xdsPort}]
  --admin-port PORT   Envoy admin port on 127.0.0.1, 0 for none [default: ${BOOTSTRAP_DEFAULTS.adminPort}]
  --tls               connect over TLS (agent started with --xds-tls-cert); needs --tls-ca
  --tls-ca FILE       CA bundle that signed the agent's xDS certificate (path seen by Envoy)
  --tls-cert FILE     Envoy's client certificate, for an agent with --xds-tls-client-ca (mTLS)
  --tls-key FILE      private key of --tls-cert
  --help              show this help

Example:
  sigma-agent envoy-bootstrap --node-id layer4-01 > /etc/envoy/bootstrap.yaml
  envoy -c /etc/envoy/bootstrap.yaml`;

const FLAGS = new Set([
  "node-id",
  "cluster",
  "xds-addr",
  "xds-port",
  "admin-port",
  "tls",
  "tls-ca",
  "tls-cert",
  "tls-key",
]);

function parsePort(flag: string, raw: string, allowZero: boolean): number {
  if (!/^\d+$/.test(raw.trim())) {
    throw new BootstrapOptionError(
      `invalid --${flag} ${JSON.stringify(raw)}: expected a port number`,
    );
  }
  return checkPort(flag, Number(raw.trim()), allowZero);
}

/**
 * The `sigma-agent envoy-bootstrap` subcommand: parses its flags (`--flag VALUE` or
 * `--flag=VALUE`; `--xds-addr`/`--xds-port` fall back to `AGENT_XDS_ADDR`/`AGENT_XDS_PORT`, so
 * the bootstrap matches the agent configured by the same environment) and returns the bootstrap
 * on stdout with exit code 0, the usage with 0 for `--help`, or an error on stderr with exit 2.
 *
 * @param args the arguments after `envoy-bootstrap`
 * @param env environment to read the xDS fallbacks from (pass `{}` to ignore it)
 *
 * @example
 * ```ts
 * import { envoyBootstrapCommand } from "./bootstrap.ts";
 * const r = envoyBootstrapCommand(["--node-id", "layer4-01", "--xds-port=18001"]);
 * // r.exitCode === 0; r.stdout is the YAML
 * ```
 */
export function envoyBootstrapCommand(
  args: string[],
  env: Record<string, string | undefined> = {},
): CommandResult {
  const values = new Map<string, string>();
  try {
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      if (arg === "--help" || arg === "-h") {
        return { exitCode: 0, stdout: USAGE + "\n", stderr: "" };
      }
      if (!arg.startsWith("--")) {
        throw new BootstrapOptionError(`unexpected argument ${JSON.stringify(arg)}`);
      }
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (!FLAGS.has(name)) throw new BootstrapOptionError(`unknown flag --${name}`);
      if (name === "tls" && eq === -1) values.set(name, "true");
      else if (eq !== -1) values.set(name, arg.slice(eq + 1));
      else if (i + 1 < args.length) values.set(name, args[++i]);
      else throw new BootstrapOptionError(`missing value for --${name}`);
    }
    const nodeId = values.get("node-id");
    if (nodeId === undefined) throw new BootstrapOptionError("--node-id is required");
    const xdsPortRaw = values.get("xds-port") ?? nonEmpty(env.AGENT_XDS_PORT);
    const adminPortRaw = values.get("admin-port");
    const tlsOn = values.get("tls");
    if (tlsOn !== undefined && tlsOn !== "true" && tlsOn !== "false") {
      throw new BootstrapOptionError(
        `invalid --tls=${JSON.stringify(tlsOn)}: expected true or false`,
      );
    }
    const tlsFiles = ["tls-ca", "tls-cert", "tls-key"].filter((f) => values.has(f));
    if (tlsOn !== "true" && tlsFiles.length > 0) {
      throw new BootstrapOptionError(`--${tlsFiles[0]} needs --tls`);
    }
    if (tlsOn === "true" && !values.has("tls-ca")) {
      throw new BootstrapOptionError(
        "--tls needs --tls-ca (the CA that signed the agent's xDS certificate)",
      );
    }
    const opts: EnvoyBootstrapOptions = {
      nodeId,
      cluster: values.get("cluster"),
      xdsAddr: values.get("xds-addr") ?? nonEmpty(env.AGENT_XDS_ADDR),
      xdsPort: xdsPortRaw === undefined ? undefined : parsePort("xds-port", xdsPortRaw, false),
      adminPort: adminPortRaw === undefined
        ? undefined
        : parsePort("admin-port", adminPortRaw, true),
      tls: tlsOn === "true"
        ? {
          caFile: values.get("tls-ca")!,
          certFile: values.get("tls-cert"),
          keyFile: values.get("tls-key"),
        }
        : undefined,
    };
    return { exitCode: 0, stdout: envoyBootstrapYaml(opts), stderr: "" };
  } catch (e) {
    if (!(e instanceof BootstrapOptionError)) throw e;
    return {
      exitCode: 2,
      stdout: "",
      stderr: `sigma-agent envoy-bootstrap: ${e.message} (see --help)\n`,
    };
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}
