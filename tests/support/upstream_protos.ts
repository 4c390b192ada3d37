/**
 * The upstream Envoy API protos (shipped in the npm package `@grpc/grpc-js-xds`, folder `deps/`),
 * loaded with protobufjs, for tests that must prove wire and schema compatibility with real Envoy:
 *
 * - {@linkcode decodeAny} decodes bytes we send with the upstream schema, expands every nested
 *   `google.protobuf.Any`, and fails if a field is unknown upstream (re-encoding must give back
 *   the exact bytes).
 * - {@linkcode strictBootstrapFromYaml} / {@linkcode strictJsonProblems} check a YAML/JSON config
 *   the way Envoy parses it: unknown fields are errors (also inside `typed_config` Anys), values
 *   must fit the proto3 JSON mapping, and the common protoc-gen-validate rules hold (required
 *   fields, `min_len`, port ranges, durations > 0, required oneofs...).
 *
 * Types referenced only by an Any `@type` are loaded on demand: the package directory of the type
 * (e.g. `envoy/extensions/upstreams/http/v3/`) is loaded from the upstream tree.
 *
 * @example
 * ```ts
 * import { strictBootstrapFromYaml } from "./upstream_protos.ts";
 * strictBootstrapFromYaml("node: { id: n1, cluster: sigma }"); // ok
 * strictBootstrapFromYaml("node: { idd: n1 }"); // throws StrictProtoError: node: unknown field "idd" ...
 * ```
 *
 * @module
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import protobuf from "protobufjs";
import { parse as parseYaml } from "yaml";

const require = createRequire(import.meta.url);

/** The upstream proto trees inside `@grpc/grpc-js-xds/deps`, in include-path order. */
export const UPSTREAM_INCLUDE_DIRS: readonly string[] = (() => {
  const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  return ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d));
})();

/** Files loaded up front: everything our control plane sends, plus the Bootstrap. */
const ROOT_FILES = [
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  "envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol.proto",
  "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
  "envoy/service/discovery/v3/ads.proto",
  "envoy/service/cluster/v3/cds.proto",
  "envoy/service/listener/v3/lds.proto",
];

let commonRegistered = false;
let cachedRoot: protobuf.Root | undefined;

/** Makes `google/protobuf/descriptor.proto` etc. resolvable, as @grpc/proto-loader does. */
function registerCommonProtos(): void {
  if (commonRegistered) return;
  for (const name of ["api", "descriptor", "source_context", "type"]) {
    const json = require(`protobufjs/google/protobuf/${name}.json`);
    protobuf.common(name, json.nested.google.nested.protobuf.nested);
  }
  commonRegistered = true;
}

function resolveInclude(_origin: string, target: string): string {
  if (target.startsWith("/")) return target;
  for (const dir of UPSTREAM_INCLUDE_DIRS) {
    const path = join(dir, target);
    if (existsSync(path)) return path;
  }
  return target; // protobufjs serves google/protobuf/* from its bundled copies
}

/**
 * The protobufjs Root with the upstream Envoy API loaded (field names as in the .proto files,
 * i.e. snake_case). Loaded once per process; later calls return the same Root, which grows as
 * {@linkcode lookupUpstreamType} loads packages on demand.
 *
 * @example
 * ```ts
 * import { loadUpstream } from "./upstream_protos.ts";
 * const Cluster = loadUpstream().lookupType("envoy.config.cluster.v3.Cluster");
 * ```
 */
export function loadUpstream(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  registerCommonProtos();
  const root = new protobuf.Root();
  root.resolvePath = resolveInclude;
  root.loadSync(ROOT_FILES, { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

function tryLookup(root: protobuf.Root, name: string): protobuf.Type | protobuf.Enum | null {
  const found = root.lookup(name.startsWith(".") ? name : "." + name);
  return found instanceof protobuf.Type || found instanceof protobuf.Enum ? found : null;
}

/**
 * Looks up a message type by full name or type URL (`type.googleapis.com/<name>`), loading the
 * upstream package directory that should define it when it is not loaded yet.
 *
 * @returns the type, or `null` when no upstream proto defines it.
 *
 * @example
 * ```ts
 * import { lookupUpstreamType } from "./upstream_protos.ts";
 * lookupUpstreamType("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
 * ```
 */
export function lookupUpstreamType(nameOrUrl: string): protobuf.Type | null {
  const name = nameOrUrl.slice(nameOrUrl.lastIndexOf("/") + 1);
  if (!/^[A-Za-z_][\w.]*$/.test(name)) return null;
  const root = loadUpstream();
  let found = tryLookup(root, name);
  if (found === null) {
    // Try the package directory for a top-level message, then for nested ones (Outer.Inner).
    const parts = name.split(".");
    for (let cut = parts.length - 1; cut > 0 && found === null; cut--) {
      const rel = parts.slice(0, cut).join("/");
      const files: string[] = [];
      for (const dir of UPSTREAM_INCLUDE_DIRS) {
        const pkgDir = join(dir, rel);
        if (!existsSync(pkgDir)) continue;
        for (const f of readdirSync(pkgDir)) {
          if (f.endsWith(".proto")) files.push(`${rel}/${f}`);
        }
      }
      if (files.length === 0) continue;
      root.loadSync(files, { keepCase: true });
      root.resolveAll();
      found = tryLookup(root, name);
    }
  }
  return found instanceof protobuf.Type ? found : null;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A decoded message as a plain object; nested Anys become `{"@type": url, ...fields}`. */
export type DecodedObject = Record<string, unknown>;

function expandAnys(type: protobuf.Type, obj: DecodedObject, path: string): DecodedObject {
  for (const field of type.fieldsArray) {
    const value = obj[field.name];
    if (value === undefined || value === null) continue;
    field.resolve();
    const fieldType = field.resolvedType;
    if (!(fieldType instanceof protobuf.Type)) continue;
    const convert = (v: unknown, p: string): unknown => {
      const o = v as DecodedObject;
      if (fieldType.fullName === ".google.protobuf.Any") {
        const url = String(o.type_url ?? "");
        const bytes = o.value instanceof Uint8Array ? o.value : new Uint8Array();
        return { "@type": url, ...decodeAny(url, bytes, p) };
      }
      return expandAnys(fieldType, o, p);
    };
    if (field.map) {
      const m = value as Record<string, unknown>;
      for (const k of Object.keys(m)) m[k] = convert(m[k], `${path}.${field.name}[${k}]`);
    } else if (field.repeated) {
      obj[field.name] = (value as unknown[]).map((v, i) =>
        convert(v, `${path}.${field.name}[${i}]`)
      );
    } else {
      obj[field.name] = convert(value, `${path}.${field.name}`);
    }
  }
  return obj;
}

/**
 * Decodes `bytes` as the upstream message named by `typeUrl` and returns it as a plain object
 * (snake_case names, enums as names, 64-bit ints as strings, only fields present on the wire),
 * with every nested `google.protobuf.Any` decoded in turn and shown as `{"@type": url, ...}`.
 *
 * @throws Error when the type is unknown upstream, the bytes do not parse, or they hold fields
 *   the upstream schema does not know (re-encoding does not reproduce the input exactly).
 *
 * @example
 * ```ts
 * import { decodeAny } from "./upstream_protos.ts";
 * const bytes = new Uint8Array([10, 3, 119, 101, 98]); // name = "web"
 * decodeAny("type.googleapis.com/envoy.config.cluster.v3.Cluster", bytes); // { name: "web" }
 * ```
 */
export function decodeAny(typeUrl: string, bytes: Uint8Array, path = "$"): DecodedObject {
  const type = lookupUpstreamType(typeUrl);
  if (type === null) throw new Error(`${path}: no upstream type for ${JSON.stringify(typeUrl)}`);
  const message = type.decode(bytes);
  const again = type.encode(message).finish();
  if (!bytesEqual(again, bytes)) {
    throw new Error(
      `${path}: ${type.fullName.slice(1)} bytes contain fields the upstream schema does not know ` +
        `(or encode them differently)`,
    );
  }
  const obj = type.toObject(message, {
    enums: String,
    longs: String,
    defaults: false,
    oneofs: false,
  }) as DecodedObject;
  return expandAnys(type, obj, path);
}

/** A config that does not match the upstream schema; `problems` lists every violation. */
export class StrictProtoError extends Error {
  override name = "StrictProtoError";
  constructor(readonly typeName: string, readonly problems: readonly string[]) {
    super(`${typeName}: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
  }
}

type Rules = Record<string, unknown>;

/** The `(validate.rules)` of a field, as protobufjs parsed them (empty when none). */
function validateRules(field: protobuf.Field): Rules {
  const rules: Rules = {};
  // The typings say object, but protobufjs keeps one entry per option statement in an array.
  const parsed = (field.parsedOptions ?? []) as unknown as Record<string, unknown>[];
  for (const opt of parsed) {
    const r = (opt as Record<string, unknown>)["(validate.rules)"];
    if (r && typeof r === "object") Object.assign(rules, r);
  }
  return rules;
}

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

const DURATION_RE = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;

/** Duration string → nanoseconds, or null when malformed. */
function durationNanos(text: string): bigint | null {
  const m = DURATION_RE.exec(text);
  if (!m) return null;
  const nanos = BigInt(m[2]) * 1_000_000_000n + BigInt((m[3] ?? "").padEnd(9, "0") || "0");
  return m[1] ? -nanos : nanos;
}

function ruleDurationNanos(v: unknown): bigint {
  const o = (v ?? {}) as { seconds?: number | string; nanos?: number };
  return BigInt(o.seconds ?? 0) * 1_000_000_000n + BigInt(o.nanos ?? 0);
}

function showNanos(nanos: bigint): string {
  const sign = nanos < 0n ? "-" : "";
  const abs = nanos < 0n ? -nanos : nanos;
  const frac = (abs % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${sign}${abs / 1_000_000_000n}${frac ? "." + frac : ""}s`;
}

/** Wrapper types → the scalar kind they wrap (their JSON form is that scalar's). */
const WRAPPER_KINDS: Record<string, string> = {
  "google.protobuf.BoolValue": "bool",
  "google.protobuf.StringValue": "string",
  "google.protobuf.BytesValue": "bytes",
  "google.protobuf.DoubleValue": "double",
  "google.protobuf.FloatValue": "float",
  "google.protobuf.Int32Value": "int32",
  "google.protobuf.UInt32Value": "uint32",
  "google.protobuf.Int64Value": "int64",
  "google.protobuf.UInt64Value": "uint64",
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Proto field name → lowerCamelCase JSON name (both are accepted, as by Envoy's parser). */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Well-known types whose JSON form is not an object of fields (wrapped in "value" in an Any). */
const SPECIAL_JSON_WKTS = new Set(
  [
    "Any",
    "Duration",
    "Timestamp",
    "FieldMask",
    "Struct",
    "Value",
    "ListValue",
    "BoolValue",
    "StringValue",
    "BytesValue",
    "DoubleValue",
    "FloatValue",
    "Int32Value",
    "UInt32Value",
    "Int64Value",
    "UInt64Value",
  ].map((n) => `google.protobuf.${n}`),
);

class StrictChecker {
  readonly problems: string[] = [];

  private fail(path: string, msg: string): void {
    this.problems.push(`${path}: ${msg}`);
  }

  /** Checks a JSON value against a message type. */
  message(type: protobuf.Type, value: unknown, path: string): void {
    const full = type.fullName.slice(1);
    if (this.wellKnown(full, value, path)) return;
    if (!isObject(value)) {
      this.fail(path, `expected an object for ${full}, got ${JSON.stringify(value)}`);
      return;
    }
    const byName = new Map<string, protobuf.Field>();
    for (const f of type.fieldsArray) {
      byName.set(f.name, f);
      byName.set(jsonName(f.name), f);
    }
    const present = new Set<string>();
    for (const [key, v] of Object.entries(value)) {
      const field = byName.get(key);
      const p = path === "" ? key : `${path}.${key}`;
      if (!field) {
        this.fail(p, `unknown field ${JSON.stringify(key)} in ${full}`);
        continue;
      }
      if (present.has(field.name)) {
        this.fail(
          p,
          `field ${field.name} given twice (as ${field.name} and ${jsonName(field.name)})`,
        );
      }
      if (v === null) continue; // proto3 JSON: null means "not set"
      present.add(field.name);
      this.field(field, v, p);
    }
    for (const field of type.fieldsArray) {
      const rules = validateRules(field);
      const p = path === "" ? field.name : `${path}.${field.name}`;
      const msgRules = rules.message as Rules | undefined;
      const durRules = rules.duration as Rules | undefined;
      const anyRules = rules.any as Rules | undefined;
      const required = msgRules?.required === true || durRules?.required === true ||
        anyRules?.required === true;
      // A oneof member's rules apply only when that member is the one set (as in PGV).
      if (required && !present.has(field.name) && !field.partOf) {
        this.fail(p, "required field is missing");
      }
      if (!present.has(field.name)) {
        // Rules that an unset (default) value also violates.
        const str = rules.string as Rules | undefined;
        const needsText = Number(str?.min_len ?? 0) > 0 || Number(str?.min_bytes ?? 0) > 0;
        if (str && needsText && str.ignore_empty !== true) {
          if (!field.partOf) {
            this.fail(p, `must not be empty (min_len ${str.min_len ?? str.min_bytes})`);
          }
        }
        const rep = rules.repeated as Rules | undefined;
        if (rep && Number(rep.min_items ?? 0) > 0) {
          this.fail(p, `needs at least ${rep.min_items} item(s)`);
        }
      }
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.oneof.filter((n) => present.has(n));
      const p = path === "" ? oneof.name : `${path}.${oneof.name}`;
      if (set.length > 1) {
        this.fail(p, `oneof ${oneof.name} has several members set: ${set.join(", ")}`);
      }
      if (set.length === 0 && oneof.options?.["(validate.required)"] === true) {
        this.fail(p, `one of ${oneof.oneof.join(", ")} is required`);
      }
    }
  }

  private field(field: protobuf.Field, value: unknown, path: string): void {
    field.resolve();
    const rules = validateRules(field);
    if (field.map) {
      if (!isObject(value)) {
        this.fail(path, `expected a map (object), got ${JSON.stringify(value)}`);
        return;
      }
      const mapRules = rules.map as Rules | undefined;
      const n = Object.keys(value).length;
      if (mapRules?.min_pairs !== undefined && n < Number(mapRules.min_pairs)) {
        this.fail(path, `needs at least ${mapRules.min_pairs} entr(y/ies)`);
      }
      const valueRules = (mapRules?.values ?? {}) as Rules;
      for (const [k, v] of Object.entries(value)) {
        this.single(field, v, `${path}[${JSON.stringify(k)}]`, valueRules);
      }
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) {
        this.fail(path, `expected a list, got ${JSON.stringify(value)}`);
        return;
      }
      const rep = (rules.repeated ?? {}) as Rules;
      if (rep.min_items !== undefined && value.length < Number(rep.min_items)) {
        this.fail(path, `needs at least ${rep.min_items} item(s), has ${value.length}`);
      }
      if (rep.max_items !== undefined && value.length > Number(rep.max_items)) {
        this.fail(path, `allows at most ${rep.max_items} item(s), has ${value.length}`);
      }
      const itemRules = (rep.items ?? {}) as Rules;
      value.forEach((v, i) => this.single(field, v, `${path}[${i}]`, itemRules));
      return;
    }
    this.single(field, value, path, rules);
  }

  /** One (non-repeated) value of a field, with the rules that apply to it. */
  private single(field: protobuf.Field, value: unknown, path: string, rules: Rules): void {
    const t = field.resolvedType;
    if (t instanceof protobuf.Type) {
      const wrapped = WRAPPER_KINDS[t.fullName.slice(1)];
      if (wrapped !== undefined) {
        // PGV puts a wrapper field's rules under the wrapped scalar's kind (uint32, bool...).
        this.scalar(wrapped, value, path, rules);
        return;
      }
      if (t.fullName === ".google.protobuf.Duration" && typeof value === "string") {
        const d = rules.duration as Rules | undefined;
        const nanos = durationNanos(value);
        if (nanos !== null && d) {
          const checks: [string, (a: bigint, b: bigint) => boolean][] = [
            ["gt", (a, b) => a > b],
            ["gte", (a, b) => a >= b],
            ["lt", (a, b) => a < b],
            ["lte", (a, b) => a <= b],
          ];
          for (const [op, holds] of checks) {
            if (d[op] === undefined) continue;
            const bound = ruleDurationNanos(d[op]);
            if (!holds(nanos, bound)) this.fail(path, `${value} must be ${op} ${showNanos(bound)}`);
          }
        }
      }
      this.message(t, value, path);
      return;
    }
    if (t instanceof protobuf.Enum) {
      const defined = Object.values(t.values);
      if (typeof value === "string") {
        if (!(value in t.values)) {
          this.fail(
            path,
            `${JSON.stringify(value)} is not a value of ${t.fullName.slice(1)} (${
              Object.keys(t.values).join(", ")
            })`,
          );
        }
      } else if (typeof value === "number" && Number.isInteger(value)) {
        const enumRules = rules.enum as Rules | undefined;
        if (enumRules?.defined_only === true && !defined.includes(value)) {
          this.fail(path, `${value} is not a defined value of ${t.fullName.slice(1)}`);
        }
      } else {
        this.fail(path, `expected an enum name, got ${JSON.stringify(value)}`);
      }
      return;
    }
    this.scalar(field.type, value, path, rules);
  }

  private scalar(kind: string, value: unknown, path: string, rules: Rules): void {
    const show = JSON.stringify(value);
    switch (kind) {
      case "string": {
        if (typeof value !== "string") return this.fail(path, `expected a string, got ${show}`);
        const r = (rules.string ?? {}) as Rules;
        if (r.ignore_empty === true && value === "") return;
        const len = [...value].length;
        const bytes = new TextEncoder().encode(value).length;
        if (r.min_len !== undefined && len < Number(r.min_len)) {
          this.fail(path, `shorter than min_len ${r.min_len}`);
        }
        if (r.max_len !== undefined && len > Number(r.max_len)) {
          this.fail(path, `longer than max_len ${r.max_len}`);
        }
        if (r.min_bytes !== undefined && bytes < Number(r.min_bytes)) {
          this.fail(path, `shorter than min_bytes ${r.min_bytes}`);
        }
        if (r.max_bytes !== undefined && bytes > Number(r.max_bytes)) {
          this.fail(path, `longer than max_bytes ${r.max_bytes}`);
        }
        return;
      }
      case "bool":
        if (typeof value !== "boolean") this.fail(path, `expected true/false, got ${show}`);
        return;
      case "bytes":
        if (typeof value !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
          this.fail(path, `expected base64 bytes, got ${show}`);
        }
        return;
      case "double":
      case "float": {
        const ok = (typeof value === "number" && Number.isFinite(value)) ||
          (typeof value === "string" && (["NaN", "Infinity", "-Infinity"].includes(value) ||
            (value.trim() !== "" && Number.isFinite(Number(value)))));
        if (!ok) return this.fail(path, `expected a number, got ${show}`);
        this.numberRules(Number(value), path, (rules[kind] ?? {}) as Rules);
        return;
      }
      default: {
        const range = INT_RANGES[kind];
        if (!range) return this.fail(path, `unsupported field type ${kind}`);
        let n: bigint;
        if (typeof value === "number" && Number.isInteger(value)) n = BigInt(value);
        else if (typeof value === "string" && /^-?\d+$/.test(value)) n = BigInt(value);
        else return this.fail(path, `expected an integer (${kind}), got ${show}`);
        if (n < range[0] || n > range[1]) {
          return this.fail(path, `${n} is out of range for ${kind}`);
        }
        this.numberRules(Number(n), path, (rules[kind] ?? {}) as Rules);
      }
    }
  }

  private numberRules(n: number, path: string, r: Rules): void {
    if (r.gt !== undefined && !(n > Number(r.gt))) this.fail(path, `${n} must be > ${r.gt}`);
    if (r.gte !== undefined && !(n >= Number(r.gte))) this.fail(path, `${n} must be >= ${r.gte}`);
    if (r.lt !== undefined && !(n < Number(r.lt))) this.fail(path, `${n} must be < ${r.lt}`);
    if (r.lte !== undefined && !(n <= Number(r.lte))) this.fail(path, `${n} must be <= ${r.lte}`);
  }

  /** Well-known types with a special JSON form; returns true when `full` is one of them. */
  private wellKnown(full: string, value: unknown, path: string): boolean {
    const show = JSON.stringify(value);
    switch (full) {
      case "google.protobuf.Any":
        this.any(value, path);
        return true;
      case "google.protobuf.Duration":
        if (typeof value !== "string" || durationNanos(value) === null) {
          this.fail(path, `expected a duration like "5s" or "0.25s", got ${show}`);
        }
        return true;
      case "google.protobuf.Timestamp":
        if (typeof value !== "string" || Number.isNaN(Date.parse(value))) {
          this.fail(path, `expected an RFC 3339 timestamp, got ${show}`);
        }
        return true;
      case "google.protobuf.FieldMask":
        if (typeof value !== "string") this.fail(path, `expected a field mask string, got ${show}`);
        return true;
      case "google.protobuf.Struct":
        if (!isObject(value)) this.fail(path, `expected an object, got ${show}`);
        return true;
      case "google.protobuf.Value":
        return true;
      case "google.protobuf.ListValue":
        if (!Array.isArray(value)) this.fail(path, `expected a list, got ${show}`);
        return true;
      case "google.protobuf.Empty":
        if (!isObject(value) || Object.keys(value).length > 0) {
          this.fail(path, `expected {}, got ${show}`);
        }
        return true;
      default: {
        const wrapped = WRAPPER_KINDS[full];
        if (wrapped === undefined) return false;
        this.scalar(wrapped, value, path, {});
        return true;
      }
    }
  }

  private any(value: unknown, path: string): void {
    if (!isObject(value)) {
      this.fail(path, `expected an object with "@type", got ${JSON.stringify(value)}`);
      return;
    }
    const url = value["@type"];
    if (typeof url !== "string" || url === "") {
      this.fail(path, `Any without "@type"`);
      return;
    }
    let type: protobuf.Type | null;
    try {
      type = lookupUpstreamType(url);
    } catch (err) {
      this.fail(path, `cannot load the upstream protos for ${JSON.stringify(url)}: ${err}`);
      return;
    }
    if (type === null) {
      this.fail(path, `"@type" ${JSON.stringify(url)} names no upstream message type`);
      return;
    }
    const { "@type": _ignored, ...rest } = value;
    const full = type.fullName.slice(1);
    if (SPECIAL_JSON_WKTS.has(full)) {
      // Proto3 JSON: an Any holding a type with a special JSON form wraps it in "value".
      const keys = Object.keys(rest);
      if (keys.length !== 1 || keys[0] !== "value") {
        this.fail(path, `an Any holding ${full} must be {"@type": ..., "value": ...}`);
        return;
      }
      this.message(type, rest.value, `${path}.value`);
      return;
    }
    this.message(type, rest, path);
  }
}

/**
 * Lists every way `json` fails to be a valid upstream message of `typeName` (empty = valid):
 * unknown fields (also inside Any `typed_config`s, resolved by `@type`), values that do not fit
 * the proto3 JSON mapping (Duration strings, enum names, integer ranges...), and the common
 * protoc-gen-validate rules Envoy enforces.
 *
 * @example
 * ```ts
 * import { strictJsonProblems } from "./upstream_protos.ts";
 * strictJsonProblems("envoy.config.core.v3.SocketAddress", { address: "127.0.0.1", port: 1 });
 * // ['port: unknown field "port" in envoy.config.core.v3.SocketAddress', ...]
 * ```
 */
export function strictJsonProblems(typeName: string, json: unknown): string[] {
  const type = lookupUpstreamType(typeName);
  if (type === null) return [`no upstream type ${typeName}`];
  const checker = new StrictChecker();
  checker.message(type, json, "");
  return checker.problems;
}

/**
 * Parses YAML (or JSON) and checks it as an upstream `envoy.config.bootstrap.v3.Bootstrap`,
 * strictly: see {@linkcode strictJsonProblems}.
 *
 * @returns the parsed document (plain JSON) when it is valid.
 * @throws StrictProtoError listing every problem, or a YAML syntax error.
 *
 * @example
 * ```ts
 * import { strictBootstrapFromYaml } from "./upstream_protos.ts";
 * const doc = strictBootstrapFromYaml(await Deno.readTextFile("deploy/envoy/envoy.yaml"));
 * ```
 */
export function strictBootstrapFromYaml(text: string): Record<string, unknown> {
  const doc = parseYaml(text) ?? {};
  const typeName = "envoy.config.bootstrap.v3.Bootstrap";
  const problems = strictJsonProblems(typeName, doc);
  if (problems.length > 0) throw new StrictProtoError(typeName, problems);
  return doc as Record<string, unknown>;
}
