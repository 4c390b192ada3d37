/**
 * Encodes `DiscoveryResponse` and `DeltaDiscoveryResponse` from resources serialized once.
 *
 * The resources themselves are serialized once, by the builders (protobuf-es), and shared by
 * every stream. Building a response with `toBinary` would walk every `google.protobuf.Any` again
 * for every stream; at a thousand streams that is most of a push. Here a response is written in
 * one pass into one buffer: the shared resource bytes copied behind a few length-delimited
 * headers (Any, Resource, strings), optionally behind the 5-byte gRPC message header so the
 * transport sends it without another copy. Nothing is cached per resource, so no memory is held
 * beyond the builders' bytes. The output is byte-for-byte what protobuf-es `toBinary` gives for
 * the equivalent generated message (fields in field-number order), which `tests/xds/wire_test.ts`
 * checks.
 *
 * @example
 * ```ts
 * import { encodeSotwResponse } from "./wire.ts";
 * const bytes = encodeSotwResponse({
 *   version: "3", resources: [], typeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
 *   nonce: "n1", controlPlane: "sigma-agent/0.1.0",
 * });
 * ```
 *
 * @module
 */

import type { XdsResource } from "./cache.ts";

const encoder = new TextEncoder();

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Size of a length-delimited field with a `len`-byte payload (one-byte key: field numbers < 16). */
function fieldSize(len: number): number {
  return 1 + varintSize(len) + len;
}

// Strings repeated across responses (type URLs, versions, the control plane) are encoded once.
const stringCache = new Map<string, Uint8Array>();
function utf8(s: string): Uint8Array {
  let b = stringCache.get(s);
  if (!b) {
    if (stringCache.size > 4096) stringCache.clear();
    stringCache.set(s, b = encoder.encode(s));
  }
  return b;
}

/** A cursor over one output buffer. */
class Out {
  readonly buf: Uint8Array;
  off: number;

  constructor(size: number, grpcFrame: boolean) {
    const head = grpcFrame ? 5 : 0;
    this.buf = new Uint8Array(head + size);
    if (grpcFrame) new DataView(this.buf.buffer).setUint32(1, size);
    this.off = head;
  }

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.off++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.off++] = n;
  }

  /** Key and length of a length-delimited field. */
  header(fieldNumber: number, len: number): void {
    this.buf[this.off++] = (fieldNumber << 3) | 2;
    this.varint(len);
  }

  bytes(b: Uint8Array): void {
    if (b.length < 64) { for (let i = 0; i < b.length; i++) this.buf[this.off + i] = b[i]; }
    else this.buf.set(b, this.off);
    this.off += b.length;
  }

  /** A bytes/string field; proto3 omits it when empty unless `keepEmpty` (repeated fields). */
  field(fieldNumber: number, b: Uint8Array, keepEmpty = false): void {
    if (b.length === 0 && !keepEmpty) return;
    this.header(fieldNumber, b.length);
    this.bytes(b);
  }
}

/** `google.protobuf.Any` payload size: 1 type_url, 2 value. */
function anySize(r: XdsResource): number {
  const tu = utf8(r.any.typeUrl).length, v = r.any.value.length;
  return (tu ? fieldSize(tu) : 0) + (v ? fieldSize(v) : 0);
}

function writeAny(out: Out, fieldNumber: number, r: XdsResource, size: number): void {
  out.header(fieldNumber, size);
  out.field(1, utf8(r.any.typeUrl));
  out.field(2, r.any.value);
}

/** Fields of a state-of-the-world response. */
export interface SotwResponseFields {
  version: string;
  resources: readonly XdsResource[];
  typeUrl: string;
  nonce: string;
  /** `control_plane.identifier`; empty = no control_plane field. */
  controlPlane: string;
}

function optionalFieldSize(b: Uint8Array): number {
  return b.length ? fieldSize(b.length) : 0;
}

/**
 * Serializes a `DiscoveryResponse` (fields 1 version_info, 2 resources, 4 type_url, 5 nonce,
 * 6 control_plane). With `grpcFrame`, the result starts with the 5-byte gRPC message header.
 */
export function encodeSotwResponse(f: SotwResponseFields, grpcFrame = false): Uint8Array {
  const version = utf8(f.version), typeUrl = utf8(f.typeUrl), nonce = encoder.encode(f.nonce);
  const cp = f.controlPlane ? utf8(f.controlPlane) : undefined;
  const cpSize = cp ? optionalFieldSize(cp) : 0;
  const sizes = f.resources.map(anySize);
  let size = optionalFieldSize(version) + optionalFieldSize(typeUrl) + optionalFieldSize(nonce);
  for (const n of sizes) size += fieldSize(n);
  if (cp) size += fieldSize(cpSize);
  const out = new Out(size, grpcFrame);
  out.field(1, version);
  f.resources.forEach((r, i) => writeAny(out, 2, r, sizes[i]));
  out.field(4, typeUrl);
  out.field(5, nonce);
  if (cp) {
    out.header(6, cpSize);
    out.field(1, cp);
  }
  return out.buf;
}

/** Fields of an incremental response. */
export interface DeltaResponseFields {
  systemVersion: string;
  resources: readonly XdsResource[];
  typeUrl: string;
  nonce: string;
  removed: readonly string[];
  controlPlane: string;
}

/**
 * Serializes a `DeltaDiscoveryResponse` (fields 1 system_version_info, 2 resources, 4 type_url,
 * 5 nonce, 6 removed_resources, 7 control_plane); each resource is a `Resource` (1 version = the
 * content hash, 2 resource = the Any, 3 name). With `grpcFrame`, the result starts with the 5-byte
 * gRPC message header.
 */
export function encodeDeltaResponse(f: DeltaResponseFields, grpcFrame = false): Uint8Array {
  const version = utf8(f.systemVersion), typeUrl = utf8(f.typeUrl), nonce = encoder.encode(f.nonce);
  const cp = f.controlPlane ? utf8(f.controlPlane) : undefined;
  const cpSize = cp ? optionalFieldSize(cp) : 0;
  const parts = f.resources.map((r) => {
    const hash = encoder.encode(r.hash), name = encoder.encode(r.name), any = anySize(r);
    return {
      r,
      hash,
      name,
      any,
      size: optionalFieldSize(hash) + fieldSize(any) + optionalFieldSize(name),
    };
  });
  const removed = f.removed.map((n) => encoder.encode(n));
  let size = optionalFieldSize(version) + optionalFieldSize(typeUrl) + optionalFieldSize(nonce);
  for (const p of parts) size += fieldSize(p.size);
  for (const b of removed) size += fieldSize(b.length);
  if (cp) size += fieldSize(cpSize);
  const out = new Out(size, grpcFrame);
  out.field(1, version);
  for (const p of parts) {
    out.header(2, p.size);
    out.field(1, p.hash);
    writeAny(out, 2, p.r, p.any);
    out.field(3, p.name);
  }
  out.field(4, typeUrl);
  out.field(5, nonce);
  for (const b of removed) out.field(6, b, true); // repeated strings keep empty entries
  if (cp) {
    out.header(7, cpSize);
    out.field(1, cp);
  }
  return out.buf;
}
