/**
 * Structured logger: JSON lines (default) or a human-readable format, with levels and secret
 * redaction. Every registered secret is replaced by `<redacted>` wherever it appears in a message
 * or a field, so an API key can never reach the log, even inside an error text. Redaction covers
 * the forms a secret takes when it is quoted or put in a URL: raw, JSON-escaped (once and twice),
 * percent-encoded (`encodeURIComponent`, URL userinfo, form encoding). The same
 * {@linkcode createRedactor} guards `/status`, the page and `/metrics`.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ format: "json", level: "info", secrets: ["sk_sigma_abc"] });
 * log.info("registered", { vps_id: "42" });
 * log.child({ component: "xds" }).warn("nack", { node_id: "n1" });
 * ```
 *
 * @module
 */

/** Log levels in increasing severity. */
export type Level = "debug" | "info" | "warn" | "error";

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra structured fields of one log line. */
export type Fields = Record<string, unknown>;

/** The logger every module receives. */
export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Fields): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  format?: "json" | "text";
  level?: Level;
  /** Strings never to print (API key, tokens). Empty strings are ignored. */
  secrets?: (string | undefined)[];
  /** Where lines go; defaults to stderr. */
  write?: (line: string) => void;
  now?: () => Date;
}

const encoder = new TextEncoder();

/** The forms `secret` can take inside a message: raw, quoted, percent-encoded. */
export function secretForms(secret: string): string[] {
  const json = (s: string) => JSON.stringify(s).slice(1, -1);
  const forms = new Set([secret, json(secret), json(json(secret)), encodeURIComponent(secret)]);
  try {
    const u = new URL("http://h/");
    u.password = secret;
    forms.add(u.password);
    u.username = secret;
    forms.add(u.username);
  } catch {
    // not representable in a URL
  }
  forms.add(new URLSearchParams({ s: secret }).toString().slice(2));
  forms.add(encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  forms.add(encodeURI(secret));
  return [...forms].filter((f) => f.length > 0).sort((a, b) => b.length - a.length);
}

/**
 * A function that replaces every form of every secret (see {@linkcode secretForms}) by
 * `<redacted>`. Empty and undefined secrets are ignored.
 *
 * @example
 * ```ts
 * import { createRedactor } from "./log.ts";
 * const redact = createRedactor(["s3cr3t/x"]);
 * redact("GET /?k=s3cr3t%2Fx"); // "GET /?k=<redacted>"
 * ```
 */
export function createRedactor(secrets: (string | undefined)[]): (s: string) => string {
  const forms = [
    ...new Set(secrets.filter((s): s is string => !!s && s.length > 0).flatMap(secretForms)),
  ].sort((a, b) => b.length - a.length);
  if (forms.length === 0) return (s) => s;
  return (s: string) => {
    for (const f of forms) if (s.includes(f)) s = s.split(f).join("<redacted>");
    return s;
  };
}

function errorToJson(e: Error): Fields {
  return { name: e.name, message: e.message };
}

/** `v` with every secret form redacted inside its JSON text (unparseable results: dropped). */
function redactValue(redact: (s: string) => string, v: unknown): unknown {
  try {
    return JSON.parse(redact(JSON.stringify(v) ?? "null"));
  } catch {
    return "<redacted>";
  }
}

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const log = createLogger({ write: (l) => lines.push(l) });
 * log.info("hello");
 * ```
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const format = opts.format ?? "json";
  const min = RANK[opts.level ?? "info"];
  const redact = createRedactor(opts.secrets ?? []);
  const write = opts.write ?? ((line: string) => {
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      // A closed stderr must never take the agent down.
    }
  });
  const now = opts.now ?? (() => new Date());

  const emit = (level: Level, msg: string, base: Fields, fields?: Fields) => {
    if (RANK[level] < min) return;
    const all: Fields = { ...base, ...fields };
    for (const [k, v] of Object.entries(all)) {
      if (v instanceof Error) all[k] = errorToJson(v);
    }
    // Redact before serialising (JSON escaping would change a secret's form), then again after.
    msg = redact(msg);
    for (const [k, v] of Object.entries(all)) {
      all[k] = typeof v === "string" ? redact(v) : redactValue(redact, v);
    }
    let line: string;
    if (format === "json") {
      line = JSON.stringify({ ts: now().toISOString(), level, msg, ...all });
    } else {
      const extra = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ");
      line = `${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${
        extra ? " " + extra : ""
      }`;
    }
    write(redact(line));
  };

  const make = (base: Fields): Logger => ({
    debug: (m, f) => emit("debug", m, base, f),
    info: (m, f) => emit("info", m, base, f),
    warn: (m, f) => emit("warn", m, base, f),
    error: (m, f) => emit("error", m, base, f),
    child: (f) => make({ ...base, ...f }),
  });
  return make({});
}

/** A logger that drops everything (tests and benchmarks). */
export const silentLogger: Logger = createLogger({ write: () => {} });

/**
 * A failure that recurs on every poll is logged once, not at every poll: the first occurrence
 * (and any change of its message) at `warn` or `error`, repeats at `debug`, and when it clears a
 * single `info` line "<what> recovered" with the number of failures in between. One instance per
 * loop (heartbeat, static sync, xDS poll, public-IP lookup). Two failures are the same when their
 * message and their `error` field are equal; other fields (a retry delay) may differ.
 *
 * @example
 * ```ts
 * const lines: string[] = [];
 * const gate = new RepeatedFailure(createLogger({ write: (l) => lines.push(l) }), "heartbeat");
 * gate.fail("heartbeat failed: connection refused; retrying in 60 s"); // logged
 * gate.fail("heartbeat failed: connection refused; retrying in 60 s"); // debug only
 * gate.ok(); // info "heartbeat recovered" failures=2
 * ```
 */
export class RepeatedFailure {
  readonly #log: Logger;
  readonly #what: string;
  #message: string | undefined;
  #key: string | undefined;
  #failures = 0;
  #since: string | undefined;

  constructor(log: Logger, what: string) {
    this.#log = log;
    this.#what = what;
  }

  /** Whether the last outcome was a failure. */
  get failing(): boolean {
    return this.#failures > 0;
  }

  /** Failures since the last success. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Records a failure. Logs `msg` at `level` when it is the first failure or it changed (message
   * or `error` field), else at debug level with the running count. Returns whether it was logged
   * at `level`.
   */
  fail(msg: string, fields: Fields = {}, level: "warn" | "error" = "warn"): boolean {
    this.#failures++;
    this.#since ??= new Date().toISOString();
    const key = JSON.stringify([msg, String(fields.error ?? "")]);
    if (key === this.#key) {
      this.#log.debug(msg, { ...fields, repeats: this.#failures });
      return false;
    }
    this.#key = key;
    this.#message = fields.error === undefined ? msg : `${msg}: ${fields.error}`;
    this.#log[level](msg, this.#failures > 1 ? { ...fields, failures: this.#failures } : fields);
    return true;
  }

  /** Records a success; after failures logs one info line with their count. */
  ok(fields: Fields = {}): void {
    if (this.#failures === 0) return;
    this.#log.info(`${this.#what} recovered`, {
      ...fields,
      failures: this.#failures,
      failing_since: this.#since,
      last_error: this.#message,
    });
    this.#failures = 0;
    this.#key = undefined;
    this.#message = undefined;
    this.#since = undefined;
  }
}
