/**
 * Paths outside the permission grants are a configuration error. Deno's grants are fixed for the
 * life of the process, so a state dir or an envoy.yaml the process may not touch can never heal:
 * at start every path the configuration will read or write is checked with
 * `Deno.permissions.query`, and one that is not covered stops the agent (exit 2) with one line
 * naming the option, the path, the grant that would cover it and where grants are defined.
 *
 * Path options are declared once, in {@linkcode PATH_OPTIONS}: a new option that names a file
 * adds one line there (e.g. `{ key: "diskPath", access: ["read"] }`).
 *
 * @example
 * ```ts
 * import { checkGrants, grantProblemLine } from "./grants.ts";
 * const problems = await checkGrants(config);
 * if (problems.length > 0) { console.error(grantProblemLine(problems[0])); Deno.exit(2); }
 * ```
 *
 * @module
 */

import { type Config, OPTIONS } from "./config.ts";

/** Where the agent's grants are defined (one flag per line). */
export const GRANTS_FILE = "deploy/permissions.flags";

/** An option whose value is a path (or a list of paths and globs) the agent reads or writes. */
export interface PathOption {
  key: keyof Config;
  /** What the agent does with the path. */
  access: readonly ("read" | "write")[];
  /** Whether the option is in use with this configuration (default: always). */
  when?: (c: Config) => boolean;
}

/**
 * Every configuration option that names a path. Globs are checked at their base directory (the
 * part before the first segment with `*`, `?` or `[`).
 */
export const PATH_OPTIONS: PathOption[] = [
  { key: "stateDir", access: ["read", "write"] },
  { key: "envoyConfigPath", access: ["read"], when: (c) => c.envoyConfigSync },
  { key: "diskPath", access: ["read"] },
  { key: "webConfigFile", access: ["read"] },
  { key: "xdsTlsCert", access: ["read"], when: (c) => c.xdsEnabled },
  { key: "xdsTlsKey", access: ["read"], when: (c) => c.xdsEnabled },
  { key: "xdsTlsClientCa", access: ["read"], when: (c) => c.xdsEnabled },
];

/** A path of the configuration that the process's grants do not cover. */
export interface GrantProblem {
  /** `--state-dir` (and its variable) as the operator knows it. */
  option: string;
  /** The value as configured. */
  path: string;
  /** The path that needs the grant (a glob's base directory, else the path itself). */
  grantPath: string;
  /** Accesses that are not granted. */
  missing: ("read" | "write")[];
}

const GLOB = /[*?[]/;

/**
 * The directory part of a glob before its first wildcard segment (`/etc/envoy/*.yaml` ->
 * `/etc/envoy`); a plain path is returned as is.
 *
 * @example
 * ```ts
 * globBase("/etc/envoy/conf.d/*.yaml"); // "/etc/envoy/conf.d"
 * ```
 */
export function globBase(path: string): string {
  if (!GLOB.test(path)) return path;
  const parts = path.split("/");
  const i = parts.findIndex((p) => GLOB.test(p));
  const base = parts.slice(0, i).join("/");
  return base === "" ? (path.startsWith("/") ? "/" : ".") : base;
}

/** `--state-dir (AGENT_STATE_DIR)` for a config key. */
export function optionName(key: keyof Config): string {
  const spec = OPTIONS.find((o) => o.key === key);
  if (!spec) return String(key);
  return spec.env ? `--${spec.flag} (${spec.env})` : `--${spec.flag}`;
}

/** The paths of the configuration with the accesses each needs. */
export function configuredPaths(
  config: Config,
): {
  option: string;
  key: keyof Config;
  path: string;
  grantPath: string;
  access: readonly ("read" | "write")[];
}[] {
  const out = [];
  for (const o of PATH_OPTIONS) {
    if (o.when && !o.when(config)) continue;
    const value = config[o.key];
    const paths = Array.isArray(value) ? value : typeof value === "string" ? [value] : [];
    for (const path of paths as string[]) {
      if (path === "") continue;
      out.push({
        option: optionName(o.key),
        key: o.key,
        path,
        grantPath: globBase(path),
        access: o.access,
      });
    }
  }
  return out;
}

/**
 * Checks every configured path against the process's grants.
 *
 * @returns one entry per path that is not fully granted (empty when all are covered)
 */
export async function checkGrants(config: Config): Promise<GrantProblem[]> {
  const problems: GrantProblem[] = [];
  for (const p of configuredPaths(config)) {
    const missing: ("read" | "write")[] = [];
    for (const name of p.access) {
      const st = await Deno.permissions.query({ name, path: p.grantPath });
      if (st.state !== "granted") missing.push(name);
    }
    if (missing.length > 0) {
      problems.push({ option: p.option, path: p.path, grantPath: p.grantPath, missing });
    }
  }
  return problems;
}

/**
 * The one line printed for a path outside the grants.
 *
 * @example
 * ```ts
 * grantProblemLine({ option: "--state-dir (AGENT_STATE_DIR)", path: "/srv/sigma",
 *   grantPath: "/srv/sigma", missing: ["read", "write"] });
 * // "--state-dir (AGENT_STATE_DIR) /srv/sigma is outside the permission grants: it needs
 * //  --allow-read=/srv/sigma --allow-write=/srv/sigma (grants are defined in deploy/permissions.flags)"
 * ```
 */
export function grantProblemLine(p: GrantProblem): string {
  const grants = p.missing.map((m) => `--allow-${m}=${p.grantPath}`).join(" ");
  const what = p.grantPath === p.path ? "" : ` (glob base ${p.grantPath})`;
  return `${p.option} ${p.path}${what} is outside the permission grants: it needs ${grants} ` +
    `(grants are defined in ${GRANTS_FILE}; add the path to the matching line there, ` +
    `or use a path that is already granted)`;
}
