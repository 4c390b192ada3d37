/**
 * A general HTTP/2 gRPC server for bidi-streaming methods, with no xDS knowledge: the HTTP/2
 * connection and streams (`h2_server.ts`), header compression (`hpack.ts`, RFC 7541), and the
 * gRPC call interface, status codes and length-prefixed message framing (`call.ts`).
 *
 * May import: `tls` (the TLS listener, as general as this folder). The xDS server (`xds/server.ts`) registers its methods here;
 * this folder never learns what they carry.
 *
 * @example
 * ```ts
 * import { GrpcServer } from "./grpc/mod.ts";
 * const server = new GrpcServer({ methods: {} });
 * const port = await server.listen("127.0.0.1", 0);
 * await server.shutdown();
 * ```
 *
 * @module
 */
export { type BidiCall, type BidiMethod, frameMessage, GrpcStatus } from "./call.ts";
export { GrpcServer, H2ErrorCode } from "./h2_server.ts";
export type { H2ServerOptions } from "./h2_server.ts";
