/**
 * The HTTP/2 gRPC server of `h2_server.ts` against three kinds of clients: grpc-js (the statuses a
 * real gRPC client sees, including a `fail` after the headers as a real status), Node's native
 * HTTP/2 client (nghttp2: flow control through default 64 KiB windows both ways, Huffman-coded
 * headers and HPACK's dynamic table, resets, PINGs), and raw TCP peers that break the rules
 * (bad preface, a peer that never answers our keepalive PING, CONTINUATION and reset floods,
 * oversized frames, the stream limit). Every test ends with `shutdown()`, and Deno's sanitizers
 * check that it leaves no timer, op or resource behind.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { frameMessage, GrpcStatus } from "../../lib/grpc/call.ts";
import { GrpcServer, H2ErrorCode } from "../../lib/grpc/h2_server.ts";
import { encodeHeaders, HpackDecoder } from "../../lib/grpc/hpack.ts";
import { waitUntil } from "../xds/xds_client.ts";
import {
  assertStillEchoes,
  BLOB,
  ECHO,
  EchoClient,
  type Frame,
  frameBytes,
  goAwayCode,
  OtherClient,
  PREFACE,
  RawPeer,
  REQUEST_BLOCK,
  statusOf,
  u32,
  withServer,
} from "./h2_helpers.ts";

// ---------------------------------------------------------------------------------------------
// grpc-js

Deno.test("h2 server: grpc-js bidi echo, statuses incl. a fail() after headers, unknown method", async () => {
  await withServer(async (port, server, calls) => {
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
      let ended = false;
      calls[0].onEnd(() => (ended = true));
      call.cancel();
      assert.equal((await status).code, GrpcStatus.CANCELLED);
      await waitUntil(() => server.callCount === 0, 10_000, "call freed after the client reset");
      assert.ok(ended && calls[0].signal.aborted);

      // A failure on the first message: Trailers-Only, message percent-decoded.
      const bad = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const badStatus = statusOf(bad);
      bad.write(new Uint8Array(0));
      const s = await badStatus;
      assert.equal(s.code, GrpcStatus.INVALID_ARGUMENT);
      assert.equal(s.details, "empty: ¿no?");

      // A failure after a response message: real trailers, not a reset.
      const late = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const lateStatus = statusOf(late);
      const data: number[][] = [];
      late.on("data", (m: Uint8Array) => data.push([...m]));
      late.write(new Uint8Array([9]));
      const ls = await lateStatus;
      assert.deepEqual(data, [[9]]);
      assert.equal(ls.code, GrpcStatus.INVALID_ARGUMENT);
      assert.equal(ls.details, "nine");

      // The client half-closes: OK.
      const done = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const doneStatus = statusOf(done);
      done.on("data", () => {});
      done.write(new Uint8Array([5]));
      done.end();
      assert.equal((await doneStatus).code, GrpcStatus.OK);
    } finally {
      client.close();
    }

    const other = new OtherClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = other.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const status = statusOf(call);
      call.write(new Uint8Array([1]));
      const s = await status;
      assert.equal(s.code, GrpcStatus.UNIMPLEMENTED);
      assert.match(s.details, /unknown method/);
    } finally {
      other.close();
    }
  });
});

Deno.test("h2 server: an oversized request message ends the call with RESOURCE_EXHAUSTED", async () => {
  await withServer(async (port) => {
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const call = client.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
      const status = statusOf(call);
      call.write(new Uint8Array(2000));
      assert.equal((await status).code, GrpcStatus.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  }, { maxMessageBytes: 1000 });
});

Deno.test("h2 server: shutdown ends open grpc-js calls with UNAVAILABLE trailers", async () => {
  let status: Promise<grpc.StatusObject> | undefined;
  const client = new EchoClient("127.0.0.1:1", grpc.credentials.createInsecure());
  client.close();
  await withServer(async (port, server) => {
    const c = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = c.Chat() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
    status = statusOf(call);
    const echoed = new Promise((r) => call.once("data", r));
    call.write(new Uint8Array([7]));
    await echoed;
    assert.equal(server.callCount, 1);
    c.close();
  });
  const s = await status!;
  assert.equal(s.code, GrpcStatus.UNAVAILABLE);
  assert.equal(s.details, "server is shutting down");
});

Deno.test("h2 server: 200 clients resetting their streams and closing at once do not take the server down", async () => {
  await withServer(async (port, server) => {
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
      call.write(new Uint8Array([i & 255 || 1]));
      clients.push(c);
      calls.push(call);
    }
    await waitUntil(() => answered === 200, 30_000, "200 answers");
    assert.equal(server.connectionCount, 200);
    for (const call of calls) call.cancel();
    for (const c of clients) c.close();
    await waitUntil(() => server.callCount === 0, 30_000, "every call freed");
    await waitUntil(() => server.connectionCount === 0, 30_000, "every connection closed");
    await assertStillEchoes(port);
  });
});

// ---------------------------------------------------------------------------------------------
// Node's native HTTP/2 client (nghttp2)

const NODE_CLIENT = `
const http2 = require("node:http2");
const [port, mode] = process.argv.slice(2);
const session = http2.connect("http://127.0.0.1:" + port);
session.on("error", (e) => out({ sessionError: e.message }));
function out(o) { process.stdout.write(JSON.stringify(o) + "\\n"); }
function frame(payload) {
  const b = Buffer.alloc(5 + payload.length);
  b.writeUInt32BE(payload.length, 1);
  payload.copy(b, 5);
  return b;
}
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }
function request(path, extra) {
  return session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc",
    te: "trailers", "x-note": "huffman-coded by nghttp2 because it is shorter", ...extra });
}
/** Sends messages, half-closes, and collects the response: status, body bytes, trailers. */
function call(path, messages, extra, raw) {
  return new Promise((resolve) => {
    const req = request(path, extra);
    let headers, trailers, bytes = 0; const chunks = [];
    req.on("response", (h) => (headers = h));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (d) => { bytes += d.length; if (chunks.length < 2) chunks.push(d); });
    req.on("error", (e) => resolve({ error: e.message }));
    req.on("close", () => resolve({ status: headers && headers[":status"],
      grpcStatus: (trailers || headers || {})["grpc-status"],
      grpcMessage: (trailers || headers || {})["grpc-message"], bytes,
      head: [...Buffer.concat(chunks).subarray(0, 9)], rst: req.rstCode }));
    for (const m of messages) req.write(raw ? m : frame(m));
    req.end();
  });
}
async function main() {
  if (mode === "flow") {
    // 1 MiB down through the default 64 KiB windows, 1 MiB up; three calls on one connection
    // (HPACK's dynamic table at work), all headers Huffman-coded by nghttp2.
    const down = await call("/test.Blob/Get", [u32(1 << 20)]);
    const up = await call("/test.Blob/Get", [Buffer.alloc(1 << 20, 7)]);
    const again = await call("/test.Blob/Get", [u32(10)]);
    out({ down, up, again });
  } else if (mode === "ping") {
    session.on("connect", () =>
      session.ping((err, ms) => out({ ping: !err, ms, error: err && err.message })));
    return;
  } else if (mode === "reset") {
    const req = request("/test.Echo/Chat");
    req.on("error", () => {});
    req.on("data", () => { out({ echoed: true }); req.close(http2.constants.NGHTTP2_CANCEL); });
    req.on("close", () => out({ closed: true }));
    req.write(frame(Buffer.from([1])));
    return;
  } else if (mode === "refusals") {
    const get = await new Promise((resolve) => {
      const req = session.request({ ":method": "GET", ":path": "/" });
      req.on("response", (h) => resolve(h[":status"]));
      req.on("error", (e) => resolve(e.message));
      req.end();
    });
    const cut = await call("/test.Echo/Chat", [Buffer.from([0, 0, 0, 0, 100, 1, 2, 3])], {}, true);
    const empty = await call("/test.Echo/Chat", []);
    const gzip = await call("/test.Echo/Chat", [Buffer.from([1])], { "grpc-encoding": "gzip" });
    out({ get, cut, empty, gzip });
  }
  session.close();
}
main();
`;

interface NodeClient {
  lines: Promise<Record<string, unknown>[]>;
  next(): Promise<Record<string, unknown>>;
  kill(): void;
  exited: Promise<unknown>;
}

async function nodeClient(port: number, mode: string): Promise<NodeClient> {
  const dir = await Deno.makeTempDir();
  const script = `${dir}/client.cjs`;
  await Deno.writeTextFile(script, NODE_CLIENT);
  const child = new Deno.Command("node", {
    args: [script, String(port), mode],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const queue: Record<string, unknown>[] = [];
  const waiters: ((o: Record<string, unknown>) => void)[] = [];
  const lines = (async () => {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      let i;
      while ((i = text.indexOf("\n")) >= 0) {
        const o = JSON.parse(text.slice(0, i));
        text = text.slice(i + 1);
        const w = waiters.shift();
        if (w) w(o);
        else queue.push(o);
      }
    }
    return queue;
  })();
  const exited = child.status.finally(() => Deno.remove(dir, { recursive: true }));
  return {
    lines,
    next: () =>
      queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r)),
    kill: () => {
      try {
        child.kill();
      } catch {
        // exited
      }
    },
    exited,
  };
}

Deno.test("h2 server: Node http2 client — 1 MiB each way through 64 KiB windows, Huffman headers", async () => {
  await withServer(async (port) => {
    const c = await nodeClient(port, "flow");
    const r = await c.next() as Record<string, Record<string, unknown>>;
    await c.exited;
    assert.deepEqual(r.down.status, 200);
    assert.equal(r.down.grpcStatus, "0");
    assert.equal(r.down.bytes, 5 + (1 << 20));
    // Message header: uncompressed, length 1 MiB; then the pattern.
    assert.deepEqual(r.down.head, [0, 0, 16, 0, 0, 0, 1, 2, 3]);
    assert.equal(r.up.grpcStatus, "0");
    assert.deepEqual(r.up.head, [0, 0, 0, 0, 4, 0, 16, 0, 0]);
    assert.equal(r.again.bytes, 15);
  });
});

Deno.test("h2 server: Node http2 client — PING answered, RST_STREAM ends the call", async () => {
  await withServer(async (port, server, calls) => {
    const p = await nodeClient(port, "ping");
    const pong = await p.next();
    assert.equal(pong.ping, true);
    p.kill();
    await p.exited;

    const c = await nodeClient(port, "reset");
    assert.deepEqual(await c.next(), { echoed: true });
    await c.next(); // closed
    await waitUntil(() => server.callCount === 0, 10_000, "the reset call ended");
    assert.ok(calls.at(-1)!.signal.aborted);
    c.kill();
    await c.exited;
  });
});

Deno.test("h2 server: Node http2 client — non-gRPC, cut body, empty body, compressed: refused like before", async () => {
  await withServer(async (port) => {
    const c = await nodeClient(port, "refusals");
    const r = await c.next() as Record<string, Record<string, unknown>>;
    await c.exited;
    assert.equal(r.get, 415);
    assert.equal(r.cut.grpcStatus, String(GrpcStatus.INTERNAL));
    assert.match(String(r.cut.grpcMessage), /inside a message/);
    assert.equal(r.empty.grpcStatus, "0");
    assert.equal(r.gzip.grpcStatus, String(GrpcStatus.UNIMPLEMENTED));
  });
});

// ---------------------------------------------------------------------------------------------
// Raw TCP peers

Deno.test("h2 server: raw peers — a bad preface is closed; a silent preface times out", async () => {
  await withServer(async (port, server) => {
    const http1 = await RawPeer.open(port, false);
    await http1.send(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
    assert.equal(await http1.frame(), null);
    http1.close();

    const mute = await RawPeer.open(port, false);
    await waitUntil(() => server.connectionCount === 1, 2000, "connected");
    const t0 = Date.now();
    assert.equal(await mute.frame(), null);
    assert.ok(Date.now() - t0 >= 100, "closed by the preface deadline, not at once");
    mute.close();
  }, { prefaceTimeoutMs: 200 });
});

Deno.test("h2 server: raw peers — keepalive: no PING ACK closes the connection and ends its calls; an ACKing peer stays", async () => {
  await withServer(async (port, server) => {
    const deaf = await RawPeer.open(port);
    await deaf.send(frameBytes(1, 4, 1, REQUEST_BLOCK));
    await waitUntil(() => server.callCount === 1, 2000, "call open");
    const live = await RawPeer.open(port);
    const liveAlive = (async () => {
      // Answers every PING; must still be connected when the deaf one is gone.
      const f = await live.until(7);
      return f;
    })();
    const t0 = Date.now();
    const ping = await deaf.until(6, false);
    assert.ok(ping && !(ping.flags & 1), "the server pinged");
    const goAway = await deaf.until(7, false);
    assert.equal(goAwayCode(goAway), H2ErrorCode.NO_ERROR);
    assert.equal(await deaf.until(-1, false), null);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 200 && elapsed < 3000, `closed after interval + timeout (${elapsed} ms)`);
    await waitUntil(() => server.callCount === 0, 2000, "the deaf peer's call ended");
    assert.equal(server.connectionCount, 1);
    deaf.close();
    live.close();
    await liveAlive;
  }, { keepaliveIntervalMs: 150, keepaliveTimeoutMs: 150 });
});

Deno.test("h2 server: raw peers — CONTINUATION flood and oversized header blocks get GOAWAY ENHANCE_YOUR_CALM", async () => {
  await withServer(async (port) => {
    const p = await RawPeer.open(port);
    const parts = [frameBytes(1, 0, 1, REQUEST_BLOCK.subarray(0, 3))];
    for (let i = 0; i < 100; i++) parts.push(frameBytes(9, 0, 1, new Uint8Array(0)));
    await p.send(...parts).catch(() => {});
    assert.equal(goAwayCode(await p.until(7)), H2ErrorCode.ENHANCE_YOUR_CALM);
    assert.equal(await p.until(-1), null);
    p.close();

    const big = await RawPeer.open(port);
    const sent = [frameBytes(1, 0, 3, new Uint8Array(10_000))];
    sent.push(frameBytes(9, 0, 3, new Uint8Array(10_000)));
    await big.send(...sent).catch(() => {});
    assert.equal(goAwayCode(await big.until(7)), H2ErrorCode.ENHANCE_YOUR_CALM);
    big.close();
  });
});

Deno.test("h2 server: raw peers — frame size, PUSH_PROMISE, rapid reset, PING, SETTINGS and malformed-request floods: the right GOAWAY", async () => {
  await withServer(async (port) => {
    const cases: [string, Uint8Array[], number][] = [
      [
        "oversized DATA",
        [frameBytes(0, 0, 1, new Uint8Array(20_000))],
        H2ErrorCode.FRAME_SIZE_ERROR,
      ],
      ["PUSH_PROMISE", [frameBytes(5, 4, 1, new Uint8Array(4))], H2ErrorCode.PROTOCOL_ERROR],
      ["HEADERS on stream 0", [frameBytes(1, 4, 0, REQUEST_BLOCK)], H2ErrorCode.PROTOCOL_ERROR],
      [
        "garbage HPACK",
        [frameBytes(1, 4, 1, new Uint8Array([0x80]))],
        H2ErrorCode.COMPRESSION_ERROR,
      ],
      [
        "rapid reset",
        Array.from({ length: 150 }, (_, i) => [
          frameBytes(1, 4, 2 * i + 1, REQUEST_BLOCK),
          frameBytes(3, 0, 2 * i + 1, new Uint8Array(4).fill(0).map((_, j) => j === 3 ? 8 : 0)),
        ]).flat(),
        H2ErrorCode.ENHANCE_YOUR_CALM,
      ],
      [
        "PING flood",
        Array.from({ length: 300 }, () => frameBytes(6, 0, 0, new Uint8Array(8))),
        H2ErrorCode.ENHANCE_YOUR_CALM,
      ],
      [
        "SETTINGS flood",
        Array.from({ length: 300 }, () => frameBytes(4, 0, 0, new Uint8Array(0))),
        H2ErrorCode.ENHANCE_YOUR_CALM,
      ],
      [
        "malformed-request flood (each a stream error)",
        Array.from(
          { length: 150 },
          (_, i) => frameBytes(1, 4, 2 * i + 1, encodeHeaders([[":method", "POST"]])),
        ),
        H2ErrorCode.ENHANCE_YOUR_CALM,
      ],
    ];
    for (const [name, frames, code] of cases) {
      const p = await RawPeer.open(port);
      await p.send(...frames).catch(() => {});
      assert.equal(goAwayCode(await p.until(7)), code, name);
      assert.equal(await p.until(-1), null, `${name}: closed`);
      p.close();
    }
  });
});

Deno.test("h2 server: raw peers — over 100 concurrent streams are refused; GOAWAY and statuses on shutdown", async () => {
  const server = new GrpcServer({
    methods: {
      [ECHO]: { decode: (b) => b, encode: (m: Uint8Array) => m, handle: () => {} },
    },
  });
  const port = await server.listen("127.0.0.1", 0);
  const p = await RawPeer.open(port);
  try {
    const settings = await p.until(4);
    // Our SETTINGS advertise MAX_CONCURRENT_STREAMS 100.
    const v = new DataView(settings!.payload.buffer);
    assert.equal(v.getUint16(0), 3);
    assert.equal(v.getUint32(2), 100);
    const frames = [];
    for (let i = 0; i < 101; i++) frames.push(frameBytes(1, 4, 2 * i + 1, REQUEST_BLOCK));
    await p.send(...frames);
    const rst = await p.until(3);
    assert.equal(rst!.stream, 201);
    assert.equal(new DataView(rst!.payload.buffer).getUint32(0), H2ErrorCode.REFUSED_STREAM);
    await waitUntil(() => server.callCount === 100, 2000, "100 calls");
  } finally {
    await server.shutdown();
  }
  // Every call got a status (Trailers-Only UNAVAILABLE), then GOAWAY NO_ERROR, then EOF.
  const decoder = new HpackDecoder();
  let statuses = 0;
  let goAway: Frame | null = null;
  for (;;) {
    const f = await p.frame();
    if (!f) break;
    if (f.type === 1) {
      const fields = Object.fromEntries(decoder.decode(f.payload));
      assert.equal(fields["grpc-status"], String(GrpcStatus.UNAVAILABLE));
      assert.ok(f.flags & 1, "END_STREAM");
      statuses++;
    }
    if (f.type === 7) goAway = f;
  }
  p.close();
  assert.equal(statuses, 100);
  assert.equal(goAwayCode(goAway), H2ErrorCode.NO_ERROR);
  assert.equal(new DataView(goAway!.payload.buffer).getUint32(0), 201, "last stream id");
  assert.equal(server.callCount, 0);
});

Deno.test("h2 server: connections over maxConnections are closed at once", async () => {
  await withServer(async (port, server) => {
    const a = await RawPeer.open(port);
    const b = await RawPeer.open(port);
    await a.until(4);
    await b.until(4);
    const c = await RawPeer.open(port, false);
    assert.equal(await c.frame(), null);
    assert.equal(server.connectionCount, 2);
    for (const p of [a, b, c]) p.close();
  }, { maxConnections: 2 });
});

Deno.test("h2 server: raw peers — response DATA waits for the peer's window (SETTINGS, then WINDOW_UPDATE)", async () => {
  await withServer(async (port) => {
    const p = await RawPeer.open(port, false);
    // INITIAL_WINDOW_SIZE 10: the server may send 10 bytes of the 105-byte response.
    const settings = new Uint8Array([0, 4, 0, 0, 0, 10]);
    const block = encodeHeaders([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", BLOB],
      ["content-type", "application/grpc"],
    ]);
    const message = new Uint8Array([0, 0, 0, 0, 4, ...u32(100)]);
    await p.send(
      PREFACE,
      frameBytes(4, 0, 0, settings),
      frameBytes(1, 4, 1, block),
      frameBytes(0, 0, 1, message),
    );
    const first = await p.until(0);
    assert.equal(first!.payload.length, 10);
    await p.send(frameBytes(8, 0, 1, u32(1000)));
    let rest = 0;
    while (rest < 95) rest += (await p.until(0))!.payload.length;
    assert.equal(rest, 95);
    p.close();
  });
});

Deno.test("h2 server: raw peers — random frames after a valid handshake never take the server down", async () => {
  const errors: unknown[] = [];
  await withServer(async (port) => {
    // A small deterministic PRNG (xorshift32), so a failure is reproducible.
    let seed = 0x9e3779b9;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    for (let round = 0; round < 200; round++) {
      const p = await RawPeer.open(port);
      const frames = [];
      for (let i = 0; i < 1 + rand(6); i++) {
        const payload = new Uint8Array(rand(64)).map(() => rand(256));
        // Mostly valid-looking requests, sometimes anything at all.
        const type = rand(4) === 0 ? rand(12) : [0, 1, 3, 8][rand(4)];
        const body = type === 1 && rand(2) ? REQUEST_BLOCK : payload;
        frames.push(frameBytes(type, rand(256), rand(8), body));
      }
      await p.send(...frames).catch(() => {});
      p.close();
    }
    await assertStillEchoes(port);
  }, { onError: (e) => errors.push(e) });
  assert.deepEqual(errors, [], "no internal error reported");
});

Deno.test("h2 server: raw peers — SETTINGS_HEADER_TABLE_SIZE below 4096: our next header block opens with a table size update (RFC 7541 §4.2)", async () => {
  await withServer(async (port) => {
    const p = await RawPeer.open(port, false);
    await p.send(
      PREFACE,
      frameBytes(4, 0, 0, new Uint8Array([0, 1, 0, 0, 0, 0])),
      frameBytes(1, 4 | 1, 1, REQUEST_BLOCK),
      frameBytes(1, 4 | 1, 3, REQUEST_BLOCK),
    );
    const first = await p.until(1);
    assert.equal(first!.payload[0], 0x20, "size update to 0 first");
    const decoder = new HpackDecoder();
    assert.equal(Object.fromEntries(decoder.decode(first!.payload))["grpc-status"], "0");
    const second = await p.until(1);
    assert.notEqual(second!.payload[0] & 0xe0, 0x20, "signalled once");
    p.close();
  });
});

Deno.test("h2 server: raw peers — closed streams are remembered 128 deep: DATA on the 128th last gets STREAM_CLOSED, older ones are ignored", async () => {
  await withServer(async (port) => {
    const p = await RawPeer.open(port);
    const message = frameMessage(new Uint8Array([1]));
    const closedStreams = 200;
    for (let batch = 0; batch < closedStreams / 50; batch++) {
      const frames = [];
      for (let i = 0; i < 50; i++) {
        const id = 2 * (50 * batch + i) + 1;
        frames.push(frameBytes(1, 4, id, REQUEST_BLOCK), frameBytes(0, 1, id, message));
      }
      await p.send(...frames);
      // Every call ends OK (trailers with END_STREAM): closed both ways.
      let ended = 0;
      while (ended < 50) {
        const f = await p.frame();
        assert.ok(f && f.type !== 3 && f.type !== 7, "no reset, no GOAWAY");
        if (f.type === 1 && f.flags & 1) ended++;
      }
    }
    const last = 2 * (closedStreams - 1) + 1;
    const remembered = last - 2 * 127;
    await p.send(
      frameBytes(0, 0, 1, message),
      frameBytes(0, 0, remembered - 2, message),
      frameBytes(0, 0, remembered, message),
    );
    const rst = await p.until(3);
    assert.equal(rst!.stream, remembered, "the oldest remembered stream, and only it");
    assert.equal(new DataView(rst!.payload.buffer).getUint32(0), H2ErrorCode.STREAM_CLOSED);
    p.close();
  });
});
