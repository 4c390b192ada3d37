/**
 * HTTP client of the sigma-api: base URL + path, `X-Api-Key` only when a key is set, JSON bodies,
 * a per-request timeout, classified errors and a pagination helper that follows every page.
 *
 * Requests go over the lean keep-alive HTTP/1.1 client of `http1_client.ts` (about half of
 * `fetch`'s CPU per request); `fetch` is used instead when a proxy variable (`HTTP_PROXY`,
 * `HTTPS_PROXY`, `ALL_PROXY`) is set for the API's scheme, since only `fetch` speaks through a
 * proxy. Both paths give the same errors, and neither follows a redirect: sigma-api never
 * answers with one, so a 3xx is an error naming its `Location` (a wrong `--api-url`).
 *
 * @example
 * ```ts
 * import { SigmaClient } from "./client.ts";
 * const api = new SigmaClient({ baseUrl: "http://127.0.0.1:3000/api", apiKey: undefined });
 * const nodes = await api.listEnvoyNodes({ vps_id: "...", status: "active" });
 * ```
 *
 * @module
 */

import {
  bodySnippet,
  describeFetchError,
  failureLine,
  httpStatusCause,
  safeUrl,
} from "../core/http_failure.ts";
import { readCapped } from "../http/read_body.ts";
import {
  Http1Client,
  Http1Error,
  type Origin,
  parseOrigin,
  proxyConfigured,
} from "./http1_client.ts";
import {
  type EnvoyNode,
  type EnvoyRoute,
  type HeartbeatRequest,
  type Page,
  parseEnvoyNode,
  parseEnvoyRoute,
  parsePage,
  parseVps,
  type RegisterRequest,
  type StaticRouteEntry,
  type SyncStaticResponse,
  type Vps,
} from "./types.ts";

/** How a request failed. */
export type ApiErrorKind =
  | "network" // connection refused, DNS, reset
  | "timeout" // no answer within the timeout
  | "client" // 4xx other than 429
  | "rate_limited" // 429
  | "server" // 5xx
  | "bad_body"; // 2xx whose body is not the JSON we expect

/**
 * A failed API call. Its message names the method, the full URL (without userinfo) and the cause
 * in an operator's words; it never contains the API key.
 */
export class ApiError extends Error {
  override name = "ApiError";
  readonly kind: ApiErrorKind;
  readonly status: number | undefined;
  /** From `Retry-After` on 429/503, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The API's `{"error"}` text or the start of a plain-text body. */
  readonly apiMessage: string | undefined;

  constructor(
    kind: ApiErrorKind,
    message: string,
    extra: { status?: number; retryAfterMs?: number; apiMessage?: string } = {},
  ) {
    super(message);
    this.kind = kind;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
    this.apiMessage = extra.apiMessage;
  }
}

/** Called after every request, for metrics. */
export type RequestObserver = (info: {
  endpoint: string;
  method: string;
  status: number | undefined;
  kind: ApiErrorKind | "ok";
  seconds: number;
}) => void;

/** Options of {@linkcode SigmaClient}. */
export interface ClientOptions {
  /** Base URL including `/api`; a trailing slash is removed. */
  baseUrl: string;
  apiKey: string | undefined;
  /** Per-request timeout in ms (default 10 000). */
  timeoutMs?: number;
  /** Largest response body accepted, bytes (default 16 MiB). */
  maxBodyBytes?: number;
  onRequest?: RequestObserver;
  userAgent?: string;
  /** `user:password` sent as HTTP Basic auth (taken out of the configured URL). */
  basicAuth?: string;
  /**
   * `auto` (default): the keep-alive client unless a proxy variable is set; `fetch`: always
   * `fetch` (the benchmark's and the tests' comparison).
   */
  transport?: "auto" | "fetch";
}

/** Parses a `Retry-After` header (seconds or HTTP date) into ms. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** Characters `application/x-www-form-urlencoded` leaves as they are. */
const FORM_SAFE = /^[A-Za-z0-9*\-._]*$/;

/** One name or value encoded as `URLSearchParams` does (space as `+`, UTF-8 percent escapes). */
function formEncode(s: string): string {
  if (FORM_SAFE.test(s)) return s;
  return encodeURIComponent(s.toWellFormed()).replace(
    /[!'()~]|%20/g,
    (c) => c === "%20" ? "+" : `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * A query string exactly as `new URLSearchParams(record).toString()` writes it, without building
 * the object (it showed in the poller's profile, once per page).
 *
 * @example
 * ```ts
 * formQuery({ vps_id: "a b", page: "1" }); // "vps_id=a+b&page=1"
 * ```
 */
export function formQuery(record: Record<string, string>): string {
  let out = "";
  for (const k in record) {
    out += `${out ? "&" : ""}${formEncode(k)}=${formEncode(record[k])}`;
  }
  return out;
}

/** Endpoint label for metrics: the path without ids and query. */
function endpointLabel(path: string): string {
  return path.split("?")[0].replace(/[0-9a-f]{8}-[0-9a-f-]{27,}/gi, ":id");
}

/** What {@linkcode SigmaClient} needs of the keep-alive client. */
interface Lean {
  client: Http1Client;
  origin: Origin;
  /** The base URL's path without a trailing slash, e.g. `/api`. */
  basePath: string;
  /** The fixed header lines of every request. */
  head: string;
}

/** A response as both transports give it. */
interface Answer {
  status: number;
  text: string;
  retryAfter: string | null;
  location: string | undefined;
}

type Observe = (status: number | undefined, kind: ApiErrorKind | "ok") => void;
type Fail = (
  kind: ApiErrorKind,
  cause: string,
  extra?: ConstructorParameters<typeof ApiError>[2],
) => ApiError;

const decoder = new TextDecoder();
/**
 * Paths sent as written: characters the URL parser leaves alone and no dot segment. Anything
 * else goes through `URL`, as `fetch` would have normalized it.
 */
const PLAIN_PATH = /^\/(?!.*\/\.)[A-Za-z0-9\-._~!$&()*+,;=:@\/?%[\]]*$/;

const PER_PAGE = 100;
/** Guard against an API that keeps saying "more": 1000 pages × 100 = 100 000 rows. */
const MAX_PAGES = 1000;

/** The sigma-api client. */
export class SigmaClient {
  readonly #base: string;
  readonly #key: string | undefined;
  readonly #timeout: number;
  readonly #maxBody: number;
  readonly #observe: RequestObserver | undefined;
  readonly #ua: string;
  readonly #basic: string | undefined;
  /** The keep-alive client and the API's origin; undefined when `fetch` must be used. */
  readonly #http1: Lean | undefined;

  constructor(opts: ClientOptions) {
    this.#base = opts.baseUrl.replace(/\/+$/, "");
    this.#key = opts.apiKey || undefined;
    this.#timeout = opts.timeoutMs ?? 10_000;
    this.#maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
    this.#observe = opts.onRequest;
    this.#ua = opts.userAgent ?? "sigma-agent";
    this.#basic = opts.basicAuth === undefined
      ? undefined
      : `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(opts.basicAuth)))}`;
    this.#http1 = opts.transport === "fetch" ? undefined : this.#lean();
  }

  /** `"http1"` (the keep-alive client) or `"fetch"` (a proxy is configured, or an odd URL). */
  get transport(): "http1" | "fetch" {
    return this.#http1 ? "http1" : "fetch";
  }

  /** Closes idle keep-alive connections (requests in flight are not affected). */
  close(): void {
    this.#http1?.client.close();
  }

  /** The keep-alive client's setup, or undefined where only `fetch` behaves as expected. */
  #lean(): Lean | undefined {
    let u: URL;
    let origin: Origin;
    try {
      u = new URL(this.#base);
      origin = parseOrigin(this.#base);
    } catch {
      return undefined; // fetch reports the bad URL as it always did
    }
    if (proxyConfigured(origin)) return undefined;
    let auth = this.#basic;
    if (auth === undefined && (u.username || u.password)) {
      // fetch sends a URL's userinfo as Basic auth.
      const pair = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
      auth = `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(pair)))}`;
    }
    const fields: [string, string | undefined][] = [
      ["accept", "application/json"],
      ["user-agent", this.#ua],
      ["x-api-key", this.#key],
      ["authorization", auth],
    ];
    let head = "";
    for (const [name, value] of fields) {
      if (value === undefined) continue;
      // fetch refuses such values; keep its error rather than send a broken header.
      if (/[\r\n\0]/.test(value)) return undefined;
      head += `${name}: ${value}\r\n`;
    }
    return { client: new Http1Client(), origin, basePath: u.pathname.replace(/\/+$/, ""), head };
  }

  /** The base URL (never includes credentials). */
  get baseUrl(): string {
    return safeUrl(this.#base);
  }

  /**
   * Sends one request and returns the parsed JSON body.
   *
   * @throws {ApiError} classified by kind
   */
  async request(method: "GET" | "POST", path: string, body?: unknown): Promise<unknown> {
    const url = this.#base + path;
    const started = performance.now();
    const endpoint = endpointLabel(path);
    const observe: Observe = (status, kind) =>
      this.#observe?.({
        endpoint,
        method,
        status,
        kind,
        seconds: (performance.now() - started) / 1000,
      });
    const fail: Fail = (kind, cause, extra = {}) =>
      new ApiError(kind, failureLine(method, url, cause), extra);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const res = this.#http1
      ? await this.#viaHttp1(this.#http1, method, path, payload, observe, fail)
      : await this.#viaFetch(method, url, payload, observe, fail);
    const { status, text } = res;

    if (status < 200 || status >= 300) {
      const apiMessage = errorText(text);
      const retryAfterMs = parseRetryAfter(res.retryAfter);
      const kind: ApiErrorKind = status === 429
        ? "rate_limited"
        : status >= 500
        ? "server"
        : "client";
      observe(status, kind);
      const cause = status >= 300 && status < 400
        ? `HTTP ${status}: redirected to ${
          res.location ? safeUrl(res.location) : "(no Location)"
        }, not followed: sigma-api does not redirect, check --api-url`
        : httpStatusCause(status, apiMessage ?? "", true);
      throw fail(kind, cause, { status, retryAfterMs, apiMessage });
    }
    try {
      const json = JSON.parse(text);
      observe(status, "ok");
      return json;
    } catch {
      observe(status, "bad_body");
      throw fail("bad_body", `HTTP ${status} but the body is not JSON: ${bodySnippet(text)}`, {
        status,
      });
    }
  }

  /** One exchange over the keep-alive client. */
  async #viaHttp1(
    lean: Lean,
    method: "GET" | "POST",
    path: string,
    payload: string | undefined,
    observe: Observe,
    fail: Fail,
  ): Promise<Answer> {
    let head = lean.head;
    if (payload !== undefined) head += "content-type: application/json\r\n";
    // Paths the client builds are plain ASCII; anything else is normalized as fetch would.
    const target = PLAIN_PATH.test(path)
      ? lean.basePath + path
      : ((u) => u.pathname + u.search)(new URL(this.#base + path));
    let res;
    try {
      res = await lean.client.request(lean.origin, {
        method,
        path: target,
        headers: head,
        body: payload === undefined ? undefined : new TextEncoder().encode(payload),
        timeoutMs: this.#timeout,
        maxBodyBytes: this.#maxBody,
      });
    } catch (e) {
      const err = e as Http1Error;
      const d = describeFetchError(err.timedOut ? err : err.cause ?? err, {
        timedOut: err.timedOut === true,
        timeoutMs: this.#timeout,
      });
      if (err.status !== undefined) {
        // The head arrived; the body did not (timeout, cap, broken framing).
        const kind: ApiErrorKind = err.timedOut ? "timeout" : "bad_body";
        observe(err.status, kind);
        const cause = err.timedOut || !(err instanceof Http1Error) || !err.tooLarge && err.cause
          ? d.cause
          : err.message;
        throw fail(kind, `HTTP ${err.status}, reading the body: ${cause}`, { status: err.status });
      }
      const kind: ApiErrorKind = d.kind === "timeout" ? "timeout" : "network";
      observe(undefined, kind);
      throw fail(kind, d.cause);
    }
    return {
      status: res.status,
      text: decoder.decode(res.body),
      retryAfter: res.headers.get("retry-after") ?? null,
      location: res.headers.get("location"),
    };
  }

  /** One exchange over `fetch` (a proxy is configured). */
  async #viaFetch(
    method: "GET" | "POST",
    url: string,
    payload: string | undefined,
    observe: Observe,
    fail: Fail,
  ): Promise<Answer> {
    const headers: Record<string, string> = { accept: "application/json", "user-agent": this.#ua };
    if (this.#key) headers["x-api-key"] = this.#key;
    if (this.#basic) headers.authorization = this.#basic;
    if (payload !== undefined) headers["content-type"] = "application/json";
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.#timeout);
    let res: Response;
    try {
      try {
        res = await fetch(url, {
          method,
          headers,
          body: payload,
          signal: ac.signal,
          redirect: "manual",
        });
      } catch (e) {
        const d = describeFetchError(e, { timedOut: ac.signal.aborted, timeoutMs: this.#timeout });
        const kind: ApiErrorKind = d.kind === "timeout" ? "timeout" : "network";
        observe(undefined, kind);
        throw fail(kind, d.cause);
      }
      try {
        const text = await readLimited(res, this.#maxBody);
        return {
          status: res.status,
          text,
          retryAfter: res.headers.get("retry-after"),
          location: res.headers.get("location") ?? undefined,
        };
      } catch (e) {
        const kind: ApiErrorKind = ac.signal.aborted ? "timeout" : "bad_body";
        observe(res.status, kind);
        const cause = ac.signal.aborted
          ? describeFetchError(e, { timedOut: true, timeoutMs: this.#timeout }).cause
          : (e as Error).message;
        throw fail(kind, `HTTP ${res.status}, reading the body: ${cause}`, { status: res.status });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** A checked call: the body is passed through `parse`, shape errors become `bad_body`. */
  async call<T>(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    parse: (v: unknown) => T,
  ): Promise<T> {
    const json = await this.request(method, path, body);
    try {
      return parse(json);
    } catch (e) {
      throw new ApiError(
        "bad_body",
        failureLine(method, this.#base + path, `unexpected response: ${(e as Error).message}`),
      );
    }
  }

  /**
   * Fetches every page of a list endpoint (`per_page=100`) and returns all rows. Stops when a
   * page is short, when `total` is reached, or after {@linkcode MAX_PAGES}.
   */
  async listAll<T>(
    path: string,
    query: Record<string, string>,
    item: (v: unknown) => T,
  ): Promise<T[]> {
    const out: T[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const qs = formQuery({ ...query, page: String(page), per_page: String(PER_PAGE) });
      const p: Page<T> = await this.call(
        "GET",
        `${path}?${qs}`,
        undefined,
        (v) => parsePage(v, item),
      );
      out.push(...p.data);
      const perPage = p.per_page > 0 ? p.per_page : PER_PAGE;
      if (p.data.length === 0 || p.data.length < perPage || out.length >= p.total) break;
    }
    return out;
  }

  /** `POST /agent/register`. */
  register(body: RegisterRequest): Promise<Vps> {
    return this.call("POST", "/agent/register", body, parseVps);
  }

  /** `POST /agent/heartbeat`. A 404 means the VPS row is gone. */
  heartbeat(body: HeartbeatRequest): Promise<Vps> {
    return this.call("POST", "/agent/heartbeat", body, parseVps);
  }

  /** `GET /envoy-nodes`, every page. */
  listEnvoyNodes(query: { vps_id?: string; status?: string }): Promise<EnvoyNode[]> {
    return this.listAll("/envoy-nodes", clean(query), parseEnvoyNode);
  }

  /** `POST /envoy-nodes`. */
  createEnvoyNode(
    body: { vps_id: string; node_id: string; description: string },
  ): Promise<EnvoyNode> {
    return this.call("POST", "/envoy-nodes", body, parseEnvoyNode);
  }

  /** `GET /envoy-routes`, every page. */
  listEnvoyRoutes(
    query: { envoy_node_id: string; status?: string; source?: string },
  ): Promise<EnvoyRoute[]> {
    return this.listAll("/envoy-routes", clean(query), parseEnvoyRoute);
  }

  /** `POST /envoy-routes/sync-static`. */
  syncStaticRoutes(envoyNodeId: string, routes: StaticRouteEntry[]): Promise<SyncStaticResponse> {
    return this.call(
      "POST",
      "/envoy-routes/sync-static",
      { envoy_node_id: envoyNodeId, routes },
      (v) => {
        const o = v as Record<string, unknown>;
        if (typeof o !== "object" || o === null) throw new Error("not an object");
        return { upserted: Number(o.upserted ?? 0), deleted: Number(o.deleted ?? 0) };
      },
    );
  }
}

function clean(q: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) if (v !== undefined) out[k] = v;
  return out;
}

function errorText(text: string): string | undefined {
  if (!text) return undefined;
  try {
    const j = JSON.parse(text);
    if (j && typeof j.error === "string") return j.error;
  } catch {
    // plain text body (axum extractor errors, 429 "Too Many Requests")
  }
  return bodySnippet(text);
}

async function readLimited(res: Response, max: number): Promise<string> {
  // A declared length within the cap is read in one call (no stream machinery per chunk).
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (Number.isInteger(declared) && declared >= 0 && declared <= max) return await res.text();
  const bytes = await readCapped(res.body, max);
  if (bytes === undefined) throw new Error(`body larger than ${max} bytes`);
  return new TextDecoder().decode(bytes);
}
