/**
 * Test certificates made with Debian's `openssl`: X.509 v3 with the right extended key usage
 * (rustls-based TLS refuses v1 certificates). Two independent CAs, so tests can present a client
 * certificate signed by the wrong one.
 *
 * @example
 * ```ts
 * import { makeCerts } from "./certs.ts";
 * const c = await makeCerts(await Deno.makeTempDir());
 * // c.serverCert, c.serverKey, c.caCert, c.clientCert, c.clientKey, c.otherClientCert …
 * ```
 *
 * @module
 */

/** Paths of the generated PEM files. */
export interface TestCerts {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second, unrelated CA and a client certificate it signed (the "wrong CA"). */
  otherCaCert: string;
  otherClientCert: string;
  otherClientKey: string;
}

function openssl(args: string[], cwd: string): void {
  const out = new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .outputSync();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** `openssl req` arguments for a new P-256 key `name.key` and subject `CN=name`. */
function newKey(name: string): string[] {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  return ["req", ...ec, "-keyout", `${name}.key`, "-subj", `/CN=${name}`];
}

/** Makes a CA (key + self-signed v3 certificate) named `name` in `dir`. */
export function makeCa(dir: string, name: string): void {
  openssl([
    ...newKey(name),
    "-x509",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
}

/** Makes a leaf certificate `name` signed by CA `ca` for `usage` (serverAuth or clientAuth). */
export function makeLeaf(
  dir: string,
  name: string,
  ca: string,
  usage: "serverAuth" | "clientAuth",
): void {
  openssl([...newKey(name), "-out", `${name}.csr`], dir);
  const ext = [
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usage}`,
    usage === "serverAuth"
      ? "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
      : `subjectAltName=DNS:${name}`,
  ].join("\n");
  Deno.writeTextFileSync(`${dir}/${name}.ext`, ext + "\n");
  openssl([
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-extfile",
    `${name}.ext`,
  ], dir);
}

/** Generates every certificate of {@linkcode TestCerts} into `dir`. */
export function makeCerts(dir: string): TestCerts {
  makeCa(dir, "ca");
  makeLeaf(dir, "server", "ca", "serverAuth");
  makeLeaf(dir, "client", "ca", "clientAuth");
  makeCa(dir, "other-ca");
  makeLeaf(dir, "other-client", "other-ca", "clientAuth");
  return {
    dir,
    caCert: `${dir}/ca.crt`,
    caKey: `${dir}/ca.key`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    otherCaCert: `${dir}/other-ca.crt`,
    otherClientCert: `${dir}/other-client.crt`,
    otherClientKey: `${dir}/other-client.key`,
  };
}
