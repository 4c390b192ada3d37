/**
 * Same-run A/B benchmark of the sigma-api client's two transports (issue 15): `fetch` against the
 * keep-alive HTTP/1.1 client of `lib/api/http1_client.ts`, both through `SigmaClient.request`
 * (so JSON parsing, the observer and error classification are included), 4,000 `GET`s of a 2.5 KB
 * route page with 8 in flight, as the xDS poller fetches changed nodes. The API is a separate
 * process (this file with `--serve`), so the CPU measured (`process.cpuUsage()` of this process,
 * garbage collection included) is the client's alone. The two transports alternate over several
 * repetitions; medians, the ratio and `/proc/loadavg` are printed.
 *
 * Options: `--requests N` (4000), `--concurrency N` (8), `--reps N` (5).
 *
 * @example
 * ```sh
 * deno task bench:api-client
 * ```
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { SigmaClient } from "../lib/api/client.ts";

/** A route page as sigma-api answers `GET /envoy-routes` for a node with 10 routes (~2.5 KB). */
function routePage(): string {
  const data = Array.from({ length: 10 }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    envoy_node_id: "00000000-0000-4000-8000-0000000000aa",
    name: `route-${i}`,
    listen_port: 20000 + i,
    backend_host: "10.0.0.1",
    backend_port: 8000 + i,
    status: "active",
    source: "dynamic",
  }));
  return JSON.stringify({ data, total: 10, page: 1, per_page: 100 });
}

// Under `deno bench bench/` this file does nothing: the comparison needs its own server process.
if (!import.meta.main) {
  // nothing to register
} else if (Deno.args.includes("--serve")) {
  const body = routePage();
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(port),
  }, () => new Response(body, { headers: { "content-type": "application/json" } }));
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      requests: { type: "string", default: "4000" },
      concurrency: { type: "string", default: "8" },
      reps: { type: "string", default: "5" },
    },
  });
  const requests = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const reps = Number(values.reps);

  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", new URL(import.meta.url).pathname, "--serve"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  const baseUrl = `http://127.0.0.1:${port}/api`;
  const path = "/envoy-routes?envoy_node_id=00000000-0000-4000-8000-0000000000aa&status=active" +
    "&source=dynamic&page=1&per_page=100";

  /** CPU ms per request and wall ms of one run of `requests` GETs. */
  const run = async (client: SigmaClient): Promise<{ cpu: number; wall: number }> => {
    let next = 0;
    const worker = async () => {
      while (next++ < requests) await client.request("GET", path);
    };
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, worker));
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { cpu: (c.user + c.system) / 1000 / requests, wall };
  };

  const clients = {
    fetch: new SigmaClient({ baseUrl, apiKey: "sk_bench", transport: "fetch" }),
    http1: new SigmaClient({ baseUrl, apiKey: "sk_bench" }),
  };
  if (clients.http1.transport !== "http1") throw new Error("a proxy variable is set: unset it");
  const load = () => Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(
    `api client: ${requests} GETs of a ${routePage().length}-byte page, ${concurrency} in flight, ` +
      `${reps} reps; load before: ${load()}`,
  );
  for (const c of Object.values(clients)) await run(c); // warm-up: JIT, connections
  const results: Record<keyof typeof clients, { cpu: number; wall: number }[]> = {
    fetch: [],
    http1: [],
  };
  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? (["fetch", "http1"] as const) : (["http1", "fetch"] as const);
    for (const name of order) results[name].push(await run(clients[name]));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const row = (name: keyof typeof clients) => {
    const cpu = results[name].map((x) => x.cpu);
    const wall = results[name].map((x) => x.wall);
    return `${name.padEnd(6)} CPU/request median ${median(cpu).toFixed(4)} ms ` +
      `(${Math.min(...cpu).toFixed(4)}–${Math.max(...cpu).toFixed(4)}), ` +
      `wall ${median(wall).toFixed(0)} ms per ${requests}`;
  };
  console.log(row("fetch"));
  console.log(row("http1"));
  const ratio = median(results.fetch.map((x) => x.cpu)) / median(results.http1.map((x) => x.cpu));
  const pairs = results.fetch.map((f, i) => (f.cpu / results.http1[i].cpu).toFixed(2));
  console.log(`fetch / http1 CPU per request: ${ratio.toFixed(2)}× (per rep: ${pairs.join(", ")})`);
  console.log(`load after: ${load()}  (/proc/loadavg)`);
  clients.http1.close();
  server.kill();
  await server.status;
}
