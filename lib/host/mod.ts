/**
 * The collectors of facts about this machine: its hostname (`hostname.ts`), its IPs from the
 * interfaces and an optional external lookup (`ips.ts`, `public_ip.ts`), and the system info of
 * every heartbeat (`system_info.ts`: CPU, RAM, disk, uptime, load through Deno's scoped
 * `--allow-sys` APIs, since `/proc` reads need `-A`). Parsing is kept apart from I/O so each
 * collector is tested on captured values.
 *
 * May import: `core`, `api` (the contract's `IpAddress` and `SystemInfo` shapes).
 * Must not import a feature or a server.
 *
 * @example
 * ```ts
 * import { collectIps } from "./host/mod.ts";
 * const ips = collectIps(Deno.networkInterfaces());
 * ```
 *
 * @module
 */
export { resolveHostname } from "./hostname.ts";
export { collectIps, isIpLiteral, isPublic, localIps, normalizeIps } from "./ips.ts";
export { PublicIpResolver } from "./public_ip.ts";
export { collectSystemInfo } from "./system_info.ts";
