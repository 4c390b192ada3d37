/**
 * HPACK: the decoder against the example header blocks of RFC 7541 Appendix C (C.3-C.6: requests
 * and responses, raw and Huffman-coded, with dynamic table growth and eviction), malformed input,
 * and the encoder round-tripping through the decoder.
 */

import assert from "node:assert/strict";
import {
  encodeHeaders,
  type HeaderField,
  HpackDecoder,
  HpackError,
  huffmanDecode,
} from "../../lib/grpc/hpack.ts";

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)!.map((h) => parseInt(h, 16)));
}

const REQUESTS: HeaderField[][] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ],
  [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ],
];
const REQUEST_TABLES: HeaderField[][] = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [["custom-key", "custom-value"], ["cache-control", "no-cache"], [
    ":authority",
    "www.example.com",
  ]],
];
const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESPONSES: HeaderField[][] = [
  [[":status", "302"], ["cache-control", "private"], ["date", DATE1], ["location", LOCATION]],
  [[":status", "307"], ["cache-control", "private"], ["date", DATE1], ["location", LOCATION]],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", DATE2],
    ["location", LOCATION],
    ["content-encoding", "gzip"],
    ["set-cookie", COOKIE],
  ],
];
const RESPONSE_TABLES: HeaderField[][] = [
  [["location", LOCATION], ["date", DATE1], ["cache-control", "private"], [":status", "302"]],
  [[":status", "307"], ["location", LOCATION], ["date", DATE1], ["cache-control", "private"]],
  [["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE2]],
];

/** RFC 7541 Appendix C blocks, byte for byte. */
const EXAMPLES: { name: string; tableSize: number; blocks: string[]; sizes: number[] }[] = [
  {
    name: "C.3 requests without Huffman",
    tableSize: 4096,
    blocks: [
      "828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ],
    sizes: [57, 110, 164],
  },
  {
    name: "C.4 requests with Huffman",
    tableSize: 4096,
    blocks: [
      "828684418cf1e3c2e5f23a6ba0ab90f4ff",
      "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ],
    sizes: [57, 110, 164],
  },
  {
    name: "C.5 responses without Huffman (table of 256 bytes: eviction)",
    tableSize: 256,
    blocks: [
      "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d" +
      "546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
      "4803333037c1c0bf",
      "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f" +
      "6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b" +
      "2076657273696f6e3d31",
    ],
    sizes: [222, 222, 215],
  },
  {
    name: "C.6 responses with Huffman (table of 256 bytes: eviction)",
    tableSize: 256,
    blocks: [
      "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c7" +
      "8f0b97c8e9ae82ae43d3",
      "4883640effc1c0bf",
      "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335" +
      "dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
    ],
    sizes: [222, 222, 215],
  },
];

for (const ex of EXAMPLES) {
  Deno.test(`hpack: RFC 7541 ${ex.name}`, () => {
    const d = new HpackDecoder({ maxTableBytes: ex.tableSize });
    const isRequest = ex.name.includes("requests");
    ex.blocks.forEach((block, i) => {
      assert.deepEqual(d.decode(hex(block)), (isRequest ? REQUESTS : RESPONSES)[i], `block ${i}`);
      assert.equal(d.tableBytes, ex.sizes[i], `table size after block ${i}`);
      assert.deepEqual(d.tableEntries, (isRequest ? REQUEST_TABLES : RESPONSE_TABLES)[i]);
    });
  });
}

Deno.test("hpack: dynamic table size updates shrink and evict; only at a block's start and within our setting", () => {
  const d = new HpackDecoder({ maxTableBytes: 4096 });
  d.decode(hex("828684410f7777772e6578616d706c652e636f6d"));
  assert.equal(d.tableBytes, 57);
  // 0x20: size update to 0 empties the table; 0x3f e1 01: back up to 256.
  assert.deepEqual(d.decode(hex("20 3fe101 82")), [[":method", "GET"]]);
  assert.equal(d.tableBytes, 0);
  assert.throws(() => d.decode(hex("be")), HpackError); // entry 62 was evicted
  assert.throws(() => new HpackDecoder().decode(hex("82 20")), /after a field/);
  // 4097 > our 4096.
  assert.throws(() => new HpackDecoder().decode(hex("3fe21f")), /above our setting/);
});

Deno.test("hpack: literal never indexed and without indexing leave the table alone", () => {
  const d = new HpackDecoder();
  // C.2.2 (without indexing, indexed name :path) and C.2.3 (never indexed, literal name).
  assert.deepEqual(d.decode(hex("040c2f73616d706c652f70617468")), [[":path", "/sample/path"]]);
  assert.deepEqual(d.decode(hex("100870617373776f726406736563726574")), [["password", "secret"]]);
  assert.equal(d.tableBytes, 0);
});

Deno.test("hpack: malformed blocks and Huffman strings throw HpackError", () => {
  const bad = [
    "80", // index 0
    "ff00", // index 127 + 0, beyond the tables
    "41", // truncated literal
    "410f7777", // string shorter than its length
    "ffffffffff0f", // integer overflow
    "4185ffffffffff", // Huffman with a 40-bit run of ones: EOS or overlong padding
  ];
  for (const b of bad) assert.throws(() => new HpackDecoder().decode(hex(b)), HpackError, b);
  // "a" is 00011 (5 bits): padding with zeros is invalid, with ones is fine.
  assert.equal(huffmanDecode(hex("1f")), "a");
  assert.throws(() => huffmanDecode(hex("18")), /padding/);
  // A whole byte of padding (8 ones) is too much.
  assert.throws(() => huffmanDecode(hex("1fff")), /padding/);
});

Deno.test("hpack: a header list over the limit throws a tooLarge HpackError (indexed-field bombs)", () => {
  const d = new HpackDecoder({ maxHeaderListBytes: 1000 });
  // One 4000-byte entry, then indexed again and again: small block, huge list.
  const value = "x".repeat(3900);
  const lit = encodeHeaders([["x-big", value]]);
  // Turn the literal-without-indexing (0x00 + name) into "with incremental indexing" (0x40).
  const indexing = new Uint8Array(lit);
  indexing[0] = 0x40;
  const d2 = new HpackDecoder({ maxHeaderListBytes: 100_000 });
  d2.decode(indexing);
  assert.throws(
    () => d2.decode(new Uint8Array(40).fill(0xbe)),
    (e) => e instanceof HpackError && e.tooLarge,
  );
  assert.throws(() => d.decode(indexing), (e) => e instanceof HpackError && e.tooLarge);
});

Deno.test("hpack: encodeHeaders round-trips through the decoder, static entries indexed", () => {
  assert.deepEqual([...encodeHeaders([[":status", "200"]])], [0x88]);
  const fields: HeaderField[] = [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", "14"],
    ["grpc-message", "x".repeat(300) + "%C3%A9"],
  ];
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(encodeHeaders(fields)), fields);
  assert.equal(d.tableBytes, 0);
});
