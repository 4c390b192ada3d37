/**
 * A small, self-contained xDS client for the hardening tests and the churn benchmark: one
 * `@grpc/grpc-js` bidi stream on the agent's ADS methods whose requests are raw bytes (so a test
 * can send garbage, truncated or cross-mode messages) and whose responses are decoded with the
 * generated protobuf-es schemas. Deliberately independent of `tests/xds/*` and `lib/xds/*`: it
 * talks to the agent only through the wire, like an Envoy would.
 *
 * @example
 * ```ts
 * import { CDS_TYPE, RawXdsStream } from "./xds_raw_client.ts";
 * const s = RawXdsStream.open(18000, "sotw");
 * s.sendSotw({ node: { id: "edge-1" }, typeUrl: CDS_TYPE });
 * const res = await s.next(10_000); // DiscoveryResponse | undefined
 * s.close();
 * ```
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
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
import { ClusterSchema } from "../../proto/gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "../../proto/gen/envoy/config/listener/v3/listener_pb.ts";
import { DEMO_NODE_ID, DevApi } from "../../lib/api/dev_server.ts";
import {
  agentPermissionFlags,
  type AgentProcess,
  freePort,
  ROOT,
  spawnAgent,
  waitFor,
} from "../helpers.ts";

/** `type_url` of Clusters (CDS). */
export const CDS_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/** `type_url` of Listeners (LDS). */
export const LDS_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener";

const ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService";
/** HTTP/2 paths of the two ADS methods. */
export const ADS_PATHS = {
  sotw: `${ADS}/StreamAggregatedResources`,
  delta: `${ADS}/DeltaAggregatedResources`,
} as const;

/** SotW or Delta. */
export type Mode = keyof typeof ADS_PATHS;

/** How a stream ended, as grpc-js reports it. */
export interface StreamEnd {
  code: number;
  details: string;
}

/** gRPC status code names, for readable assertions and tables. */
export const STATUS_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(grpc.status).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k]),
);

function bytesMethod(path: string): grpc.MethodDefinition<Uint8Array, Uint8Array> {
  const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const toBytes = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: toBuffer,
    requestDeserialize: toBytes,
    responseSerialize: toBuffer,
    responseDeserialize: toBytes,
  };
}

const Client = grpc.makeGenericClientConstructor({
  sotw: bytesMethod(ADS_PATHS.sotw),
  delta: bytesMethod(ADS_PATHS.delta),
}, "RawAds");

/** Options of {@linkcode RawXdsStream.open}. */
export interface OpenOptions {
  /** Share this grpc-js client (one HTTP/2 connection) instead of dialing a new one. */
  client?: grpc.Client;
  /** Host to dial (default 127.0.0.1). */
  host?: string;
}

/**
 * grpc-js shares one connection between clients of the same target unless told otherwise; every
 * client here gets its own, as separate Envoys would.
 */
const OWN_CONNECTION: grpc.ChannelOptions = { "grpc.use_local_subchannel_pool": 1 };

/** One ADS stream. Responses queue up until read with {@linkcode RawXdsStream.next}. */
export class RawXdsStream<Res = DiscoveryResponse | DeltaDiscoveryResponse> {
  readonly mode: Mode;
  readonly client: grpc.Client;
  readonly #ownClient: boolean;
  readonly #call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  readonly #queue: Res[] = [];
  #waiters: (() => void)[] = [];
  /** Every response received so far, in order (never drained). */
  readonly received: Res[] = [];
  /** How the stream ended; `undefined` while it is open. */
  end: StreamEnd | undefined;
  /** Resolves when the stream ends. */
  readonly ended: Promise<StreamEnd>;

  private constructor(port: number, mode: Mode, opts: OpenOptions) {
    this.mode = mode;
    this.#ownClient = !opts.client;
    this.client = opts.client ??
      new Client(
        `${opts.host ?? "127.0.0.1"}:${port}`,
        grpc.credentials.createInsecure(),
        OWN_CONNECTION,
      );
    // deno-lint-ignore no-explicit-any
    this.#call = (this.client as any)[mode]() as grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
    const schema = mode === "sotw" ? DiscoveryResponseSchema : DeltaDiscoveryResponseSchema;
    this.#call.on("data", (b: Uint8Array) => {
      const msg = fromBinary(schema, b) as Res;
      this.received.push(msg);
      this.#queue.push(msg);
      this.#wake();
    });
    this.#call.on("error", () => {}); // reported through "status"
    this.ended = new Promise((resolve) => {
      this.#call.on("status", (s: grpc.StatusObject) => {
        this.end ??= { code: s.code, details: s.details };
        this.#wake();
        resolve(this.end);
      });
    });
  }

  /** Opens a SotW (`StreamAggregatedResources`) stream. */
  static open(port: number, mode: "sotw", opts?: OpenOptions): RawXdsStream<DiscoveryResponse>;
  /** Opens a Delta (`DeltaAggregatedResources`) stream. */
  static open(
    port: number,
    mode: "delta",
    opts?: OpenOptions,
  ): RawXdsStream<DeltaDiscoveryResponse>;
  static open(port: number, mode: Mode, opts: OpenOptions = {}): RawXdsStream {
    return new RawXdsStream(port, mode, opts);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Sends raw bytes as one gRPC message (the transport adds the 5-byte message header). */
  sendBytes(bytes: Uint8Array): void {
    this.#call.write(bytes);
  }

  /** Sends a SotW `DiscoveryRequest`. */
  sendSotw(init: MessageInitShape<typeof DiscoveryRequestSchema>): void {
    this.sendBytes(encodeSotw(init));
  }

  /** Sends a `DeltaDiscoveryRequest`. */
  sendDelta(init: MessageInitShape<typeof DeltaDiscoveryRequestSchema>): void {
    this.sendBytes(encodeDelta(init));
  }

  /** The next response, or `undefined` when none arrives within `timeoutMs` or the stream ended. */
  async next(timeoutMs: number): Promise<Res | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.#queue.length === 0 && !this.end) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
    return this.#queue.shift();
  }

  /** Like {@linkcode RawXdsStream.next}, but throws with the stream's end status on a miss. */
  async expect(timeoutMs: number, what = "a response"): Promise<Res> {
    const r = await this.next(timeoutMs);
    if (r !== undefined) return r;
    throw new Error(
      this.end
        ? `expected ${what}, the stream ended: ${describeEnd(this.end)}`
        : `expected ${what} within ${timeoutMs} ms, got nothing`,
    );
  }

  /** The end status, waiting at most `timeoutMs`; `undefined` if the stream is still open. */
  async waitEnd(timeoutMs: number): Promise<StreamEnd | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((r) =>
      timer = setTimeout(() => r(undefined), timeoutMs)
    );
    try {
      return await Promise.race([this.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Responses queued and not yet read. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Half-closes the request side (the client will send nothing more). */
  halfClose(): void {
    this.#call.end();
  }

  /** Cancels the stream and, if this stream dialed it, closes the connection. */
  close(): void {
    try {
      this.#call.end();
    } catch {
      // already ended
    }
    this.#call.cancel();
    if (this.#ownClient) this.client.close();
  }
}

/** Serializes a SotW request. */
export function encodeSotw(init: MessageInitShape<typeof DiscoveryRequestSchema>): Uint8Array {
  return toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, init));
}

/** Serializes a Delta request. */
export function encodeDelta(
  init: MessageInitShape<typeof DeltaDiscoveryRequestSchema>,
): Uint8Array {
  return toBinary(DeltaDiscoveryRequestSchema, create(DeltaDiscoveryRequestSchema, init));
}

/** `CODE_NAME: details` for messages and tables. */
export function describeEnd(e: StreamEnd): string {
  return `${STATUS_NAMES[e.code] ?? e.code}: ${e.details}`;
}

/** Resource names in a SotW or Delta response (decoded from the payloads), sorted. */
export function resourceNames(res: DiscoveryResponse | DeltaDiscoveryResponse): string[] {
  const anys = res.$typeName === "envoy.service.discovery.v3.DiscoveryResponse"
    ? res.resources
    : res.resources.map((r) => r.resource!);
  return anys.map((a) =>
    a.typeUrl === CDS_TYPE
      ? fromBinary(ClusterSchema, a.value).name
      : fromBinary(ListenerSchema, a.value).name
  ).sort();
}

/**
 * Opens a fresh SotW stream as Envoy does (CDS, then LDS after ACKing CDS) and returns both
 * responses; closes the stream. Throws when either does not arrive within `timeoutMs`.
 */
export async function fetchCdsLds(
  port: number,
  nodeId: string,
  timeoutMs = 20_000,
): Promise<{ cds: DiscoveryResponse; lds: DiscoveryResponse }> {
  const s = RawXdsStream.open(port, "sotw");
  try {
    s.sendSotw({ node: { id: nodeId }, typeUrl: CDS_TYPE });
    const cds = await s.expect(timeoutMs, "CDS");
    s.sendSotw({ typeUrl: CDS_TYPE, versionInfo: cds.versionInfo, responseNonce: cds.nonce });
    s.sendSotw({ typeUrl: LDS_TYPE });
    const lds = await s.expect(timeoutMs, "LDS");
    s.sendSotw({ typeUrl: LDS_TYPE, versionInfo: lds.versionInfo, responseNonce: lds.nonce });
    if (cds.typeUrl !== CDS_TYPE || lds.typeUrl !== LDS_TYPE) {
      throw new Error(`unexpected type order: ${cds.typeUrl}, ${lds.typeUrl}`);
    }
    return { cds, lds };
  } finally {
    s.close();
  }
}

export type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse };

// ---------------------------------------------------------------------------------------------
// The agent under test: the real process (real permission flags) against an in-memory sigma-api.

/** A running agent with xDS on, serving a demo node, plus what the tests and the bench read. */
export interface XdsAgent {
  api: DevApi;
  agent: AgentProcess;
  pid: number;
  xdsPort: number;
  metricsPort: number;
  /** Node ids with a snapshot (one route each), first is the DevApi demo node. */
  nodeIds: string[];
  /** Status code of `GET /healthz` on the metrics port (throws when the port does not answer). */
  healthz(): Promise<number>;
  /** `/metrics` text. */
  metrics(): Promise<string>;
  /** Stops the agent (SIGTERM) and the API; returns the agent's exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/** Options of {@linkcode startXdsAgent}. */
export interface StartOptions {
  /** Nodes to add besides the demo node, one route each (default 0). */
  extraNodes?: number;
  hostname?: string;
  logLevel?: string;
  /** `--xds-poll-interval` in seconds (default 1). */
  pollSeconds?: number;
  /**
   * Also pass `--inspect=127.0.0.1:<port>` to Deno (the permission flags are unchanged), so a
   * benchmark can read the JS heap and force a GC through the DevTools protocol.
   */
  inspectPort?: number;
}

/**
 * Starts a DevApi (seeded with the demo node) and the agent with `--xds-enabled`, adds `extraNodes`
 * nodes with one route each, and waits until every node's CDS and LDS are served.
 */
export async function startXdsAgent(opts: StartOptions = {}): Promise<XdsAgent> {
  const api = new DevApi({ seedDemo: true });
  const apiUrl = api.listen({ hostname: "127.0.0.1", port: 0 });
  const xdsPort = freePort();
  const metricsPort = freePort();
  const stateDir = await Deno.makeTempDir({ prefix: "sigma-xds-hardening-" });
  // With the inspector: the same `deno run <permission flags> main.ts`, plus `--inspect`.
  const inspect = opts.inspectPort === undefined ? undefined : {
    binary: Deno.execPath(),
    prefix: [
      "run",
      "--quiet",
      `--inspect=127.0.0.1:${opts.inspectPort}`,
      ...agentPermissionFlags({ stateDir }),
      `${ROOT}main.ts`,
    ],
  };
  const agent = await spawnAgent({
    stateDir,
    binary: inspect?.binary,
    args: [
      ...inspect?.prefix ?? [],
      "--xds-enabled",
      `--xds-port=${xdsPort}`,
      "--xds-addr=127.0.0.1",
      `--xds-poll-interval=${opts.pollSeconds ?? 1}`,
      `--metrics-port=${metricsPort}`,
      "--metrics-addr=127.0.0.1",
      "--interval=5",
      `--hostname=${opts.hostname ?? "xds-hardening"}`,
      `--log-level=${opts.logLevel ?? "info"}`,
    ],
    env: { SIGMA_API_URL: apiUrl },
  });
  const stop = async () => {
    const st = await agent.stop();
    await api.close();
    await Deno.remove(agent.stateDir, { recursive: true }).catch(() => {});
    return st;
  };
  try {
    const vps = await waitFor(() => api.vps[0], { timeoutMs: 30_000, message: "agent registered" });
    const nodeIds = [DEMO_NODE_ID];
    for (let i = 0; i < (opts.extraNodes ?? 0); i++) {
      const nodeId = `hardening-${i}`;
      const node = api.addNode(vps.id, nodeId);
      api.addRoute(node.id, {
        name: `h${i}`,
        listen_port: 20000 + i,
        backend_host: "127.0.0.1",
        backend_port: 9000 + i,
        cluster_type: "static",
        proxy_protocol: 0,
      });
      nodeIds.push(nodeId);
    }
    for (const id of nodeIds) {
      await waitFor(
        () => fetchCdsLds(xdsPort, id, 3_000).then((r) => r.cds.resources.length > 0, () => false),
        { timeoutMs: 60_000, message: `node ${id} served over ADS` },
      );
    }
    const base = `http://127.0.0.1:${metricsPort}`;
    return {
      api,
      agent,
      pid: agent.child.pid,
      xdsPort,
      metricsPort,
      nodeIds,
      healthz: async () => {
        const res = await fetch(`${base}/healthz`);
        await res.body?.cancel();
        return res.status;
      },
      metrics: async () => await (await fetch(`${base}/metrics`)).text(),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Sum of every series of `name` in Prometheus text (optionally only those matching `labels`). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Below gRPC: one hand-made HTTP/2 request, for what grpc-js would refuse to send.

/** What the server answered to {@linkcode h2Exchange}. */
export interface H2Answer {
  httpStatus: number | undefined;
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  /** Response body bytes. */
  dataBytes: number;
  /** RST_STREAM code when the server reset the stream (0 = none). */
  rstCode: number;
}

/** One gRPC message frame with a chosen flag byte and declared length (which may lie). */
export function grpcFrame(payload: Uint8Array, opts: { flag?: number; length?: number } = {}) {
  const out = new Uint8Array(5 + payload.length);
  out[0] = opts.flag ?? 0;
  new DataView(out.buffer).setUint32(1, opts.length ?? payload.length);
  out.set(payload, 5);
  return out;
}

/**
 * Sends one HTTP/2 (h2c) POST with `body` and END_STREAM and collects the answer, using
 * `node:http2` directly so framing and headers can be anything.
 */
export async function h2Exchange(
  port: number,
  req: { path: string; headers?: Record<string, string>; body?: Uint8Array; timeoutMs?: number },
): Promise<H2Answer> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {}); // surfaces as the stream's close
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": req.path,
      "content-type": "application/grpc",
      te: "trailers",
      ...req.headers,
    });
    const headers: Record<string, unknown> = {};
    let dataBytes = 0;
    stream.on("response", (h) => Object.assign(headers, h));
    stream.on("trailers", (t) => Object.assign(headers, t));
    stream.on("data", (d: Uint8Array) => dataBytes += d.length);
    stream.on("error", () => {}); // a reset: reported by rstCode
    const closed = new Promise<void>((resolve) => stream.on("close", () => resolve()));
    stream.end(req.body);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      closed.then(() => false),
      new Promise<boolean>((r) => timer = setTimeout(() => r(true), req.timeoutMs ?? 10_000)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      stream.close();
      throw new Error(`no answer to ${req.path} within ${req.timeoutMs ?? 10_000} ms`);
    }
    const str = (v: unknown) => v === undefined ? undefined : String(v);
    return {
      httpStatus: headers[":status"] === undefined ? undefined : Number(headers[":status"]),
      grpcStatus: headers["grpc-status"] === undefined ? undefined : Number(headers["grpc-status"]),
      grpcMessage: str(headers["grpc-message"]),
      dataBytes,
      rstCode: stream.rstCode ?? 0,
    };
  } finally {
    await new Promise<void>((resolve) => session.close(() => resolve()));
  }
}
