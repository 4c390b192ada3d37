/**
 * gRPC message framing: messages split across and within chunks, compressed and oversized
 * messages refused, `grpc-message` percent-encoding. (The HTTP/2 server itself is tested in
 * `h2_server_test.ts`.)
 */

import assert from "node:assert/strict";
import {
  frameMessage,
  FramingError,
  grpcMessageEncode,
  GrpcStatus,
  MessageReader,
} from "../../lib/grpc/call.ts";

Deno.test("MessageReader: messages across and within chunks; compressed and oversized messages are refused", () => {
  const r = new MessageReader(10);
  const two = new Uint8Array([
    ...frameMessage(new Uint8Array([1, 2])),
    ...frameMessage(new Uint8Array([3])),
  ]);
  assert.deepEqual(r.push(two.subarray(0, 3)), []);
  assert.deepEqual(r.push(two.subarray(3, 8)).map((m) => [...m]), [[1, 2]]);
  assert.equal(r.pending, 1);
  assert.deepEqual(r.push(two.subarray(8)).map((m) => [...m]), [[3]]);
  assert.deepEqual(r.push(two).map((m) => [...m]), [[1, 2], [3]]);
  assert.equal(r.pending, 0);
  assert.deepEqual(r.push(frameMessage(new Uint8Array(0))).map((m) => m.length), [0]);
  assert.throws(
    () => new MessageReader(10).push(new Uint8Array([1, 0, 0, 0, 1, 9])),
    (e) => e instanceof FramingError && e.code === GrpcStatus.UNIMPLEMENTED,
  );
  assert.throws(
    () => new MessageReader(10).push(frameMessage(new Uint8Array(11))),
    (e) => e instanceof FramingError && e.code === GrpcStatus.RESOURCE_EXHAUSTED,
  );
  assert.equal(grpcMessageEncode("a% é"), "a%25 %C3%A9");
});
