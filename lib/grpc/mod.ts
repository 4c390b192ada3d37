/**
 * The HTTP/2 gRPC transport: a general server of gRPC bidi-streaming methods over HTTP/2 (prior
 * knowledge, in cleartext or over TLS with ALPN `h2` through `lib/tls/`), with no xDS knowledge.
 * `lib/xds/` builds the ADS server on it.
 *
 * - `h2_server.ts`: connections and streams (RFC 9113: preface, SETTINGS, every frame type, the
 *   stream state machine of §5.1 with closed streams remembered by how they closed, flow control
 *   both ways, keepalive PINGs, limits and flood budgets) and `GrpcServer`, the listener;
 * - `h2_fields.ts`: when a request's header list is malformed (RFC 9113 §8.1-§8.3);
 * - `hpack.ts`: HPACK (RFC 7541), a full decoder and a static-table encoder;
 * - `call.ts`: gRPC calls and methods, status codes, `grpc-message` encoding, message framing.
 *
 * Errors follow RFC 9113 exactly: a stream error is a RST_STREAM with its code and the connection
 * goes on; a connection error is a GOAWAY with its code (and the last stream id), then close. The
 * conformance table - every MUST / MUST NOT of RFC 9113 §3-§8 and RFC 7541 a server is subject
 * to, what the server answers, and the test that proves it (`tests/grpc/h2_conformance_test.ts`,
 * one test per rule) - is in `docs/grpc-transport.md`, with the limits, the independent peers the
 * tests run (python3-h2, nghttp, h2load, grpc-js) and the load figures.
 *
 * Limits (each tested): preface within 5 s; 2048 connections; 100 concurrent streams per
 * connection (REFUSED_STREAM beyond); header blocks of 16 KiB and 32 CONTINUATION frames; per
 * connection and second 100 resets (the client's RST_STREAM, refused, malformed or answered-at-once
 * requests, our stream errors) and 200 PING / SETTINGS / PRIORITY / empty DATA frames, beyond
 * which GOAWAY ENHANCE_YOUR_CALM; request messages of 4 MiB; a PING after 30 s of silence, 10 s
 * for its ACK.
 *
 * May import: `tls` (the TLS listener, as general as this folder). The xDS server registers its
 * methods here; this folder never learns what they carry.
 *
 * @example
 * ```ts
 * import { GrpcServer } from "./mod.ts";
 * const server = new GrpcServer({
 *   methods: {
 *     "/echo.Echo/Chat": {
 *       decode: (b) => b,
 *       encode: (m: Uint8Array) => m,
 *       handle: (call) => call.onMessage((m) => call.write(m)),
 *     },
 *   },
 * });
 * await server.listen("127.0.0.1", 0);
 * await server.shutdown();
 * ```
 *
 * @module
 */

export { GrpcServer, H2ErrorCode, type H2ServerOptions } from "./h2_server.ts";
export {
  type BidiCall,
  type BidiMethod,
  frameMessage,
  FramingError,
  grpcMessageEncode,
  GrpcStatus,
  MessageReader,
} from "./call.ts";
export { encodeHeaders, type HeaderField, HpackDecoder, HpackError } from "./hpack.ts";
export { type RequestHead, requestHead, trailersProblem } from "./h2_fields.ts";
