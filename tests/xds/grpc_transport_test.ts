/**
 * The gRPC transport on Deno.serve: message framing, statuses a real grpc-js client sees, and the
 * mass-disconnect that aborts Deno's `node:http2` server (the reason this transport exists).
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import {
  type BidiCall,
  frameMessage,
  FramingError,
  grpcMessageEncode,
  GrpcServer,
  GrpcStatus,
  MessageReader,
} from "../../lib/xds/grpc_transport.ts";
import { waitUntil } from "./xds_client.ts";

const ECHO = "/test.Echo/Chat";
const bytesMethod = {
  path: ECHO,
  requestStream: true,
  responseStream: true,
  requestSerialize: (b: Uint8Array) => Buffer.from(b),
  requestDeserialize: (b: Buffer) => new Uint8Array(b),
  responseSerialize: (b: Uint8Array) => Buffer.from(b),
  responseDeserialize: (b: Buffer) => new Uint8Array(b),
};
const EchoClient = grpc.makeGenericClientConstructor({ Chat: bytesMethod }, "Echo");
const OtherClient = grpc.makeGenericClientConstructor({
  Chat: { ...bytesMethod, path: "/test.Nope/Chat" },
}, "Nope");

/** Echo server: answers every message with itself; an empty message asks for INVALID_ARGUMENT. */
async function withEcho(
  fn: (
    port: number,
    server: GrpcServer,
    calls: BidiCall<Uint8Array, Uint8Array>[],
  ) => Promise<void>,
  maxMessageBytes?: number,
) {
  const calls: BidiCall<Uint8Array, Uint8Array>[] = [];
  const server = new GrpcServer({
    maxMessageBytes,
    methods: {
      [ECHO]: {
        decode: (b: Uint8Array) => b,
        encode: (m: Uint8Array) => m,
        handle: (call: BidiCall<Uint8Array, Uint8Array>) => {
          calls.push(call);
          call.onMessage((m) =>
            m.length === 0 ? call.fail(GrpcStatus.INVALID_ARGUMENT, "empty: ¿no?") : call.write(m)
          );
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
}

function statusOf(
  call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>,
): Promise<grpc.StatusObject> {
  call.on("error", () => {});
  return new Promise((resolve) => call.on("status", resolve));
}

Deno.test("MessageReader: messages across and within chunks; compressed and oversized messages are refused", () => {
  const r = new MessageReader(10);
  const two = new Uint8Array([
    ...frameMessage(new Uint8Array([1, 2])),
    ...frameMessage(new Uint8Array([3])),
  ]);
  assert.deepEqual(r.push(two.subarray(0, 3)), []);
  assert.deepEqual(r.push(two.subarray(3, 8)).map((m) => [...m]), [[1, 2]]);
  assert.equal(r.pending, 1);
  assert.deepEqual(r.push(two.subarray(8)).map((m) => [...m]), [[3]]);
  assert.deepEqual(r.push(two).map((m) => [...m]), [[1, 2], [3]]);
  assert.equal(r.pending, 0);
  assert.deepEqual(r.push(frameMessage(new Uint8Array(0))).map((m) => m.length), [0]);
  assert.throws(
    () => new MessageReader(10).push(new Uint8Array([1, 0, 0, 0, 1, 9])),
    (e) => e instanceof FramingError && e.code === GrpcStatus.UNIMPLEMENTED,
  );
  assert.throws(
    () => new MessageReader(10).push(frameMessage(new Uint8Array(11))),
    (e) => e instanceof FramingError && e.code === GrpcStatus.RESOURCE_EXHAUSTED,
  );
  assert.equal(grpcMessageEncode("a% é"), "a%25 %C3%A9");
});

Deno.test("grpc transport: bidi echo, statuses as grpc-js sees them, non-gRPC requests refused", async () => {
  await withEcho(async (port, server) => {
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const status = statusOf(call);
      const got: number[][] = [];
      const two = new Promise<void>((resolve) =>
        call.on("data", (m: Uint8Array) => {
          got.push([...m]);
          if (got.length === 2) resolve();
        })
      );
      call.write(new Uint8Array([1]));
      call.write(new Uint8Array([2, 3]));
      await two;
      assert.deepEqual(got, [[1], [2, 3]]);
      assert.equal(server.callCount, 1);
      call.cancel();
      assert.equal((await status).code, GrpcStatus.CANCELLED);
      await waitUntil(() => server.callCount === 0, 10_000, "call freed after the client reset");

      // A failure on the first message is a real status (Trailers-Only), message percent-decoded.
      const bad = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const badStatus = statusOf(bad);
      bad.write(new Uint8Array(0));
      const s = await badStatus;
      assert.equal(s.code, GrpcStatus.INVALID_ARGUMENT);
      assert.equal(s.details, "empty: ¿no?");
    } finally {
      client.close();
    }

    const other = new OtherClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = other.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const status = statusOf(call);
      call.write(new Uint8Array([1]));
      assert.equal((await status).code, GrpcStatus.UNIMPLEMENTED);
    } finally {
      other.close();
    }

    // A body that ends inside a message is a protocol error, not a clean end.
    const cut = await fetch(`http://127.0.0.1:${port}${ECHO}`, {
      method: "POST",
      headers: { "content-type": "application/grpc", te: "trailers" },
      body: new Uint8Array([0, 0, 0, 0, 100, 1, 2, 3]),
    });
    assert.equal(cut.headers.get("grpc-status"), String(GrpcStatus.INTERNAL));
    assert.match(cut.headers.get("grpc-message") ?? "", /inside a message/);
    await cut.body?.cancel();

    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 415);
    await res.body?.cancel();
  });
});

Deno.test("grpc transport: an oversized request message ends the call with RESOURCE_EXHAUSTED", async () => {
  await withEcho(async (port) => {
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const status = statusOf(call);
      call.write(new Uint8Array(2000));
      assert.equal((await status).code, GrpcStatus.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  }, 1000);
});

Deno.test("grpc transport: 200 clients resetting their streams and closing at once do not take the server down", async () => {
  await withEcho(async (port, server) => {
    const clients: grpc.Client[] = [];
    const calls: grpc.ClientDuplexStream<Uint8Array, Uint8Array>[] = [];
    let answered = 0;
    for (let i = 0; i < 200; i++) {
      // One connection per client, like separate Envoys.
      const c = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
      });
      const call = c.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      call.on("error", () => {});
      call.on("data", () => answered++);
      call.write(new Uint8Array([i & 255]));
      clients.push(c);
      calls.push(call);
    }
    await waitUntil(() => answered === 200, 30_000, "200 answers");
    for (const call of calls) call.cancel();
    for (const c of clients) c.close();
    await waitUntil(() => server.callCount === 0, 30_000, "every call freed");
    // Still serving.
    const c = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = c.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      call.on("error", () => {});
      const echoed = new Promise<Uint8Array>((r) => call.once("data", r));
      call.write(new Uint8Array([42]));
      assert.deepEqual([...await echoed], [42]);
      call.cancel();
    } finally {
      c.close();
    }
  });
});
