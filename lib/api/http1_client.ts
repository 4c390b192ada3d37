/**
 * A lean HTTP/1.1 client for the sigma-api calls: keep-alive connections on `Deno.connect` /
 * `Deno.connectTls`, a request head written as one string, the response head parsed from bytes and
 * the body read straight into one buffer. It exists because `fetch` costs about twice the CPU
 * per request (Request, Headers, AbortController, streams, URL objects and their garbage), which
 * the xDS poller pays once per changed Envoy node.
 *
 * What it does:
 *
 * - a pool of idle keep-alive connections per origin (at most `maxIdlePerOrigin`, each reused only
 *   while idle less than `idleTimeoutMs`); an idle connection the server closes is dropped at once;
 * - a GET that meets a closed pooled connection before any response byte is sent again, once, on a
 *   fresh connection; any other method is never sent twice;
 * - `https` with SNI and ALPN `http/1.1`, verified against the same root store as `fetch`
 *   (`DENO_CERT`, `DENO_TLS_CA_STORE`, `--unsafely-ignore-certificate-errors` apply to both);
 * - bodies framed by `content-length`, `transfer-encoding: chunked` or the end of the connection,
 *   capped at `maxBodyBytes` while reading; 1xx answers skipped; redirects are not followed;
 * - one timeout over connect, send, head and body: a timed-out connection is closed, never pooled.
 *
 * It does not speak through proxies: {@linkcode proxyConfigured} tells the caller when `fetch`
 * (which honours `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`) must be used instead.
 * Failures are {@linkcode Http1Error}s whose `cause` is the Deno error, so
 * `describeFetchError` (lib/core/http_failure.ts) words them as it words `fetch`'s.
 *
 * @example
 * ```ts
 * import { Http1Client, parseOrigin } from "./http1_client.ts";
 * const http = new Http1Client();
 * const origin = parseOrigin("http://127.0.0.1:3000");
 * const res = await http.request(origin, {
 *   method: "GET",
 *   path: "/api/envoy-nodes?page=1&per_page=100",
 *   headers: "accept: application/json\r\n",
 *   timeoutMs: 10_000,
 *   maxBodyBytes: 16 * 1024 * 1024,
 * });
 * res.status; // 200
 * new TextDecoder().decode(res.body);
 * http.close();
 * ```
 *
 * @module
 */

import { joinBytes } from "../http/read_body.ts";

/** Where requests go: scheme, host and port of a URL, resolved once. */
export interface Origin {
  /** `http` or `https`. */
  readonly tls: boolean;
  /** Host name or IP address to connect to (IPv6 without brackets). */
  readonly hostname: string;
  readonly port: number;
  /** The `Host` header: host, with `:port` when it is not the scheme's default. */
  readonly host: string;
  /** Pool key, e.g. `https://api.example:443`. */
  readonly key: string;
}

/**
 * The {@linkcode Origin} of an `http:` or `https:` URL.
 *
 * @throws {TypeError} for another scheme or an unparsable URL
 *
 * @example
 * ```ts
 * parseOrigin("https://[::1]:8443/api").hostname; // "::1"
 * parseOrigin("http://api.example/api").host; // "api.example"
 * ```
 */
export function parseOrigin(url: string): Origin {
  const u = new URL(url);
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new TypeError(`unsupported URL scheme ${u.protocol}`);
  }
  const tls = u.protocol === "https:";
  const port = u.port ? Number(u.port) : tls ? 443 : 80;
  const hostname = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { tls, hostname, port, host: u.host, key: `${u.protocol}//${u.hostname}:${port}` };
}

/** Proxy variables `fetch` reads for each scheme (upper and lower case). */
const PROXY_VARS: Readonly<Record<"http" | "https", readonly string[]>> = {
  http: ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
  https: ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"],
};

/** Every proxy variable {@linkcode proxyConfigured} reads: the agent's `--allow-env` grants them. */
export const PROXY_ENV_VARS: readonly string[] = [
  "HTTP_PROXY",
  "http_proxy",
  "HTTPS_PROXY",
  "https_proxy",
  "ALL_PROXY",
  "all_proxy",
];

/**
 * Whether `fetch` might send requests to this origin through a proxy: a proxy variable for its
 * scheme is set, or the process may not read one (then nobody can tell, so the answer is yes).
 * `NO_PROXY` is not evaluated: with a proxy variable set, `fetch` decides.
 *
 * @example
 * ```ts
 * proxyConfigured(parseOrigin("http://127.0.0.1:3000")); // false unless HTTP_PROXY/ALL_PROXY is set
 * ```
 */
export function proxyConfigured(origin: Origin): boolean {
  for (const name of PROXY_VARS[origin.tls ? "https" : "http"]) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return true;
    }
    if (Deno.env.get(name)) return true;
  }
  return false;
}

/** One request. */
export interface Http1Request {
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  /** Extra header lines, each ending in `\r\n` (`Host`, `Content-Length` are added). */
  headers: string;
  body?: Uint8Array;
  /** Whole-request timeout: connect, send, head and body. */
  timeoutMs: number;
  /** Largest body accepted; a longer one fails with `tooLarge`. */
  maxBodyBytes: number;
}

/** A complete response. */
export interface Http1Response {
  status: number;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Map<string, string>;
  body: Uint8Array;
}

/** A failed request; `cause` holds the underlying Deno error when there is one. */
export class Http1Error extends Error {
  override name = "Http1Error";
  /** The status when the failure came after the response head (while reading the body). */
  readonly status: number | undefined;
  /** Whether the request's timeout fired. */
  readonly timedOut: boolean;
  /** Whether the body passed `maxBodyBytes`. */
  readonly tooLarge: boolean;

  constructor(
    message: string,
    opts: { cause?: unknown; status?: number; timedOut?: boolean; tooLarge?: boolean } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.status = opts.status;
    this.timedOut = opts.timedOut ?? false;
    this.tooLarge = opts.tooLarge ?? false;
  }
}

/** Options of {@linkcode Http1Client}. */
export interface Http1ClientOptions {
  /** Idle keep-alive connections kept per origin (default 8). */
  maxIdlePerOrigin?: number;
  /** A connection idle longer than this is closed instead of reused, ms (default 4000). */
  idleTimeoutMs?: number;
}

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const CR = 13;
const LF = 10;
const HEAD_LIMIT = 64 * 1024;

/** One connection, its read buffer and (while idle) its pending read. */
class Connection {
  readonly conn: Deno.Conn;
  buf = new Uint8Array(16 * 1024);
  /** Unconsumed bytes are `buf[start, end)`. */
  start = 0;
  end = 0;
  /** A read started while the connection sat in the pool. */
  pending: Promise<number | null> | undefined;
  idleSince = 0;
  closed = false;
  /** Bytes received since the request was sent. */
  received = 0;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by a failed op
    }
  }

  /** Reads more bytes after `end`; `false` at end of stream. */
  async fill(): Promise<boolean> {
    let n: number | null;
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      n = await p;
    } else {
      if (this.start > 0 && this.start === this.end) this.start = this.end = 0;
      if (this.end === this.buf.length) {
        const live = this.end - this.start;
        if (this.start > 0 && live <= this.buf.length / 2) {
          this.buf.copyWithin(0, this.start, this.end);
        } else {
          const next = new Uint8Array(this.buf.length * 2);
          next.set(this.buf.subarray(this.start, this.end));
          this.buf = next;
        }
        this.start = 0;
        this.end = live;
      }
      n = await this.conn.read(this.buf.subarray(this.end));
    }
    if (n === null) return false;
    this.end += n;
    this.received += n;
    return true;
  }

  /** Takes `n` buffered bytes (n <= end - start) as a copy. */
  take(n: number): Uint8Array {
    const out = this.buf.slice(this.start, this.start + n);
    this.start += n;
    return out;
  }

  /** The index just after the next CRLF in the buffer, or -1. */
  lineEnd(from: number): number {
    const b = this.buf;
    for (let i = from; i < this.end - 1; i++) if (b[i] === CR && b[i + 1] === LF) return i + 2;
    return -1;
  }
}

/** The parsed response head. */
interface Head {
  status: number;
  headers: Map<string, string>;
  keepAlive: boolean;
}

/**
 * HTTP/1.1 requests over pooled keep-alive connections.
 *
 * @example
 * ```ts
 * const http = new Http1Client({ maxIdlePerOrigin: 8 });
 * const res = await http.request(parseOrigin("http://127.0.0.1:3000"), {
 *   method: "POST",
 *   path: "/api/agent/heartbeat",
 *   headers: "content-type: application/json\r\n",
 *   body: new TextEncoder().encode("{}"),
 *   timeoutMs: 10_000,
 *   maxBodyBytes: 1 << 20,
 * });
 * ```
 */
export class Http1Client {
  readonly #idle = new Map<string, Connection[]>();
  readonly #maxIdle: number;
  readonly #idleTimeout: number;

  constructor(opts: Http1ClientOptions = {}) {
    this.#maxIdle = opts.maxIdlePerOrigin ?? 8;
    this.#idleTimeout = opts.idleTimeoutMs ?? 4000;
  }

  /** Idle connections currently pooled for `origin` (for tests and metrics). */
  idleCount(origin: Origin): number {
    return this.#idle.get(origin.key)?.length ?? 0;
  }

  /** Closes every idle connection; requests in flight finish and close theirs. */
  close(): void {
    for (const list of this.#idle.values()) for (const c of list) c.close();
    this.#idle.clear();
  }

  /**
   * Sends one request and reads the whole response.
   *
   * @throws {Http1Error} on a transport failure, a timeout, a malformed answer or a too-large body
   */
  async request(origin: Origin, req: Http1Request): Promise<Http1Response> {
    let timedOut = false;
    let current: Connection | undefined;
    let onTimeout: (() => void) | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      current?.close();
      onTimeout?.();
    }, req.timeoutMs);
    const head = encoder.encode(
      `${req.method} ${req.path} HTTP/1.1\r\nhost: ${origin.host}\r\n${req.headers}${
        req.body ? `content-length: ${req.body.byteLength}\r\n` : ""
      }\r\n`,
    );
    const wire = req.body ? concat(head, req.body) : head;
    try {
      for (let attempt = 0;; attempt++) {
        const pooled = attempt === 0 ? this.#take(origin) : undefined;
        try {
          if (timedOut) throw new Error("timed out");
          current = pooled ?? await this.#connect(origin, req.timeoutMs, (cancel) => {
            onTimeout = cancel;
          });
          onTimeout = undefined;
          if (timedOut) throw new Error("timed out");
          return await this.#exchange(origin, current, req, wire);
        } catch (e) {
          const c = current;
          current?.close();
          current = undefined;
          if (timedOut) {
            throw new Http1Error(`timed out after ${req.timeoutMs} ms`, {
              cause: e,
              timedOut: true,
              status: e instanceof Http1Error ? e.status : undefined,
            });
          }
          // A pooled connection the server had closed: nothing of the answer arrived.
          const stale = pooled !== undefined && c !== undefined && c.received === 0 &&
            !(e instanceof Http1Error);
          if (stale && req.method === "GET" && attempt === 0) continue;
          if (e instanceof Http1Error) throw e;
          throw new Http1Error(`${(e as Error).message ?? e}`, { cause: e });
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** A pooled connection to `origin` still fresh, or undefined. */
  #take(origin: Origin): Connection | undefined {
    const list = this.#idle.get(origin.key);
    if (!list) return undefined;
    const now = performance.now();
    while (list.length > 0) {
      const c = list.pop()!;
      if (c.closed) continue;
      if (now - c.idleSince > this.#idleTimeout) {
        c.close();
        continue;
      }
      c.conn.ref();
      return c;
    }
    return undefined;
  }

  /** Returns a connection to the pool with a read pending, so a server close is seen at once. */
  #release(origin: Origin, c: Connection): void {
    let list = this.#idle.get(origin.key);
    if (!list) this.#idle.set(origin.key, list = []);
    if (list.length >= this.#maxIdle) return c.close();
    c.start = c.end = 0;
    c.received = 0;
    c.idleSince = performance.now();
    c.conn.unref();
    const p = c.conn.read(c.buf);
    c.pending = p;
    list.push(c);
    // Bytes, end of stream or an error while nobody asked: the connection is unusable.
    const drop = () => {
      if (c.pending !== p) return; // taken for a request, which reads the outcome itself
      c.close();
      const i = list.indexOf(c);
      if (i >= 0) list.splice(i, 1);
    };
    p.then(drop, drop);
  }

  async #connect(
    origin: Origin,
    timeoutMs: number,
    setCancel: (cancel: () => void) => void,
  ): Promise<Connection> {
    let giveUp!: (e: Error) => void;
    const timedOut = new Promise<never>((_, reject) => giveUp = reject);
    timedOut.catch(() => {});
    setCancel(() => giveUp(new Error(`connect timed out after ${timeoutMs} ms`)));
    const connecting = (async () => {
      if (!origin.tls) {
        const conn = await Deno.connect({ hostname: origin.hostname, port: origin.port });
        conn.setNoDelay(true);
        return conn as Deno.Conn;
      }
      const conn = await Deno.connectTls({
        hostname: origin.hostname,
        port: origin.port,
        alpnProtocols: ["http/1.1"],
      });
      try {
        await conn.handshake();
      } catch (e) {
        conn.close();
        throw e;
      }
      return conn as Deno.Conn;
    })();
    try {
      return new Connection(await Promise.race([connecting, timedOut]));
    } catch (e) {
      // A connection that completes after the timeout is closed, never used.
      connecting.then((c) => c.close(), () => {});
      throw e;
    }
  }

  async #exchange(
    origin: Origin,
    c: Connection,
    req: Http1Request,
    wire: Uint8Array,
  ): Promise<Http1Response> {
    c.received = 0;
    for (let off = 0; off < wire.byteLength;) off += await c.conn.write(wire.subarray(off));
    let head: Head;
    do head = await readHead(c); while (head.status >= 100 && head.status < 200);
    const status = head.status;
    const fail = (message: string, extra: { tooLarge?: boolean; cause?: unknown } = {}) =>
      new Http1Error(message, { status, ...extra });
    let body: Uint8Array;
    let reusable = head.keepAlive;
    const te = head.headers.get("transfer-encoding");
    const cl = head.headers.get("content-length");
    try {
      if (req.method === "HEAD" || status === 204 || status === 304) {
        body = new Uint8Array();
      } else if (te !== undefined) {
        if (!/(^|,)\s*chunked\s*$/i.test(te)) {
          reusable = false;
          body = await readToEnd(c, req.maxBodyBytes, fail);
        } else {
          body = await readChunked(c, req.maxBodyBytes, fail);
        }
      } else if (cl !== undefined) {
        if (!/^\d+$/.test(cl.trim())) throw fail(`invalid content-length "${cl}"`);
        const length = Number(cl.trim());
        if (length > req.maxBodyBytes) {
          throw fail(`body larger than ${req.maxBodyBytes} bytes`, { tooLarge: true });
        }
        body = await readLength(c, length, fail);
      } else {
        reusable = false;
        body = await readToEnd(c, req.maxBodyBytes, fail);
      }
    } catch (e) {
      if (e instanceof Http1Error) throw e;
      throw fail(`reading the body: ${(e as Error).message}`, { cause: e });
    }
    // Bytes after the body mean the framing is off: that connection is not used again.
    if (reusable && c.start === c.end && !c.closed) this.#release(origin, c);
    else c.close();
    return { status, headers: head.headers, body };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}

/** Reads and parses one response head (status line and headers). */
async function readHead(c: Connection): Promise<Head> {
  let scan = c.start;
  let endOfHead = -1;
  for (;;) {
    const b = c.buf;
    for (let i = Math.max(scan, c.start); i + 3 < c.end; i++) {
      if (b[i] === CR && b[i + 1] === LF && b[i + 2] === CR && b[i + 3] === LF) {
        endOfHead = i;
        break;
      }
    }
    if (endOfHead >= 0) break;
    if (c.end - c.start > HEAD_LIMIT) throw new Http1Error("response head larger than 64 KiB");
    scan = Math.max(c.start, c.end - 3);
    const offset = scan - c.start;
    if (!(await c.fill())) {
      throw new Error(
        c.received === 0
          ? "connection closed before the response"
          : "connection closed in the middle of the response head",
      );
    }
    scan = c.start + offset;
  }
  const text = latin1.decode(c.buf.subarray(c.start, endOfHead));
  c.start = endOfHead + 4;
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]);
  if (!m) {
    throw new Http1Error(`not an HTTP/1.1 response: ${JSON.stringify(lines[0].slice(0, 60))}`);
  }
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Http1Error(`malformed response header line`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  const connection = headers.get("connection")?.toLowerCase() ?? "";
  const keepAlive = m[1] === "1"
    ? !/\bclose\b/.test(connection)
    : /\bkeep-alive\b/.test(connection);
  return { status: Number(m[2]), headers, keepAlive };
}

type Fail = (message: string, extra?: { tooLarge?: boolean }) => Http1Error;

/** Exactly `length` body bytes: what is buffered, then reads straight into the result. */
async function readLength(c: Connection, length: number, fail: Fail): Promise<Uint8Array> {
  const have = Math.min(c.end - c.start, length);
  if (have === length) return c.take(length);
  const out = new Uint8Array(length);
  out.set(c.buf.subarray(c.start, c.start + have));
  c.start = c.end = 0;
  let off = have;
  while (off < length) {
    const n = await c.conn.read(out.subarray(off));
    if (n === null) throw fail(`connection closed after ${off} of ${length} body bytes`);
    off += n;
    c.received += n;
  }
  return out;
}

/** The body up to the end of the stream, capped. */
async function readToEnd(c: Connection, max: number, fail: Fail): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const n = c.end - c.start;
    if (n > 0) {
      size += n;
      if (size > max) throw fail(`body larger than ${max} bytes`, { tooLarge: true });
      chunks.push(c.take(n));
    }
    if (!(await c.fill())) break;
  }
  return joinBytes(chunks, size);
}

/** A `transfer-encoding: chunked` body, capped; trailers are read and dropped. */
async function readChunked(c: Connection, max: number, fail: Fail): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const line = async (): Promise<string> => {
    let end: number;
    while ((end = c.lineEnd(c.start)) < 0) {
      if (c.end - c.start > 4096) throw fail("malformed chunked body");
      if (!(await c.fill())) throw fail("connection closed in the middle of a chunked body");
    }
    const s = latin1.decode(c.buf.subarray(c.start, end - 2));
    c.start = end;
    return s;
  };
  for (;;) {
    const sizeLine = await line();
    const hex = sizeLine.split(";")[0].trim();
    if (!/^[0-9a-f]+$/i.test(hex)) throw fail(`malformed chunk size ${JSON.stringify(hex)}`);
    const n = parseInt(hex, 16);
    if (n === 0) {
      while ((await line()) !== "");
      return joinBytes(chunks, size);
    }
    size += n;
    if (size > max) throw fail(`body larger than ${max} bytes`, { tooLarge: true });
    chunks.push(await readLength(c, n, fail));
    if ((await line()) !== "") throw fail("malformed chunked body");
  }
}
