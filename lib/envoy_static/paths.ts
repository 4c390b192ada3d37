/**
 * Which files the static sync watches, and which Envoy node each one feeds: the
 * `--envoy-config-path` list (comma-separated, globs allowed) minus `--envoy-config-exclude`
 * (globs matched against the file name only), sorted and de-duplicated (contract §D5).
 *
 * @example
 * ```ts
 * import { resolveConfigPaths, staticNodeId } from "./paths.ts";
 * const { files } = await resolveConfigPaths(["/etc/envoy/*.yaml"], "*.bak.yaml");
 * staticNodeId("/etc/envoy/envoy-relay.yaml", "myhost"); // "static-myhost-envoy-relay"
 * ```
 *
 * @module
 */

/** Resolved file list plus any problems met while expanding globs. */
export interface ResolvedPaths {
  /** Absolute or as-given paths, sorted, unique. Literal paths are kept even if missing. */
  files: string[];
  /** E.g. a glob whose directory cannot be read. */
  warnings: string[];
}

/** True when `s` contains a glob metacharacter (`*`, `?` or `[`). */
export function hasGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

/**
 * Translates one path-segment glob (`*`, `?`, `[abc]`, `[!abc]`, `[a-z]`) into an anchored
 * RegExp. Like a shell, a leading `*` or `?` never matches a leading dot.
 *
 * @example
 * ```ts
 * globToRegExp("envoy-*.yaml").test("envoy-relay.yaml"); // true
 * globToRegExp("*.yaml").test(".hidden.yaml"); // false
 * ```
 */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2); // `[]...]` keeps `]` literal inside, as in fnmatch
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = glob.slice(i + 1, end);
      let negate = false;
      if (body[0] === "!" || body[0] === "^") {
        negate = true;
        body = body.slice(1);
      }
      body = body.replace(/[\\\]^]/g, (x) => "\\" + x);
      re += `[${negate ? "^/" : ""}${body}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  const noLeadingDot = glob.startsWith(".") ? "" : "(?!\\.)";
  return new RegExp(`^${noLeadingDot}${re}$`);
}

/** The last path segment. */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** The directory part (`.` for a bare name, `/` for a file at the root). */
export function dirName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const i = trimmed.lastIndexOf("/");
  if (i < 0) return ".";
  return i === 0 ? "/" : trimmed.slice(0, i);
}

/** Collapses `//` and `/./` so the same file spelled twice is listed once. */
function normalize(path: string): string {
  const abs = path.startsWith("/");
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  return (abs ? "/" : "") + parts.join("/") || (abs ? "/" : ".");
}

/** Whether `name` matches any of the comma-separated exclude globs. */
function excluded(name: string, patterns: RegExp[]): boolean {
  return patterns.some((p) => p.test(name));
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile; // follows symlinks (Kubernetes ConfigMap mounts)
  } catch {
    return false;
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** Expands one glob pattern into existing files, segment by segment. */
async function expandGlob(pattern: string, warnings: string[]): Promise<string[]> {
  const abs = pattern.startsWith("/");
  const segments = pattern.split("/").filter((s) => s !== "" && s !== ".");
  // Start at the literal prefix as written: stat-ing its parents would need read permission on
  // them (the agent may read /etc/envoy but not /etc).
  const firstGlob = segments.findIndex(hasGlob);
  const prefix = segments.slice(0, firstGlob).join("/");
  let bases = [abs ? `/${prefix}` : prefix || "."];
  for (let i = firstGlob; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    const next: string[] = [];
    for (const base of bases) {
      const join = (
        name: string,
      ) => (base === "/" ? `/${name}` : base === "." && !abs ? name : `${base}/${name}`);
      if (!hasGlob(seg)) {
        const p = join(seg);
        if (last ? await isFile(p) : await isDir(p)) next.push(p);
        continue;
      }
      const re = globToRegExp(seg);
      try {
        for await (const entry of Deno.readDir(base)) {
          if (!re.test(entry.name)) continue;
          const p = join(entry.name);
          if (last ? await isFile(p) : await isDir(p)) next.push(p);
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          warnings.push(`cannot list ${base} for ${pattern}: ${(e as Error).message}`);
        }
      }
    }
    bases = next;
    if (bases.length === 0) break;
  }
  return bases;
}

/**
 * Resolves the configured path list: entries with `*`, `?` or `[` are globbed (only existing
 * regular files match), other entries are kept as given even when missing (the sync retries
 * them later). `exclude` holds comma-separated globs matched against the file name only, and
 * applies to literal paths too.
 *
 * @example
 * ```ts
 * const { files } = await resolveConfigPaths(
 *   ["/etc/envoy/envoy.yaml", "/etc/envoy/envoy-*.yaml"],
 *   "envoy-test*.yaml",
 * );
 * ```
 */
export async function resolveConfigPaths(
  entries: string[],
  exclude?: string,
): Promise<ResolvedPaths> {
  const patterns = (exclude ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "").map(
    globToRegExp,
  );
  const warnings: string[] = [];
  const found = new Set<string>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === "") continue;
    const candidates = hasGlob(entry) ? await expandGlob(entry, warnings) : [entry];
    for (const c of candidates) {
      const p = normalize(c);
      if (!excluded(baseName(p), patterns)) found.add(p);
    }
  }
  return { files: [...found].sort(), warnings };
}

/**
 * The Envoy node id a file syncs to: `static-<hostname>` when the file's stem (name without its
 * last extension) is `envoy`, else `static-<hostname>-<stem>`.
 *
 * @example
 * ```ts
 * staticNodeId("/etc/envoy/envoy.yaml", "myhost"); // "static-myhost"
 * staticNodeId("/etc/envoy/envoy-exit.yaml", "myhost"); // "static-myhost-envoy-exit"
 * ```
 */
export function staticNodeId(path: string, hostname: string): string {
  const name = baseName(path);
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  return stem === "envoy" ? `static-${hostname}` : `static-${hostname}-${stem}`;
}
