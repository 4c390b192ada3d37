/**
 * The gRPC pieces the xDS transport (`h2_server.ts`) is built from and its callers see: the call
 * and method interfaces of bidi-streaming methods, status codes, `grpc-message` encoding, and the
 * length-prefixed message framing (1 flag byte, 4-byte big-endian length, payload).
 *
 * @example
 * ```ts
 * import { frameMessage, MessageReader } from "./call.ts";
 * const reader = new MessageReader(1024);
 * reader.push(frameMessage(new Uint8Array([7, 9]))); // [Uint8Array [7, 9]]
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
  /** Ends the call with a status (Trailers-Only before any response, else in the trailers). */
  fail(code: number, message: string): void;
}

/** One method: how to decode requests, encode responses, and the handler. */
export interface BidiMethod<Req, Res> {
  decode(bytes: Uint8Array): Req;
  encode(msg: Res): Uint8Array;
  /** `encode` already returns the gRPC message header (saves one copy per message). */
  framed?: boolean;
  /**
   * `decode` keeps no view of the bytes it is given (it copies what it keeps, e.g. into strings),
   * so it may read them in place in the connection's read buffer: saves one copy per message.
   */
  borrows?: boolean;
  handle(call: BidiCall<Req, Res>): void;
}

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

/** Thrown by {@linkcode MessageReader} for a message gRPC forbids. */
export class FramingError extends Error {
  override name = "FramingError";
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

const EMPTY = new Uint8Array(0);

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
  #buf = EMPTY;

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
      const len = (buf[off + 1] * 0x1000000) + ((buf[off + 2] << 16) | (buf[off + 3] << 8) |
        buf[off + 4]);
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
    this.#buf = off === buf.length ? EMPTY : buf.slice(off);
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
