/**
 * A small, strict HTTP/1.1 server for the agent's metrics port, with the limits `Deno.serve`
 * lacks: a deadline for the request head (slowloris), a body deadline, an idle keep-alive timeout,
 * head and body size caps, and a connection cap. Every refusal is a clear status with a JSON
 * `{"error"}` body: 400 malformed, 408 too slow, 411 chunked body, 413 body too large,
 * 431 head too large, 503 too many connections.
 *
 * Handlers are ordinary `(Request) => Response` functions, so the routing code does not depend
 * on this transport. Response bodies are buffered (the agent's responses are small).
 *
 * @example
 * ```ts
 * import { serveHttp1 } from "./http1.ts";
 * const srv = serveHttp1({ hostname: "127.0.0.1", port: 0 }, () => new Response("ok"));
 * await srv.shutdown();
 * ```
 *
 * @module
 */

import type { ByteConn, ByteListener } from "../tls/listener.ts";

/** Limits of {@linkcode serveHttp1}; all have production defaults. */
export interface Http1Limits {
  /** Time to receive a complete request head once it started (default 10 s). */
  headerTimeoutMs: number;
  /** Time to receive the request body after the head (default 10 s). */
  bodyTimeoutMs: number;
  /** Keep-alive: time to wait for the next request (default 30 s). */
  idleTimeoutMs: number;
  /** Largest request head (default 16 KiB). */
  maxHeaderBytes: number;
  /** Largest request body (default 64 KiB). */
  maxBodyBytes: number;
  /** Concurrent connections; more are refused with 503 (default 2048). */
  maxConnections: number;
}

/** Defaults suited to a metrics/health/allocate port. */
export const DEFAULT_LIMITS: Http1Limits = {
  headerTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  maxHeaderBytes: 16 * 1024,
  maxBodyBytes: 64 * 1024,
  maxConnections: 2048,
};

/** Request handler. */
export type Http1Handler = (
  req: Request,
  info: { remoteAddr: string },
) => Response | Promise<Response>;

/** A running server. */
export interface Http1Server {
  /** The bound port. */
  port: number;
  /** Stops accepting, lets in-flight requests finish briefly, closes every connection. */
  shutdown(): Promise<void>;
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** What a connection needs: a `Deno.Conn`, or a TLS {@linkcode ByteConn}. */
type RawConn = Pick<Deno.Conn, "read" | "write" | "close">;

const enc = new TextEncoder();
const dec = new TextDecoder();
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

class HttpRefusal extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function head(status: number, headers: [string, string][]): Uint8Array {
  let s = `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\n`;
  for (const [k, v] of headers) s += `${k}: ${v}\r\n`;
  return enc.encode(s + "\r\n");
}

function errorBytes(status: number, message: string): Uint8Array {
  const body = enc.encode(JSON.stringify({ error: message }));
  const h = head(status, [
    ["content-type", "application/json"],
    ["content-length", String(body.length)],
    ["connection", "close"],
  ]);
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}

function indexOfHeadEnd(buf: Uint8Array, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

async function writeAll(conn: RawConn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** One connection: reads requests in a loop under the limits. */
class Connection {
  #buf = new Uint8Array(0);
  /** Read buffer, reused for every read of this connection. */
  #chunk: Uint8Array | undefined;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timedOut: string | undefined;
  busy = false;

  constructor(
    readonly conn: RawConn,
    readonly limits: Http1Limits,
    readonly handler: Http1Handler,
    readonly remoteAddr: string,
    readonly localHost: string,
  ) {}

  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  #arm(ms: number, why: string | undefined) {
    clearTimeout(this.#timer);
    this.#timedOut = undefined;
    this.#timer = setTimeout(() => {
      this.#timedOut = why ?? "idle";
      if (why) {
        // Tell the client why before closing; never wait long for a stalled peer.
        const t = setTimeout(() => this.close(), 1000);
        writeAll(this.conn, errorBytes(408, why)).catch(() => {}).finally(() => {
          clearTimeout(t);
          this.close();
        });
      } else this.close();
    }, ms);
  }

  /** Reads more bytes into the buffer; false on EOF or close. */
  async #fill(): Promise<boolean> {
    const chunk = (this.#chunk ??= new Uint8Array(4096));
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch {
      return false;
    }
    if (n === null || n === 0) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  async #refuse(status: number, message: string) {
    clearTimeout(this.#timer);
    await writeAll(this.conn, errorBytes(status, message)).catch(() => {});
    this.close();
  }

  async run(): Promise<void> {
    let first = true;
    try {
      while (!this.#closed) {
        // Wait for a request: header deadline on a new connection, idle timeout on keep-alive.
        if (this.#buf.length === 0) {
          this.#arm(
            first ? this.limits.headerTimeoutMs : this.limits.idleTimeoutMs,
            first ? "request head not received in time" : undefined,
          );
          if (!(await this.#fill())) return;
        }
        first = false;
        this.#arm(this.limits.headerTimeoutMs, "request head not received in time");
        let end = indexOfHeadEnd(this.#buf, 0);
        while (end < 0) {
          if (this.#buf.length > this.limits.maxHeaderBytes) {
            return await this.#refuse(
              431,
              `request head larger than ${this.limits.maxHeaderBytes} bytes`,
            );
          }
          const scanned = this.#buf.length;
          if (!(await this.#fill())) return;
          end = indexOfHeadEnd(this.#buf, scanned);
        }
        if (end > this.limits.maxHeaderBytes) {
          return await this.#refuse(
            431,
            `request head larger than ${this.limits.maxHeaderBytes} bytes`,
          );
        }
        let parsed;
        try {
          parsed = parseHead(dec.decode(this.#buf.subarray(0, end)), this.limits.maxBodyBytes);
        } catch (e) {
          if (e instanceof HttpRefusal) return await this.#refuse(e.status, e.message);
          throw e;
        }
        this.#buf = this.#buf.subarray(end + 4);

        // Body.
        const length = parsed.contentLength;
        if (length > 0 && parsed.expectContinue && this.#buf.length < length) {
          await writeAll(this.conn, head(100, []));
        }
        this.#arm(this.limits.bodyTimeoutMs, "request body not received in time");
        while (this.#buf.length < length) {
          if (!(await this.#fill())) return;
        }
        clearTimeout(this.#timer);
        if (this.#timedOut) return;
        const body = this.#buf.slice(0, length);
        this.#buf = this.#buf.subarray(length);

        const host = parsed.headers.get("host") ?? this.localHost;
        let url: URL;
        try {
          url = new URL(parsed.target, `http://${host}`);
        } catch {
          return await this.#refuse(400, "invalid request target");
        }
        const req = new Request(url, {
          method: parsed.method,
          headers: parsed.headers,
          body: parsed.method === "GET" || parsed.method === "HEAD" ? undefined : body,
        });
        this.busy = true;
        let res: Response;
        try {
          res = await this.handler(req, { remoteAddr: this.remoteAddr });
        } catch {
          res = new Response(JSON.stringify({ error: "internal error" }), {
            status: 500,
            headers: { "content-type": "application/json" },
          });
        }
        const payload = new Uint8Array(await res.arrayBuffer());
        const headers: [string, string][] = [];
        res.headers.forEach((v, k) => {
          if (k !== "content-length" && k !== "transfer-encoding" && k !== "connection") {
            headers.push([k, v]);
          }
        });
        headers.push(["content-length", String(payload.length)]);
        headers.push(["connection", parsed.keepAlive ? "keep-alive" : "close"]);
        const h = head(res.status, headers);
        await writeAll(this.conn, parsed.method === "HEAD" ? h : concat(h, payload));
        this.busy = false;
        if (!parsed.keepAlive) return;
      }
    } catch {
      // peer reset or write on a closed socket: nothing to answer
    } finally {
      this.close();
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

interface ParsedHead {
  method: string;
  target: string;
  headers: Headers;
  contentLength: number;
  keepAlive: boolean;
  expectContinue: boolean;
}

/** Parses a request head (without the blank line). Throws {@linkcode HttpRefusal}. */
function parseHead(text: string, maxBody: number): ParsedHead {
  const lines = text.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0] ?? "");
  if (!m) throw new HttpRefusal(400, "malformed request line");
  const [, method, target, minor] = m;
  if (!target.startsWith("/")) {
    throw new HttpRefusal(400, "request target must be an absolute path");
  }
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i <= 0) throw new HttpRefusal(400, "malformed header line");
    const name = line.slice(0, i);
    if (!TOKEN.test(name)) throw new HttpRefusal(400, "malformed header name");
    const value = line.slice(i + 1).trim();
    try {
      headers.append(name, value);
    } catch {
      throw new HttpRefusal(400, `invalid value of header ${name}`);
    }
  }
  if (headers.has("transfer-encoding")) {
    throw new HttpRefusal(411, "chunked request bodies are not supported; send Content-Length");
  }
  const cl = headers.get("content-length");
  let contentLength = 0;
  if (cl !== null) {
    if (!/^\d+$/.test(cl)) throw new HttpRefusal(400, "invalid Content-Length");
    contentLength = Number(cl);
    if (contentLength > maxBody) {
      throw new HttpRefusal(413, `request body larger than ${maxBody} bytes`);
    }
  }
  const connection = (headers.get("connection") ?? "").toLowerCase();
  const keepAlive = minor === "1"
    ? !connection.includes("close")
    : connection.includes("keep-alive");
  const expectContinue = (headers.get("expect") ?? "").toLowerCase() === "100-continue";
  return { method, target, headers, contentLength, keepAlive, expectContinue };
}

/**
 * Starts the server.
 *
 * @throws when the address cannot be bound
 */
export function serveHttp1(
  opts: {
    hostname: string;
    port: number;
    limits?: Partial<Http1Limits>;
    /** An already bound listener (TLS) to serve instead of binding `hostname:port`. */
    listener?: ByteListener;
  },
  handler: Http1Handler,
): Http1Server {
  const limits: Http1Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const listener: Deno.Listener | ByteListener = opts.listener ??
    Deno.listen({ hostname: opts.hostname, port: opts.port });
  const port = (listener.addr as Deno.NetAddr).port;
  const localHost = `${opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname}:${port}`;
  const active = new Set<Connection>();
  const running = new Set<Promise<void>>();
  let stopping = false;

  const accepting = (async () => {
    while (!stopping) {
      let conn: Deno.Conn | ByteConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (stopping || e instanceof Deno.errors.BadResource) return;
        // EMFILE and friends: back off briefly instead of spinning.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (active.size >= limits.maxConnections) {
        writeAll(conn, errorBytes(503, "too many connections")).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // closed
          }
        });
        continue;
      }
      const remote = (conn.remoteAddr as Deno.NetAddr).hostname;
      const c = new Connection(conn, limits, handler, remote, localHost);
      active.add(c);
      const p = c.run().finally(() => {
        active.delete(c);
        running.delete(p);
      });
      running.add(p);
    }
  })();

  return {
    port,
    async shutdown() {
      stopping = true;
      try {
        listener.close();
      } catch {
        // closed
      }
      await accepting;
      // Idle connections close now; busy ones get a moment to finish their response.
      for (const c of active) if (!c.busy) c.close();
      const grace = new Promise((r) => setTimeout(r, 1000));
      await Promise.race([Promise.allSettled([...running]), grace]);
      for (const c of active) c.close();
      await Promise.allSettled([...running]);
    },
  };
}
