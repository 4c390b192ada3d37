/**
 * What `main.ts` hands every feature when it starts it: configuration, logger, API client,
 * metrics, the status board, the state store, the resolved hostname, and the registration
 * outcome. Features read these; they never reach into one another.
 *
 * @module
 */

import type { SigmaClient } from "../api/client.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { StateStore } from "./state_store.ts";
import type { StatusBoard } from "../status/board.ts";
import type { TlsFiles } from "../tls/listener.ts";

/** An HTTP handler mounted on the metrics port. */
export type RouteHandler = (
  req: Request,
  info: { remoteAddr: string },
) => Response | Promise<Response>;

/** One route of the metrics port: exact path, allowed methods, handler. */
export interface HttpRoute {
  path: string;
  methods: string[];
  handler: RouteHandler;
}

/** A feature's readiness for `/readyz`: `undefined` when ready, else the reason it is not. */
export type ReadinessCheck = () => string | undefined;

/** The dependencies of every feature. */
export interface AgentContext {
  config: Config;
  log: Logger;
  api: SigmaClient;
  metrics: AgentMetrics;
  board: StatusBoard;
  store: StateStore;
  /** The hostname reported to the API and used in node ids and metric labels. */
  hostname: string;
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
  /** The VPS id known now (from the API or the state dir), if any. */
  vpsId(): string | undefined;
  /** Resolves with the VPS id as soon as one is known (persisted or registered). */
  vpsIdReady: Promise<string>;
  /** TLS material of the xDS port (`--xds-tls-*`), loaded and checked at start. */
  xdsTls?: TlsFiles;
}

/** What a started feature gives back to `main.ts`. */
export interface Feature {
  /** Routes to mount on the metrics port. */
  routes?: HttpRoute[];
  /** Readiness check contributing to `/readyz`. */
  ready?: ReadinessCheck;
  /** Stops loops and servers; must finish promptly (shutdown budget is 5 s overall). */
  stop(): Promise<void>;
}
