/**
 * The metrics port's web configuration file (`--web-config-file`), in the exporter-toolkit format
 * node_exporter and every Prometheus exporter read with `--web.config.file`, so operators reuse
 * the file they already have:
 *
 * ```yaml
 * tls_server_config:
 *   cert_file: /etc/sigma-agent/tls.crt
 *   key_file: /etc/sigma-agent/tls.key
 *   client_auth_type: RequireAndVerifyClientCert
 *   client_ca_file: /etc/sigma-agent/client-ca.crt
 *   min_version: TLS13
 * basic_auth_users:
 *   prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
 * http_server_config:
 *   headers:
 *     Strict-Transport-Security: max-age=31536000
 * ```
 *
 * Like exporter-toolkit, unknown keys are errors and relative paths are relative to the file's
 * directory. Settings the agent's TLS stack (rustls under `node:tls`) cannot honour are refused
 * with a clear error instead of being ignored: TLS 1.0/1.1, `cipher_suites`,
 * `curve_preferences`, `client_allowed_sans`, inline `cert`/`key`, the client auth types
 * `RequestClientCert` and `RequireAnyClientCert`, and `http2: true` (the port speaks HTTP/1.1).
 *
 * The file is re-read when it changes (checked on every request and connection, as
 * exporter-toolkit re-reads it per request). A file that no longer parses, or that changes
 * something only a restart can apply (TLS on/off, client auth type, TLS versions), keeps the last
 * good configuration; the error is logged once, shown in `/status` (`web_config`) and counted by
 * `sigma_agent_web_config_last_reload_successful`.
 *
 * @example
 * ```ts
 * import { WebConfig } from "./web_config.ts";
 * const web = new WebConfig("/etc/sigma-agent/web-config.yml");
 * web.load(); // throws WebConfigError at start
 * // per request: const denied = await web.authenticate(req);
 * ```
 *
 * @module
 */

import Gauge from "prom-client/lib/gauge.js";
import type * as PromClient from "prom-client";
import { parse } from "yaml";
import type { Logger } from "../core/log.ts";
import { type ClientAuth, type TlsFilePaths, TlsFiles } from "../tls/listener.ts";

/** A web config file the agent refuses; the message names the key. */
export class WebConfigError extends Error {
  override name = "WebConfigError";
}

/** The parsed, validated file. */
export interface WebSettings {
  tls: TlsFilePaths | undefined;
  /** username -> bcrypt hash; empty: no authentication. */
  users: Map<string, string>;
  /** Extra response headers. */
  headers: [string, string][];
}

/** Headers exporter-toolkit allows in `http_server_config.headers`. */
const ALLOWED_HEADERS = [
  "Strict-Transport-Security",
  "X-Content-Type-Options",
  "X-Frame-Options",
  "X-XSS-Protection",
  "Content-Security-Policy",
];

const CLIENT_AUTH: Record<string, ClientAuth | "unsupported"> = {
  NoClientCert: "none",
  VerifyClientCertIfGiven: "verify_if_given",
  RequireAndVerifyClientCert: "require",
  RequestClientCert: "unsupported",
  RequireAnyClientCert: "unsupported",
};

const VERSIONS: Record<string, "TLSv1.2" | "TLSv1.3" | "unsupported"> = {
  TLS10: "unsupported",
  TLS11: "unsupported",
  TLS12: "TLSv1.2",
  TLS13: "TLSv1.3",
};

const BCRYPT = /^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$/;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function section(v: unknown, where: string): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new WebConfigError(`${where}: expected a mapping`);
  return v;
}

function onlyKeys(o: Obj, where: string, keys: string[]): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) {
      throw new WebConfigError(`${where}: unknown field ${JSON.stringify(k)}`);
    }
  }
}

function str(o: Obj, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new WebConfigError(`${where}.${key}: expected a string`);
  return v;
}

function unsupported(o: Obj, key: string, where: string, why: string): void {
  const v = o[key];
  if (v === undefined || v === null || (Array.isArray(v) && v.length === 0)) return;
  throw new WebConfigError(`${where}.${key} is not supported by sigma-agent: ${why}`);
}

/**
 * Parses and validates the file's text. Paths are resolved against `dir`.
 *
 * @throws {WebConfigError} naming the offending key
 *
 * @example
 * ```ts
 * import { parseWebConfig } from "./web_config.ts";
 * parseWebConfig("basic_auth_users: {}", "/etc/sigma-agent").users.size; // 0
 * ```
 */
export function parseWebConfig(text: string, dir: string): WebSettings {
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100 });
  } catch (e) {
    throw new WebConfigError(`not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  const root = section(doc, "web config");
  onlyKeys(root, "web config", ["tls_server_config", "http_server_config", "basic_auth_users"]);
  const resolve = (p: string) => (p.startsWith("/") ? p : `${dir.replace(/\/$/, "")}/${p}`);

  // tls_server_config
  const t = section(root.tls_server_config, "tls_server_config");
  const W = "tls_server_config";
  onlyKeys(t, W, [
    "cert_file",
    "key_file",
    "cert",
    "key",
    "client_auth_type",
    "client_ca_file",
    "client_ca",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
  ]);
  unsupported(t, "cert", W, "inline certificates are not read; use cert_file");
  unsupported(t, "key", W, "inline keys are not read; use key_file");
  unsupported(t, "client_ca", W, "inline CAs are not read; use client_ca_file");
  unsupported(t, "cipher_suites", W, "Deno's TLS (rustls) offers no cipher suite selection");
  unsupported(t, "curve_preferences", W, "Deno's TLS (rustls) offers no curve selection");
  unsupported(t, "client_allowed_sans", W, "client SAN filtering is not implemented");
  const pssc = t.prefer_server_cipher_suites;
  if (pssc !== undefined && typeof pssc !== "boolean") {
    throw new WebConfigError(`${W}.prefer_server_cipher_suites: expected true or false`);
  }
  let tls: TlsFilePaths | undefined;
  const certFile = str(t, "cert_file", W);
  const keyFile = str(t, "key_file", W);
  if (Object.keys(t).length > 0) {
    if (!certFile || !keyFile) {
      throw new WebConfigError(`${W}: cert_file and key_file are both required`);
    }
    const authName = str(t, "client_auth_type", W) ?? "NoClientCert";
    const clientAuth = CLIENT_AUTH[authName];
    if (!clientAuth) {
      throw new WebConfigError(
        `${W}.client_auth_type: unknown ${JSON.stringify(authName)} (expected one of ${
          Object.keys(CLIENT_AUTH).join(", ")
        })`,
      );
    }
    if (clientAuth === "unsupported") {
      throw new WebConfigError(
        `${W}.client_auth_type ${authName} is not supported by sigma-agent (Deno's TLS cannot ` +
          "request a certificate without verifying it); use RequireAndVerifyClientCert or " +
          "VerifyClientCertIfGiven",
      );
    }
    const ca = str(t, "client_ca_file", W);
    if (clientAuth !== "none" && !ca) {
      throw new WebConfigError(`${W}.client_auth_type ${authName} needs client_ca_file`);
    }
    if (clientAuth === "none" && ca) {
      throw new WebConfigError(
        `${W}.client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type ` +
          "to RequireAndVerifyClientCert (or remove client_ca_file)",
      );
    }
    const version = (key: string, dflt: string | undefined) => {
      const raw = str(t, key, W) ?? dflt;
      if (raw === undefined) return undefined;
      const v = VERSIONS[raw];
      if (!v) {
        throw new WebConfigError(
          `${W}.${key}: unknown ${JSON.stringify(raw)} (expected TLS12 or TLS13)`,
        );
      }
      if (v === "unsupported") {
        throw new WebConfigError(
          `${W}.${key} ${raw} is not supported by sigma-agent: Deno's TLS speaks TLS 1.2 and 1.3 only`,
        );
      }
      return v;
    };
    const minVersion = version("min_version", "TLS12")!;
    const maxVersion = version("max_version", undefined);
    if (maxVersion === "TLSv1.2" && minVersion === "TLSv1.3") {
      throw new WebConfigError(`${W}: min_version is above max_version`);
    }
    tls = {
      certFile: resolve(certFile),
      keyFile: resolve(keyFile),
      clientCaFile: ca ? resolve(ca) : undefined,
      clientAuth,
      minVersion,
      maxVersion,
    };
  }

  // http_server_config
  const h = section(root.http_server_config, "http_server_config");
  onlyKeys(h, "http_server_config", ["http2", "headers"]);
  if (h.http2 !== undefined && h.http2 !== false) {
    throw new WebConfigError(
      "http_server_config.http2 is not supported by sigma-agent: the metrics port speaks " +
        "HTTP/1.1 only; remove it or set it to false",
    );
  }
  const headers: [string, string][] = [];
  for (const [name, value] of Object.entries(section(h.headers, "http_server_config.headers"))) {
    const canonical = ALLOWED_HEADERS.find((a) => a.toLowerCase() === name.toLowerCase());
    if (!canonical) {
      throw new WebConfigError(
        `http_server_config.headers: ${JSON.stringify(name)} is not allowed (allowed: ${
          ALLOWED_HEADERS.join(", ")
        })`,
      );
    }
    // deno-lint-ignore no-control-regex
    if (typeof value !== "string" || value === "" || /[\x00-\x1f\x7f]/.test(value)) {
      throw new WebConfigError(`http_server_config.headers.${canonical}: invalid value`);
    }
    headers.push([canonical, value]);
  }

  // basic_auth_users
  const users = new Map<string, string>();
  for (
    const [user, hash] of Object.entries(section(root.basic_auth_users, "basic_auth_users"))
  ) {
    // The hash is not a secret, but a plaintext password pasted by mistake would be: never echo it.
    if (typeof hash !== "string" || !BCRYPT.test(hash)) {
      throw new WebConfigError(
        `basic_auth_users.${JSON.stringify(user)}: not a bcrypt hash (value not shown)`,
      );
    }
    if (user.includes(":")) {
      throw new WebConfigError(`basic_auth_users: user names cannot contain ":"`);
    }
    users.set(user, hash);
  }
  return { tls, users, headers };
}

function sameTlsPolicy(a: TlsFilePaths | undefined, b: TlsFilePaths | undefined): string {
  if (!a !== !b) return "turning TLS on or off";
  if (!a || !b) return "";
  if (a.clientAuth !== b.clientAuth) return "changing client_auth_type";
  if (a.minVersion !== b.minVersion || a.maxVersion !== b.maxVersion) {
    return "changing min_version/max_version";
  }
  return "";
}

/** Reload outcome, as `/status` and the metric show it. */
export interface WebConfigStatus {
  path: string;
  tls: boolean;
  client_auth: ClientAuth | null;
  basic_auth_users: number;
  last_reload_successful: boolean;
  last_reload_success_at: string | null;
  error: string | null;
  certificates_loaded_at: string | null;
}

/** Options of {@linkcode WebConfig}. */
export interface WebConfigOptions {
  log?: Logger;
  /** Called after each reload attempt (metrics). */
  onReload?: (ok: boolean, at: Date) => void;
}

/** Cached bcrypt verdicts: checking a hash costs ~50-100 ms, scrapes come every few seconds. */
const CACHE_LIMIT = 256;

/** The live web configuration of the metrics port. */
export class WebConfig {
  readonly path: string;
  readonly #opts: WebConfigOptions;
  #settings: WebSettings | undefined;
  #seen = "";
  #error: string | undefined;
  #okAt: Date | undefined;
  #tls: TlsFiles | undefined;
  readonly #verdicts = new Map<string, boolean>();

  constructor(path: string, opts: WebConfigOptions = {}) {
    this.path = path;
    this.#opts = opts;
  }

  #fingerprint(): string {
    try {
      const st = Deno.statSync(this.path);
      return `${st.ino}:${st.size}:${st.mtime?.getTime()}`;
    } catch (e) {
      return `missing:${(e as Error).message}`;
    }
  }

  #read(): WebSettings {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.path);
    } catch (e) {
      throw new WebConfigError(`cannot read: ${(e as Error).message}`);
    }
    return parseWebConfig(text, this.path.slice(0, this.path.lastIndexOf("/")) || "/");
  }

  /**
   * Loads the file and its TLS material at start.
   *
   * @throws {WebConfigError} with a message naming the file and the problem
   */
  load(): WebSettings {
    this.#seen = this.#fingerprint();
    try {
      const s = this.#read();
      if (s.tls) {
        this.#tls = new TlsFiles(s.tls, (m) => this.#reportTls(m));
        this.#tls.load();
      }
      this.#settings = s;
    } catch (e) {
      throw new WebConfigError(`web config ${this.path}: ${(e as Error).message}`);
    }
    this.#okAt = new Date();
    this.#opts.onReload?.(true, this.#okAt);
    return this.#settings;
  }

  #reportTls(message: string) {
    this.#opts.onReload?.(false, new Date());
    this.#opts.log?.error("web config: TLS certificate reload failed; keeping the last good one", {
      path: this.path,
      error: message,
    });
  }

  /** The settings in use, re-read first when the file changed. */
  current(): WebSettings {
    if (!this.#settings) return this.load();
    const seen = this.#fingerprint();
    if (seen === this.#seen) return this.#settings;
    this.#seen = seen;
    const at = new Date();
    try {
      const next = this.#read();
      const restart = sameTlsPolicy(this.#settings.tls, next.tls);
      if (restart) throw new WebConfigError(`${restart} needs a restart of the agent`);
      if (next.tls) this.#tls!.replace(next.tls);
      this.#settings = next;
      this.#verdicts.clear();
      this.#error = undefined;
      this.#okAt = at;
      this.#opts.onReload?.(true, at);
      this.#opts.log?.info("web config reloaded", {
        path: this.path,
        basic_auth_users: next.users.size,
      });
    } catch (e) {
      this.#error = (e as Error).message;
      this.#opts.onReload?.(false, at);
      this.#opts.log?.error("web config reload failed; keeping the last good configuration", {
        path: this.path,
        error: this.#error,
      });
    }
    return this.#settings;
  }

  /** The TLS material (when the file has `tls_server_config`), current as of this call. */
  get tls(): TlsFiles | undefined {
    this.current();
    return this.#tls;
  }

  /** Response headers from `http_server_config.headers`. */
  headers(): [string, string][] {
    return this.current().headers;
  }

  /**
   * Checks HTTP Basic credentials against `basic_auth_users`: `undefined` when the request may
   * pass (or no users are configured), else the 401 response.
   */
  async authenticate(req: Request): Promise<Response | undefined> {
    const users = this.current().users;
    if (users.size === 0) return undefined;
    const denied = () =>
      new Response(JSON.stringify({ error: "unauthorized" }), {
        status: 401,
        headers: {
          "content-type": "application/json",
          "www-authenticate": 'Basic realm="sigma-agent", charset="UTF-8"',
        },
      });
    const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(req.headers.get("authorization") ?? "");
    if (!m) return denied();
    let decoded: string;
    try {
      decoded = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)),
      );
    } catch {
      return denied();
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) return denied();
    const user = decoded.slice(0, colon), password = decoded.slice(colon + 1);
    const hash = users.get(user);
    // Unknown users still cost one bcrypt check, so timing does not reveal which users exist.
    const key = await cacheKey(user, password, hash ?? "");
    let ok = this.#verdicts.get(key);
    if (ok === undefined) {
      // Loaded on the first check: bcryptjs costs ~10 MB of resident memory, idle agents skip it.
      const bcrypt = (await import("bcryptjs")).default;
      ok = await bcrypt.compare(password, hash ?? DUMMY_HASH) && hash !== undefined;
      if (this.#verdicts.size >= CACHE_LIMIT) this.#verdicts.clear();
      this.#verdicts.set(key, ok);
    }
    return ok ? undefined : denied();
  }

  /** The `web_config` section of `/status`. */
  status(): WebConfigStatus {
    const s = this.current();
    return {
      path: this.path,
      tls: !!s.tls,
      client_auth: s.tls?.clientAuth ?? null,
      basic_auth_users: s.users.size,
      last_reload_successful: this.#error === undefined && this.#tls?.error === undefined,
      last_reload_success_at: this.#okAt?.toISOString() ?? null,
      error: this.#error ?? this.#tls?.error ?? null,
      certificates_loaded_at: this.#tls?.loadedAt?.toISOString() ?? null,
    };
  }
}

/** A valid hash of a random password, compared against for unknown users. */
const DUMMY_HASH = "$2b$10$zH9xJbsfSszhrVsS9SwiP.Q4sWOMUYotjexzBj8.PY2tleIqTDfNa";

/** SHA-256 of the credentials and hash: the verdict cache never holds a password. */
async function cacheKey(user: string, password: string, hash: string): Promise<string> {
  const bytes = new TextEncoder().encode(`${user}\u0000${password}\u0000${hash}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Registers `sigma_agent_web_config_last_reload_successful` (1 when the file in use is current,
 * 0 when the last change was refused and the last good configuration is kept) and
 * `sigma_agent_web_config_last_reload_success_timestamp_seconds` in `registry`, like
 * Prometheus's own `prometheus_config_last_reload_successful`.
 */
export function registerWebConfigMetrics(registry: PromClient.Registry, web: WebConfig): void {
  const G = Gauge as unknown as typeof PromClient.Gauge;
  new G({
    name: "sigma_agent_web_config_last_reload_successful",
    help: "Whether the last reload of --web-config-file (and its certificates) succeeded.",
    registers: [registry],
    collect() {
      this.set(web.status().last_reload_successful ? 1 : 0);
    },
  });
  new G({
    name: "sigma_agent_web_config_last_reload_success_timestamp_seconds",
    help: "Time of the last successful reload of --web-config-file.",
    registers: [registry],
    collect() {
      const at = web.status().last_reload_success_at;
      this.set(at ? Date.parse(at) / 1000 : 0);
    },
  });
}
