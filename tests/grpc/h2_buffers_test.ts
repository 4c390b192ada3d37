/**
 * The HTTP/2 server's buffer reuse: output buffers go back to a server-wide spare list once
 * written and are handed to other connections, and a method that `borrows` decodes requests in
 * place in the connection's read buffer. Raw TCP peers check every byte they receive.
 */

import assert from "node:assert/strict";
import { type BidiCall, frameMessage } from "../../lib/grpc/call.ts";
import { GrpcServer } from "../../lib/grpc/h2_server.ts";
import { encodeHeaders } from "../../lib/grpc/hpack.ts";
import { frameBytes, RawPeer } from "./h2_helpers.ts";

const FILL = "/test.Fill/Get";
const KEEP = "/test.Keep/Put";
const BORROW = "/test.Borrow/Put";

function requestBlock(path: string): Uint8Array {
  return encodeHeaders([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    ["content-type", "application/grpc"],
  ]);
}

/** `[fill, n (3 bytes)]` asks for n bytes of `fill`. */
function fillRequest(fill: number, n: number): Uint8Array {
  return frameMessage(new Uint8Array([fill, n >>> 16, (n >>> 8) & 255, n & 255]));
}

/** Reads stream 1's DATA until `total` message bytes arrived; returns the gRPC messages. */
async function readMessages(p: RawPeer, count: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let body = new Uint8Array(0);
  while (out.length < count) {
    const f = await p.until(0);
    assert.ok(f, "connection ended early");
    const next = new Uint8Array(body.length + f.payload.length);
    next.set(body);
    next.set(f.payload, body.length);
    body = next;
    while (body.length >= 5) {
      const len = new DataView(body.buffer, body.byteOffset + 1).getUint32(0);
      if (body.length < 5 + len) break;
      out.push(body.slice(5, 5 + len));
      body = body.slice(5 + len);
    }
  }
  return out;
}

function fillServer(): GrpcServer {
  return new GrpcServer({
    methods: {
      [FILL]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        handle: (call: BidiCall<Uint8Array, Uint8Array>) =>
          call.onMessage((m) =>
            call.write(new Uint8Array((m[1] << 16) | (m[2] << 8) | m[3]).fill(m[0]))
          ),
      },
    },
  });
}

/**
 * `count` peers (fills 1..count) each ask for responses of `sizes`, one request per write, so
 * responses go out in separate turns mixed with other peers'; each must get only its own bytes.
 */
async function servePeers(port: number, count: number, sizes: number[]): Promise<void> {
  const peers = await Promise.all(Array.from({ length: count }, () => RawPeer.open(port)));
  try {
    const results = await Promise.all(peers.map(async (p, i) => {
      const fill = i + 1;
      await p.send(frameBytes(1, 4, 1, requestBlock(FILL)));
      const reading = readMessages(p, sizes.length);
      for (const n of sizes) {
        await p.send(frameBytes(0, 0, 1, fillRequest(fill, n)));
        await new Promise((r) => setTimeout(r, 1));
      }
      return { fill, messages: await reading };
    }));
    for (const { fill, messages } of results) {
      assert.deepEqual(messages.map((m) => m.length), sizes);
      for (const m of messages) {
        const wrong = m.findIndex((b) => b !== fill);
        assert.equal(wrong, -1, `connection ${fill} got a foreign byte at ${wrong}`);
      }
    }
  } finally {
    for (const p of peers) p.close();
  }
}

Deno.test("h2 buffers: 40 connections asking at once for responses around the buffer size each get only their own bytes", async () => {
  const server = fillServer();
  const port = await server.listen("127.0.0.1", 0);
  try {
    // Within the default 64 KiB windows: below, at and above the 16 KiB output buffer.
    await servePeers(port, 40, [100, 9000, 16375, 16384, 20000]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("h2 buffers: a method that borrows decodes in the read buffer; others get a copy that later reads do not overwrite", async () => {
  const kept: Uint8Array[] = [];
  const borrowed: Uint8Array[] = [];
  const server = new GrpcServer({
    methods: {
      [KEEP]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        handle: (call: BidiCall<Uint8Array, Uint8Array>) =>
          call.onMessage((m) => {
            kept.push(m);
            call.write(new Uint8Array([1]));
          }),
      },
      [BORROW]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        borrows: true,
        handle: (call: BidiCall<Uint8Array, Uint8Array>) =>
          call.onMessage((m) => {
            // A view: the connection's read buffer is larger than the message.
            borrowed.push(m);
            call.write(new Uint8Array([1]));
          }),
      },
    },
  });
  const port = await server.listen("127.0.0.1", 0);
  try {
    for (const path of [KEEP, BORROW]) {
      const p = await RawPeer.open(port);
      await p.send(frameBytes(1, 4, 1, requestBlock(path)));
      for (let i = 0; i < 5; i++) {
        // Each message in its own read, answered before the next is sent.
        await p.send(frameBytes(0, 0, 1, frameMessage(new Uint8Array(50).fill(i + 1))));
        await readMessages(p, 1);
      }
      p.close();
    }
    assert.equal(kept.length, 5);
    kept.forEach((m, i) => assert.ok(m.every((b) => b === i + 1), `kept message ${i} changed`));
    assert.equal(borrowed.length, 5);
    for (const m of borrowed) assert.ok(m.buffer.byteLength > m.length, "not a view");
  } finally {
    await server.shutdown();
  }
});
