/**
 * External public-IP lookup for NAT'd hosts: asks the configured services in order (5 s timeout
 * each) and caches the answer, re-asking at most every 30 minutes - never on every heartbeat.
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

import {
  bodySnippet,
  describeFetchError,
  failureLine,
  httpStatusCause,
} from "../core/http_failure.ts";
import { type Logger, RepeatedFailure, silentLogger } from "../core/log.ts";
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
  readonly #failure: RepeatedFailure;
  readonly #now: () => number;
  #value: string | undefined;
  #lastAttempt = -Infinity;
  #lastError: string | undefined;

  constructor(opts: PublicIpOptions) {
    this.#urls = opts.urls;
    this.#timeout = opts.timeoutMs ?? 5000;
    this.#refresh = opts.refreshMs ?? 30 * 60_000;
    this.#failure = new RepeatedFailure(opts.log ?? silentLogger, "public IP lookup");
    this.#now = opts.now ?? Date.now;
  }

  /** Why the last lookup round failed (`undefined` after a success or before any lookup). */
  get lastError(): string | undefined {
    return this.#lastError;
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
    const problems: string[] = [];
    for (const url of this.#urls) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), this.#timeout);
      try {
        const res = await fetch(url, { signal: ac.signal });
        const body = (await res.text()).trim();
        if (res.ok && isIpLiteral(body) && !isLoopbackOrLinkLocal(body)) {
          this.#value = body;
          this.#lastError = undefined;
          this.#failure.ok({ ip: body, url });
          return body;
        }
        problems.push(failureLine(
          "GET",
          url,
          res.ok
            ? `HTTP ${res.status} but no IP address: ${bodySnippet(body)}`
            : httpStatusCause(res.status, body),
        ));
      } catch (e) {
        const d = describeFetchError(e, { timedOut: ac.signal.aborted, timeoutMs: this.#timeout });
        problems.push(failureLine("GET", url, d.cause));
      } finally {
        clearTimeout(timer);
      }
    }
    const next = Math.round(this.#refresh / 60_000);
    const keeps = this.#value ? `keeping ${this.#value}` : "reporting local addresses only";
    this.#lastError = problems.join("; ");
    this.#failure.fail(
      `public IP lookup failed (${this.#lastError}); ${keeps}, next try in ${next} min`,
    );
    return this.#value;
  }
}
