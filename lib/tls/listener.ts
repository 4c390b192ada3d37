/**
 * A TLS listener for the agent's own servers (the HTTP/1.1 metrics port and the HTTP/2 xDS port),
 * built on a `node:tls` server because `Deno.listenTls` cannot require or verify client
 * certificates. Accepted connections are wrapped in {@linkcode ByteConn}, the small
 * `read`/`write`/`close` shape both servers already use for `Deno.Conn`, so the servers need no
 * TLS knowledge.
 *
 * Certificates are re-read when their files change: before each new connection the listener asks
 * {@linkcode TlsListenOptions.settings} for the current settings (callers cache them and stat the
 * files), and a new generation is installed with `setSecureContext` for that connection and the
 * next ones. Connections that are up keep their session.
 *
 * Client authentication: `"none"`; `"require"` (a certificate signed by the client CA is required,
 * others are refused during the handshake); `"verify_if_given"` (no certificate is fine, a
 * certificate that does not verify is refused).
 *
 * @example
 * ```ts
 * import { listenTls } from "./listener.ts";
 * // const l = await listenTls({ hostname: "127.0.0.1", port: 0, alpn: ["h2"], settings: () => s });
 * // const conn = await l.accept(); await conn.write(new Uint8Array([1])); conn.close(); l.close();
 * ```
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import type net from "node:net";
import type tls from "node:tls";
import type { KeyObject, X509Certificate } from "node:crypto";

// node:tls and node:crypto cost about 12 MB of resident memory once imported, so an agent without
// TLS never loads them: `loadTlsSupport` imports them the first time TLS is configured.
let nodeTls: typeof import("node:tls") | undefined;
let nodeCrypto: typeof import("node:crypto") | undefined;

/**
 * Loads the TLS stack (`node:tls`, `node:crypto`). {@linkcode listenTls} does it itself; call it
 * before the synchronous {@linkcode checkTlsSettings} or {@linkcode TlsFiles.load}.
 *
 * @example
 * ```ts
 * import { loadTlsSupport } from "./listener.ts";
 * await loadTlsSupport();
 * ```
 */
export async function loadTlsSupport(): Promise<void> {
  nodeTls ??= await import("node:tls");
  nodeCrypto ??= await import("node:crypto");
}

function loaded(): { tls: typeof import("node:tls"); crypto: typeof import("node:crypto") } {
  if (!nodeTls || !nodeCrypto) throw new Error("TLS support is not loaded (loadTlsSupport)");
  return { tls: nodeTls, crypto: nodeCrypto };
}

/** The connection shape the agent's servers use (a subset of `Deno.Conn`). */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  readonly remoteAddr: Deno.NetAddr;
  setNoDelay(noDelay?: boolean): void;
}

/** A listener that yields {@linkcode ByteConn}s (a subset of `Deno.Listener`). */
export interface ByteListener {
  accept(): Promise<ByteConn>;
  close(): void;
  readonly addr: Deno.NetAddr;
}

/** How clients authenticate. */
export type ClientAuth = "none" | "require" | "verify_if_given";

/** PEM material and policy of one generation of the TLS settings. */
export interface TlsSettings {
  cert: string;
  key: string;
  /** Client CA bundle (PEM); required unless `clientAuth` is `"none"`. */
  clientCa?: string;
  clientAuth: ClientAuth;
  minVersion: "TLSv1.2" | "TLSv1.3";
  maxVersion?: "TLSv1.2" | "TLSv1.3";
  /** Changes whenever the material changes (e.g. a counter bumped on reload). */
  generation: number;
}

/** Options of {@linkcode listenTls}. */
export interface TlsListenOptions {
  hostname: string;
  port: number;
  /** ALPN protocols offered, e.g. `["h2"]` or `["http/1.1"]`. */
  alpn: string[];
  /** The current settings; called once per accepted TCP connection, so keep it cheap. */
  settings: () => TlsSettings;
  /** A client failed the handshake (no or wrong certificate, old TLS version...). */
  onClientError?: (message: string, remote: string) => void;
  /** Time a client has to finish the handshake (default 10 s). */
  handshakeTimeoutMs?: number;
}

/** Checks that `s` can be installed (PEM parses, key matches the certificate); throws otherwise. */
export function checkTlsSettings(s: TlsSettings): void {
  const { tls, crypto } = loaded();
  let leaf: X509Certificate;
  try {
    leaf = new crypto.X509Certificate(s.cert);
  } catch (e) {
    throw new Error(`certificate is not a PEM X.509 certificate: ${(e as Error).message}`);
  }
  let key: KeyObject;
  try {
    key = crypto.createPrivateKey(s.key);
  } catch (e) {
    throw new Error(`private key is not a PEM private key: ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key)) throw new Error("the private key does not match the certificate");
  if (s.clientCa !== undefined) {
    try {
      new crypto.X509Certificate(s.clientCa);
    } catch (e) {
      throw new Error(`client CA is not a PEM X.509 certificate: ${(e as Error).message}`);
    }
  }
  tls.createSecureContext(contextOptions(s));
}

function contextOptions(s: TlsSettings): tls.SecureContextOptions {
  return {
    cert: s.cert,
    key: s.key,
    ca: s.clientCa,
    minVersion: s.minVersion,
    maxVersion: s.maxVersion,
  };
}

const HIGH_WATER = 256 * 1024;

/** A TLS socket with the `Deno.Conn` reading and writing shape. */
class SocketConn implements ByteConn {
  readonly #sock: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly remoteAddr: Deno.NetAddr;

  constructor(sock: tls.TLSSocket) {
    this.#sock = sock;
    this.remoteAddr = {
      transport: "tcp",
      hostname: sock.remoteAddress ?? "",
      port: sock.remotePort ?? 0,
    };
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    sock.on("data", (d: Buffer) => {
      this.#chunks.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      this.#queued += d.byteLength;
      if (this.#queued > HIGH_WATER) sock.pause();
      wake();
    });
    const end = () => {
      this.#ended = true;
      wake();
    };
    sock.on("end", end);
    sock.on("close", end);
    sock.on("error", end);
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const head = this.#chunks[0];
    const n = Math.min(p.length, head.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    this.#queued -= n;
    if (this.#queued <= HIGH_WATER && this.#sock.isPaused()) this.#sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#ended || this.#sock.destroyed) {
      return Promise.reject(new Deno.errors.BrokenPipe("connection closed"));
    }
    return new Promise((resolve, reject) => {
      this.#sock.write(p, (err) => (err ? reject(err) : resolve(p.length)));
    });
  }

  close(): void {
    this.#ended = true;
    this.#sock.destroy();
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  setNoDelay(noDelay = true): void {
    this.#sock.setNoDelay(noDelay);
  }
}

/**
 * Binds `hostname:port` and serves TLS with the current {@linkcode TlsSettings}.
 *
 * @throws when the settings are invalid or the address cannot be bound
 */
export async function listenTls(opts: TlsListenOptions): Promise<ByteListener> {
  await loadTlsSupport();
  const { tls } = loaded();
  let current = opts.settings();
  const policy = (s: TlsSettings) => ({
    requestCert: s.clientAuth !== "none",
    rejectUnauthorized: s.clientAuth === "require",
  });
  const server = tls.createServer({
    ...contextOptions(current),
    ...policy(current),
    ALPNProtocols: opts.alpn,
    handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
  });
  // Runs before the TLS server's own connection handler: the new settings apply to this
  // connection's handshake already.
  server.prependListener("connection", () => {
    let next: TlsSettings;
    try {
      next = opts.settings();
    } catch {
      return; // the caller reports its own reload errors and keeps the last good settings
    }
    if (next.generation === current.generation) return;
    try {
      server.setSecureContext(contextOptions(next));
      current = next;
    } catch (e) {
      opts.onClientError?.(`new TLS settings not installed: ${(e as Error).message}`, "");
    }
  });

  const ready: tls.TLSSocket[] = [];
  const waiting: { resolve: (c: ByteConn) => void; reject: (e: Error) => void }[] = [];
  let closed = false;

  server.on("secureConnection", (sock: tls.TLSSocket) => {
    // verify_if_given: a certificate was offered but does not chain to the client CA.
    if (current.clientAuth === "verify_if_given" && !sock.authorized) {
      const peer = sock.getPeerCertificate();
      if (peer && Object.keys(peer).length > 0) {
        opts.onClientError?.(
          `client certificate not trusted: ${sock.authorizationError ?? "unknown CA"}`,
          sock.remoteAddress ?? "",
        );
        sock.destroy();
        return;
      }
    }
    const w = waiting.shift();
    if (w) w.resolve(new SocketConn(sock));
    else ready.push(sock);
  });
  server.on("tlsClientError", (e: Error, sock: tls.TLSSocket) => {
    opts.onClientError?.(e.message, sock?.remoteAddress ?? "");
    // Deno reports a handshake timeout without closing the socket: a client that never finishes
    // its handshake must not hold a connection for ever.
    sock?.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: opts.hostname, port: opts.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", () => {}); // accept errors (EMFILE...) must not crash the process
  const a = server.address() as net.AddressInfo;
  const addr: Deno.NetAddr = { transport: "tcp", hostname: a.address, port: a.port };

  return {
    addr,
    accept(): Promise<ByteConn> {
      if (closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
      const sock = ready.shift();
      if (sock) return Promise.resolve(new SocketConn(sock));
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    close(): void {
      if (closed) return;
      closed = true;
      server.close();
      for (const s of ready.splice(0)) s.destroy();
      for (const w of waiting.splice(0)) w.reject(new Deno.errors.BadResource("listener closed"));
    },
  };
}

/** Paths of the PEM files behind {@linkcode TlsSettings}, plus the policy. */
export interface TlsFilePaths {
  certFile: string;
  keyFile: string;
  clientCaFile?: string;
  clientAuth: ClientAuth;
  minVersion: "TLSv1.2" | "TLSv1.3";
  maxVersion?: "TLSv1.2" | "TLSv1.3";
}

function fingerprint(path: string): string {
  const st = Deno.statSync(path);
  return `${st.ino}:${st.size}:${st.mtime?.getTime()}`;
}

/**
 * TLS settings read from files and re-read when a file changes (inode, size or mtime), at most
 * once per connection. A change that cannot be loaded (unreadable, half-written, key not matching
 * the certificate) keeps the last good settings and is reported through `onError` once per change.
 *
 * @example
 * ```ts
 * import { TlsFiles } from "./listener.ts";
 * const files = new TlsFiles({ certFile: "/etc/sigma-agent/tls.crt", keyFile: "/etc/sigma-agent/tls.key",
 *   clientAuth: "none", minVersion: "TLSv1.2" });
 * // files.load() at start (throws on a bad file), then listenTls({ settings: () => files.current() })
 * ```
 */
export class TlsFiles {
  #paths: TlsFilePaths;
  #settings: TlsSettings | undefined;
  #seen = "";
  #generation = 0;
  /** The last reload error, or undefined when the files in use are current. */
  error: string | undefined;
  /** When the settings in use were loaded. */
  loadedAt: Date | undefined;

  constructor(paths: TlsFilePaths, readonly onError?: (message: string) => void) {
    this.#paths = paths;
  }

  /** The paths and policy in use. */
  get paths(): TlsFilePaths {
    return this.#paths;
  }

  #files(): string[] {
    const p = this.#paths;
    return [p.certFile, p.keyFile, ...(p.clientCaFile ? [p.clientCaFile] : [])];
  }

  /** Loads the files now; throws with a message naming the file on failure. */
  load(): TlsSettings {
    const p = this.#paths;
    const read = (what: string, path: string) => {
      try {
        return Deno.readTextFileSync(path);
      } catch (e) {
        throw new Error(`cannot read ${what} ${path}: ${(e as Error).message}`);
      }
    };
    const seen = this.#files().map((f) => {
      try {
        return fingerprint(f);
      } catch {
        return "";
      }
    }).join("|");
    const next: TlsSettings = {
      cert: read("certificate", p.certFile),
      key: read("private key", p.keyFile),
      clientCa: p.clientCaFile ? read("client CA", p.clientCaFile) : undefined,
      clientAuth: p.clientAuth,
      minVersion: p.minVersion,
      maxVersion: p.maxVersion,
      generation: this.#generation + 1,
    };
    try {
      checkTlsSettings(next);
    } catch (e) {
      throw new Error(
        `invalid TLS material (${p.certFile}, ${p.keyFile}${
          p.clientCaFile ? `, ${p.clientCaFile}` : ""
        }): ${(e as Error).message}`,
      );
    }
    this.#generation++;
    this.#settings = next;
    this.#seen = seen;
    this.error = undefined;
    this.loadedAt = new Date();
    return next;
  }

  /** Switches to other paths (web config reload); throws and keeps the old ones on failure. */
  replace(paths: TlsFilePaths): void {
    const old = this.#paths;
    this.#paths = paths;
    try {
      this.load();
    } catch (e) {
      this.#paths = old;
      throw e;
    }
  }

  /** The current settings, re-read first when a file changed since the last load. */
  current(): TlsSettings {
    let seen: string;
    try {
      seen = this.#files().map(fingerprint).join("|");
    } catch (e) {
      seen = `missing:${(e as Error).message}`;
    }
    if (seen !== this.#seen || !this.#settings) {
      try {
        return this.load();
      } catch (e) {
        const message = (e as Error).message;
        if (this.#seen !== seen) this.onError?.(message);
        this.#seen = seen; // report once per change
        this.error = message;
        if (!this.#settings) throw e;
      }
    }
    return this.#settings;
  }
}
