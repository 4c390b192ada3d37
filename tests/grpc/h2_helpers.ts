/**
 * What the HTTP/2 server tests share: an echo/blob gRPC server (`withServer`), a grpc-js liveness
 * check, and `RawPeer`, a hand-driven HTTP/2 client on a raw TCP connection that can send any
 * frame and read every frame the server answers.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { type BidiCall, GrpcStatus } from "../../lib/grpc/call.ts";
import { GrpcServer, type H2ServerOptions } from "../../lib/grpc/h2_server.ts";
import { encodeHeaders } from "../../lib/grpc/hpack.ts";
import { bytesMethod } from "../xds/xds_client.ts";

export const ECHO = "/test.Echo/Chat";
/** A 4-byte message N asks for N bytes back; any other message is answered with its length. */
export const BLOB = "/test.Blob/Get";

export const EchoClient = grpc.makeGenericClientConstructor({ Chat: bytesMethod(ECHO) }, "Echo");
export const OtherClient = grpc.makeGenericClientConstructor(
  { Chat: bytesMethod("/test.Nope/Chat") },
  "Nope",
);

/** A fresh grpc-js client still gets its message echoed: the server is up and serving. */
export async function assertStillEchoes(port: number): Promise<void> {
  const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const call = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
    call.on("error", () => {});
    const echoed = new Promise<Uint8Array>((r) => call.once("data", r));
    call.write(new Uint8Array([42]));
    assert.deepEqual([...await echoed], [42]);
    call.cancel();
  } finally {
    client.close();
  }
}

export type Call = BidiCall<Uint8Array, Uint8Array>;

export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/**
 * Echo: answers every message with itself. An empty message asks for INVALID_ARGUMENT, a message
 * [9] for one answer then INVALID_ARGUMENT (a failure after the headers).
 */
export async function withServer(
  fn: (port: number, server: GrpcServer, calls: Call[]) => Promise<void>,
  opts: Partial<H2ServerOptions> = {},
) {
  const calls: Call[] = [];
  const server = new GrpcServer({
    ...opts,
    methods: {
      [ECHO]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        handle: (call: Call) => {
          calls.push(call);
          call.onMessage((m) => {
            if (m.length === 0) return call.fail(GrpcStatus.INVALID_ARGUMENT, "empty: ¿no?");
            call.write(m);
            if (m.length === 1 && m[0] === 9) call.fail(GrpcStatus.INVALID_ARGUMENT, "nine");
          });
        },
      },
      [BLOB]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        handle: (call: Call) => {
          calls.push(call);
          call.onMessage((m) => {
            if (m.length !== 4) return call.write(u32(m.length));
            const n = new DataView(m.buffer, m.byteOffset).getUint32(0);
            call.write(new Uint8Array(n).map((_, i) => i & 255));
          });
        },
      },
    },
  });
  const port = await server.listen("127.0.0.1", 0);
  try {
    await fn(port, server, calls);
  } finally {
    await server.shutdown();
  }
  assert.equal(server.callCount, 0);
  assert.equal(server.connectionCount, 0);
}

export function statusOf(
  call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>,
): Promise<grpc.StatusObject> {
  call.on("error", () => {});
  return new Promise((resolve) => call.on("status", resolve));
}

export const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Uint8Array;
}

export function frameBytes(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
): Uint8Array {
  const b = new Uint8Array(9 + payload.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, payload.length << 8);
  b[3] = type;
  b[4] = flags;
  v.setUint32(5, stream);
  b.set(payload, 9);
  return b;
}

export const REQUEST_BLOCK = encodeHeaders([
  [":method", "POST"],
  [":scheme", "http"],
  [":path", ECHO],
  ["content-type", "application/grpc"],
]);

/** A hand-driven HTTP/2 client on a raw TCP connection. */
export class RawPeer {
  #buf = new Uint8Array(0);
  private constructor(readonly conn: Deno.Conn) {}

  static async open(port: number, handshake = true): Promise<RawPeer> {
    const p = new RawPeer(await Deno.connect({ hostname: "127.0.0.1", port }));
    if (handshake) await p.send(PREFACE, frameBytes(4, 0, 0, new Uint8Array(0)));
    return p;
  }

  async send(...parts: Uint8Array[]) {
    for (const part of parts) {
      let off = 0;
      while (off < part.length) off += await this.conn.write(part.subarray(off));
    }
  }

  /** The next frame, or null at EOF / reset. */
  async frame(): Promise<Frame | null> {
    while (this.#buf.length < 9 || this.#buf.length < 9 + (this.#length())) {
      const chunk = new Uint8Array(16384);
      let n: number | null;
      try {
        n = await this.conn.read(chunk);
      } catch {
        return null;
      }
      if (n === null) return null;
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
    const length = this.#length();
    const b = this.#buf;
    const f = {
      type: b[3],
      flags: b[4],
      stream: new DataView(b.buffer, b.byteOffset).getUint32(5) & 0x7fffffff,
      payload: b.slice(9, 9 + length),
    };
    this.#buf = b.slice(9 + length);
    return f;
  }

  #length(): number {
    return (this.#buf[0] << 16) | (this.#buf[1] << 8) | this.#buf[2];
  }

  /** Frames until one of `type` (its frame) or EOF (null); ACKs PINGs unless told not to. */
  async until(type: number, ackPings = true): Promise<Frame | null> {
    for (;;) {
      const f = await this.frame();
      if (!f || f.type === type) return f;
      if (f.type === 6 && !(f.flags & 1) && ackPings) {
        await this.send(frameBytes(6, 1, 0, f.payload));
      }
    }
  }

  close() {
    try {
      this.conn.close();
    } catch {
      // closed
    }
  }
}

export function goAwayCode(f: Frame | null): number | undefined {
  return f ? new DataView(f.payload.buffer).getUint32(4) : undefined;
}
