/**
 * TLS for the agent's own servers, with no knowledge of what they serve: a `node:tls` listener
 * whose connections have the same small `read`/`write`/`close` shape (`ByteConn`) as a plain
 * `Deno.Conn`, client-certificate verification, and certificate files re-read when they change
 * (`listener.ts`). The HTTP/1.1 metrics port and the HTTP/2 xDS port both accept through it.
 *
 * May import: nothing else in `lib/`. It sits beside `grpc/` and `http/` as a general transport
 * piece.
 *
 * @example
 * ```ts
 * import { TlsFiles } from "./tls/mod.ts";
 * const files = new TlsFiles({ certFile: "/etc/sigma-agent/xds.crt", keyFile: "/etc/sigma-agent/xds.key" });
 * ```
 *
 * @module
 */
export { checkTlsSettings, listenTls, loadTlsSupport, TlsFiles } from "./listener.ts";
export type {
  ByteConn,
  ByteListener,
  ClientAuth,
  TlsFilePaths,
  TlsListenOptions,
  TlsSettings,
} from "./listener.ts";
