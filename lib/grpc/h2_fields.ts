/**
 * The HTTP/2 rules for a request's field sections (RFC 9113 §8.1-§8.3): which header lists make a
 * request malformed, a stream error of type PROTOCOL_ERROR. Pure functions over decoded HPACK
 * fields, used by the connection in `h2_server.ts` for request headers and request trailers.
 *
 * Checked: field names (§8.2.1: not empty, no byte in 0x00-0x20, 0x41-0x5A (uppercase) or
 * 0x7F-0xFF, no colon past the first byte), field values (§8.2.1: no NUL, CR or LF, no leading or
 * trailing space or tab), connection-specific fields and `te` other than `trailers` (§8.2.2),
 * pseudo-headers (§8.3: only `:method`, `:scheme`, `:authority` and `:path` in a request, each at
 * most once, before every regular field, none in trailers; §8.3.1: `:method`, `:scheme` and a
 * non-empty `:path` required, no userinfo in `:authority`, for CONNECT only `:authority`), and
 * `content-length` (§8.1.1: digits, every copy equal; the connection compares it with the DATA
 * received).
 *
 * @example
 * ```ts
 * import { requestHead } from "./h2_fields.ts";
 * requestHead([[":method", "POST"], [":path", "/a.B/C"]]); // "missing :scheme"
 * ```
 *
 * @module
 */

import type { HeaderField } from "./hpack.ts";

/** The parts of a well-formed request the gRPC server looks at. */
export interface RequestHead {
  method: string;
  /** Without its query. */
  path: string;
  contentType: string;
  /** `grpc-encoding`, "" when absent. */
  encoding: string;
  /** The declared body size, -1 when there is no `content-length`. */
  contentLength: number;
}

/** §8.2.2: fields that only make sense on one HTTP/1.1 hop. */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/**
 * A character no field name may hold (§8.2.1): 0x00-0x20, uppercase, 0x7F and above, and a colon
 * anywhere but first (a pseudo-header's).
 */
// deno-lint-ignore no-control-regex
const BAD_NAME = /[\x00-\x20A-Z\x7f-\uffff]|[^]:/;
/** A field value with NUL, CR or LF, or with whitespace at either end (§8.2.1). */
const BAD_VALUE = /[\0\r\n]|^[ \t]|[ \t]$/;

/** Why a field breaks §8.2.1, or undefined when it is valid. */
function fieldProblem(name: string, value: string): string | undefined {
  if (name.length === (name.charCodeAt(0) === 0x3a ? 1 : 0)) return "empty field name";
  if (BAD_NAME.test(name)) return `invalid field name ${JSON.stringify(name)}`;
  if (BAD_VALUE.test(value)) return `invalid value of ${name}`;
  return undefined;
}

/** Why a regular field is not allowed in any HTTP/2 field section (§8.2), or undefined. */
function regularProblem(name: string, value: string): string | undefined {
  if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
  if (name === "te" && value !== "trailers") return "te other than trailers";
  return undefined;
}

/** `content-length` as a number, or -2 when it is no valid length. */
function parseLength(value: string): number {
  if (!/^[0-9]{1,15}$/.test(value)) return -2;
  return Number(value);
}

/**
 * Checks a request's header list (RFC 9113 §8.1-§8.3).
 *
 * @returns the request, or the reason it is malformed (a stream error PROTOCOL_ERROR)
 * @example
 * ```ts
 * const head = requestHead([
 *   [":method", "POST"], [":scheme", "http"], [":path", "/a.B/C?x"],
 *   ["content-type", "application/grpc"],
 * ]);
 * // { method: "POST", path: "/a.B/C", contentType: "application/grpc", encoding: "", contentLength: -1 }
 * ```
 */
export function requestHead(fields: readonly HeaderField[]): RequestHead | string {
  let method: string | undefined;
  let scheme: string | undefined;
  let path: string | undefined;
  let authority: string | undefined;
  let contentType = "";
  let encoding = "";
  let contentLength = -1;
  let regularSeen = false;
  for (const [name, value] of fields) {
    const problem = fieldProblem(name, value);
    if (problem) return problem;
    if (name.charCodeAt(0) === 0x3a) {
      if (regularSeen) return `pseudo-header ${name} after a regular field`;
      switch (name) {
        case ":method":
          if (method !== undefined) return "repeated :method";
          method = value;
          break;
        case ":scheme":
          if (scheme !== undefined) return "repeated :scheme";
          scheme = value;
          break;
        case ":path":
          if (path !== undefined) return "repeated :path";
          path = value;
          break;
        case ":authority":
          if (authority !== undefined) return "repeated :authority";
          authority = value;
          break;
        default:
          // :status (a response pseudo-header), :protocol (no extended CONNECT here), unknown.
          return `pseudo-header ${name} in a request`;
      }
      continue;
    }
    regularSeen = true;
    const problem2 = regularProblem(name, value);
    if (problem2) return problem2;
    if (name === "content-type") contentType = value;
    else if (name === "grpc-encoding") encoding = value;
    else if (name === "content-length") {
      const n = parseLength(value);
      if (n < 0 || (contentLength >= 0 && n !== contentLength)) return "invalid content-length";
      contentLength = n;
    }
  }
  if (method === undefined) return "missing :method";
  if (method === "CONNECT") {
    // §8.5: CONNECT names only an authority.
    if (scheme !== undefined || path !== undefined || !authority) return "malformed CONNECT";
    return { method, path: "", contentType, encoding, contentLength };
  }
  if (scheme === undefined) return "missing :scheme";
  if (path === undefined) return "missing :path";
  if (path === "" || (path[0] !== "/" && !(path === "*" && method === "OPTIONS"))) {
    return "invalid :path";
  }
  // §8.3.1: no userinfo in an http(s) authority.
  if (authority?.includes("@") && (scheme === "http" || scheme === "https")) {
    return "userinfo in :authority";
  }
  const query = path.indexOf("?");
  return {
    method,
    path: query < 0 ? path : path.slice(0, query),
    contentType,
    encoding,
    contentLength,
  };
}

/**
 * Checks a request's trailer list: valid fields (§8.2), no pseudo-headers (§8.1).
 *
 * @returns the reason the trailers are malformed, or undefined
 * @example
 * ```ts
 * trailersProblem([[":path", "/"]]); // "pseudo-header :path in trailers"
 * ```
 */
export function trailersProblem(fields: readonly HeaderField[]): string | undefined {
  for (const [name, value] of fields) {
    const problem = fieldProblem(name, value) ?? regularProblem(name, value);
    if (problem) return problem;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header ${name} in trailers`;
  }
  return undefined;
}
