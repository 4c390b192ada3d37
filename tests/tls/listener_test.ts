/**
 * lib/tls/listener.ts with a real TLS peer: a `node:tls` client talks to a {@linkcode listenTls}
 * echo server (bytes both ways through the `ByteConn` adapter, large payloads included); a client
 * that never finishes its handshake is disconnected; {@linkcode TlsFiles} keeps the last good
 * material when a file breaks, reports it once, and picks up the repaired file.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { listenTls, loadTlsSupport, TlsFiles } from "../../lib/tls/listener.ts";
import { makeCerts } from "../security/certs.ts";

// TlsFiles checks certificates synchronously, with the TLS stack the agent loads lazily.
await loadTlsSupport();

Deno.test("tls listener: echo through ByteConn, 1 MiB each way; stalled handshakes are cut", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-tls-" }));
  const files = new TlsFiles({
    certFile: certs.serverCert,
    keyFile: certs.serverKey,
    clientAuth: "none",
    minVersion: "TLSv1.2",
  });
  files.load();
  const errors: string[] = [];
  const l = await listenTls({
    hostname: "127.0.0.1",
    port: 0,
    alpn: ["http/1.1"],
    handshakeTimeoutMs: 500,
    settings: () => files.current(),
    onClientError: (m) => errors.push(m),
  });
  const serving = (async () => {
    const conn = await l.accept();
    const buf = new Uint8Array(7000);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
    conn.close();
  })();
  try {
    // A node:tls client (the same stack as the server's peers in Deno) sends 1 MiB and reads it back.
    const payload = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) & 0xff);
    const echoed = await new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let got = 0;
      const s = tls.connect({
        host: "127.0.0.1",
        port: l.addr.port,
        servername: "localhost",
        ca: Deno.readTextFileSync(certs.caCert),
      }, () => s.write(payload));
      s.on("data", (d: Uint8Array) => {
        chunks.push(new Uint8Array(d));
        got += d.length;
        if (got >= payload.length) {
          s.end();
          const out = new Uint8Array(got);
          let o = 0;
          for (const c of chunks) (out.set(c, o), o += c.length);
          resolve(out);
        }
      });
      s.on("error", reject);
    });
    assert.equal(echoed.length, payload.length);
    assert.deepEqual(echoed, payload);
    await serving;

    // A TCP client that never sends a ClientHello is disconnected after the handshake timeout.
    const c = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
    const t0 = Date.now();
    const n = await Promise.race([
      c.read(new Uint8Array(16)).catch(() => null),
      new Promise((r) => setTimeout(() => r("still open"), 5000)),
    ]);
    assert.equal(n, null, "the stalled connection is closed");
    assert.ok(Date.now() - t0 < 4000);
    c.close();
    assert.ok(errors.some((e) => /timeout/i.test(e)), errors.join("; "));
  } finally {
    l.close();
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("tls files: a broken file keeps the last good material, reported once; a fixed file is used", async () => {
  const certs = makeCerts(await Deno.makeTempDir({ prefix: "sigma-tls-" }));
  const reports: string[] = [];
  const files = new TlsFiles({
    certFile: certs.serverCert,
    keyFile: certs.serverKey,
    clientAuth: "none",
    minVersion: "TLSv1.3",
  }, (m) => reports.push(m));
  try {
    const first = files.load();
    assert.equal(files.current(), first, "unchanged files are not re-read");
    const good = Deno.readTextFileSync(certs.serverKey);
    Deno.writeTextFileSync(certs.serverKey, "-----BEGIN PRIVATE KEY-----\nbroken\n");
    assert.equal(files.current(), first);
    assert.equal(files.current(), first);
    assert.equal(reports.length, 1, "reported once per change");
    assert.match(files.error!, /private key/);
    Deno.writeTextFileSync(certs.serverKey, good);
    const next = files.current();
    assert.notEqual(next, first);
    assert.ok(next.generation > first.generation);
    assert.equal(files.error, undefined);
    // The key of another certificate: refused, last good kept.
    Deno.copyFileSync(certs.clientKey, certs.serverKey);
    assert.equal(files.current(), next);
    assert.match(files.error!, /does not match/);
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});
