/**
 * Decodes `DiscoveryRequest` and `DeltaDiscoveryRequest` straight into the plain shapes the
 * protocol state machine reads ({@linkcode SotwRequest}, {@linkcode DeltaRequest}), reading only
 * the fields it uses.
 *
 * Why not protobuf-es `fromBinary`: Envoy sends its whole `Node` (build version, metadata, and a
 * list of every compiled-in extension: several KB) on every request unless its bootstrap sets
 * `set_node_on_first_message_only`. A generic decoder builds all of that into objects on every
 * ACK, from a thousand Envoys at once after a change; here everything in `Node` but its `id` is
 * skipped without allocating. Field numbers are those of
 * `envoy/service/discovery/v3/discovery.proto` (and `google/rpc/status.proto`); the tests check
 * the result against protobuf-es on random messages and on messages encoded with the upstream
 * Envoy protos.
 *
 * Malformed input (truncated fields, a known field with the wrong wire type, lengths past the
 * end, groups out of order) throws a `RangeError` or `TypeError` naming the problem.
 *
 * @example
 * ```ts
 * import { decodeSotwRequest } from "./requests.ts";
 * // type_url = "t", response_nonce = "n"
 * const req = decodeSotwRequest(new Uint8Array([0x22, 1, 0x74, 0x2a, 1, 0x6e]));
 * req.typeUrl; // "t"
 * req.nodeId; // ""
 * ```
 *
 * @module
 */

import type { DeltaRequest, ErrorDetail, SotwRequest } from "./protocol.ts";

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

/** Unknown groups nested deeper than this are refused (protobuf's own recursion limit is 100). */
const MAX_GROUP_DEPTH = 32;

const utf8 = new TextDecoder();

/** Strings up to this many bytes that are plain ASCII are built without `TextDecoder`. */
const SHORT_ASCII = 16;

/**
 * Strings a request repeats (its type URL, mostly): decoded once, then recognised by their bytes,
 * so an ACK costs no string for them. Bounded; cleared when full.
 */
const known = new Map<number, { bytes: Uint8Array; text: string }[]>();
let knownCount = 0;
const MAX_KNOWN = 32;

/** The string a request repeats for `buf[start, end)`, or `undefined`. */
function knownString(buf: Uint8Array, start: number, end: number): string | undefined {
  const list = known.get(end - start);
  if (!list) return undefined;
  outer: for (const k of list) {
    const b = k.bytes;
    for (let i = 0; i < b.length; i++) if (b[i] !== buf[start + i]) continue outer;
    return k.text;
  }
  return undefined;
}

function remember(buf: Uint8Array, start: number, end: number, text: string): void {
  if (knownCount >= MAX_KNOWN) {
    known.clear();
    knownCount = 0;
  }
  const entry = { bytes: buf.slice(start, end), text };
  const list = known.get(end - start);
  if (list) list.push(entry);
  else known.set(end - start, [entry]);
  knownCount++;
}

/** UTF-8 `buf[start, end)` as `TextDecoder` gives it; short ASCII without a view or a call out. */
function decodeText(buf: Uint8Array, start: number, end: number): string {
  if (start === end) return "";
  if (end - start <= SHORT_ASCII) {
    let s = "";
    for (let i = start; i < end; i++) {
      const b = buf[i];
      if (b >= 0x80) return utf8.decode(buf.subarray(start, end));
      s += String.fromCharCode(b);
    }
    return s;
  }
  return utf8.decode(buf.subarray(start, end));
}

/** A cursor over one message (or a sub-message: `end` is its end). */
class Reader {
  readonly buf: Uint8Array;
  pos: number;
  readonly end: number;
  /** Wire type of the last {@linkcode Reader.tag}. */
  wire = 0;
  /** Start of the last {@linkcode Reader.lengthDelimited} payload (it ends at `pos`). */
  start = 0;

  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a number; exact up to 2^53, which covers every length and tag. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeError("truncated varint");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new RangeError("invalid varint");
  }

  /** A varint as int32 (the low 32 bits, two's complement), as protobuf reads `int32`. */
  int32(): number {
    const start = this.pos;
    this.varint(); // validates and advances
    let low = 0;
    for (let i = 0, shift = 0; i < 5 && start + i < this.pos; i++, shift += 7) {
      low |= (this.buf[start + i] & 0x7f) << shift;
    }
    return low | 0;
  }

  /** Skips a length-delimited payload: its bounds are then `[start, pos)`. */
  lengthDelimited(): void {
    const len = this.varint();
    if (len > this.end - this.pos) throw new RangeError("length past the end of the message");
    this.start = this.pos;
    this.pos += len;
  }

  string(): string {
    this.lengthDelimited();
    return decodeText(this.buf, this.start, this.pos);
  }

  /** A string the client repeats on every request (a type URL): recognised by its bytes. */
  repeatedString(): string {
    this.lengthDelimited();
    const start = this.start, end = this.pos;
    const hit = knownString(this.buf, start, end);
    if (hit !== undefined) return hit;
    const text = decodeText(this.buf, start, end);
    remember(this.buf, start, end, text);
    return text;
  }

  /** Reads a tag: returns the field number, the wire type is then in `wire`. */
  tag(): number {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new RangeError("field number 0");
    this.wire = tag & 7;
    return field;
  }

  /** Skips the value of a field we do not read. */
  skip(fieldNumber: number, wireType: number, depth = 0): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      case WIRE_START_GROUP: {
        if (depth >= MAX_GROUP_DEPTH) throw new RangeError("groups nested too deep");
        while (true) {
          if (this.done) throw new RangeError("unterminated group");
          const f = this.tag();
          const w = this.wire;
          if (w === WIRE_END_GROUP) {
            if (f !== fieldNumber) throw new RangeError("mismatched end of group");
            return;
          }
          this.skip(f, w, depth + 1);
        }
      }
      default:
        throw new RangeError(`unexpected wire type ${wireType} (field ${fieldNumber})`);
    }
  }

  advance(n: number): void {
    if (n > this.end - this.pos) throw new RangeError("truncated fixed-width field");
    this.pos += n;
  }
}

function expect(wireType: number, wanted: number, field: string): void {
  if (wireType !== wanted) {
    throw new TypeError(`field ${field} has wire type ${wireType}, expected ${wanted}`);
  }
}

/** Reads a sub-message field's bounds and hands a reader over it to `read`. */
function subMessage<T>(r: Reader, wireType: number, field: string, read: (sub: Reader) => T): T {
  expect(wireType, WIRE_LEN, field);
  r.lengthDelimited();
  return read(new Reader(r.buf, r.start, r.pos));
}

/** `Node.id` (field 1); everything else in `Node` is skipped. Repeated `node` fields merge. */
function readNodeId(r: Reader, previous: string): string {
  let id = previous;
  while (!r.done) {
    const f = r.tag();
    const w = r.wire;
    if (f === 1) id = stringField(r, w, "node.id");
    else r.skip(f, w);
  }
  return id;
}

/** `google.rpc.Status`: 1 code, 2 message (3 details skipped). Repeated fields merge. */
function readStatus(r: Reader, previous: ErrorDetail | undefined): ErrorDetail {
  const status = { code: previous?.code ?? 0, message: previous?.message ?? "" };
  while (!r.done) {
    const f = r.tag();
    const w = r.wire;
    if (f === 1) {
      expect(w, WIRE_VARINT, "error_detail.code");
      status.code = r.int32();
    } else if (f === 2) status.message = stringField(r, w, "error_detail.message");
    else r.skip(f, w);
  }
  return status;
}

/** One `map<string, string>` entry: 1 key, 2 value. */
function readMapEntry(r: Reader): [string, string] {
  let key = "", value = "";
  while (!r.done) {
    const f = r.tag();
    const w = r.wire;
    if (f === 1) key = stringField(r, w, "initial_resource_versions.key");
    else if (f === 2) value = stringField(r, w, "initial_resource_versions.value");
    else r.skip(f, w);
  }
  return [key, value];
}

function stringField(r: Reader, wireType: number, field: string): string {
  expect(wireType, WIRE_LEN, field);
  return r.string();
}

/**
 * Decodes a `DiscoveryRequest` (1 version_info, 2 node, 3 resource_names, 4 type_url,
 * 5 response_nonce, 6 error_detail).
 *
 * @throws {RangeError | TypeError} for malformed input
 */
export function decodeSotwRequest(bytes: Uint8Array): SotwRequest {
  const r = new Reader(bytes);
  const req: SotwRequest = {
    nodeId: "",
    typeUrl: "",
    versionInfo: "",
    resourceNames: [],
    responseNonce: "",
  };
  const names: string[] = [];
  while (!r.done) {
    const f = r.tag();
    const w = r.wire;
    switch (f) {
      case 1:
        req.versionInfo = stringField(r, w, "version_info");
        break;
      case 2:
        req.nodeId = subMessage(r, w, "node", (sub) => readNodeId(sub, req.nodeId));
        break;
      case 3:
        names.push(stringField(r, w, "resource_names"));
        break;
      case 4:
        expect(w, WIRE_LEN, "type_url");
        req.typeUrl = r.repeatedString();
        break;
      case 5:
        req.responseNonce = stringField(r, w, "response_nonce");
        break;
      case 6:
        req.error = subMessage(r, w, "error_detail", (sub) => readStatus(sub, req.error));
        break;
      default:
        r.skip(f, w);
    }
  }
  req.resourceNames = names;
  return req;
}

/**
 * Decodes a `DeltaDiscoveryRequest` (1 node, 2 type_url, 3 resource_names_subscribe,
 * 4 resource_names_unsubscribe, 5 initial_resource_versions, 6 response_nonce, 7 error_detail).
 *
 * @throws {RangeError | TypeError} for malformed input
 */
export function decodeDeltaRequest(bytes: Uint8Array): DeltaRequest {
  const r = new Reader(bytes);
  const subscribe: string[] = [], unsubscribe: string[] = [];
  const initialVersions: Record<string, string> = {};
  let nodeId = "", typeUrl = "", responseNonce = "";
  let error: ErrorDetail | undefined;
  while (!r.done) {
    const f = r.tag();
    const w = r.wire;
    switch (f) {
      case 1:
        nodeId = subMessage(r, w, "node", (sub) => readNodeId(sub, nodeId));
        break;
      case 2:
        expect(w, WIRE_LEN, "type_url");
        typeUrl = r.repeatedString();
        break;
      case 3:
        subscribe.push(stringField(r, w, "resource_names_subscribe"));
        break;
      case 4:
        unsubscribe.push(stringField(r, w, "resource_names_unsubscribe"));
        break;
      case 5: {
        const [key, value] = subMessage(r, w, "initial_resource_versions", readMapEntry);
        // Own property even for "__proto__": a client names its resources.
        Object.defineProperty(initialVersions, key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        break;
      }
      case 6:
        responseNonce = stringField(r, w, "response_nonce");
        break;
      case 7:
        error = subMessage(r, w, "error_detail", (sub) => readStatus(sub, error));
        break;
      default:
        r.skip(f, w);
    }
  }
  const req: DeltaRequest = {
    nodeId,
    typeUrl,
    subscribe,
    unsubscribe,
    initialVersions,
    responseNonce,
  };
  if (error) req.error = error;
  return req;
}
