/**
 * h2load (nghttp2's HTTP/2 load generator) against the gRPC transport of `lib/grpc/`: an echo
 * method on a `GrpcServer` in this process, h2load POSTing one framed 64-byte gRPC message per
 * request (unary-style: message, END_STREAM, echo, trailers). Prints, per profile, requests/s,
 * the streams and connections used, and the failed/errored counts (which must be 0), with the
 * load average beside them: the machine is shared, so figures are only comparable at a similar
 * load.
 *
 * Run: `deno task bench:h2load` (options: `--requests N` per profile, default 50,000).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { frameMessage } from "../lib/grpc/call.ts";
import { GrpcServer } from "../lib/grpc/h2_server.ts";

const { values } = parseArgs({ options: { requests: { type: "string", default: "50000" } } });
const requests = Number(values.requests);

/** h2load's clients (connections) and max concurrent streams per connection. */
const PROFILES: { name: string; connections: number; streams: number }[] = [
  { name: "1 connection, 1 stream (latency-bound)", connections: 1, streams: 1 },
  { name: "1 connection, 100 concurrent streams", connections: 1, streams: 100 },
  { name: "10 connections × 10 streams", connections: 10, streams: 10 },
  { name: "100 connections × 1 stream", connections: 100, streams: 1 },
];

const server = new GrpcServer({
  methods: {
    "/bench.Echo/Chat": {
      decode: (b: Uint8Array) => b,
      encode: (m: Uint8Array) => m,
      handle: (call) => call.onMessage((m) => call.write(m)),
    },
  },
});
const port = await server.listen("127.0.0.1", 0);
const body = await Deno.makeTempFile({ suffix: ".grpc" });
await Deno.writeFile(body, frameMessage(new Uint8Array(64).fill(7)));

console.log(`h2load against the lib/grpc echo method, ${requests} requests per profile`);
let failures = 0;
try {
  for (const p of PROFILES) {
    const load = Deno.loadavg()[0];
    const { stdout, code } = await new Deno.Command("h2load", {
      args: [
        "-n",
        String(requests),
        "-c",
        String(p.connections),
        "-m",
        String(p.streams),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-d",
        body,
        `http://127.0.0.1:${port}/bench.Echo/Chat`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const out = new TextDecoder().decode(stdout);
    const rate = out.match(/finished in [\d.]+\w+, ([\d.]+) req\/s/)?.[1];
    const counts = out.match(
      /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/,
    );
    const ok2xx = out.match(/status codes: (\d+) 2xx/)?.[1];
    if (code !== 0 || !rate || !counts) {
      console.log(out);
      throw new Error(`h2load exited ${code}`);
    }
    const [, total, succeeded, failed, errored] = counts;
    if (Number(failed) || Number(errored) || ok2xx !== total) failures++;
    console.log(
      `  ${p.name.padEnd(40)} ${Math.round(Number(rate)).toLocaleString("en").padStart(7)} req/s` +
        `  (${total} requests, ${succeeded} succeeded, ${failed} failed, ${errored} errored;` +
        ` ${p.connections} conn × ${p.streams} streams; load avg ${load.toFixed(2)})`,
    );
  }
} finally {
  await server.shutdown();
  await Deno.remove(body);
}
if (failures) {
  console.log(`${failures} profile(s) had failed or errored requests`);
  Deno.exit(1);
}
