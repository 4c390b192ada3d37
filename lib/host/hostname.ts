/**
 * Hostname resolution: `--hostname`/`AGENT_HOSTNAME`, else the trimmed non-empty
 * `/etc/host_hostname` (the host's `/etc/hostname` bind-mounted into a container), else the
 * system hostname, else `unknown`. One value is used everywhere (register, heartbeat, metric
 * label, static node ids).
 *
 * @example
 * ```ts
 * import { resolveHostname } from "./hostname.ts";
 * const name = await resolveHostname({ override: undefined });
 * ```
 *
 * @module
 */

/** The file a container gets the host's hostname from. */
export const HOST_HOSTNAME_FILE = "/etc/host_hostname";

/** Inputs of {@linkcode resolveHostname}; the readers are injectable for tests. */
export interface HostnameSources {
  override: string | undefined;
  readHostFile?: () => Promise<string | undefined>;
  systemHostname?: () => string;
}

async function readHostFileDefault(): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(HOST_HOSTNAME_FILE);
  } catch {
    return undefined; // absent or not permitted: fall through to the system hostname
  }
}

/**
 * Resolves the hostname in precedence order.
 *
 * @example
 * ```ts
 * await resolveHostname({ override: "web-1" }); // "web-1"
 * ```
 */
export async function resolveHostname(src: HostnameSources): Promise<string> {
  const override = src.override?.trim();
  if (override) return override;
  const fromFile = (await (src.readHostFile ?? readHostFileDefault)())?.trim();
  if (fromFile) return fromFile;
  try {
    const sys = (src.systemHostname ?? Deno.hostname)().trim();
    if (sys) return sys;
  } catch {
    // no sys permission or no hostname
  }
  return "unknown";
}
