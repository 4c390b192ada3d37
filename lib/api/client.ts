/**
 * HTTP client of the sigma-api: base URL + path, `X-Api-Key` only when a key is set, JSON bodies,
 * a per-request timeout, classified errors and a pagination helper that follows every page.
 *
 * @example
 * ```ts
 * import { SigmaClient } from "./client.ts";
 * const api = new SigmaClient({ baseUrl: "http://127.0.0.1:3000/api", apiKey: undefined });
 * const nodes = await api.listEnvoyNodes({ vps_id: "…", status: "active" });
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
}

/** Parses a `Retry-After` header (seconds or HTTP date) into ms. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** Endpoint label for metrics: the path without ids and query. */
function endpointLabel(path: string): string {
  return path.split("?")[0].replace(/[0-9a-f]{8}-[0-9a-f-]{27,}/gi, ":id");
}

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
    const headers: Record<string, string> = { accept: "application/json", "user-agent": this.#ua };
    if (this.#key) headers["x-api-key"] = this.#key;
    if (this.#basic) headers.authorization = this.#basic;
    if (body !== undefined) headers["content-type"] = "application/json";
    const started = performance.now();
    const endpoint = endpointLabel(path);
    const observe = (status: number | undefined, kind: ApiErrorKind | "ok") =>
      this.#observe?.({
        endpoint,
        method,
        status,
        kind,
        seconds: (performance.now() - started) / 1000,
      });

    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.#timeout);
    const fail = (
      kind: ApiErrorKind,
      cause: string,
      extra: ConstructorParameters<typeof ApiError>[2] = {},
    ) => new ApiError(kind, failureLine(method, url, cause), extra);
    let res: Response;
    let text: string;
    try {
      try {
        res = await fetch(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: ac.signal,
        });
      } catch (e) {
        const d = describeFetchError(e, { timedOut: ac.signal.aborted, timeoutMs: this.#timeout });
        const kind: ApiErrorKind = d.kind === "timeout" ? "timeout" : "network";
        observe(undefined, kind);
        throw fail(kind, d.cause);
      }
      try {
        text = await readLimited(res, this.#maxBody);
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

    if (!res.ok) {
      const apiMessage = errorText(text);
      const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
      const kind: ApiErrorKind = res.status === 429
        ? "rate_limited"
        : res.status >= 500
        ? "server"
        : "client";
      observe(res.status, kind);
      throw fail(kind, httpStatusCause(res.status, apiMessage ?? "", true), {
        status: res.status,
        retryAfterMs,
        apiMessage,
      });
    }
    try {
      const json = JSON.parse(text);
      observe(res.status, "ok");
      return json;
    } catch {
      observe(res.status, "bad_body");
      throw fail("bad_body", `HTTP ${res.status} but the body is not JSON: ${bodySnippet(text)}`, {
        status: res.status,
      });
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
      const qs = new URLSearchParams({ ...query, page: String(page), per_page: String(PER_PAGE) });
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
