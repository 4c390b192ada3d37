/**
 * Test helpers for the xDS server: a real grpc-js client stream (SotW or Delta, ADS or per-type)
 * that queues what the server sends, decoded with the generated protobuf-es code, plus route and
 * snapshot fixtures.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import {
  create,
  type DescMessage,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type DeltaDiscoveryRequest,
  DeltaDiscoveryRequestSchema,
  type DeltaDiscoveryResponse,
  DeltaDiscoveryResponseSchema,
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
  DiscoveryResponseSchema,
} from "../../proto/gen/envoy/service/discovery/v3/discovery_pb.ts";
import { type Cluster, ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type Listener,
  ListenerSchema,
} from "../../proto/gen/envoy/config/listener/v3/listener_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EnvoyRoute } from "../../lib/api/types.ts";
import { createLogger } from "../../lib/core/log.ts";
import { type AgentMetrics, createMetrics } from "../../lib/core/metrics.ts";
import { SnapshotCache, snapshotInput, TYPE_URLS } from "../../lib/xds/cache.ts";
import { buildResources } from "../../lib/xds/resources.ts";
import { XDS_METHOD_PATHS, XdsServer } from "../../lib/xds/server.ts";

export const CDS = TYPE_URLS.cds;
export const LDS = TYPE_URLS.lds;

type Service = keyof typeof XDS_METHOD_PATHS;

function bidi<Req extends DescMessage, Res extends DescMessage>(path: string, req: Req, res: Res) {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: (m: MessageShape<Req>) => Buffer.from(toBinary(req, m)),
    requestDeserialize: (b: Buffer) => fromBinary(req, b),
    responseSerialize: (m: MessageShape<Res>) => Buffer.from(toBinary(res, m)),
    responseDeserialize: (b: Buffer) => fromBinary(res, b),
  };
}

/** grpc-js client definitions of every xDS method the server offers. */
export const XDS_CLIENT_SERVICES = Object.fromEntries(
  Object.entries(XDS_METHOD_PATHS).map(([service, paths]) => [service, {
    Sotw: bidi(paths.sotw, DiscoveryRequestSchema, DiscoveryResponseSchema),
    Delta: bidi(paths.delta, DeltaDiscoveryRequestSchema, DeltaDiscoveryResponseSchema),
  }]),
) as unknown as Record<Service, grpc.ServiceDefinition>;

const clientCtors = new Map<Service, grpc.ServiceClientConstructor>();
function ctor(service: Service): grpc.ServiceClientConstructor {
  let c = clientCtors.get(service);
  if (!c) {
    c = grpc.makeGenericClientConstructor(XDS_CLIENT_SERVICES[service], service);
    clientCtors.set(service, c);
  }
  return c;
}

/** How a client stream ended. */
export interface StreamEnd {
  code: number;
  details: string;
}

/** A queue of messages with awaitable `next()`. */
class Inbox<T> {
  readonly items: T[] = [];
  #waiters: ((v: T | undefined) => void)[] = [];
  ended: StreamEnd | undefined;

  push(v: T): void {
    const w = this.#waiters.shift();
    if (w) w(v);
    else this.items.push(v);
  }

  end(e: StreamEnd): void {
    this.ended ??= e;
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  next(timeoutMs: number): Promise<T | undefined> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift());
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve(undefined);
      }, timeoutMs);
      const done = (v: T | undefined) => {
        clearTimeout(timer);
        resolve(v);
      };
      this.#waiters.push(done);
    });
  }
}

/** One xDS client stream against the server under test. */
export class XdsTestClient<Req, Res, Init> {
  readonly #client: grpc.Client;
  readonly #call: grpc.ClientDuplexStream<Req, Res>;
  readonly #inbox = new Inbox<Res>();
  readonly #build: (init: Init) => Req;
  readonly ended: Promise<StreamEnd>;

  private constructor(port: number, service: Service, method: string, build: (init: Init) => Req) {
    const Ctor = ctor(service);
    this.#client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    this.#build = build;
    // deno-lint-ignore no-explicit-any
    this.#call = (this.#client as any)[method]() as grpc.ClientDuplexStream<Req, Res>;
    this.#call.on("data", (m: Res) => this.#inbox.push(m));
    this.ended = new Promise((resolve) => {
      this.#call.on("status", (s: grpc.StatusObject) => {
        this.#inbox.end({ code: s.code, details: s.details });
        resolve({ code: s.code, details: s.details });
      });
    });
    this.#call.on("error", () => {}); // reported through "status"
  }

  /** A state-of-the-world client (`StreamAggregatedResources`, or the per-type service). */
  static sotw(port: number, service: Service = "ads"): SotwClient {
    const method = "Sotw";
    return new XdsTestClient(
      port,
      service,
      method,
      (init: MessageInitShape<typeof DiscoveryRequestSchema>) =>
        create(DiscoveryRequestSchema, init),
    );
  }

  /** A Delta client (`DeltaAggregatedResources`, or the per-type service). */
  static delta(
    port: number,
    service: Service = "ads",
  ): DeltaClient {
    const method = "Delta";
    return new XdsTestClient(
      port,
      service,
      method,
      (init: MessageInitShape<typeof DeltaDiscoveryRequestSchema>) =>
        create(DeltaDiscoveryRequestSchema, init),
    );
  }

  /** Sends one request. */
  send(init: Init): void {
    this.#call.write(this.#build(init));
  }

  /** The next response; fails the test when none arrives within `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Res> {
    const m = await this.#inbox.next(timeoutMs);
    if (m === undefined) {
      throw new Error(
        this.#inbox.ended
          ? `stream ended (${this.#inbox.ended.code}: ${this.#inbox.ended.details}) instead of sending`
          : `no response within ${timeoutMs} ms`,
      );
    }
    return m;
  }

  /** Waits `ms` and returns whatever arrived meanwhile (to assert silence). */
  async drain(ms: number): Promise<Res[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.#inbox.items.splice(0);
  }

  /** Half-closes and closes the channel. */
  close(): void {
    try {
      this.#call.end();
    } catch {
      // already ended
    }
    this.#call.cancel();
    this.#client.close();
  }
}

/** A SotW test client. */
export type SotwClient = XdsTestClient<
  DiscoveryRequest,
  DiscoveryResponse,
  MessageInitShape<typeof DiscoveryRequestSchema>
>;

/** A Delta test client. */
export type DeltaClient = XdsTestClient<
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  MessageInitShape<typeof DeltaDiscoveryRequestSchema>
>;

function payloads(res: DiscoveryResponse | DeltaDiscoveryResponse): Uint8Array[] {
  return res.$typeName === "envoy.service.discovery.v3.DiscoveryResponse"
    ? res.resources.map((a) => a.value)
    : res.resources.map((r) => r.resource!.value);
}

/** Decodes the Clusters of a SotW or Delta CDS response. */
export function clustersOf(res: DiscoveryResponse | DeltaDiscoveryResponse): Cluster[] {
  return payloads(res).map((b) => fromBinary(ClusterSchema, b));
}

/** Decodes the Listeners of a SotW or Delta LDS response. */
export function listenersOf(res: DiscoveryResponse | DeltaDiscoveryResponse): Listener[] {
  return payloads(res).map((b) => fromBinary(ListenerSchema, b));
}

/** Resource names of a response (decoded from the payloads), sorted. */
export function namesOf(res: DiscoveryResponse | DeltaDiscoveryResponse): string[] {
  const decoded = res.typeUrl === CDS ? clustersOf(res) : listenersOf(res);
  return decoded.map((m) => m.name).sort();
}

/** A valid dynamic route. */
export function route(
  name: string,
  listenPort: number,
  extra: Partial<EnvoyRoute> = {},
): EnvoyRoute {
  return {
    id: crypto.randomUUID(),
    envoy_node_id: "00000000-0000-0000-0000-000000000000",
    name,
    listen_port: listenPort,
    backend_host: "127.0.0.1",
    backend_port: 8080,
    cluster_type: "static",
    connect_timeout_secs: 5,
    proxy_protocol: 0,
    source: "dynamic",
    status: "active",
    ...extra,
  };
}

/** Polls `check` until it returns truthy or `timeoutMs` passes. */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (true) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A running {@linkcode XdsServer} over a fresh cache, with everything a test inspects. */
export interface ServerEnv {
  cache: SnapshotCache;
  server: XdsServer;
  port: number;
  metrics: AgentMetrics;
  /** Every log line (JSON). */
  lines: string[];
  /** Node ids reported unknown (auto-registration requests). */
  unknown: string[];
  sotw(service?: Service): SotwClient;
  delta(service?: Service): DeltaClient;
  /** Builds `routes` with the real builders and installs them as `nodeId`'s snapshot. */
  install(nodeId: string, version: string, routes: EnvoyRoute[]): void;
}

/** Runs `fn` against a real server on a loopback port; closes clients and server afterwards. */
export async function withServer(
  fn: (env: ServerEnv) => Promise<void>,
  opts: { cdsAckTimeoutMs?: number; staleClusterGraceMs?: number } = {},
): Promise<void> {
  const lines: string[] = [];
  const unknown: string[] = [];
  const log = createLogger({ level: "debug", write: (l) => lines.push(l) });
  const cache = new SnapshotCache();
  const metrics = createMetrics("test-host", "0.0.0");
  const server = new XdsServer({
    cache,
    log,
    metrics,
    onUnknownNode: (id) => unknown.push(id),
    cdsAckTimeoutMs: opts.cdsAckTimeoutMs,
    staleClusterGraceMs: opts.staleClusterGraceMs,
  });
  const port = await server.listen("127.0.0.1", 0);
  const clients: { close(): void }[] = [];
  const env: ServerEnv = {
    cache,
    server,
    port,
    metrics,
    lines,
    unknown,
    sotw: (service) => {
      const c = XdsTestClient.sotw(port, service);
      clients.push(c);
      return c;
    },
    delta: (service) => {
      const c = XdsTestClient.delta(port, service);
      clients.push(c);
      return c;
    },
    install: (nodeId, version, routes) => {
      cache.set(snapshotInput(nodeId, version, buildResources(routes)));
    },
  };
  try {
    await fn(env);
  } finally {
    for (const c of clients) c.close();
    await server.stop();
  }
}

/** The value of a labelled counter or gauge (0 when the series does not exist). */
export async function metricValue(
  metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> },
  labels: Record<string, string>,
): Promise<number> {
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x));
  return hit?.value ?? 0;
}

/** A grpc-js bidi method definition at `path` whose messages are raw bytes. */
export function bytesMethod(path: string) {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: (b: Uint8Array) => Buffer.from(b),
    requestDeserialize: (b: Buffer) => new Uint8Array(b),
    responseSerialize: (b: Uint8Array) => Buffer.from(b),
    responseDeserialize: (b: Buffer) => new Uint8Array(b),
  };
}

/** A raw-bytes SotW or Delta ADS stream: responses are the exact bytes the server wrote. */
export function rawAdsStream(
  port: number,
  mode: "sotw" | "delta",
): { client: grpc.Client; call: grpc.ClientDuplexStream<Uint8Array, Uint8Array> } {
  const Ctor = grpc.makeGenericClientConstructor(
    { Raw: bytesMethod(XDS_METHOD_PATHS.ads[mode]) },
    "raw",
  );
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  // deno-lint-ignore no-explicit-any
  const call = (client as any).Raw() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  call.on("error", () => {});
  return { client, call };
}
