/**
 * A small gRPC server for bidirectional-streaming methods on top of `Deno.serve` (hyper's HTTP/2,
 * cleartext with prior knowledge, as Envoy and grpc-js connect to an `http://` xDS server).
 *
 * Why not the grpc-js server: under Deno 2.9 its `node:http2` layer aborts the whole process
 * inside nghttp2 when many clients reset their streams and close their connections at once
 * (denoland/deno#36788; reproduced here with 200 clients, grpc-js and plain `node:http2` alike).
 * hyper does not have that failure, and the agent no longer needs grpc-js at runtime.
 *
 * What it implements of the gRPC-over-HTTP/2 protocol: `POST` with `content-type:
 * application/grpc[+proto]`, length-prefixed messages (uncompressed only; a compressed message
 * ends the call with UNIMPLEMENTED), a per-message size limit, and error statuses as a
 * "Trailers-Only" response while no response headers were sent. `Deno.serve` cannot send HTTP
 * trailers, so a call that ends after its headers went out is closed by a stream reset (clients
 * see it as UNAVAILABLE/INTERNAL and reconnect) — the xDS server only ends calls that way on
 * shutdown. HTTP/2 PINGs from clients are answered by hyper (Envoy's `connection_keepalive`).
 *
 * @example
 * ```ts
 * import { GrpcServer } from "./grpc_transport.ts";
 * const server = new GrpcServer({
 *   methods: {
 *     "/echo.Echo/Chat": {
 *       decode: (b) => b,
 *       encode: (m: Uint8Array) => m,
 *       handle: (call) => call.onMessage((m) => call.write(m)),
 *     },
 *   },
 * });
 * const port = await server.listen("127.0.0.1", 0);
 * await server.shutdown();
 * ```
 *
 * @module
 */

/** gRPC status codes used here. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** One server-side bidi call as a method handler sees it. */
export interface BidiCall<Req, Res> {
  /** The `:path`, e.g. `/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources`. */
  readonly path: string;
  /** Aborted when the call ends for any reason (client gone, reset, `end`, `fail`, shutdown). */
  readonly signal: AbortSignal;
  /** Registers the message handler; messages that arrive before are queued. Exceptions end the call with INTERNAL. */
  onMessage(fn: (msg: Req) => void): void;
  /** Registers a callback run once when the call ends. */
  onEnd(fn: () => void): void;
  /** Sends one message (queued without limit; xDS sends only on change). */
  write(msg: Res): void;
  /** Ends the call with a status. Before any response headers: a proper gRPC status; after: a reset. */
  fail(code: number, message: string): void;
  /** Response bytes waiting to be read by the client (for back-pressure checks). */
  readonly bufferedBytes: number;
}

/** One method: how to decode requests, encode responses, and the handler. */
export interface BidiMethod<Req, Res> {
  decode(bytes: Uint8Array): Req;
  encode(msg: Res): Uint8Array;
  /** `encode` already returns the gRPC message header (saves one copy per message). */
  framed?: boolean;
  handle(call: BidiCall<Req, Res>): void;
}

/** Options of {@linkcode GrpcServer}. */
export interface GrpcServerOptions {
  // deno-lint-ignore no-explicit-any
  methods: Record<string, BidiMethod<any, any>>;
  /** Largest request message accepted, bytes (default 4 MiB, the gRPC default). */
  maxMessageBytes?: number;
  /** Called with errors the server swallowed (handler exceptions, undecodable messages). */
  onError?: (err: unknown, path: string) => void;
}

const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;.*)?$/i;

/**
 * Percent-encodes a `grpc-message` value as the gRPC spec asks (printable ASCII except `%`
 * passes through).
 *
 * @example
 * ```ts
 * grpcMessageEncode("node.id missing: é"); // "node.id missing: %C3%A9"
 * ```
 */
export function grpcMessageEncode(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** A gRPC error response without body ("Trailers-Only"). */
function statusResponse(code: number, message: string): Response {
  const headers: Record<string, string> = {
    "content-type": "application/grpc",
    "grpc-status": String(code),
  };
  if (message) headers["grpc-message"] = grpcMessageEncode(message);
  return new Response(null, { status: 200, headers });
}

/** Thrown by {@linkcode MessageReader} for a message gRPC forbids. */
export class FramingError extends Error {
  override name = "FramingError";
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Splits an HTTP/2 body into gRPC messages (1 flag byte, 4-byte big-endian length, payload),
 * whatever the chunk boundaries.
 *
 * @example
 * ```ts
 * const reader = new MessageReader(1024);
 * reader.push(new Uint8Array([0, 0, 0, 0, 2, 7]));
 * reader.push(new Uint8Array([9])); // [Uint8Array [7, 9]]
 * ```
 */
export class MessageReader {
  readonly #max: number;
  #buf = new Uint8Array(0);

  constructor(maxMessageBytes: number) {
    this.#max = maxMessageBytes;
  }

  /**
   * Adds a chunk and returns the messages it completes.
   *
   * @throws {FramingError} for a compressed or oversized message
   */
  push(chunk: Uint8Array): Uint8Array[] {
    let buf: Uint8Array;
    if (this.#buf.length === 0) buf = chunk;
    else {
      buf = new Uint8Array(this.#buf.length + chunk.length);
      buf.set(this.#buf);
      buf.set(chunk, this.#buf.length);
    }
    const out: Uint8Array[] = [];
    let off = 0;
    while (buf.length - off >= 5) {
      const flag = buf[off];
      const len = new DataView(buf.buffer, buf.byteOffset + off + 1, 4).getUint32(0);
      if (flag !== 0) {
        throw new FramingError(GrpcStatus.UNIMPLEMENTED, "compressed messages are not supported");
      }
      if (len > this.#max) {
        throw new FramingError(
          GrpcStatus.RESOURCE_EXHAUSTED,
          `message of ${len} bytes exceeds ${this.#max}`,
        );
      }
      if (buf.length - off - 5 < len) break;
      out.push(buf.subarray(off + 5, off + 5 + len));
      off += 5 + len;
    }
    // Keep only the unfinished tail (copied, so the big chunk can be freed).
    this.#buf = off === buf.length ? new Uint8Array(0) : buf.slice(off);
    return out;
  }

  /** Bytes of an unfinished message. */
  get pending(): number {
    return this.#buf.length;
  }
}

/** Frames one message: flag 0, big-endian length, payload. */
export function frameMessage(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

/** Bytes read from a request body at a time: xDS requests are small (ACKs ~100 bytes). */
const READ_CHUNK = 2048;

/**
 * Reads a body into one small buffer per call, reused from read to read. A default reader of a
 * byte stream allocates 64 KiB for every pending read, i.e. per idle stream (64 MB for a thousand
 * Envoys doing nothing), and a fresh buffer per read is garbage at every message. Reusing the
 * buffer is safe because each chunk is fully consumed (decoded, or its unfinished tail copied by
 * {@linkcode MessageReader}) before the next read.
 */
function openBodyReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(): Promise<void>;
} {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    return body.getReader(); // not a byte stream
  }
  let buffer: ArrayBuffer = new ArrayBuffer(READ_CHUNK);
  return {
    async read() {
      const result = await byob.read(new Uint8Array(buffer));
      if (result.value) buffer = result.value.buffer as ArrayBuffer;
      return result as ReadableStreamReadResult<Uint8Array>;
    },
    cancel: () => byob.cancel(),
  };
}

/** A gRPC server of bidi-streaming methods on `Deno.serve`. */
export class GrpcServer {
  readonly #o: GrpcServerOptions;
  readonly #calls = new Set<AbortController>();
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;

  constructor(opts: GrpcServerOptions) {
    this.#o = opts;
  }

  /**
   * Starts listening on `hostname:port` (0 picks a free port).
   *
   * @returns the bound port
   * @throws when the address cannot be bound
   */
  listen(hostname: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      try {
        this.#server = Deno.serve({
          hostname: hostname.replace(/^\[(.*)\]$/, "$1"),
          port,
          onListen: (addr) => resolve(addr.port),
          onError: (e) => {
            this.#o.onError?.(e, "");
            return new Response(null, { status: 500 });
          },
        }, (req, info) => this.#handle(req, info));
      } catch (e) {
        reject(e);
      }
    });
  }

  /** Open calls. */
  get callCount(): number {
    return this.#calls.size;
  }

  /** Ends every call (streams are reset) and closes the listener and connections. */
  async shutdown(): Promise<void> {
    for (const ac of [...this.#calls]) ac.abort();
    await this.#server?.shutdown();
    this.#server = undefined;
  }

  #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method !== "POST" || !GRPC_CONTENT_TYPE.test(req.headers.get("content-type") ?? "")) {
      return new Response("gRPC only\n", {
        status: 415,
        headers: { "content-type": "text/plain" },
      });
    }
    const method = this.#o.methods[path];
    if (!method) return statusResponse(GrpcStatus.UNIMPLEMENTED, `unknown method ${path}`);
    const encoding = req.headers.get("grpc-encoding");
    if (encoding && encoding !== "identity") {
      return statusResponse(GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported`);
    }
    if (!req.body) return statusResponse(GrpcStatus.OK, "");
    return this.#serveCall(req, info, path, method);
  }

  #serveCall(
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    path: string,
    // deno-lint-ignore no-explicit-any
    method: BidiMethod<any, any>,
  ): Promise<Response> {
    const ac = new AbortController();
    this.#calls.add(ac);
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void (controller = c),
      cancel: () => ac.abort(), // the client reset the stream or went away
    });
    let headersSent = false;
    let failure: { code: number; message: string } | undefined;
    let onMessage: ((m: unknown) => void) | undefined;
    const queued: unknown[] = [];
    const endCallbacks: (() => void)[] = [];
    let respond!: (r: Response) => void;
    const response = new Promise<Response>((r) => (respond = r));

    const finish = () => {
      if (ac.signal.aborted) return;
      ac.abort();
    };
    ac.signal.addEventListener("abort", () => {
      this.#calls.delete(ac);
      for (const fn of endCallbacks.splice(0)) {
        try {
          fn();
        } catch (e) {
          this.#o.onError?.(e, path);
        }
      }
      if (!headersSent) {
        headersSent = true;
        const f = failure ?? { code: GrpcStatus.UNAVAILABLE, message: "server is shutting down" };
        respond(statusResponse(f.code, f.message));
        return;
      }
      try {
        // The client left on its own: nothing to tell it, and no error to report. Only a call
        // the server ends after its headers went out is reset, so the client reconnects.
        if (clientGone) controller.close();
        else controller.error(new Error(failure?.message ?? "call ended"));
      } catch {
        // already closed
      }
    }, { once: true });
    // Settles when the response is done: delivered, or the client reset the stream / went away.
    let clientGone = false;
    const gone = () => {
      clientGone = true;
      finish();
    };
    info.completed.then(gone, gone);

    const sendHeaders = () => {
      if (headersSent || ac.signal.aborted) return;
      headersSent = true;
      respond(new Response(body, { status: 200, headers: { "content-type": "application/grpc" } }));
    };

    const call: BidiCall<unknown, unknown> = {
      path,
      signal: ac.signal,
      onMessage(fn) {
        onMessage = fn;
        for (const m of queued.splice(0)) fn(m);
      },
      onEnd(fn) {
        if (ac.signal.aborted) fn();
        else endCallbacks.push(fn);
      },
      write: (msg) => {
        if (ac.signal.aborted) return;
        sendHeaders();
        const bytes = method.encode(msg);
        controller.enqueue(method.framed ? bytes : frameMessage(bytes));
      },
      fail: (code, message) => {
        if (ac.signal.aborted) return;
        failure = { code, message };
        finish();
      },
      get bufferedBytes() {
        return controller.desiredSize === null ? 0 : Math.max(0, -controller.desiredSize);
      },
    };

    const deliver = (msg: unknown) => {
      if (onMessage) onMessage(msg);
      else queued.push(msg);
    };

    (async () => {
      const reader = new MessageReader(this.#o.maxMessageBytes ?? 4 * 1024 * 1024);
      const source = openBodyReader(req.body!);
      let first = true;
      try {
        method.handle(call);
        while (!ac.signal.aborted) {
          const { done, value } = await source.read();
          if (done) break;
          for (const bytes of reader.push(value)) {
            if (ac.signal.aborted) break;
            let msg: unknown;
            try {
              msg = method.decode(bytes);
            } catch (e) {
              throw new FramingError(
                GrpcStatus.INTERNAL,
                `cannot decode request: ${(e as Error).message}`,
              );
            }
            deliver(msg);
            // The first message decides whether the call is accepted: answer headers now, or
            // (after `fail`) a Trailers-Only status.
            if (first) {
              first = false;
              sendHeaders();
            }
          }
        }
        if (!ac.signal.aborted && reader.pending > 0) {
          throw new FramingError(GrpcStatus.INTERNAL, "request body ended inside a message");
        }
        // The client half-closed: end the call as gRPC servers do for streaming calls.
        if (!ac.signal.aborted) {
          if (!headersSent) {
            headersSent = true;
            respond(statusResponse(GrpcStatus.OK, ""));
          } else {
            try {
              controller.close();
            } catch {
              // already closed
            }
          }
          finish();
        }
      } catch (e) {
        if (!ac.signal.aborted) {
          if (e instanceof FramingError) failure = { code: e.code, message: e.message };
          else {
            this.#o.onError?.(e, path);
            failure = { code: GrpcStatus.INTERNAL, message: "internal error" };
          }
          finish();
        }
      } finally {
        source.cancel().catch(() => {});
      }
    })();
    return response;
  }
}
