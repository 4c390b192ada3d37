/**
 * A small, strict HTTP/2 server (prior knowledge: how Envoy and grpc-js connect to an xDS server)
 * for gRPC bidi-streaming methods, on plain `Deno.listen` TCP connections or, with `tls` options,
 * on `lib/tls/` connections (ALPN `h2`).
 * Calls and methods are the interfaces of `call.ts`; `mod.ts` is the module's front door.
 *
 * Why our own HTTP/2: `Deno.serve` (hyper) costs ~73 KB of memory per connection, cannot send
 * PINGs (so no server-side keepalive: dead Envoys would never be noticed) and cannot send HTTP
 * trailers (so a call the server ends after its headers is reset instead of getting its
 * `grpc-status`). The grpc-js server is no option: Deno's `node:http2` aborts the process on mass
 * resets (denoland/deno#36788). Here a connection costs one small read buffer and a stream a few
 * hundred bytes of state.
 *
 * What it implements (RFC 9113): the connection preface and SETTINGS exchange, DATA, HEADERS and
 * CONTINUATION, PRIORITY (validated, otherwise ignored), RST_STREAM, PING, GOAWAY, WINDOW_UPDATE;
 * flow control both ways; HPACK (`hpack.ts`); the stream states of §5.1 (idle, open, half-closed,
 * closed - the last 128 closed streams remembered with how they closed: by END_STREAM both ways,
 * by the client's RST_STREAM, or by ours, whose late frames are ignored); malformed requests
 * (`h2_fields.ts`, and `content-length` against the DATA received). gRPC (the gRPC HTTP/2
 * protocol doc): `POST` with `content-type: application/grpc[+proto]`, identity encoding only,
 * length-prefixed messages, response headers, messages, then trailers with `grpc-status` /
 * `grpc-message`, or "Trailers-Only" when the call ends before any message. Keepalive: a PING
 * after `keepaliveIntervalMs` of silence; no ACK within `keepaliveTimeoutMs` closes the
 * connection and ends its calls.
 *
 * Hardening, like `lib/http/http1.ts`: a preface deadline, a connection cap, at most 100 concurrent
 * streams per connection (more are refused with REFUSED_STREAM), a header block size and
 * CONTINUATION count limit, and budgets for resets (CVE-2023-44487 "rapid reset"), PINGs and
 * SETTINGS (GOAWAY ENHANCE_YOUR_CALM). Errors are what RFC 9113 names: a stream error is a
 * RST_STREAM with its code (counted against the reset budget), a connection error a GOAWAY with
 * its code, then close. Every rule and its test: `docs/grpc-transport.md`.
 *
 * @example
 * ```ts
 * import { GrpcServer } from "./h2_server.ts";
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

import {
  type BidiCall,
  type BidiMethod,
  frameMessage,
  FramingError,
  grpcMessageEncode,
  GrpcStatus,
  MessageReader,
} from "./call.ts";
import { requestHead, trailersProblem } from "./h2_fields.ts";
import {
  encodeHeaders,
  encodeTableSizeUpdate,
  type HeaderField,
  HpackDecoder,
  HpackError,
} from "./hpack.ts";
import type { ByteConn, ByteListener, TlsListenOptions } from "../tls/listener.ts";

/** Options of {@linkcode GrpcServer}: the methods, then message and HTTP/2 limits. */
export interface H2ServerOptions {
  // deno-lint-ignore no-explicit-any
  methods: Record<string, BidiMethod<any, any>>;
  /** Largest request message accepted, bytes (default 4 MiB, the gRPC default). */
  maxMessageBytes?: number;
  /** Called with errors the server swallowed (handler exceptions, undecodable messages). */
  onError?: (err: unknown, path: string) => void;
  /** Silence on a connection before we PING it (default 30 s). */
  keepaliveIntervalMs?: number;
  /** Time for the PING's ACK before the connection is closed (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Time for a new connection to send the HTTP/2 preface (default 5 s). */
  prefaceTimeoutMs?: number;
  /** Open connections; more are closed at once (default 2048). */
  maxConnections?: number;
  /** Concurrent streams per connection, advertised; more are refused (default 100). */
  maxConcurrentStreams?: number;
  /** Largest header block, HEADERS plus CONTINUATIONs (default 16 KiB). */
  maxHeaderBlockBytes?: number;
}

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const FRAME = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** HTTP/2 error codes (RFC 9113 §7). */
export const H2ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTING = {
  HEADER_TABLE_SIZE: 1,
  ENABLE_PUSH: 2,
  MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4,
  MAX_FRAME_SIZE: 5,
  MAX_HEADER_LIST_SIZE: 6,
} as const;

/** The protocol's defaults (RFC 9113 §6.5.2); our own MAX_FRAME_SIZE stays at the minimum. */
const DEFAULT_WINDOW = 65_535;
const MAX_FRAME = 16_384;
const DEFAULT_TABLE_SIZE = 4096;
const MAX_WINDOW = 0x7fffffff;
/** Our connection receive window: requests are consumed at once, so credit costs no memory. */
const CONNECTION_WINDOW = 1 << 20;
/** Bytes read per `conn.read`: one buffer per connection, reused. */
const READ_BYTES = 4096;
/** Per connection and second: PING + SETTINGS + PRIORITY + empty DATA frames, and resets. */
const CONTROL_FRAMES_PER_SECOND = 200;
const RESETS_PER_SECOND = 100;
/** CONTINUATION frames per header block (a block is at most 16 KiB anyway). */
const MAX_CONTINUATIONS = 32;
/**
 * Response bytes framed ahead of the socket: beyond this they wait in their streams, so a slow
 * reader holds at most this much per connection in frames.
 */
const OUT_HIGH_WATER = 64 * 1024;
/**
 * Output buffers up to this size are kept for reuse once written, at most `MAX_SPARE_OUT` of them
 * per server (the xDS server pushes to 64 streams per turn): pushing to a thousand connections
 * then allocates a buffer for a few writes, not for every one.
 */
const MAX_SPARE_BYTES = 16 * 1024;
const MAX_SPARE_OUT = 64;
/** Unwritten control frames a peer that does not read may cause before it is dropped. */
const MAX_UNWRITTEN = 1024 * 1024;
/**
 * Closed streams remembered with how they closed (§5.1). Frames on older ones are ignored as if we
 * had reset them, but HEADERS there is a stream id going backwards (connection PROTOCOL_ERROR).
 */
const CLOSED_REMEMBERED = 128;
/** How a stream closed: we sent RST_STREAM (frames on it are ignored), the peer did, or both
 * sides sent END_STREAM (frames on it but WINDOW_UPDATE, RST_STREAM, PRIORITY: STREAM_CLOSED). */
const CLOSED_BY_OUR_RESET = 1;
const CLOSED_BY_PEER_RESET = 2;
const CLOSED_BY_END_STREAM = 3;
/** Time given to a closing connection to flush its last frames. */
const CLOSE_GRACE_MS = 1000;
const KEEPALIVE_PAYLOAD = new TextEncoder().encode("sigmaka!");

const GRPC_CONTENT_TYPE = /^application\/grpc(\+proto)?(;.*)?$/i;
const RESPONSE_HEADERS = encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]);
const OK_TRAILERS = encodeHeaders([["grpc-status", "0"]]);

/** A connection error: GOAWAY with `code`, then close. */
class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** Trailers (after headers) or a Trailers-Only response for a status. */
function statusBlock(code: number, message: string, trailersOnly: boolean): Uint8Array {
  if (code === GrpcStatus.OK && !message && !trailersOnly) return OK_TRAILERS;
  const fields: HeaderField[] = trailersOnly
    ? [[":status", "200"], ["content-type", "application/grpc"]]
    : [];
  fields.push(["grpc-status", String(code)]);
  if (message) fields.push(["grpc-message", grpcMessageEncode(message)]);
  return encodeHeaders(fields);
}

function writeFrameHeader(
  buf: Uint8Array,
  off: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
) {
  buf[off] = length >>> 16;
  buf[off + 1] = (length >>> 8) & 0xff;
  buf[off + 2] = length & 0xff;
  buf[off + 3] = type;
  buf[off + 4] = flags;
  writeUint32(buf, off + 5, streamId);
}

function writeUint32(buf: Uint8Array, off: number, value: number) {
  buf[off] = value >>> 24;
  buf[off + 1] = (value >>> 16) & 0xff;
  buf[off + 2] = (value >>> 8) & 0xff;
  buf[off + 3] = value & 0xff;
}

function readUint32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/** Length field of a frame header at `off`. */
function frameLength(buf: Uint8Array, off: number): number {
  return (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
}

/** What the server shares with its connections. */
interface ServerContext {
  readonly opts: Required<
    Omit<H2ServerOptions, "onError" | "methods" | "maxMessageBytes">
  >;
  readonly maxMessageBytes: number;
  // deno-lint-ignore no-explicit-any
  readonly methods: Record<string, BidiMethod<any, any>>;
  readonly calls: Set<Stream>;
  /** Written output buffers of at most `MAX_SPARE_BYTES`, for reuse. */
  readonly spareOut: Uint8Array[];
  onError(err: unknown, path: string): void;
}

/** The end of a call: the client left (nothing to send), or a status to send. */
type Ending = { gone: true } | { gone: false; code: number; message: string };
const GONE: Ending = { gone: true };

/** One HTTP/2 stream carrying one gRPC call; it is the call handlers see. */
class Stream implements BidiCall<unknown, unknown> {
  readonly signal: AbortSignal;
  readonly #ac = new AbortController();
  #onMessage: ((m: unknown) => void) | undefined;
  #queued: unknown[] | undefined;
  #endCallbacks: (() => void)[] | undefined;
  #reader: MessageReader | undefined;
  #firstMessage = true;
  ended = false;
  headersSent = false;
  /** The client sent END_STREAM. */
  remoteClosed = false;
  /** The request's `content-length` (-1: none) and the DATA bytes received so far (§8.1.1). */
  contentLength = -1;
  bodyBytes = 0;
  /** Flow control: what the peer lets us send; request bytes consumed and not yet credited. */
  sendWindow: number;
  recvWindow = DEFAULT_WINDOW;
  recvUncredited = 0;
  /** Response bytes waiting for flow-control credit, and the status block to send after them. */
  readonly out: Uint8Array[] = [];
  outHead = 0;
  outBytes = 0;
  trailers: Uint8Array | undefined;

  constructor(
    readonly conn: Connection,
    readonly id: number,
    readonly path: string,
    // deno-lint-ignore no-explicit-any
    readonly method: BidiMethod<any, any>,
    sendWindow: number,
  ) {
    this.signal = this.#ac.signal;
    this.sendWindow = sendWindow;
  }

  onMessage(fn: (msg: unknown) => void): void {
    this.#onMessage = fn;
    const queued = this.#queued;
    this.#queued = undefined;
    if (queued) { for (const m of queued) fn(m); }
  }

  onEnd(fn: () => void): void {
    if (this.ended) fn();
    else (this.#endCallbacks ??= []).push(fn);
  }

  write(msg: unknown): void {
    if (this.ended) return;
    this.sendHeaders();
    const bytes = this.method.encode(msg);
    const framed = this.method.framed ? bytes : frameMessage(bytes);
    this.out.push(framed);
    this.outBytes += framed.length;
    this.conn.markSendable(this);
  }

  fail(code: number, message: string): void {
    this.end({ gone: false, code, message });
  }

  /** Response headers, once, before the first message (or never, for Trailers-Only). */
  sendHeaders() {
    if (this.headersSent || this.ended) return;
    this.headersSent = true;
    this.conn.writeHeaders(this.id, RESPONSE_HEADERS, false);
  }

  /** Request body bytes: complete messages are decoded and handed to the handler. */
  receive(data: Uint8Array, ctx: ServerContext) {
    if (this.ended) return;
    this.#reader ??= new MessageReader(ctx.maxMessageBytes);
    try {
      for (const bytes of this.#reader.push(data)) {
        if (this.ended) return;
        let msg: unknown;
        try {
          // `bytes` may be a view of the connection's reused read buffer: a copy, unless the
          // decoder keeps nothing of it.
          msg = this.method.decode(this.method.borrows ? bytes : bytes.slice());
        } catch (e) {
          throw new FramingError(
            GrpcStatus.INTERNAL,
            `cannot decode request: ${(e as Error).message}`,
          );
        }
        if (this.#onMessage) this.#onMessage(msg);
        else (this.#queued ??= []).push(msg);
        // The first message decides whether the call is accepted: headers now, or (after
        // `fail`) a Trailers-Only status.
        if (this.#firstMessage) {
          this.#firstMessage = false;
          this.sendHeaders();
        }
      }
    } catch (e) {
      this.#failWith(e, ctx);
    }
  }

  /** The client half-closed: the call ends OK, as gRPC servers end streaming calls. */
  receiveEnd() {
    this.remoteClosed = true;
    if (this.ended) return;
    if ((this.#reader?.pending ?? 0) > 0) {
      this.fail(GrpcStatus.INTERNAL, "request body ended inside a message");
    } else this.end({ gone: false, code: GrpcStatus.OK, message: "" });
  }

  /** Runs the handler; its exceptions end the call with INTERNAL. */
  start(ctx: ServerContext) {
    try {
      this.method.handle(this);
    } catch (e) {
      this.#failWith(e, ctx);
    }
  }

  #failWith(e: unknown, ctx: ServerContext) {
    if (this.ended) return;
    if (e instanceof FramingError) this.fail(e.code, e.message);
    else {
      ctx.onError(e, this.path);
      this.fail(GrpcStatus.INTERNAL, "internal error");
    }
  }

  /** Ends the call once: abort the signal, run end callbacks, then send the status if any. */
  end(ending: Ending) {
    if (this.ended) return;
    this.ended = true;
    this.conn.callEnded(this, ending);
    this.#onMessage = undefined;
    this.#queued = undefined;
    this.#ac.abort();
    const callbacks = this.#endCallbacks;
    this.#endCallbacks = undefined;
    for (const fn of callbacks ?? []) {
      try {
        fn();
      } catch (e) {
        this.conn.ctx.onError(e, this.path);
      }
    }
  }
}

/** One HTTP/2 connection. */
class Connection {
  readonly #conn: Deno.Conn;
  readonly ctx: ServerContext;
  readonly #decoder: HpackDecoder;
  readonly #streams = new Map<number, Stream>();
  /** Streams with response bytes or a status waiting to be framed. */
  readonly #sendable = new Set<Stream>();
  #lastStreamId = 0;
  /** The last closed streams and how they closed, oldest first (made at the first close). */
  #closedStreams: Map<number, number> | undefined;
  #closed = false;
  #goingAway = false;

  // Peer settings.
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = MAX_FRAME;
  /** The table size our (never indexing) encoder declares: 4096 until the peer asks for less. */
  #encoderTableSize = DEFAULT_TABLE_SIZE;
  /** A smaller size to signal at the start of our next header block (RFC 7541 §4.2). */
  #tableSizeUpdate: Uint8Array | undefined;
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow = DEFAULT_WINDOW;
  #recvUncredited = 0;

  // Reading.
  #prefaceMatched = 0;
  #gotSettings = false;
  /** A frame split across reads, read straight into a buffer of its size. */
  #partial: Uint8Array | undefined;
  #partialFill = 0;
  /** A header block spanning CONTINUATION frames. */
  #block: {
    streamId: number;
    endStream: boolean;
    selfDependent: boolean;
    bytes: Uint8Array;
    length: number;
    frames: number;
  } | undefined;

  // Writing: frames are appended to `#out` and written in one `conn.write` per turn.
  #out: Uint8Array | undefined;
  #outLength = 0;
  #writer: Promise<void> | undefined;
  #pumpQueued = false;
  #drainWaiters: (() => void)[] = [];

  // Keepalive and flood budgets.
  readonly #openedAt = Date.now();
  #lastReadAt = Date.now();
  #pingSentAt = 0;
  #budgetStart = 0;
  #controlFrames = 0;
  #resets = 0;

  constructor(conn: Deno.Conn, ctx: ServerContext) {
    this.#conn = conn;
    this.ctx = ctx;
    this.#decoder = new HpackDecoder({ maxHeaderListBytes: 4 * ctx.opts.maxHeaderBlockBytes });
  }

  /** Serves the connection until it closes; never throws. */
  async run(): Promise<void> {
    try {
      await this.#readLoop();
    } catch (e) {
      if (e instanceof ConnectionError) await this.#abandon(e.code, e.message);
      else if (!this.#closed) {
        this.ctx.onError(e, "");
        await this.#abandon(H2ErrorCode.INTERNAL_ERROR, "internal error");
      }
    } finally {
      this.destroy();
      await this.#writer;
    }
  }

  /** Graceful end: every call gets UNAVAILABLE, GOAWAY, a moment to flush, then close. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    if (!this.#gotSettings) return this.destroy();
    this.#goingAway = true;
    for (const s of [...this.#streams.values()]) {
      s.end({ gone: false, code: GrpcStatus.UNAVAILABLE, message: "server is shutting down" });
    }
    this.#goAway(H2ErrorCode.NO_ERROR, "");
    await this.#drained(CLOSE_GRACE_MS);
    this.destroy();
  }

  /** Closes the socket; the calls still open end as if the client left. */
  destroy() {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    for (const s of [...this.#streams.values()]) s.end(GONE);
    this.#streams.clear();
    this.#sendable.clear();
    this.#out = undefined;
    this.#outLength = 0;
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Keepalive and preface deadline, called by the server's shared timer. */
  tick(now: number) {
    if (this.#closed) return;
    const o = this.ctx.opts;
    if (!this.#gotSettings) {
      if (now - this.#openedAt > o.prefaceTimeoutMs) this.destroy();
      return;
    }
    if (this.#pingSentAt) {
      if (now - this.#pingSentAt > o.keepaliveTimeoutMs) {
        void this.#abandon(H2ErrorCode.NO_ERROR, "keepalive timeout");
      }
    } else if (now - this.#lastReadAt >= o.keepaliveIntervalMs) {
      this.#pingSentAt = now;
      this.#writeFrame(FRAME.PING, 0, 0, KEEPALIVE_PAYLOAD);
    }
  }

  // ---- reading ----

  async #readLoop() {
    const chunk = new Uint8Array(READ_BYTES);
    while (!this.#closed) {
      const partial = this.#partial;
      const target = partial ? partial.subarray(this.#partialFill) : chunk;
      let n: number | null;
      try {
        n = await this.#conn.read(target);
      } catch {
        return; // reset by peer, or closed by us
      }
      if (n === null || this.#closed) return;
      this.#lastReadAt = Date.now();
      if (partial) {
        this.#partialFill += n;
        if (this.#partialFill === partial.length) this.#completePartial(partial);
      } else {
        const used = this.#consume(chunk, n);
        if (used < n) this.#keepPartial(chunk.subarray(used, n));
      }
    }
  }

  /** Bytes of an unfinished frame: into a buffer of the frame's size once its length is known. */
  #keepPartial(bytes: Uint8Array) {
    const size = bytes.length < 9 ? 9 : 9 + this.#checkedLength(bytes, 0);
    this.#partial = new Uint8Array(size);
    this.#partial.set(bytes);
    this.#partialFill = bytes.length;
  }

  #completePartial(partial: Uint8Array) {
    if (partial.length === 9) {
      const length = this.#checkedLength(partial, 0);
      if (length > 0) {
        this.#partial = new Uint8Array(9 + length);
        this.#partial.set(partial);
        return;
      }
    }
    this.#partial = undefined;
    this.#partialFill = 0;
    this.#frame(partial, 0);
  }

  #checkedLength(buf: Uint8Array, off: number): number {
    const length = frameLength(buf, off);
    if (length > MAX_FRAME) {
      throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
    }
    return length;
  }

  /** Handles the preface and every complete frame in `buf[0, n)`; returns the bytes used. */
  #consume(buf: Uint8Array, n: number): number {
    let off = 0;
    while (this.#prefaceMatched < PREFACE.length && off < n) {
      if (buf[off++] !== PREFACE[this.#prefaceMatched++]) {
        // Not an HTTP/2 client (no SETTINGS sent yet, so no GOAWAY either): just close.
        this.destroy();
        return n;
      }
      if (this.#prefaceMatched === PREFACE.length) this.#sendPreface();
    }
    while (n - off >= 9 && !this.#closed) {
      const length = this.#checkedLength(buf, off);
      if (n - off < 9 + length) break;
      this.#frame(buf, off);
      off += 9 + length;
    }
    return off;
  }

  /** Our preface: SETTINGS, and a larger connection window. */
  #sendPreface() {
    const o = this.ctx.opts;
    const settings = new Uint8Array(12);
    settings[1] = SETTING.MAX_CONCURRENT_STREAMS;
    writeUint32(settings, 2, o.maxConcurrentStreams);
    settings[7] = SETTING.MAX_HEADER_LIST_SIZE;
    writeUint32(settings, 8, o.maxHeaderBlockBytes);
    this.#writeFrame(FRAME.SETTINGS, 0, 0, settings);
    this.#recvWindow = CONNECTION_WINDOW;
    this.#writeWindowUpdate(0, CONNECTION_WINDOW - DEFAULT_WINDOW);
  }

  /** One complete frame at `buf[off]`. */
  #frame(buf: Uint8Array, off: number) {
    const length = frameLength(buf, off);
    const type = buf[off + 3];
    const flags = buf[off + 4];
    const streamId = readUint32(buf, off + 5) & MAX_WINDOW;
    const payload = buf.subarray(off + 9, off + 9 + length);
    if (!this.#gotSettings && (type !== FRAME.SETTINGS || flags & FLAG_ACK)) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "the preface must start with SETTINGS");
    }
    if (this.#block && type !== FRAME.CONTINUATION) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    switch (type) {
      case FRAME.DATA:
        return this.#onData(streamId, flags, payload);
      case FRAME.HEADERS:
        return this.#onHeaders(streamId, flags, payload);
      case FRAME.PRIORITY:
        return this.#onPriority(streamId, payload);
      case FRAME.RST_STREAM:
        return this.#onReset(streamId, payload);
      case FRAME.SETTINGS:
        return this.#onSettings(streamId, flags, payload);
      case FRAME.PUSH_PROMISE:
        throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case FRAME.PING:
        return this.#onPing(streamId, flags, payload);
      case FRAME.GOAWAY:
        return this.#onGoAway(streamId, payload);
      case FRAME.WINDOW_UPDATE:
        return this.#onWindowUpdate(streamId, payload);
      case FRAME.CONTINUATION:
        return this.#onContinuation(streamId, flags, payload);
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  /** Counts a control frame or reset against the per-second budgets. */
  #spend(kind: "control" | "reset") {
    const now = Date.now();
    if (now - this.#budgetStart >= 1000) {
      this.#budgetStart = now;
      this.#controlFrames = 0;
      this.#resets = 0;
    }
    const over = kind === "control"
      ? ++this.#controlFrames > CONTROL_FRAMES_PER_SECOND
      : ++this.#resets > RESETS_PER_SECOND;
    if (over) throw new ConnectionError(H2ErrorCode.ENHANCE_YOUR_CALM, `${kind} frame flood`);
  }

  /**
   * Strips padding (PADDED flag) and `skip` more leading bytes from a DATA or HEADERS payload:
   * padding that leaves no room for the content is a PROTOCOL_ERROR (§6.1, §6.2), a frame too
   * short for its mandatory fields a FRAME_SIZE_ERROR (§4.2).
   */
  #unpad(flags: number, payload: Uint8Array, skip: number): Uint8Array {
    const padded = flags & FLAG_PADDED ? 1 : 0;
    if (payload.length < padded + skip) {
      throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "frame too short for its fields");
    }
    if (!padded) return skip === 0 ? payload : payload.subarray(skip);
    const pad = payload[0];
    if (payload.length < 1 + skip + pad) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "padding exceeds the frame");
    }
    return payload.subarray(1 + skip, payload.length - pad);
  }

  /** A stream the client has not opened yet (odd ids above the last one; even ids: ours, never
   * used, since we never push). Frames other than HEADERS and PRIORITY there are a connection
   * PROTOCOL_ERROR (§5.1). */
  #isIdle(streamId: number): boolean {
    return streamId % 2 === 0 || streamId > this.#lastStreamId;
  }

  /** Remembers how a stream closed (§5.1), for the frames that may still arrive on it. */
  #remember(streamId: number, how: number) {
    const closed = this.#closedStreams ??= new Map();
    closed.delete(streamId);
    closed.set(streamId, how);
    if (closed.size > CLOSED_REMEMBERED) closed.delete(closed.keys().next().value!);
  }

  /** How a closed (not idle, not open) stream closed; forgotten ones count as reset by us. */
  #closedHow(streamId: number): number {
    return this.#closedStreams?.get(streamId) ?? CLOSED_BY_OUR_RESET;
  }

  /** A frame that may not arrive on a closed stream (§5.1, §6.1): ignored after our own
   * RST_STREAM (the client may have sent it before it saw ours), else STREAM_CLOSED. */
  #onClosedStream(streamId: number) {
    if (this.#closedHow(streamId) === CLOSED_BY_OUR_RESET) return;
    this.#streamError(streamId, H2ErrorCode.STREAM_CLOSED);
  }

  #onData(streamId: number, flags: number, payload: Uint8Array) {
    if (streamId === 0) throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (payload.length > this.#recvWindow) {
      throw new ConnectionError(H2ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    }
    // Counted against the connection window whatever the stream's state (§6.9).
    this.#recvWindow -= payload.length;
    this.#creditConnection(payload.length);
    const data = this.#unpad(flags, payload, 0);
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (data.length === 0 && !endStream) this.#spend("control");
    const s = this.#streams.get(streamId);
    if (!s) {
      if (this.#isIdle(streamId)) {
        throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      }
      return this.#onClosedStream(streamId);
    }
    // Half-closed (remote): the client already ended its side (§5.1, §6.1).
    if (s.remoteClosed) return this.#streamError(s.id, H2ErrorCode.STREAM_CLOSED);
    if (payload.length > s.recvWindow) {
      return this.#streamError(s.id, H2ErrorCode.FLOW_CONTROL_ERROR);
    }
    s.recvWindow -= payload.length;
    s.bodyBytes += data.length;
    // More DATA than `content-length` said, or less by END_STREAM: malformed (§8.1.1).
    if (
      s.contentLength >= 0 &&
      (s.bodyBytes > s.contentLength || (endStream && s.bodyBytes !== s.contentLength))
    ) {
      return this.#streamError(s.id, H2ErrorCode.PROTOCOL_ERROR);
    }
    s.receive(data, this.ctx);
    this.#creditStream(s, payload.length);
    if (endStream) this.#onRemoteEnd(s);
  }

  /** Gives request bytes back to the client once half the window is used (fewer frames). */
  #creditConnection(bytes: number) {
    this.#recvUncredited += bytes;
    if (this.#recvUncredited >= CONNECTION_WINDOW / 2) {
      this.#writeWindowUpdate(0, this.#recvUncredited);
      this.#recvWindow += this.#recvUncredited;
      this.#recvUncredited = 0;
    }
  }

  #creditStream(s: Stream, bytes: number) {
    s.recvUncredited += bytes;
    if (s.recvUncredited >= DEFAULT_WINDOW / 2 && !s.remoteClosed && this.#streams.has(s.id)) {
      this.#writeWindowUpdate(s.id, s.recvUncredited);
      s.recvWindow += s.recvUncredited;
      s.recvUncredited = 0;
    }
  }

  #onRemoteEnd(s: Stream) {
    s.receiveEnd();
    // Ended and its status already out: the stream is closed both ways.
    if (s.ended && !s.trailers && !this.#sendable.has(s) && this.#streams.delete(s.id)) {
      this.#remember(s.id, CLOSED_BY_END_STREAM);
    }
  }

  #onHeaders(streamId: number, flags: number, payload: Uint8Array) {
    if (streamId === 0) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    }
    const priority = (flags & FLAG_PRIORITY) !== 0;
    const fragment = this.#unpad(flags, payload, priority ? 5 : 0);
    // A stream cannot depend on itself (§5.3.1).
    const selfDependent = priority &&
      (readUint32(payload, flags & FLAG_PADDED ? 1 : 0) & MAX_WINDOW) === streamId;
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) {
      return this.#onHeaderBlock(streamId, endStream, selfDependent, fragment);
    }
    const bytes = new Uint8Array(Math.max(1024, fragment.length));
    bytes.set(fragment);
    this.#block = {
      streamId,
      endStream,
      selfDependent,
      bytes,
      length: fragment.length,
      frames: 1,
    };
  }

  #onContinuation(streamId: number, flags: number, payload: Uint8Array) {
    const block = this.#block;
    if (!block || block.streamId !== streamId) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    const length = block.length + payload.length;
    if (++block.frames > MAX_CONTINUATIONS || length > this.ctx.opts.maxHeaderBlockBytes) {
      throw new ConnectionError(H2ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (length > block.bytes.length) {
      const grown = new Uint8Array(Math.min(2 * length, this.ctx.opts.maxHeaderBlockBytes));
      grown.set(block.bytes.subarray(0, block.length));
      block.bytes = grown;
    }
    block.bytes.set(payload, block.length);
    block.length = length;
    if (flags & FLAG_END_HEADERS) {
      this.#block = undefined;
      this.#onHeaderBlock(
        streamId,
        block.endStream,
        block.selfDependent,
        block.bytes.subarray(0, length),
      );
    }
  }

  /**
   * A complete header block: decoded always, whatever becomes of the stream (the HPACK table is
   * shared, §4.3), then a new request, request trailers, or a stream error.
   */
  #onHeaderBlock(streamId: number, endStream: boolean, selfDependent: boolean, block: Uint8Array) {
    let fields: HeaderField[];
    try {
      fields = this.#decoder.decode(block);
    } catch (e) {
      if (!(e instanceof HpackError)) throw e;
      throw new ConnectionError(
        e.tooLarge ? H2ErrorCode.ENHANCE_YOUR_CALM : H2ErrorCode.COMPRESSION_ERROR,
        e.message,
      );
    }
    const existing = this.#streams.get(streamId);
    if (existing) {
      // Half-closed (remote): no more frames but WINDOW_UPDATE, PRIORITY, RST_STREAM (§5.1).
      if (existing.remoteClosed) return this.#streamError(streamId, H2ErrorCode.STREAM_CLOSED);
      // Request trailers: they must end the stream, hold no pseudo-header, and the body must
      // match its content-length (§8.1, §8.1.1).
      if (
        !endStream || selfDependent || trailersProblem(fields) ||
        (existing.contentLength >= 0 && existing.bodyBytes !== existing.contentLength)
      ) {
        return this.#streamError(streamId, H2ErrorCode.PROTOCOL_ERROR);
      }
      return this.#onRemoteEnd(existing);
    }
    if (streamId % 2 === 0) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    }
    if (streamId <= this.#lastStreamId) {
      // A stream we remember closing (§5.1 closed); any other lower id is a stream id that
      // went backwards (§5.1.1).
      if (this.#closedStreams?.has(streamId)) return this.#onClosedStream(streamId);
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    }
    this.#lastStreamId = streamId;
    if (selfDependent) return this.#streamError(streamId, H2ErrorCode.PROTOCOL_ERROR);
    if (this.#goingAway) return this.#resetStream(streamId, H2ErrorCode.REFUSED_STREAM);
    if (this.#streams.size >= this.ctx.opts.maxConcurrentStreams) {
      return this.#streamError(streamId, H2ErrorCode.REFUSED_STREAM);
    }
    this.#onRequest(streamId, endStream, fields);
  }

  /** A new request: well-formed (§8), then method, content type and encoding, then a call. */
  #onRequest(streamId: number, endStream: boolean, fields: HeaderField[]) {
    const h = requestHead(fields);
    if (typeof h === "string" || (endStream && h.contentLength > 0)) {
      return this.#streamError(streamId, H2ErrorCode.PROTOCOL_ERROR);
    }
    const answer = (block: Uint8Array) => {
      // Requests answered at once cost us little, but a flood of them is still a flood.
      this.#spend("reset");
      this.writeHeaders(streamId, block, true);
      if (!endStream) this.#writeReset(streamId, H2ErrorCode.NO_ERROR);
      this.#remember(streamId, endStream ? CLOSED_BY_END_STREAM : CLOSED_BY_OUR_RESET);
    };
    if (h.method !== "POST" || !GRPC_CONTENT_TYPE.test(h.contentType)) {
      return answer(encodeHeaders([[":status", "415"], ["content-type", "text/plain"]]));
    }
    const method = this.ctx.methods[h.path];
    if (!method) {
      return answer(statusBlock(GrpcStatus.UNIMPLEMENTED, `unknown method ${h.path}`, true));
    }
    if (h.encoding && h.encoding !== "identity") {
      const message = `grpc-encoding ${h.encoding} is not supported`;
      return answer(statusBlock(GrpcStatus.UNIMPLEMENTED, message, true));
    }
    if (endStream) return answer(statusBlock(GrpcStatus.OK, "", true));
    const s = new Stream(this, streamId, h.path, method, this.#peerInitialWindow);
    s.contentLength = h.contentLength;
    this.#streams.set(streamId, s);
    this.ctx.calls.add(s);
    s.start(this.ctx);
  }

  /** PRIORITY (§6.3), allowed on a stream in any state, carries nothing we use. */
  #onPriority(streamId: number, payload: Uint8Array) {
    if (streamId === 0) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    }
    this.#spend("control");
    const code = payload.length !== 5
      ? H2ErrorCode.FRAME_SIZE_ERROR
      : (readUint32(payload, 0) & MAX_WINDOW) === streamId
      ? H2ErrorCode.PROTOCOL_ERROR // a stream cannot depend on itself (§5.3.1)
      : H2ErrorCode.NO_ERROR;
    if (code === H2ErrorCode.NO_ERROR) return;
    // A stream error, but RST_STREAM is not allowed on an idle stream (§6.4): there, the
    // connection's (§5.4.2 lets any stream error be one).
    if (this.#isIdle(streamId)) throw new ConnectionError(code, "bad PRIORITY on an idle stream");
    this.#streamError(streamId, code);
  }

  #onReset(streamId: number, payload: Uint8Array) {
    if (payload.length !== 4) {
      throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    }
    if (streamId === 0 || this.#isIdle(streamId)) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    }
    this.#spend("reset");
    const s = this.#streams.get(streamId);
    // On a closed stream: nothing to do, and never a RST_STREAM back (§5.4.2).
    if (!s) return;
    this.#dropStream(s);
    this.#remember(streamId, CLOSED_BY_PEER_RESET);
  }

  #onSettings(streamId: number, flags: number, payload: Uint8Array) {
    if (streamId !== 0) {
      throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    }
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) {
        throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      }
      return;
    }
    if (payload.length % 6 !== 0) {
      throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    }
    if (this.#gotSettings) this.#spend("control");
    this.#gotSettings = true;
    for (let off = 0; off < payload.length; off += 6) {
      this.#applySetting((payload[off] << 8) | payload[off + 1], readUint32(payload, off + 2));
    }
    this.#writeFrame(FRAME.SETTINGS, FLAG_ACK, 0, new Uint8Array(0));
    this.#schedulePump();
  }

  #applySetting(id: number, value: number) {
    switch (id) {
      case SETTING.ENABLE_PUSH:
        if (value > 1) throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH value");
        return;
      case SETTING.INITIAL_WINDOW_SIZE: {
        if (value > MAX_WINDOW) {
          throw new ConnectionError(H2ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE value");
        }
        // A new initial window shifts every open stream's window (RFC 9113 §6.9.2); one pushed
        // past 2^31-1 is a connection FLOW_CONTROL_ERROR.
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) {
            throw new ConnectionError(H2ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
          }
        }
        return;
      }
      case SETTING.MAX_FRAME_SIZE:
        if (value < MAX_FRAME || value > 0xffffff) {
          throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE value");
        }
        this.#peerMaxFrame = value;
        return;
      case SETTING.HEADER_TABLE_SIZE:
        // Our encoder never indexes, but the peer's decoder expects to be told when the table
        // it allows shrinks below the one we may use (RFC 7541 §4.2): at our next header block.
        if (value < this.#encoderTableSize) {
          this.#encoderTableSize = value;
          this.#tableSizeUpdate = encodeTableSizeUpdate(value);
        }
        return;
      default:
        // MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, unknown ids: they concern requests we
        // never make, or are advisory.
        return;
    }
  }

  #onPing(streamId: number, flags: number, payload: Uint8Array) {
    if (streamId !== 0) throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (payload.length !== 8) throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "PING size");
    if (flags & FLAG_ACK) {
      if (payload.every((b, i) => b === KEEPALIVE_PAYLOAD[i])) this.#pingSentAt = 0;
      return;
    }
    this.#spend("control");
    this.#writeFrame(FRAME.PING, FLAG_ACK, 0, payload);
  }

  #onGoAway(streamId: number, payload: Uint8Array) {
    if (streamId !== 0) throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (payload.length < 8) throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size");
    // The client opens no more streams; the open ones go on until it closes the connection.
    this.#goingAway = true;
  }

  #onWindowUpdate(streamId: number, payload: Uint8Array) {
    if (payload.length !== 4) {
      throw new ConnectionError(H2ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    }
    const increment = readUint32(payload, 0) & MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "zero increment");
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new ConnectionError(H2ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      if (this.#sendable.size) this.#schedulePump();
      return;
    }
    const s = this.#streams.get(streamId);
    if (!s) {
      if (this.#isIdle(streamId)) {
        throw new ConnectionError(H2ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      }
      // Allowed shortly after our END_STREAM or RST_STREAM (§5.1), not after the peer's reset.
      if (this.#closedHow(streamId) === CLOSED_BY_PEER_RESET) this.#onClosedStream(streamId);
      return;
    }
    if (increment === 0) return this.#streamError(streamId, H2ErrorCode.PROTOCOL_ERROR);
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) {
      return this.#streamError(streamId, H2ErrorCode.FLOW_CONTROL_ERROR);
    }
    if (this.#sendable.has(s)) this.#schedulePump();
  }

  // ---- streams ----

  /** Ends a stream's call as if the client left, and forgets the stream. */
  #dropStream(s: Stream) {
    this.#streams.delete(s.id);
    this.#sendable.delete(s);
    s.end(GONE);
  }

  /** RST_STREAM with `code`: the stream is closed by our reset, its call ends. */
  #resetStream(streamId: number, code: number) {
    this.#writeReset(streamId, code);
    this.#remember(streamId, CLOSED_BY_OUR_RESET);
    const s = this.#streams.get(streamId);
    if (s) this.#dropStream(s);
  }

  /** A stream error (§5.4.2) the client caused: counted against the reset budget, then reset. */
  #streamError(streamId: number, code: number) {
    this.#spend("reset");
    this.#resetStream(streamId, code);
  }

  /** Called by a stream's `end`: queue its status, or forget it when the client is gone. */
  callEnded(s: Stream, ending: Ending) {
    this.ctx.calls.delete(s);
    if (ending.gone || this.#closed) {
      this.#streams.delete(s.id);
      this.#sendable.delete(s);
      return;
    }
    s.trailers = statusBlock(ending.code, ending.message, !s.headersSent);
    s.headersSent = true;
    this.markSendable(s);
  }

  markSendable(s: Stream) {
    if (this.#closed) return;
    this.#sendable.add(s);
    this.#schedulePump();
  }

  #schedulePump() {
    if (this.#pumpQueued || this.#closed) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pumpTask);
  }

  /** The microtask that pumps (one function per connection, not one per turn). */
  readonly #pumpTask = () => {
    try {
      this.#pump();
    } catch (e) {
      // A bug here must cost one connection, never the process.
      this.ctx.onError(e, "");
      this.destroy();
    }
  };

  /** Frames what flow control allows of every sendable stream, then writes. */
  #pump() {
    this.#pumpQueued = false;
    if (this.#closed) return;
    for (const s of this.#sendable) {
      if (this.#outLength >= OUT_HIGH_WATER) break;
      this.#emit(s);
      if (s.outBytes === 0 && !s.trailers) this.#sendable.delete(s);
    }
    this.#flush();
  }

  /** DATA frames of a stream's queued bytes within both windows; then its status, if due. */
  #emit(s: Stream) {
    while (s.outBytes > 0 && this.#outLength < OUT_HIGH_WATER) {
      const n = Math.min(s.outBytes, s.sendWindow, this.#sendWindow, this.#peerMaxFrame);
      if (n <= 0) return;
      const at = this.#reserve(9 + n);
      writeFrameHeader(this.#out!, at, n, FRAME.DATA, 0, s.id);
      this.#copyQueued(s, at + 9, n);
      s.sendWindow -= n;
      this.#sendWindow -= n;
    }
    const trailers = s.trailers;
    if (!trailers || s.outBytes > 0) return;
    s.trailers = undefined;
    this.writeHeaders(s.id, trailers, true);
    // Closed both ways now; a client still sending is told to stop, without error.
    if (!s.remoteClosed) this.#writeReset(s.id, H2ErrorCode.NO_ERROR);
    this.#streams.delete(s.id);
    this.#remember(s.id, s.remoteClosed ? CLOSED_BY_END_STREAM : CLOSED_BY_OUR_RESET);
  }

  /** Moves `n` queued bytes of a stream into the output buffer at `at`. */
  #copyQueued(s: Stream, at: number, n: number) {
    const out = this.#out!;
    while (n > 0) {
      const head = s.out[0];
      const take = Math.min(n, head.length - s.outHead);
      // A whole message (the usual case) is copied without a view of it.
      out.set(take === head.length ? head : head.subarray(s.outHead, s.outHead + take), at);
      at += take;
      n -= take;
      s.outBytes -= take;
      s.outHead += take;
      if (s.outHead === head.length) {
        s.out.shift();
        s.outHead = 0;
      }
    }
  }

  // ---- writing ----

  /** Room for `n` more bytes in the output buffer; returns where they go. */
  #reserve(n: number): number {
    const need = this.#outLength + n;
    if (!this.#out || this.#out.length < need) {
      const old = this.#out;
      // The last spare written, if it is large enough (one too small is dropped: the spares
      // then follow the sizes written lately).
      const spare = this.ctx.spareOut.pop();
      const grown = spare && spare.length >= need
        ? spare
        : new Uint8Array(Math.max(need, 2 * (old?.length ?? 0), 256));
      if (old) {
        grown.set(old.subarray(0, this.#outLength));
        this.#recycle(old);
      }
      this.#out = grown;
    }
    const at = this.#outLength;
    this.#outLength = need;
    return at;
  }

  #writeFrame(type: number, flags: number, streamId: number, payload: Uint8Array) {
    const at = this.#reserveFrame(type, flags, streamId, payload.length);
    if (at >= 0) this.#out!.set(payload, at);
  }

  /** Room for a frame, its header written; returns where its payload goes (-1: dropped). */
  #reserveFrame(type: number, flags: number, streamId: number, length: number): number {
    if (this.#closed) return -1;
    if (this.#outLength > MAX_UNWRITTEN) {
      // The peer keeps sending but does not read what we answer.
      this.destroy();
      return -1;
    }
    const at = this.#reserve(9 + length);
    writeFrameHeader(this.#out!, at, length, type, flags, streamId);
    this.#schedulePump();
    return at + 9;
  }

  /** A header block as HEADERS (+ CONTINUATION beyond the peer's frame size). */
  writeHeaders(streamId: number, block: Uint8Array, endStream: boolean) {
    const update = this.#tableSizeUpdate;
    if (update) {
      this.#tableSizeUpdate = undefined;
      const prefixed = new Uint8Array(update.length + block.length);
      prefixed.set(update);
      prefixed.set(block, update.length);
      block = prefixed;
    }
    const max = this.#peerMaxFrame;
    let off = 0;
    let type: number = FRAME.HEADERS;
    do {
      const part = block.subarray(off, off + max);
      off += part.length;
      const flags = (off >= block.length ? FLAG_END_HEADERS : 0) |
        (type === FRAME.HEADERS && endStream ? FLAG_END_STREAM : 0);
      this.#writeFrame(type, flags, streamId, part);
      type = FRAME.CONTINUATION;
    } while (off < block.length);
  }

  #writeReset(streamId: number, code: number) {
    const at = this.#reserveFrame(FRAME.RST_STREAM, 0, streamId, 4);
    if (at >= 0) writeUint32(this.#out!, at, code);
  }

  #writeWindowUpdate(streamId: number, increment: number) {
    const at = this.#reserveFrame(FRAME.WINDOW_UPDATE, 0, streamId, 4);
    if (at >= 0) writeUint32(this.#out!, at, increment);
  }

  #goAway(code: number, message: string) {
    const debug = new TextEncoder().encode(message);
    const payload = new Uint8Array(8 + debug.length);
    writeUint32(payload, 0, this.#lastStreamId);
    writeUint32(payload, 4, code);
    payload.set(debug, 8);
    this.#writeFrame(FRAME.GOAWAY, 0, 0, payload);
  }

  /** A connection error: GOAWAY, calls end (no statuses), a moment to flush, close. */
  async #abandon(code: number, message: string) {
    if (this.#closed) return;
    this.#goingAway = true;
    for (const s of [...this.#streams.values()]) this.#dropStream(s);
    this.#goAway(code, message);
    await this.#drained(CLOSE_GRACE_MS);
    this.destroy();
  }

  /** An output buffer whose bytes are written: back to the server's spares (a bounded few). */
  #recycle(buf: Uint8Array) {
    const spares = this.ctx.spareOut;
    if (buf.length <= MAX_SPARE_BYTES && spares.length < MAX_SPARE_OUT) spares.push(buf);
  }

  /** Starts the writer unless it runs; it writes until the output buffer stays empty. */
  #flush() {
    if (this.#writer || this.#outLength === 0 || this.#closed) return;
    const writer = this.#writeLoop();
    // Closed already (a write that threw at once): its `finally` has run, nothing to wait for.
    if (!this.#closed) this.#writer = writer;
  }

  async #writeLoop() {
    try {
      while (this.#outLength > 0 && !this.#closed) {
        const buf = this.#out!;
        const length = this.#outLength;
        this.#out = undefined;
        this.#outLength = 0;
        let off = await this.#conn.write(length === buf.length ? buf : buf.subarray(0, length));
        while (off < length) off += await this.#conn.write(buf.subarray(off, length));
        // Written: the socket holds no reference to it any more.
        this.#recycle(buf);
        // Frames queued meanwhile, and stream data held back by the high-water mark.
        if (this.#pumpQueued || this.#sendable.size) this.#pump();
      }
    } catch {
      this.destroy(); // the peer is gone
    } finally {
      this.#writer = undefined;
      if (this.#drainWaiters.length > 0) {
        for (const resolve of this.#drainWaiters.splice(0)) resolve();
      }
    }
  }

  /** Resolves when everything queued is written, or after `graceMs`. */
  async #drained(graceMs: number): Promise<void> {
    this.#pump();
    if (!this.#writer) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#drainWaiters.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
  }
}

/** A gRPC server of bidi-streaming methods on its own HTTP/2, over TCP or TLS. */
export class GrpcServer {
  readonly #ctx: ServerContext;
  readonly #connections = new Set<Connection>();
  readonly #running = new Set<Promise<void>>();
  #listener: Deno.Listener | ByteListener | undefined;
  #accepting: Promise<void> | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #stopping = false;

  constructor(opts: H2ServerOptions) {
    const onError = opts.onError;
    this.#ctx = {
      opts: {
        keepaliveIntervalMs: opts.keepaliveIntervalMs ?? 30_000,
        keepaliveTimeoutMs: opts.keepaliveTimeoutMs ?? 10_000,
        prefaceTimeoutMs: opts.prefaceTimeoutMs ?? 5_000,
        maxConnections: opts.maxConnections ?? 2048,
        maxConcurrentStreams: opts.maxConcurrentStreams ?? 100,
        maxHeaderBlockBytes: opts.maxHeaderBlockBytes ?? 16 * 1024,
      },
      maxMessageBytes: opts.maxMessageBytes ?? 4 * 1024 * 1024,
      methods: opts.methods,
      calls: new Set(),
      spareOut: [],
      onError: (err, path) => {
        try {
          onError?.(err, path);
        } catch {
          // a failing error reporter must not take a connection down
        }
      },
    };
  }

  /**
   * Starts listening on `hostname:port` (0 picks a free port).
   *
   * @returns the bound port
   * @throws when the address cannot be bound
   */
  async listen(
    hostname: string,
    port: number,
    tls?: Omit<TlsListenOptions, "hostname" | "port" | "alpn">,
  ): Promise<number> {
    const host = hostname.replace(/^\[(.*)\]$/, "$1");
    // TLS (ALPN h2) through the generic TLS listener; its connections have the Deno.Conn shape.
    // Loaded only when TLS is on: a plain-text agent never holds that module in memory.
    this.#listener = tls
      ? await (await import("../tls/listener.ts")).listenTls({
        ...tls,
        hostname: host,
        port,
        alpn: ["h2"],
      })
      : Deno.listen({ hostname: host, port });
    this.#accepting = this.#acceptLoop(this.#listener);
    // One timer for every connection's keepalive and preface deadline.
    const o = this.#ctx.opts;
    const period = Math.min(
      1000,
      Math.max(10, Math.min(o.keepaliveIntervalMs, o.keepaliveTimeoutMs, o.prefaceTimeoutMs) / 4),
    );
    this.#ticker = setInterval(() => {
      const now = Date.now();
      for (const c of this.#connections) {
        try {
          c.tick(now);
        } catch (e) {
          this.#ctx.onError(e, "");
          c.destroy();
        }
      }
    }, period);
    Deno.unrefTimer(this.#ticker);
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Open calls. */
  get callCount(): number {
    return this.#ctx.calls.size;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Ends every call with UNAVAILABLE, sends GOAWAY, closes the listener and connections. */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#ticker);
    this.#ticker = undefined;
    try {
      this.#listener?.close();
    } catch {
      // closed
    }
    await this.#accepting;
    await Promise.all([...this.#connections].map((c) => c.shutdown()));
    await Promise.allSettled([...this.#running]);
    this.#listener = undefined;
  }

  async #acceptLoop(listener: Deno.Listener | ByteListener) {
    while (!this.#stopping) {
      let conn: Deno.Conn | ByteConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (this.#stopping || e instanceof Deno.errors.BadResource) return;
        // EMFILE and friends: back off briefly instead of spinning.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      try {
        this.#serve(conn);
      } catch (e) {
        this.#ctx.onError(e, "");
        closeQuietly(conn);
      }
    }
  }

  #serve(accepted: Deno.Conn | ByteConn) {
    // The connection only reads, writes, closes and sets no-delay: a TLS ByteConn serves as well.
    const conn = accepted as Deno.Conn;
    if (this.#connections.size >= this.#ctx.opts.maxConnections || this.#stopping) {
      closeQuietly(conn);
      return;
    }
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // not a TCP connection, or already closed
    }
    const c = new Connection(conn, this.#ctx);
    this.#connections.add(c);
    const running = c.run().finally(() => {
      this.#connections.delete(c);
      this.#running.delete(running);
    });
    this.#running.add(running);
  }
}

function closeQuietly(conn: Deno.Conn | ByteConn) {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
