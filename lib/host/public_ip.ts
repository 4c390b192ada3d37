/**
 * External public-IP lookup for NAT'd hosts: asks the configured services in order (5 s timeout
 * each) and caches the answer, re-asking at most every 30 minutes — never on every heartbeat.
 *
 * @example
 * ```ts
 * import { PublicIpResolver } from "./public_ip.ts";
 * const r = new PublicIpResolver({ urls: [] }); // no lookups configured
 * await r.get(true); // undefined
 * ```
 *
 * @module
 */

import type { Logger } from "../core/log.ts";
import { isIpLiteral, isLoopbackOrLinkLocal } from "./ips.ts";

/** Options of {@linkcode PublicIpResolver}. */
export interface PublicIpOptions {
  urls: string[];
  timeoutMs?: number;
  refreshMs?: number;
  log?: Logger;
  now?: () => number;
}

/** Looks up and caches the public IP. */
export class PublicIpResolver {
  readonly #urls: string[];
  readonly #timeout: number;
  readonly #refresh: number;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  #value: string | undefined;
  #lastAttempt = -Infinity;

  constructor(opts: PublicIpOptions) {
    this.#urls = opts.urls;
    this.#timeout = opts.timeoutMs ?? 5000;
    this.#refresh = opts.refreshMs ?? 30 * 60_000;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
  }

  /** The last known public IP. */
  get value(): string | undefined {
    return this.#value;
  }

  /**
   * Returns the public IP, asking the services when `needed` and the last attempt is older than
   * the refresh period. Failures are logged, never thrown.
   */
  async get(needed: boolean): Promise<string | undefined> {
    if (!needed || this.#urls.length === 0) return this.#value;
    if (this.#now() - this.#lastAttempt < this.#refresh) return this.#value;
    this.#lastAttempt = this.#now();
    for (const url of this.#urls) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(this.#timeout) });
        const body = (await res.text()).trim();
        if (res.ok && isIpLiteral(body) && !isLoopbackOrLinkLocal(body)) {
          this.#value = body;
          return body;
        }
        this.#log?.warn("public IP lookup gave no address", { url, status: res.status });
      } catch (e) {
        this.#log?.warn("public IP lookup failed", { url, error: (e as Error).message });
      }
    }
    return this.#value;
  }
}
