/**
 * Outbound HTTP failures in an operator's words. `fetch` reports every connect problem as
 * "fetch failed" with the real reason buried in `cause`; this module turns it into "connection
 * refused", "host not found", "TLS certificate problem (...)", "timed out after 10 s", or
 * "HTTP 500: <first 200 characters of the body>", and prints URLs without their userinfo.
 * The sigma-api client, the public-IP lookup and `sigma-agent check` all describe failures here.
 *
 * @example
 * ```ts
 * import { describeFetchError, failureLine, safeUrl } from "./http_failure.ts";
 * safeUrl("https://user:pw@api.example/api"); // "https://api.example/api"
 * try {
 *   await fetch("http://127.0.0.1:9/");
 * } catch (e) {
 *   const f = describeFetchError(e, { timedOut: false, timeoutMs: 10_000 });
 *   failureLine("GET", "http://127.0.0.1:9/", f.cause); // "GET http://127.0.0.1:9/: connection refused"
 * }
 * ```
 *
 * @module
 */

/** What kind of transport problem a failed request met. */
export type TransportFailure = "refused" | "dns" | "tls" | "timeout" | "network";

/** A classified failure: its kind and the words shown to the operator. */
export interface FailureDescription {
  kind: TransportFailure;
  cause: string;
}

/**
 * The URL without userinfo (`user:password@`), for logs, errors and `/status`. An unparsable
 * string is returned with anything up to an `@` in its authority removed.
 *
 * @example
 * ```ts
 * safeUrl("http://k:s@127.0.0.1:3000/api"); // "http://127.0.0.1:3000/api"
 * ```
 */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, url.endsWith("/") ? "/" : "");
  } catch {
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1");
  }
}

/** Every message in an error's `cause` chain, outermost first. */
function causeChain(e: unknown): string[] {
  const out: string[] = [];
  let c: unknown = e;
  for (let i = 0; c !== undefined && c !== null && i < 8; i++) {
    out.push(c instanceof Error ? c.message : String(c));
    c = c instanceof Error ? c.cause : undefined;
  }
  return out;
}

/** Seconds as an operator reads them: "10 s", "0.5 s". */
export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * Classifies an error thrown by `fetch`, or by the keep-alive client of the sigma-api
 * (`Deno.connect` / `Deno.connectTls` errors in its `cause`: the same words for the same cause).
 *
 * @param e what `fetch` threw
 * @param opts `timedOut`: whether our own timeout fired; `timeoutMs`: its length
 *
 * @example
 * ```ts
 * describeFetchError(new TypeError("fetch failed", {
 *   cause: new Error("client error (Connect): tcp connect error: Connection refused (os error 111)"),
 * }), { timedOut: false, timeoutMs: 5000 }); // { kind: "refused", cause: "connection refused" }
 * ```
 */
export function describeFetchError(
  e: unknown,
  opts: { timedOut: boolean; timeoutMs: number },
): FailureDescription {
  const all = causeChain(e);
  const text = all.join(" | ");
  const name = e instanceof Error ? e.name : "";
  if (opts.timedOut || name === "TimeoutError" || /timed? ?out/i.test(text)) {
    return { kind: "timeout", cause: `timed out after ${seconds(opts.timeoutMs)}` };
  }
  if (/connection refused|ECONNREFUSED/i.test(text)) {
    return { kind: "refused", cause: "connection refused" };
  }
  if (
    /dns error|failed to lookup|name or service not known|no address associated|ENOTFOUND/i.test(
      text,
    )
  ) {
    return { kind: "dns", cause: "host not found" };
  }
  // The innermost message carries the detail; strip hyper's "error sending request for url (...)".
  const detail = (all.at(-1) ?? text)
    .replace(/^error sending request for url \([^)]*\):\s*/i, "")
    .replace(/^client error \(Connect\):\s*/i, "");
  if (/certificate|\bcert\b|UnknownIssuer|CaUsedAsEndEntity|NotValidForName|Expired/i.test(text)) {
    return { kind: "tls", cause: `TLS certificate problem (${detail})` };
  }
  if (/tls|handshake|ssl|alert/i.test(text)) {
    return { kind: "tls", cause: `TLS handshake failed (${detail})` };
  }
  // hyper's words under fetch, and the keep-alive client's (lib/api/http1_client.ts).
  if (/connection closed before (message completed|the response)/i.test(text)) {
    return { kind: "network", cause: "the server closed the connection without answering" };
  }
  if (/connection reset|ECONNRESET|broken pipe/i.test(text)) {
    return { kind: "network", cause: "connection reset by the server" };
  }
  return { kind: "network", cause: `network error (${detail})` };
}

/**
 * The first `max` characters of a response body on one line ("(empty body)" when there is none).
 *
 * @example
 * ```ts
 * bodySnippet("a\n  b"); // "a b"
 * ```
 */
export function bodySnippet(text: string, max = 200): string {
  const t = text.replace(/\s+/g, " ").trim();
  if (t === "") return "(empty body)";
  return t.length > max ? t.slice(0, max) + "\u2026" : t;
}

/**
 * "HTTP 401 (API key rejected: ...): ..." - a status in words plus the start of the body.
 * `sigmaApi` adds what 401/403 mean for the sigma-api key.
 *
 * @example
 * ```ts
 * httpStatusCause(500, "boom"); // "HTTP 500: boom"
 * ```
 */
export function httpStatusCause(status: number, body: string, sigmaApi = false): string {
  const hint = sigmaApi && status === 401
    ? " (API key rejected: check SIGMA_API_KEY)"
    : sigmaApi && status === 403
    ? " (the API key's role may not make this call)"
    : status === 429
    ? " (rate limited)"
    : "";
  return `HTTP ${status}${hint}: ${bodySnippet(body)}`;
}

/**
 * One line naming the request and why it failed.
 *
 * @example
 * ```ts
 * failureLine("POST", "http://a:b@h/api/x", "connection refused"); // "POST http://h/api/x: connection refused"
 * ```
 */
export function failureLine(method: string, url: string, cause: string): string {
  return `${method} ${safeUrl(url)}: ${cause}`;
}
