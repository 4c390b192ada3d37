/**
 * IP discovery from the machine's interfaces: IPv4 and IPv6, skipping loopback, link-local and
 * container bridge interfaces (by interface name, so a VPC address such as 172.31.x.x is kept),
 * labelled `internal` for RFC 1918 IPv4 and `""` otherwise, sorted by string and de-duplicated.
 *
 * @example
 * ```ts
 * import { collectIps } from "./ips.ts";
 * const ips = collectIps(Deno.networkInterfaces());
 * ```
 *
 * @module
 */

import type { IpAddress } from "../api/types.ts";

/** The fields of `Deno.NetworkInterfaceInfo` used here. */
export interface InterfaceAddress {
  name: string;
  family: "IPv4" | "IPv6";
  address: string;
}

/**
 * The IP version of a literal: 4, 6, or 0 when `s` is not a plain IPv4/IPv6 literal (no CIDR
 * suffix, brackets or zone id). Pure, so callers need not load `node:net`.
 *
 * @example
 * ```ts
 * ipVersion("10.0.0.1"); // 4
 * ipVersion("2001:db8::1"); // 6
 * ipVersion("[::1]"); // 0
 * ```
 */
export function ipVersion(s: string): 0 | 4 | 6 {
  if (v4Octets(s) !== undefined) return 4;
  if (!s.includes(":") || /[^0-9a-fA-F:.]/.test(s)) return 0;
  // The WHATWG URL parser implements RFC 4291 text forms exactly (including embedded IPv4).
  try {
    new URL(`http://[${s}]/`);
    return 6;
  } catch {
    return 0;
  }
}

/**
 * Whether `s` is a plain IPv4 or IPv6 literal: no CIDR suffix, brackets or zone id (what
 * sigma-api accepts in `ip_addresses`).
 *
 * @example
 * ```ts
 * isIpLiteral("2001:db8::1"); // true
 * isIpLiteral("[::1]"); // false
 * ```
 */
export function isIpLiteral(s: string): boolean {
  return ipVersion(s) !== 0;
}

/** Interface names of container and overlay bridges, never host addresses. */
const BRIDGE_PREFIXES = [
  "docker",
  "br-",
  "veth",
  "cni",
  "flannel",
  "cali",
  "vxlan.calico",
  "weave",
  "kube-",
  "virbr",
  "lxcbr",
  "lxc",
  "podman",
  "cilium",
  "tunl",
];

/** True for interfaces that belong to container networking rather than the host. */
export function isBridgeInterface(name: string): boolean {
  return name === "lo" || BRIDGE_PREFIXES.some((p) => name.startsWith(p));
}

function v4Octets(ip: string): number[] | undefined {
  const m = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/.exec(ip);
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  return o.every((x) => x <= 255) ? o : undefined;
}

/** RFC 1918: 10/8, 172.16/12, 192.168/16. */
export function isRfc1918(ip: string): boolean {
  const o = v4Octets(ip);
  if (!o) return false;
  return o[0] === 10 || (o[0] === 172 && o[1] >= 16 && o[1] <= 31) ||
    (o[0] === 192 && o[1] === 168);
}

/** Loopback (127/8, ::1), link-local (169.254/16, fe80::/10) or unspecified addresses. */
export function isLoopbackOrLinkLocal(ip: string): boolean {
  const o = v4Octets(ip);
  if (o) return o[0] === 127 || (o[0] === 169 && o[1] === 254) || o.every((x) => x === 0);
  const l = ip.toLowerCase().split("%")[0];
  return l === "::1" || l === "::" || /^fe[89ab][0-9a-f]:/.test(l);
}

/**
 * Whether an address can be reached from outside without NAT: not RFC 1918, not CGNAT
 * (100.64/10), not loopback/link-local, not IPv6 unique-local (fc00::/7).
 */
export function isPublic(ip: string): boolean {
  if (isLoopbackOrLinkLocal(ip)) return false;
  const o = v4Octets(ip);
  if (o) return !isRfc1918(ip) && !(o[0] === 100 && o[1] >= 64 && o[1] <= 127);
  return !/^f[cd][0-9a-f]{2}:/i.test(ip);
}

/** The contract's label: `internal` for RFC 1918 IPv4, `""` for everything else. */
export function labelFor(ip: string): "internal" | "" {
  return isRfc1918(ip) ? "internal" : "";
}

/** Sorts by IP string and removes duplicates. */
export function normalizeIps(list: IpAddress[]): IpAddress[] {
  const seen = new Map<string, IpAddress>();
  for (const e of list) if (!seen.has(e.ip)) seen.set(e.ip, e);
  return [...seen.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

/**
 * The host's addresses from interface data.
 *
 * @example
 * ```ts
 * collectIps([{ name: "eth0", family: "IPv4", address: "10.0.0.5" }]);
 * // [{ ip: "10.0.0.5", label: "internal" }]
 * ```
 */
export function collectIps(interfaces: InterfaceAddress[]): IpAddress[] {
  const out: IpAddress[] = [];
  for (const nic of interfaces) {
    if (isBridgeInterface(nic.name)) continue;
    const ip = nic.address.split("%")[0];
    if (isLoopbackOrLinkLocal(ip)) continue;
    out.push({ ip, label: labelFor(ip) });
  }
  return normalizeIps(out);
}

/** Reads the interfaces through Deno (needs `--allow-sys=networkInterfaces`). */
export function localIps(): IpAddress[] {
  try {
    return collectIps(Deno.networkInterfaces());
  } catch {
    return [];
  }
}
