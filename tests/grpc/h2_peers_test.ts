/**
 * Our HTTP/2 gRPC server against independent HTTP/2 implementations, run as real processes:
 * - python-hyper's h2 state machine (`tests/grpc/h2_peer.py`, Debian python3-h2): real gRPC calls
 *   whose every answer frame h2 validates, then the invalid sequences (h2 with its own validation
 *   off, or raw frames via hyperframe and hpack) and the exact error the server answers;
 * - nghttp2's `nghttp` client: a framed gRPC message POSTed with `-d`, `grpc-status` read from the
 *   trailers, with and without content-length, with request trailers, several at once;
 * - nghttp2's `h2load`: a small load run that must end with 0 errors (the benchmark itself is
 *   `deno task bench:h2load`).
 */

import assert from "node:assert/strict";
import { frameMessage } from "../../lib/grpc/call.ts";
import { H2ErrorCode } from "../../lib/grpc/h2_server.ts";
import { withServer as withXdsServer } from "../xds/xds_client.ts";
import { ECHO, withServer } from "./h2_helpers.ts";

const PYTHON = await Deno.stat("/usr/bin/python3").then(() => "/usr/bin/python3", () => "python3");
const PEER = new URL("./h2_peer.py", import.meta.url).pathname;
const E = H2ErrorCode;

async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  return { code, out };
}

/** Runs the python peer's cases against `port`; its JSON lines by case name. */
async function h2Peer(
  port: number,
  ...cases: string[]
): Promise<Record<string, Record<string, unknown>>> {
  const { code, out } = await run(PYTHON, [PEER, String(port), ...cases]);
  assert.equal(code, 0, out);
  const results: Record<string, Record<string, unknown>> = {};
  for (const line of out.split("\n").filter((l) => l.startsWith("{"))) {
    const r = JSON.parse(line);
    assert.equal(r.error, undefined, `${r.case}: ${r.error}`);
    results[r.case] = r;
  }
  return results;
}

Deno.test("h2 peers: python3-h2 — gRPC calls validated by h2's state machine: echo, 25 at once, 1 MiB down, 300 KB up, PING, reset", async () => {
  await withServer(async (port) => {
    const r = await h2Peer(port, "echo", "concurrent", "refusals");
    assert.deepEqual(r.echo, {
      case: "echo",
      status: "200",
      grpc_status: "0",
      bytes: 5 + 1 + 5 + 2 + 5 + 5,
      reset: null,
      echoed: [[1], [2, 3], [...new TextEncoder().encode("hello")]],
      trailers: { "grpc-status": "0" },
    });
    const c = r.concurrent as Record<string, Record<string, unknown>>;
    assert.equal(c.all_ok, true);
    assert.deepEqual(c.down, {
      status: "200",
      grpc_status: "0",
      bytes: 5 + (1 << 20),
      reset: null,
    });
    assert.equal(c.up.grpc_status, "0");
    assert.deepEqual(c.up.echoed, [[0x00, 0x04, 0x93, 0xe0]]);
    const f = r.refusals as Record<string, Record<string, unknown>>;
    assert.equal(f.unknown.grpc_status, "12");
    assert.match(String(f.unknown.message), /unknown method/);
    assert.equal(f.pings, 1);
    assert.equal(f.after_reset.grpc_status, "0");
  });
});

Deno.test("h2 peers: python3-h2 — malformed requests (pseudo-headers, fields, content-length) get RST_STREAM PROTOCOL_ERROR, never served", async () => {
  await withServer(async (port) => {
    const r = await h2Peer(port, "bad_headers", "content_length");
    const cases = r.bad_headers.cases as Record<string, { reset: number; served: boolean }>;
    assert.equal(Object.keys(cases).length, 11);
    for (const [name, got] of Object.entries(cases)) {
      assert.deepEqual(got, { reset: E.PROTOCOL_ERROR, served: false }, name);
    }
    assert.equal((r.bad_headers.then as Record<string, unknown>).grpc_status, "0");
    const cl = r.content_length as Record<string, Record<string, unknown>>;
    assert.equal(cl.over.reset, E.PROTOCOL_ERROR);
    assert.equal(cl.over.bytes, 0);
    assert.equal(cl.under.reset, E.PROTOCOL_ERROR);
    assert.equal(cl.exact.grpc_status, "0");
    assert.equal(cl.exact.reset, null);
  });
});

Deno.test("h2 peers: python3-h2 — the same malformed requests on a real xDS server's ADS method get RST_STREAM PROTOCOL_ERROR", async () => {
  await withXdsServer(async ({ port }) => {
    const r = await h2Peer(port, "ads_bad_headers");
    const cases = r.ads_bad_headers.cases as Record<string, { reset: number; served: boolean }>;
    assert.equal(Object.keys(cases).length, 11);
    for (const [name, got] of Object.entries(cases)) {
      assert.deepEqual(got, { reset: E.PROTOCOL_ERROR, served: false }, name);
    }
  });
});

Deno.test("h2 peers: python3-h2 — raw frame violations get the exact stream or connection error", async () => {
  await withServer(async (port) => {
    const r = await h2Peer(port, "raw", "closed_streams");
    assert.deepEqual(r.raw, {
      case: "raw",
      data_on_idle: { goaway: E.PROTOCOL_ERROR },
      even_stream: { goaway: E.PROTOCOL_ERROR },
      lower_stream_id: { goaway: E.PROTOCOL_ERROR },
      rst_on_idle: { goaway: E.PROTOCOL_ERROR },
      zero_window_update_connection: { goaway: E.PROTOCOL_ERROR },
      zero_window_update_stream: { reset: [1, E.PROTOCOL_ERROR] },
      stream_window_overflow: { reset: [1, E.FLOW_CONTROL_ERROR] },
      enable_push_2: { goaway: E.PROTOCOL_ERROR },
      initial_window_too_large: { goaway: E.FLOW_CONTROL_ERROR },
      max_frame_size_too_small: { goaway: E.PROTOCOL_ERROR },
      settings_ack_with_payload: { goaway: E.FRAME_SIZE_ERROR },
      padding_too_long: { goaway: E.PROTOCOL_ERROR },
      priority_self_dependency: { reset: [1, E.PROTOCOL_ERROR] },
      continuation_interleaved: { goaway: E.PROTOCOL_ERROR },
      ping_on_stream: { goaway: E.PROTOCOL_ERROR },
      huffman_eos: { goaway: E.COMPRESSION_ERROR },
      table_size_update_too_large: { goaway: E.COMPRESSION_ERROR },
    });
    assert.deepEqual(r.closed_streams, {
      case: "closed_streams",
      data_after_end_stream: { reset: [1, E.STREAM_CLOSED] },
      window_update_after_end_stream: { ignored: true },
      data_after_client_reset: { reset: [3, E.STREAM_CLOSED] },
    });
  });
});

/** A file holding one gRPC message, for `-d`. */
async function messageFile(bytes: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".grpc" });
  await Deno.writeFile(path, frameMessage(bytes));
  return path;
}

const GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"];

Deno.test("h2 peers: nghttp — gRPC POST with -d: echoed, grpc-status 0 in the trailers; content-length, trailers, 3 at once, HPACK table of 0", async () => {
  const file = await messageFile(new TextEncoder().encode("nghttp says hi"));
  try {
    await withServer(async (port) => {
      const url = `http://127.0.0.1:${port}${ECHO}`;
      const plain = await run("nghttp", ["-v", ...GRPC_HEADERS, "-d", file, url]);
      assert.equal(plain.code, 0, plain.out);
      // nghttp sends a content-length for -d; our server checks it against the DATA.
      assert.match(plain.out, /content-length: 19/);
      assert.match(plain.out, /recv \(stream_id=13\) grpc-status: 0/);
      assert.match(plain.out, /nghttp says hi/);
      assert.doesNotMatch(plain.out, /recv (RST_STREAM|GOAWAY)/);

      const variants = await run("nghttp", [
        "-v",
        "-m",
        "3",
        "--no-content-length",
        "--trailer",
        "x-sent-after: body",
        ...GRPC_HEADERS,
        "-d",
        file,
        url,
      ]);
      assert.equal(variants.code, 0, variants.out);
      assert.equal(variants.out.match(/grpc-status: 0/g)?.length, 3, variants.out);
      assert.doesNotMatch(variants.out, /recv (RST_STREAM|GOAWAY)/);

      // A decoder table of 0 bytes: nghttp2 insists on a table size update in our next block.
      const noTable = await run("nghttp", [
        "-v",
        "--header-table-size=0",
        "-m",
        "2",
        ...GRPC_HEADERS,
        "-d",
        file,
        url,
      ]);
      assert.equal(noTable.code, 0, noTable.out);
      assert.equal(noTable.out.match(/grpc-status: 0/g)?.length, 2, noTable.out);
      assert.doesNotMatch(noTable.out, /COMPRESSION_ERROR/);

      const unknown = await run("nghttp", [
        "-v",
        ...GRPC_HEADERS,
        "-d",
        file,
        `http://127.0.0.1:${port}/x.Y/Z`,
      ]);
      assert.match(unknown.out, /grpc-status: 12/);
    });
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("h2 peers: h2load — 2,000 gRPC calls on 4 connections, 10 streams each: 0 failed, 0 errored", async () => {
  const file = await messageFile(new Uint8Array(64).fill(1));
  try {
    await withServer(async (port) => {
      const r = await run("h2load", [
        "-n",
        "2000",
        "-c",
        "4",
        "-m",
        "10",
        ...GRPC_HEADERS,
        "-d",
        file,
        `http://127.0.0.1:${port}${ECHO}`,
      ]);
      assert.equal(r.code, 0, r.out);
      assert.match(
        r.out,
        /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/,
      );
      assert.match(r.out, /status codes: 2000 2xx/);
    });
  } finally {
    await Deno.remove(file);
  }
});
