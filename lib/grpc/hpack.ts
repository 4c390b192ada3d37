/**
 * HPACK (RFC 7541), the header compression of HTTP/2, as much as a gRPC server needs: a complete
 * decoder (prefixed integers, string literals with and without Huffman coding, indexed fields,
 * literals with and without incremental indexing and never indexed, dynamic table size updates
 * and eviction) and a tiny encoder for our own response headers and trailers.
 *
 * Why our own: the xDS server speaks HTTP/2 itself (see `h2_server.ts`) and a decoder is the one
 * part of it that every request goes through. The encoder never indexes (responses are a handful
 * of short fields); when the peer's HEADER_TABLE_SIZE shrinks below the 4096 bytes it started
 * with, the connection opens its next block with {@linkcode encodeTableSizeUpdate}.
 *
 * Limits: a decoded header list larger than `maxHeaderListBytes` (RFC 7541 §4.1 sizes) and any
 * malformed input throw {@linkcode HpackError}, which the connection answers with a
 * COMPRESSION_ERROR or ENHANCE_YOUR_CALM: a decoder error leaves the shared table unusable.
 *
 * @example
 * ```ts
 * import { encodeHeaders, HpackDecoder } from "./hpack.ts";
 * const block = encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]);
 * new HpackDecoder().decode(block); // [[":status", "200"], ["content-type", "application/grpc"]]
 * ```
 *
 * @module
 */

/** A header field: lowercase name, value. */
export type HeaderField = [name: string, value: string];

/** Thrown for an undecodable header block; `tooLarge` when only the size limit was hit. */
export class HpackError extends Error {
  override name = "HpackError";
  readonly tooLarge: boolean;
  constructor(message: string, tooLarge = false) {
    super(message);
    this.tooLarge = tooLarge;
  }
}

/** RFC 7541 Appendix A: the static table (index 1..61). */
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/**
 * RFC 7541 Appendix B: the Huffman code of each symbol 0..255 and EOS (256), most significant bit
 * first, and its length in bits. Normative data, reproduced exactly.
 */
// deno-fmt-ignore
const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff,
];
// deno-fmt-ignore
const HUFFMAN_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28,
  28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11,
  10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8,
  15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5,
  6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7,
  7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21,
  23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25,
  26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26,
  28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/**
 * The Huffman decoding tree, built once: node `n` has children `tree[2n]` (bit 0) and
 * `tree[2n + 1]` (bit 1); a child `> 0` is a node, `< 0` is symbol `-child - 1`, 0 is no code.
 */
const HUFFMAN_TREE: Int32Array = buildHuffmanTree();

function buildHuffmanTree(): Int32Array {
  // A complete prefix code of 257 symbols has 256 inner nodes.
  const tree = new Int32Array(2 * 256);
  let nodes = 1;
  for (let sym = 0; sym < 257; sym++) {
    const code = HUFFMAN_CODES[sym];
    const bits = HUFFMAN_BITS[sym];
    let node = 0;
    for (let i = bits - 1; i > 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (tree[slot] === 0) tree[slot] = nodes++;
      node = tree[slot];
    }
    tree[2 * node + (code & 1)] = -sym - 1;
  }
  return tree;
}

/**
 * Decodes a Huffman-coded string literal (RFC 7541 §5.2). Padding must be at most 7 bits, all
 * ones (a prefix of EOS), and EOS itself must not appear.
 *
 * @example
 * ```ts
 * huffmanDecode(new Uint8Array([0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]));
 * // "www.example.com"
 * ```
 */
export function huffmanDecode(bytes: Uint8Array): string {
  let out = "";
  let node = 0;
  // Bits read since the last symbol, and whether they were all ones (a valid padding so far).
  let pendingBits = 0;
  let allOnes = true;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >>> b) & 1;
      const next = HUFFMAN_TREE[2 * node + bit];
      pendingBits++;
      allOnes &&= bit === 1;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === 256) throw new HpackError("Huffman string contains EOS");
        out += String.fromCharCode(sym);
        node = 0;
        pendingBits = 0;
        allOnes = true;
      } else if (next === 0) {
        throw new HpackError("invalid Huffman code");
      } else node = next;
    }
  }
  if (pendingBits > 7 || !allOnes) throw new HpackError("invalid Huffman padding");
  return out;
}

/** Bytes of a string as Latin-1 (header values are octets; gRPC's are ASCII). */
function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
  return out;
}

/** RFC 7541 §4.1: a field's size is its name and value lengths plus 32. */
function fieldSize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** Options of {@linkcode HpackDecoder}. */
export interface HpackDecoderOptions {
  /** Our SETTINGS_HEADER_TABLE_SIZE: the largest dynamic table the peer may ask for (default 4096). */
  maxTableBytes?: number;
  /** Largest decoded header list, RFC 7541 §4.1 sizes (default 64 KiB). */
  maxHeaderListBytes?: number;
}

/**
 * The decoding side of one HTTP/2 connection: its dynamic table lives from block to block, so
 * every header block of the connection must go through the same decoder, in order.
 *
 * @example
 * ```ts
 * const d = new HpackDecoder();
 * d.decode(new Uint8Array([0x82, 0x86, 0x84])); // [[":method","GET"],[":scheme","http"],[":path","/"]]
 * ```
 */
export class HpackDecoder {
  /** Newest first. */
  readonly #table: HeaderField[] = [];
  #tableBytes = 0;
  /** Current limit set by the peer's size updates, at most `#maxTableBytes`. */
  #limit: number;
  readonly #maxTableBytes: number;
  readonly #maxListBytes: number;
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;

  constructor(opts: HpackDecoderOptions = {}) {
    this.#maxTableBytes = opts.maxTableBytes ?? 4096;
    this.#limit = this.#maxTableBytes;
    this.#maxListBytes = opts.maxHeaderListBytes ?? 64 * 1024;
  }

  /** Bytes in the dynamic table (RFC 7541 §4.1 sizes). */
  get tableBytes(): number {
    return this.#tableBytes;
  }

  /** Entries of the dynamic table, newest first. */
  get tableEntries(): readonly HeaderField[] {
    return this.#table;
  }

  /**
   * Decodes one complete header block.
   *
   * @throws {HpackError} on malformed input or a header list over the limit
   */
  decode(block: Uint8Array): HeaderField[] {
    this.#buf = block;
    this.#pos = 0;
    const out: HeaderField[] = [];
    let listBytes = 0;
    let fieldsSeen = false;
    try {
      while (this.#pos < block.length) {
        const first = block[this.#pos];
        let field: HeaderField;
        if (first & 0x80) {
          field = this.#entry(this.#int(7));
        } else if (first & 0x40) {
          field = this.#literal(6);
          this.#insert(field);
        } else if (first & 0x20) {
          // A table size update is only allowed at the start of a block (§4.2).
          if (fieldsSeen) throw new HpackError("dynamic table size update after a field");
          const size = this.#int(5);
          if (size > this.#maxTableBytes) throw new HpackError("table size above our setting");
          this.#limit = size;
          this.#evict(0);
          continue;
        } else {
          // Literal without indexing (0000) or never indexed (0001): same shape, 4-bit prefix.
          field = this.#literal(4);
        }
        fieldsSeen = true;
        listBytes += fieldSize(field[0], field[1]);
        if (listBytes > this.#maxListBytes) {
          throw new HpackError(`header list larger than ${this.#maxListBytes} bytes`, true);
        }
        out.push(field);
      }
    } finally {
      this.#buf = new Uint8Array(0);
    }
    return out;
  }

  /** A prefixed integer (§5.1). */
  #int(prefixBits: number): number {
    const buf = this.#buf;
    if (this.#pos >= buf.length) throw new HpackError("truncated integer");
    const max = (1 << prefixBits) - 1;
    let value = buf[this.#pos++] & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.#pos >= buf.length) throw new HpackError("truncated integer");
      const b = buf[this.#pos++];
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      // Anything near 2^31 is an attack or garbage: no header is that large.
      if (value > 0x7fffffff) throw new HpackError("integer overflow");
      if ((b & 0x80) === 0) return value;
    }
  }

  /** A string literal (§5.2). */
  #string(): string {
    const huffman = (this.#buf[this.#pos] ?? 0) & 0x80;
    const len = this.#int(7);
    if (this.#pos + len > this.#buf.length) throw new HpackError("truncated string");
    const bytes = this.#buf.subarray(this.#pos, this.#pos + len);
    this.#pos += len;
    return huffman ? huffmanDecode(bytes) : latin1(bytes);
  }

  /** A literal field whose name index has `prefixBits` bits (0: a literal name follows). */
  #literal(prefixBits: number): HeaderField {
    const index = this.#int(prefixBits);
    const name = index === 0 ? this.#string() : this.#entry(index)[0];
    return [name, this.#string()];
  }

  /** Static or dynamic table entry by index (§2.3.3). */
  #entry(index: number): HeaderField {
    if (index === 0) throw new HpackError("index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const field = this.#table[index - STATIC_TABLE.length - 1];
    if (!field) throw new HpackError(`index ${index} beyond the tables`);
    return field;
  }

  /** Adds an entry, evicting the oldest ones to make room (§4.4). */
  #insert(field: HeaderField) {
    const size = fieldSize(field[0], field[1]);
    this.#evict(size);
    // An entry larger than the table empties it and is not added.
    if (size > this.#limit) return;
    this.#table.unshift(field);
    this.#tableBytes += size;
  }

  /** Evicts until `room` more bytes fit under the limit. */
  #evict(room: number) {
    while (this.#table.length > 0 && this.#tableBytes + room > this.#limit) {
      const [name, value] = this.#table.pop()!;
      this.#tableBytes -= fieldSize(name, value);
    }
  }
}

/** Appends a prefixed integer (§5.1) whose first byte carries `flags`. */
function pushInt(out: number[], value: number, prefixBits: number, flags: number) {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/** Appends a raw (not Huffman-coded) string literal; characters above 0xff are not expected. */
function pushString(out: number[], s: string) {
  pushInt(out, s.length, 7, 0);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

/**
 * A dynamic table size update (RFC 7541 §6.3): how an encoder signals a new, smaller table size
 * at the start of its next header block after the decoder's SETTINGS_HEADER_TABLE_SIZE shrank
 * below it (§4.2).
 *
 * @example
 * ```ts
 * encodeTableSizeUpdate(0); // Uint8Array [0x20]
 * ```
 */
export function encodeTableSizeUpdate(size: number): Uint8Array {
  const out: number[] = [];
  pushInt(out, size, 5, 0x20);
  return new Uint8Array(out);
}

/**
 * Encodes header fields without touching any dynamic table: a field that is entirely in the
 * static table is indexed (`:status: 200`), other fields are literals without indexing, with an
 * indexed name when the static table has it. Values must be Latin-1 (gRPC sends ASCII).
 *
 * @example
 * ```ts
 * encodeHeaders([[":status", "200"]]); // Uint8Array [0x88]
 * ```
 */
export function encodeHeaders(fields: readonly HeaderField[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    let nameIndex = 0;
    let fullIndex = 0;
    for (let i = 0; i < STATIC_TABLE.length; i++) {
      if (STATIC_TABLE[i][0] !== name) continue;
      nameIndex ||= i + 1;
      if (STATIC_TABLE[i][1] === value) {
        fullIndex = i + 1;
        break;
      }
    }
    if (fullIndex) {
      pushInt(out, fullIndex, 7, 0x80);
      continue;
    }
    pushInt(out, nameIndex, 4, 0x00);
    if (!nameIndex) pushString(out, name);
    pushString(out, value);
  }
  return new Uint8Array(out);
}
