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

/** Bytes of the varint encoding of `n` (a non-negative integer up to 2^53). */
export function varintSize(n: number): number {
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

// Responses are carved out of shared slabs: one allocation per slab instead of one off-heap
// buffer per response (the allocation, not the copying, is most of a small response's cost). A
// region is never written again once returned, so a slab lives until its last response is sent;
// large responses get their own buffer so a stuck stream cannot pin more than one small slab.
const SLAB_BYTES = 16 * 1024;
let slab = new Uint8Array(0);
let slabOff = 0;

function allocate(n: number): Uint8Array {
  if (n > SLAB_BYTES / 4) return new Uint8Array(n);
  if (slab.length - slabOff < n) {
    slab = new Uint8Array(SLAB_BYTES);
    slabOff = 0;
  }
  const b = slab.subarray(slabOff, slabOff + n);
  slabOff += n;
  return b;
}

/** UTF-8 length of `s`, or -1 when it is not all ASCII (then it needs a `TextEncoder`). */
function asciiLength(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return -1;
  return s.length;
}

/** A string to write: itself when ASCII (its length is its byte length), else its UTF-8 bytes. */
export type Text = string | Uint8Array;

/** Nonces, hashes and names are ASCII in practice: write them without a `TextEncoder` call. */
export function text(s: string): Text {
  return asciiLength(s) >= 0 ? s : encoder.encode(s);
}

/**
 * A protobuf writer over a buffer the caller sized exactly (the resource builders use it too).
 *
 * @example
 * ```ts
 * import { ProtoCursor } from "./wire.ts";
 * const c = new ProtoCursor(new Uint8Array(4));
 * c.text(1, "ab"); // bytes 0a 02 61 62
 * ```
 */
export class ProtoCursor {
  readonly buf: Uint8Array;
  off: number;

  constructor(buf: Uint8Array, off = 0) {
    this.buf = buf;
    this.off = off;
  }

  /** A string field from {@linkcode text}; omitted when empty unless `keepEmpty`. */
  text(fieldNumber: number, t: Text, keepEmpty = false): void {
    if (typeof t !== "string") return this.field(fieldNumber, t, keepEmpty);
    if (t.length === 0 && !keepEmpty) return;
    this.header(fieldNumber, t.length);
    for (let i = 0; i < t.length; i++) this.buf[this.off + i] = t.charCodeAt(i);
    this.off += t.length;
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
    this.varint((fieldNumber << 3) | 2);
    this.varint(len);
  }

  /** A varint field, always written (callers leave out proto3 defaults themselves). */
  uint(fieldNumber: number, n: number): void {
    this.varint(fieldNumber << 3);
    this.varint(n);
  }

  bytes(b: Uint8Array): void {
    // A byte loop beats the call into `set` only for a few bytes.
    if (b.length < 16) { for (let i = 0; i < b.length; i++) this.buf[this.off + i] = b[i]; }
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

/** A response buffer carved from the slabs, optionally behind the 5-byte gRPC message header. */
class Out extends ProtoCursor {
  constructor(size: number, grpcFrame: boolean) {
    const head = grpcFrame ? 5 : 0;
    super(allocate(head + size), head);
    if (grpcFrame) {
      // Flag 0 (uncompressed), then the big-endian length.
      this.buf[0] = 0;
      this.buf[1] = size >>> 24;
      this.buf[2] = (size >>> 16) & 0xff;
      this.buf[3] = (size >>> 8) & 0xff;
      this.buf[4] = size & 0xff;
    }
  }
}

// `Any.type_url` as an encoded field (key, length, bytes), made once per type URL: every resource
// of a response carries the same one.
const typeUrlFields = new Map<string, Uint8Array>();
let lastTypeUrl = "";
let lastTypeUrlField: Uint8Array = new Uint8Array(0);
function typeUrlField(typeUrl: string): Uint8Array {
  if (typeUrl === lastTypeUrl) return lastTypeUrlField;
  lastTypeUrl = typeUrl;
  return lastTypeUrlField = typeUrlFieldOf(typeUrl);
}
function typeUrlFieldOf(typeUrl: string): Uint8Array {
  let b = typeUrlFields.get(typeUrl);
  if (!b) {
    if (typeUrlFields.size > 64) typeUrlFields.clear();
    const s = encoder.encode(typeUrl);
    const out = new Out(s.length ? fieldSize(s.length) : 0, false);
    out.field(1, s);
    typeUrlFields.set(typeUrl, b = out.buf);
  }
  return b;
}

/** `google.protobuf.Any` payload size: 1 type_url, 2 value. */
function anySize(r: XdsResource): number {
  const v = r.bytes.length;
  return typeUrlField(r.typeUrl).length + (v ? fieldSize(v) : 0);
}

function writeAny(out: Out, fieldNumber: number, r: XdsResource, size: number): void {
  out.header(fieldNumber, size);
  out.bytes(typeUrlField(r.typeUrl));
  out.field(2, r.bytes);
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

function optionalFieldSize(b: Text): number {
  return b.length ? fieldSize(b.length) : 0;
}

/**
 * Serializes a `DiscoveryResponse` (fields 1 version_info, 2 resources, 4 type_url, 5 nonce,
 * 6 control_plane). With `grpcFrame`, the result starts with the 5-byte gRPC message header.
 */
export function encodeSotwResponse(f: SotwResponseFields, grpcFrame = false): Uint8Array {
  const version = utf8(f.version), typeUrl = utf8(f.typeUrl), nonce = text(f.nonce);
  const cp = f.controlPlane ? utf8(f.controlPlane) : undefined;
  const cpSize = cp ? optionalFieldSize(cp) : 0;
  let size = optionalFieldSize(version) + optionalFieldSize(typeUrl) + optionalFieldSize(nonce);
  for (const r of f.resources) size += fieldSize(anySize(r));
  if (cp) size += fieldSize(cpSize);
  const out = new Out(size, grpcFrame);
  out.field(1, version);
  for (const r of f.resources) writeAny(out, 2, r, anySize(r));
  out.field(4, typeUrl);
  out.text(5, nonce);
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
  const version = utf8(f.systemVersion), typeUrl = utf8(f.typeUrl), nonce = text(f.nonce);
  const cp = f.controlPlane ? utf8(f.controlPlane) : undefined;
  const cpSize = cp ? optionalFieldSize(cp) : 0;
  const parts = f.resources.map((r) => {
    const hash = text(r.hash), name = text(r.name), any = anySize(r);
    return {
      r,
      hash,
      name,
      any,
      size: optionalFieldSize(hash) + fieldSize(any) + optionalFieldSize(name),
    };
  });
  const removed = f.removed.map(text);
  let size = optionalFieldSize(version) + optionalFieldSize(typeUrl) + optionalFieldSize(nonce);
  for (const p of parts) size += fieldSize(p.size);
  for (const b of removed) size += fieldSize(b.length);
  if (cp) size += fieldSize(cpSize);
  const out = new Out(size, grpcFrame);
  out.field(1, version);
  for (const p of parts) {
    out.header(2, p.size);
    out.text(1, p.hash);
    writeAny(out, 2, p.r, p.any);
    out.text(3, p.name);
  }
  out.field(4, typeUrl);
  out.text(5, nonce);
  for (const b of removed) out.text(6, b, true); // repeated strings keep empty entries
  if (cp) {
    out.header(7, cpSize);
    out.field(1, cp);
  }
  return out.buf;
}
