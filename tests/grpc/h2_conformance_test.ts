/**
 * RFC 9113 and RFC 7541 conformance of `lib/grpc/h2_server.ts`, one test per rule of the table in
 * `lib/grpc/mod.ts`: a raw TCP peer sets a stream up (open, half-closed, closed by END_STREAM or
 * by either side's RST_STREAM), sends the frame the rule is about, and the server's answer is
 * checked exactly: a stream error (RST_STREAM on that stream with the code, the connection goes
 * on), a connection error (GOAWAY with the code, then EOF), or nothing (the frame is ignored and
 * the connection answers a PING as before).
 */

import assert from "node:assert/strict";
import { frameMessage } from "../../lib/grpc/call.ts";
import { H2ErrorCode } from "../../lib/grpc/h2_server.ts";
import { encodeHeaders, type HeaderField } from "../../lib/grpc/hpack.ts";
import {
  ECHO,
  type Frame,
  frameBytes,
  goAwayCode,
  PREFACE,
  RawPeer,
  u32,
  withServer,
} from "./h2_helpers.ts";

const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST: 3, SETTINGS: 4, PUSH: 5, PING: 6 } as const;
const T2 = { GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;
const E = H2ErrorCode;

const BASE: HeaderField[] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", ECHO],
  ["content-type", "application/grpc"],
];

/** A complete HEADERS frame (END_HEADERS) for `fields`. */
function headers(stream: number, fields: HeaderField[], flags = 0): Uint8Array {
  return frameBytes(T.HEADERS, END_HEADERS | flags, stream, encodeHeaders(fields));
}

/** HEADERS of a valid gRPC request on the echo method. */
function request(stream: number, flags = 0): Uint8Array {
  return headers(stream, BASE, flags);
}

/** The request with one field replaced (by name) or added. */
function withField(name: string, value: string): HeaderField[] {
  const i = BASE.findIndex(([n]) => n === name);
  return i < 0 ? [...BASE, [name, value]] : BASE.with(i, [name, value]);
}

function data(stream: number, payload: Uint8Array, flags = 0): Uint8Array {
  return frameBytes(T.DATA, flags, stream, payload);
}

/** One gRPC message of `n` bytes, as a DATA frame. */
function message(stream: number, n = 3, flags = 0): Uint8Array {
  return data(stream, frameMessage(new Uint8Array(n).fill(7)), flags);
}

function rst(stream: number, code = E.CANCEL): Uint8Array {
  return frameBytes(T.RST, 0, stream, u32(code));
}

function windowUpdate(stream: number, increment: number): Uint8Array {
  return frameBytes(T2.WINDOW_UPDATE, 0, stream, u32(increment));
}

function settings(...pairs: [number, number][]): Uint8Array {
  const b = new Uint8Array(6 * pairs.length);
  pairs.forEach(([id, value], i) => {
    b[6 * i + 1] = id;
    b.set(u32(value), 6 * i + 2);
  });
  return frameBytes(T.SETTINGS, 0, 0, b);
}

function priority(stream: number, dependsOn: number, length = 5): Uint8Array {
  const b = new Uint8Array(length);
  b.set(u32(dependsOn).subarray(0, Math.min(4, length)));
  return frameBytes(T.PRIORITY, 0, stream, b);
}

let pingCount = 0;

/**
 * Sends a PING and reads until its ACK: every frame the server sent before it, and whether the
 * ACK came (false: the connection closed first).
 */
async function sync(p: RawPeer): Promise<{ frames: Frame[]; alive: boolean }> {
  const payload = u32(++pingCount);
  const ping = new Uint8Array(8);
  ping.set(payload, 4);
  await p.send(frameBytes(T.PING, 0, 0, ping)).catch(() => {});
  const frames: Frame[] = [];
  for (;;) {
    const f = await p.frame();
    if (!f) return { frames, alive: false };
    if (f.type === T.PING && f.flags & 1 && f.payload.every((b, i) => b === ping[i])) {
      return { frames, alive: true };
    }
    frames.push(f);
  }
}

/** What the server must answer to the probe. */
type Expect =
  | { stream: number; code: number } // RST_STREAM on `stream` with `code`; connection lives
  | { connection: number } // GOAWAY with the code, then EOF
  | "ignored"; // neither RST_STREAM nor GOAWAY; connection lives

interface Case {
  /** The rule, as in the conformance table. */
  rule: string;
  /** Frames that bring the stream to the state the rule is about (answers not checked). */
  setup?: (p: RawPeer) => Promise<void>;
  /** The frames the rule is about. */
  probe: Uint8Array[];
  expect: Expect;
  /** The request must not have been served: no HEADERS or DATA answered on stream 1. */
  unserved?: boolean;
  /** The request on this stream must have been answered to its end (HEADERS with END_STREAM). */
  served?: number;
  /** Sent instead of the default client preface (an empty SETTINGS). */
  preface?: Uint8Array[];
}

/** Setup: stream 1 open (a request, no END_STREAM), its first message echoed. */
async function openStream(p: RawPeer) {
  await p.send(request(1), message(1));
  await p.until(T.DATA);
}

/** Setup: stream 1 closed by END_STREAM both ways (the client ended, the server's trailers came). */
async function closedByEndStream(p: RawPeer) {
  await p.send(request(1), message(1, 3, END_STREAM));
  for (;;) {
    const f = await p.until(T.HEADERS);
    if (f && f.flags & END_STREAM) return;
  }
}

/** Setup: stream 1 reset by the client. */
async function closedByPeerReset(p: RawPeer) {
  await openStream(p);
  await p.send(rst(1));
}

/** Setup: stream 1 reset by the server (a malformed request). */
async function closedByOurReset(p: RawPeer) {
  await p.send(headers(1, withField(":path", "")));
  await p.until(T.RST);
}

const H = (hex: string) => new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
/** A header block: literal field without indexing, new name "x", the value string `value`. */
const literalX = (value: Uint8Array) => new Uint8Array([0x00, 0x01, 0x78, ...value]);

const CASES: Case[] = [
  // §8.3, §8.3.1 pseudo-headers
  ...[":method", ":scheme", ":path"].map((name): Case => ({
    rule: `§8.3.1 request without ${name}`,
    probe: [headers(1, BASE.filter(([n]) => n !== name)), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  })),
  ...[":method", ":scheme", ":path"].map((name): Case => ({
    rule: `§8.3 repeated ${name}`,
    probe: [headers(1, [BASE.find(([n]) => n === name)!, ...BASE]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  })),
  {
    rule: "§8.3.1 empty :path",
    probe: [headers(1, withField(":path", "")), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.3 pseudo-header after a regular field",
    probe: [headers(1, [...BASE.slice(1), BASE[0]]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.3 response pseudo-header :status in a request",
    probe: [headers(1, [[":status", "200"], ...BASE]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.3 unknown pseudo-header",
    probe: [headers(1, [...BASE.slice(0, 3), [":foo", "x"], BASE[3]]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.3.1 userinfo in :authority",
    probe: [
      headers(1, [...BASE.slice(0, 3), [":authority", "user@127.0.0.1"], BASE[3]]),
      message(1),
    ],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.3.1 :authority and a query in :path are served",
    probe: [
      headers(1, [
        BASE[0],
        BASE[1],
        [":authority", "127.0.0.1"],
        [":path", `${ECHO}?q=1`],
        BASE[3],
      ]),
      message(1, 3, END_STREAM),
    ],
    expect: "ignored",
    served: 1,
  },
  {
    rule: "§8.5 CONNECT with :scheme and :path",
    probe: [headers(1, [[":method", "CONNECT"], [":authority", "a:1"], ...BASE.slice(1)])],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  {
    rule: "§8.5 a well-formed CONNECT is answered (415, not gRPC), not reset as malformed",
    probe: [headers(1, [[":method", "CONNECT"], [":authority", "a:1"]])],
    expect: "ignored",
    served: 1,
  },
  // §8.2.1 field validity
  ...([
    ["uppercase field name", "X-Upper", "v"],
    ["colon inside a field name", "x:y", "v"],
    ["empty field name", "", "v"],
    ["NUL in a field value", "x-v", "a\0b"],
    ["CR in a field value", "x-v", "a\rb"],
    ["LF in a field value", "x-v", "a\nb"],
    ["leading space in a field value", "x-v", " a"],
    ["trailing tab in a field value", "x-v", "a\t"],
  ] as const).map(([what, name, value]): Case => ({
    rule: `§8.2.1 ${what}`,
    probe: [headers(1, [...BASE, [name, value]]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  })),
  // §8.2.2 connection-specific fields
  ...["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"].map(
    (name): Case => ({
      rule: `§8.2.2 connection-specific field ${name}`,
      probe: [headers(1, [...BASE, [name, "x"]]), message(1)],
      expect: { stream: 1, code: E.PROTOCOL_ERROR },
      unserved: true,
    }),
  ),
  {
    rule: "§8.2.2 te other than trailers",
    probe: [headers(1, [...BASE, ["te", "gzip"]]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.2.2 te: trailers is served",
    probe: [headers(1, [...BASE, ["te", "trailers"]]), message(1, 3, END_STREAM)],
    expect: "ignored",
    served: 1,
  },
  // §8.1.1 content-length
  {
    rule: "§8.1.1 more DATA than content-length",
    probe: [headers(1, [...BASE, ["content-length", "1"]]), message(1, 75)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.1.1 END_STREAM before content-length bytes",
    probe: [headers(1, [...BASE, ["content-length", "100"]]), message(1, 3, END_STREAM)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.1.1 content-length with END_STREAM on HEADERS",
    probe: [headers(1, [...BASE, ["content-length", "5"]], END_STREAM)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  {
    rule: "§8.1.1 content-length not a number",
    probe: [headers(1, [...BASE, ["content-length", "8x"]]), message(1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  {
    rule: "§8.1.1 content-length equal to the DATA is served",
    probe: [headers(1, [...BASE, ["content-length", "8"]]), message(1, 3, END_STREAM)],
    expect: "ignored",
    served: 1,
  },
  // §8.1 trailers
  {
    rule: "§8.1 pseudo-header in request trailers",
    setup: openStream,
    probe: [headers(1, [[":path", "/"]], END_STREAM)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  {
    rule: "§8.1 request trailers without END_STREAM",
    setup: openStream,
    probe: [headers(1, [["x-trailer", "1"]])],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  // §5.1 idle streams
  {
    rule: "§5.1 DATA on an idle stream",
    probe: [message(1)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1 RST_STREAM on an idle stream",
    probe: [rst(1)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1 WINDOW_UPDATE on an idle stream",
    probe: [windowUpdate(1, 100)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1 CONTINUATION on an idle stream",
    probe: [frameBytes(T2.CONTINUATION, END_HEADERS, 1, encodeHeaders(BASE))],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1 PRIORITY on an idle stream is allowed, does not open it",
    probe: [priority(9, 0), request(3), message(3, 3, END_STREAM)],
    expect: "ignored",
    served: 3,
  },
  // §5.1.1 stream identifiers
  {
    rule: "§5.1.1 HEADERS on an even stream",
    probe: [request(2)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1.1 DATA on an even stream below the last stream id",
    setup: (p) => p.send(request(3)),
    probe: [message(2)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.1.1 HEADERS with a stream id lower than the last one",
    setup: (p) => p.send(request(5)),
    probe: [request(3)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  // §5.1 half-closed (remote)
  {
    rule: "§5.1 DATA on a half-closed (remote) stream",
    probe: [request(1), message(1, 3, END_STREAM), message(1)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  {
    rule: "§5.1 HEADERS on a half-closed (remote) stream",
    probe: [request(1), message(1, 3, END_STREAM), headers(1, [["x", "1"]], END_STREAM)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  // §5.1 closed
  {
    rule: "§5.1 DATA on a stream closed by END_STREAM",
    setup: closedByEndStream,
    probe: [message(1)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  {
    rule: "§5.1 HEADERS on a stream closed by END_STREAM",
    setup: closedByEndStream,
    probe: [request(1, END_STREAM)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  {
    rule: "§5.1 WINDOW_UPDATE, RST_STREAM, PRIORITY on a stream closed by END_STREAM are ignored",
    setup: closedByEndStream,
    probe: [windowUpdate(1, 10), priority(1, 0), rst(1)],
    expect: "ignored",
  },
  {
    rule: "§5.1 DATA after the client's RST_STREAM",
    setup: closedByPeerReset,
    probe: [message(1)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  {
    rule: "§5.1 WINDOW_UPDATE after the client's RST_STREAM",
    setup: closedByPeerReset,
    probe: [windowUpdate(1, 10)],
    expect: { stream: 1, code: E.STREAM_CLOSED },
  },
  {
    rule: "§5.4.2 RST_STREAM on a reset stream gets no RST_STREAM back",
    setup: closedByPeerReset,
    probe: [rst(1), priority(1, 0)],
    expect: "ignored",
  },
  {
    rule: "§5.1 frames after the server's RST_STREAM are ignored",
    setup: closedByOurReset,
    probe: [message(1), windowUpdate(1, 5), headers(1, [["x", "1"]], END_STREAM)],
    expect: "ignored",
  },
  // §5.3.1, §6.3 PRIORITY
  {
    rule: "§6.3 PRIORITY on stream 0",
    probe: [priority(0, 1)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.3 PRIORITY of 4 bytes on an open stream",
    setup: openStream,
    probe: [priority(1, 0, 4)],
    expect: { stream: 1, code: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§6.3 PRIORITY of 6 bytes on an idle stream (no RST_STREAM on idle: GOAWAY)",
    probe: [priority(7, 0, 6)],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§5.3.1 PRIORITY making a stream depend on itself",
    setup: openStream,
    probe: [priority(1, 1)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  {
    rule: "§5.3.1 HEADERS making a stream depend on itself",
    probe: [
      frameBytes(
        T.HEADERS,
        END_HEADERS | PRIORITY_FLAG,
        1,
        new Uint8Array([
          ...u32(1),
          16,
          ...encodeHeaders(BASE),
        ]),
      ),
      message(1),
    ],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
    unserved: true,
  },
  // §6.1, §6.2 DATA, HEADERS, padding
  {
    rule: "§6.1 DATA on stream 0",
    probe: [message(0)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.1 DATA whose padding fills the frame",
    setup: openStream,
    probe: [data(1, new Uint8Array([4, 1, 2, 3]), PADDED)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§4.2 PADDED DATA without its pad length",
    setup: openStream,
    probe: [data(1, new Uint8Array(0), PADDED)],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§6.2 HEADERS whose padding exceeds the block",
    probe: [
      frameBytes(T.HEADERS, END_HEADERS | PADDED, 1, new Uint8Array([200, ...encodeHeaders(BASE)])),
    ],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.2 padded HEADERS and DATA are served",
    probe: [
      frameBytes(
        T.HEADERS,
        END_HEADERS | PADDED,
        1,
        new Uint8Array([3, ...encodeHeaders(BASE), 0, 0, 0]),
      ),
      data(1, new Uint8Array([2, ...frameMessage(new Uint8Array([1])), 0, 0]), PADDED | END_STREAM),
    ],
    expect: "ignored",
    served: 1,
  },
  {
    rule: "§4.2 a frame larger than SETTINGS_MAX_FRAME_SIZE",
    setup: openStream,
    probe: [data(1, new Uint8Array(16_385))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  // §4.3, §6.10 header blocks
  {
    rule: "§6.10 a frame of another type inside a header block",
    probe: [frameBytes(T.HEADERS, 0, 1, encodeHeaders(BASE)), priority(3, 0)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.10 CONTINUATION on another stream",
    probe: [
      frameBytes(T.HEADERS, 0, 1, encodeHeaders(BASE)),
      frameBytes(T2.CONTINUATION, END_HEADERS, 3, new Uint8Array(0)),
    ],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.10 a header block in HEADERS + CONTINUATION is served",
    probe: [
      frameBytes(T.HEADERS, 0, 1, encodeHeaders(BASE).subarray(0, 2)),
      frameBytes(T2.CONTINUATION, END_HEADERS, 1, encodeHeaders(BASE).subarray(2)),
      message(1, 3, END_STREAM),
    ],
    expect: "ignored",
    served: 1,
  },
  {
    rule: "§5.5 an unknown frame type inside a header block",
    probe: [
      frameBytes(T.HEADERS, 0, 1, encodeHeaders(BASE)),
      frameBytes(0xfa, 0, 1, new Uint8Array(3)),
    ],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§4.1 unknown frame types and flags are ignored",
    probe: [frameBytes(0xfa, 0xff, 0, new Uint8Array(3)), request(1, 0x40 | END_STREAM)],
    expect: "ignored",
    served: 1,
  },
  // §6.4 RST_STREAM, §6.6 PUSH_PROMISE, §6.7 PING, §6.8 GOAWAY
  {
    rule: "§6.4 RST_STREAM on stream 0",
    probe: [rst(0)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.4 RST_STREAM of 3 bytes",
    setup: openStream,
    probe: [frameBytes(T.RST, 0, 1, new Uint8Array(3))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§8.4 PUSH_PROMISE from a client",
    probe: [frameBytes(T.PUSH, END_HEADERS, 1, new Uint8Array(4))],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.7 PING of 7 bytes",
    probe: [frameBytes(T.PING, 0, 0, new Uint8Array(7))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§6.7 PING on a stream",
    probe: [frameBytes(T.PING, 0, 1, new Uint8Array(8))],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.8 GOAWAY on a stream",
    probe: [frameBytes(T2.GOAWAY, 0, 1, new Uint8Array(8))],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  // §3.4, §6.5 SETTINGS
  {
    rule: "§3.4 a preface followed by something else than SETTINGS",
    preface: [PREFACE, frameBytes(T.PING, 0, 0, new Uint8Array(8))],
    probe: [],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§3.4 a preface followed by a SETTINGS ACK",
    preface: [PREFACE, frameBytes(T.SETTINGS, 1, 0, new Uint8Array(0))],
    probe: [],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.5 SETTINGS on a stream",
    probe: [frameBytes(T.SETTINGS, 0, 1, new Uint8Array(0))],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.5 SETTINGS of 5 bytes",
    probe: [frameBytes(T.SETTINGS, 0, 0, new Uint8Array(5))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§6.5 SETTINGS ACK with a payload",
    probe: [frameBytes(T.SETTINGS, 1, 0, new Uint8Array(6))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  {
    rule: "§6.5.2 SETTINGS_ENABLE_PUSH of 2",
    probe: [settings([2, 2])],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.5.2 SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
    probe: [settings([4, 2 ** 31])],
    expect: { connection: E.FLOW_CONTROL_ERROR },
  },
  {
    rule: "§6.5.2 SETTINGS_MAX_FRAME_SIZE below 16384",
    probe: [settings([5, 16_383])],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.5.2 SETTINGS_MAX_FRAME_SIZE above 2^24-1",
    probe: [settings([5, 2 ** 24])],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.5.2 unknown settings and in-range values are accepted",
    probe: [settings([0x99, 7], [2, 1], [4, 2 ** 31 - 1], [5, 2 ** 24 - 1], [1, 0])],
    expect: "ignored",
  },
  {
    rule: "§6.9.2 SETTINGS_INITIAL_WINDOW_SIZE pushing a stream window past 2^31-1",
    setup: async (p) => {
      await openStream(p);
      await p.send(windowUpdate(1, 2 ** 31 - 1 - 65_535));
    },
    probe: [settings([4, 65_535 + 100])],
    expect: { connection: E.FLOW_CONTROL_ERROR },
  },
  // §6.9 WINDOW_UPDATE
  {
    rule: "§6.9 WINDOW_UPDATE of 0 on a stream",
    setup: openStream,
    probe: [windowUpdate(1, 0)],
    expect: { stream: 1, code: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.9 WINDOW_UPDATE of 0 on the connection",
    probe: [windowUpdate(0, 0)],
    expect: { connection: E.PROTOCOL_ERROR },
  },
  {
    rule: "§6.9.1 a stream window past 2^31-1",
    setup: openStream,
    probe: [windowUpdate(1, 2 ** 31 - 1)],
    expect: { stream: 1, code: E.FLOW_CONTROL_ERROR },
  },
  {
    rule: "§6.9.1 the connection window past 2^31-1",
    probe: [windowUpdate(0, 2 ** 31 - 1)],
    expect: { connection: E.FLOW_CONTROL_ERROR },
  },
  {
    rule: "§6.9 WINDOW_UPDATE of 3 bytes",
    probe: [frameBytes(T2.WINDOW_UPDATE, 0, 0, new Uint8Array(3))],
    expect: { connection: E.FRAME_SIZE_ERROR },
  },
  // RFC 7541 (a decoding error is a connection COMPRESSION_ERROR, RFC 9113 §4.3)
  {
    rule: "RFC 7541 §4.2 dynamic table size update after a field",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, new Uint8Array([0x83, 0x20]))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §6.3 dynamic table size update above SETTINGS_HEADER_TABLE_SIZE",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, new Uint8Array([0x3f, 0xe2, 0x1f]))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §6.3 dynamic table size update at a block's start is accepted",
    probe: [
      frameBytes(
        T.HEADERS,
        END_HEADERS | END_STREAM,
        1,
        new Uint8Array([0x20, ...encodeHeaders(BASE)]),
      ),
    ],
    expect: "ignored",
    served: 1,
  },
  {
    rule: "RFC 7541 §2.3.3 index 0",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, new Uint8Array([0x80]))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §2.3.3 index beyond both tables",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, new Uint8Array([0xbe]))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §5.2 Huffman string holding EOS",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, literalX(H("84ffffffff")))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §5.2 Huffman padding longer than 7 bits",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, literalX(H("821fff")))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §5.2 Huffman padding not all ones",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, literalX(H("8118")))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
  {
    rule: "RFC 7541 §5.2 a truncated string literal",
    probe: [frameBytes(T.HEADERS, END_HEADERS, 1, literalX(H("0561")))],
    expect: { connection: E.COMPRESSION_ERROR },
  },
];

function describe(f: Frame): string {
  return `type ${f.type} stream ${f.stream} flags ${f.flags} ` +
    (f.type === T.RST || f.type === T2.GOAWAY ? `code ${goAwayOrRstCode(f)}` : "");
}

function goAwayOrRstCode(f: Frame): number {
  return f.type === T.RST ? new DataView(f.payload.buffer).getUint32(0) : goAwayCode(f)!;
}

for (const c of CASES) {
  Deno.test(`h2 conformance: ${c.rule}`, async () => {
    await withServer(async (port) => {
      const p = await RawPeer.open(port, !c.preface);
      try {
        if (c.preface) await p.send(...c.preface);
        if (c.setup) {
          await c.setup(p);
          const { alive } = await sync(p);
          assert.ok(alive, "the setup must leave the connection open");
        }
        await p.send(...c.probe).catch(() => {});
        const { frames, alive } = await sync(p);
        const seen = frames.map(describe).join("; ");
        const resets = frames.filter((f) => f.type === T.RST);
        const goAway = frames.find((f) => f.type === T2.GOAWAY);
        if (c.expect === "ignored") {
          assert.ok(alive, `connection closed: ${seen}`);
          assert.deepEqual(resets.filter((f) => goAwayOrRstCode(f) !== E.NO_ERROR), [], seen);
          assert.equal(goAway, undefined, seen);
        } else if ("connection" in c.expect) {
          assert.ok(!alive, `connection still open: ${seen}`);
          assert.equal(goAwayCode(goAway ?? null), c.expect.connection, seen);
        } else {
          assert.ok(alive, `connection closed: ${seen}`);
          assert.equal(goAway, undefined, seen);
          const { stream, code } = c.expect;
          assert.deepEqual(
            resets.map((f) => [f.stream, goAwayOrRstCode(f)]),
            [[stream, code]],
            seen,
          );
        }
        if (c.served) {
          // Stream output is framed after the PING's ACK: read on to the response's end.
          const isEnd = (f: Frame) =>
            f.type === T.HEADERS && f.stream === c.served && (f.flags & END_STREAM) !== 0;
          let end = frames.find(isEnd);
          while (!end) {
            const f = await p.frame();
            assert.ok(f, "not answered: " + seen);
            assert.ok(f.type !== T.RST && f.type !== T2.GOAWAY, describe(f));
            if (isEnd(f)) end = f;
          }
        }
        if (c.unserved) {
          // A served message is answered with HEADERS at once (its DATA follows).
          const answered = (f: Frame) =>
            (f.type === T.DATA || f.type === T.HEADERS) && f.stream === 1;
          assert.ok(!frames.some(answered), "served: " + seen);
        }
      } finally {
        p.close();
      }
    });
  });
}
