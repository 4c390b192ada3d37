/**
 * Registration and heartbeat lifecycle.
 *
 * Register at start and retry forever with exponential backoff and full jitter (1 s doubling to
 * 60 s) while the API is unreachable or failing; a rejected key (401/403) is logged clearly and
 * retried at the cap. Heartbeat every `interval` seconds with a little jitter; a heartbeat
 * answered 404 means the VPS row is gone, so register again. The VPS id is persisted in the state
 * dir so features that need it can start while the API is down.
 *
 * @example
 * ```ts
 * import { Lifecycle } from "./lifecycle.ts";
 * // const lc = new Lifecycle({ api, log, metrics, store, hostname, config, collect });
 * // lc.run(signal); const vpsId = await lc.vpsIdReady;
 * ```
 *
 * @module
 */

import { ApiError, type SigmaClient } from "../api/client.ts";
import type { HeartbeatRequest, IpAddress, RegisterRequest, SystemInfo } from "../api/types.ts";
import { seconds } from "../core/http_failure.ts";
import { type Logger, RepeatedFailure } from "../core/log.ts";
import type { AgentMetrics } from "../core/metrics.ts";
import { Backoff, jittered, sleep } from "../core/schedule.ts";
import type { StateStore } from "../core/state_store.ts";

/** File in the state dir holding the VPS id. */
export const VPS_STATE_FILE = "vps.json";

/** What one register/heartbeat reports about the host. */
export interface HostReport {
  ip_addresses: IpAddress[];
  system_info: SystemInfo;
}

/** Options of {@linkcode Lifecycle}. */
export interface LifecycleOptions {
  api: SigmaClient;
  log: Logger;
  metrics: AgentMetrics;
  store: StateStore;
  hostname: string;
  alias: string | undefined;
  sshPort: number;
  /** Heartbeat interval, seconds. */
  intervalSec: number;
  /** Collects IPs and system info (fresh for every call). */
  collect: () => Promise<HostReport>;
  random?: () => number;
}

/** Result of the last call of a kind, for `/status`. */
export interface CallOutcome {
  ok: boolean;
  at: string;
  error?: string;
}

/** The lifecycle's state as `/status` shows it. */
export interface LifecycleStatus {
  vps_id: string | null;
  registration: "pending" | "registered" | "key_rejected" | "retrying";
  last_register: CallOutcome | null;
  last_heartbeat: CallOutcome | null;
  next_attempt_at: string | null;
  ip_addresses: IpAddress[];
}

/** Runs registration and heartbeats. */
export class Lifecycle {
  readonly #o: LifecycleOptions;
  readonly #backoff: Backoff;
  readonly #registerFailure: RepeatedFailure;
  readonly #heartbeatFailure: RepeatedFailure;
  #vpsId: string | undefined;
  #resolveReady!: (id: string) => void;
  /** Resolves once a VPS id is known (persisted or registered). */
  readonly vpsIdReady: Promise<string>;
  #registered = false;
  #keyRejected = false;
  #lastRegister: CallOutcome | null = null;
  #lastHeartbeat: CallOutcome | null = null;
  #nextAttempt: number | null = null;
  #ips: IpAddress[] = [];

  constructor(opts: LifecycleOptions) {
    this.#o = opts;
    this.#backoff = new Backoff({ baseMs: 1000, capMs: 60_000, random: opts.random });
    this.vpsIdReady = new Promise((r) => (this.#resolveReady = r));
    this.#registerFailure = new RepeatedFailure(opts.log, "registration");
    this.#heartbeatFailure = new RepeatedFailure(opts.log, "heartbeat");
  }

  /** The VPS id known now. */
  get vpsId(): string | undefined {
    return this.#vpsId;
  }

  /** True after a successful registration in this process. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Current state for `/status`. */
  status(): LifecycleStatus {
    return {
      vps_id: this.#vpsId ?? null,
      registration: this.#registered
        ? "registered"
        : this.#keyRejected
        ? "key_rejected"
        : this.#lastRegister
        ? "retrying"
        : "pending",
      last_register: this.#lastRegister,
      last_heartbeat: this.#lastHeartbeat,
      next_attempt_at: this.#nextAttempt === null
        ? null
        : new Date(this.#nextAttempt).toISOString(),
      ip_addresses: this.#ips,
    };
  }

  /** Loads a VPS id persisted by an earlier run for the same hostname. */
  async loadPersisted(): Promise<void> {
    try {
      const saved = await this.#o.store.read<{ id?: unknown; hostname?: unknown }>(VPS_STATE_FILE);
      if (
        saved && typeof saved.id === "string" && saved.id && saved.hostname === this.#o.hostname
      ) {
        this.#setVpsId(saved.id);
        this.#o.log.info("loaded VPS id from state dir", { vps_id: saved.id });
      }
    } catch (e) {
      this.#o.log.warn("ignoring unreadable state file", {
        file: VPS_STATE_FILE,
        error: (e as Error).message,
      });
    }
  }

  #setVpsId(id: string) {
    this.#vpsId = id;
    this.#resolveReady(id);
  }

  async #persist(id: string): Promise<void> {
    try {
      await this.#o.store.write(VPS_STATE_FILE, { id, hostname: this.#o.hostname });
    } catch (e) {
      this.#o.log.warn("could not persist VPS id; it is kept in memory until the agent stops", {
        dir: this.#o.store.dir,
        error: (e as Error).message,
      });
    }
  }

  /** Delay after a failed call: Retry-After when the API gave one, the cap after a rejected key. */
  #failureDelay(e: unknown): number {
    if (e instanceof ApiError) {
      if (e.status === 401 || e.status === 403) return this.#backoff.capMs;
      if (e.retryAfterMs !== undefined) return Math.max(e.retryAfterMs, this.#backoff.next());
    }
    return this.#backoff.next();
  }

  #describe(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
  }

  /** Registers, retrying until it succeeds or `signal` aborts. */
  async register(signal: AbortSignal): Promise<boolean> {
    while (!signal.aborted) {
      const report = await this.#o.collect();
      this.#ips = report.ip_addresses;
      const body: RegisterRequest = {
        hostname: this.#o.hostname,
        ...(this.#o.alias ? { alias: this.#o.alias } : {}),
        ip_addresses: report.ip_addresses,
        ssh_port: this.#o.sshPort,
        system_info: report.system_info,
      };
      try {
        const vps = await this.#o.api.register(body);
        this.#o.metrics.registerTotal.inc({ result: "success" });
        this.#o.metrics.registered.set(1);
        this.#registered = true;
        this.#keyRejected = false;
        this.#lastRegister = { ok: true, at: new Date().toISOString() };
        this.#nextAttempt = null;
        this.#backoff.reset();
        this.#registerFailure.ok();
        if (vps.id !== this.#vpsId) await this.#persist(vps.id);
        this.#setVpsId(vps.id);
        this.#o.log.info("registered", {
          vps_id: vps.id,
          hostname: this.#o.hostname,
          ips: report.ip_addresses.length,
        });
        return true;
      } catch (e) {
        this.#o.metrics.registerTotal.inc({ result: "failure" });
        this.#lastRegister = { ok: false, at: new Date().toISOString(), error: this.#describe(e) };
        const delay = this.#failureDelay(e);
        this.#nextAttempt = Date.now() + delay;
        this.#logFailure(this.#registerFailure, "registration failed; retrying", e, delay);
        if (!(await sleep(delay, signal))) return false;
      }
    }
    return false;
  }

  /** Logs a failed call once (see {@linkcode RepeatedFailure}); a rejected key at error level. */
  #logFailure(gate: RepeatedFailure, msg: string, e: unknown, delay: number) {
    const fields = {
      error: this.#describe(e),
      retry_in_ms: delay,
      next: `retry in ${seconds(delay)}`,
    };
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      this.#keyRejected = true;
      gate.fail(
        `sigma-api rejected the API key; check SIGMA_API_KEY (retrying every ${
          seconds(this.#backoff.capMs)
        })`,
        { ...fields, status: e.status },
        "error",
      );
    } else gate.fail(msg, fields);
  }

  /** One heartbeat. Returns `"gone"` when the API no longer knows the VPS. */
  async heartbeat(): Promise<"ok" | "gone" | number> {
    const report = await this.#o.collect();
    this.#ips = report.ip_addresses;
    const body: HeartbeatRequest = {
      hostname: this.#o.hostname,
      ip_addresses: report.ip_addresses,
      system_info: report.system_info,
    };
    try {
      const vps = await this.#o.api.heartbeat(body);
      this.#o.metrics.heartbeatTotal.inc({ result: "success" });
      this.#o.metrics.lastHeartbeatTimestamp.set(Date.now() / 1000);
      this.#lastHeartbeat = { ok: true, at: new Date().toISOString() };
      this.#backoff.reset();
      this.#keyRejected = false;
      this.#heartbeatFailure.ok({ vps_id: vps.id });
      this.#o.log.debug("heartbeat ok", { vps_id: vps.id });
      if (vps.id && vps.id !== this.#vpsId) {
        await this.#persist(vps.id);
        this.#setVpsId(vps.id);
      }
      return "ok";
    } catch (e) {
      this.#o.metrics.heartbeatTotal.inc({ result: "failure" });
      this.#lastHeartbeat = { ok: false, at: new Date().toISOString(), error: this.#describe(e) };
      if (e instanceof ApiError && e.status === 404) {
        this.#o.log.warn("heartbeat: VPS not found in sigma-api; registering again");
        return "gone";
      }
      const delay = Math.min(this.#failureDelay(e), this.#o.intervalSec * 1000);
      this.#logFailure(this.#heartbeatFailure, "heartbeat failed", e, delay);
      return delay;
    }
  }

  /** Registers, then heartbeats until `signal` aborts. Never throws. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!(await this.register(signal))) return;
      let delay = jittered(this.#o.intervalSec * 1000, 0.1, this.#o.random);
      while (!signal.aborted) {
        this.#nextAttempt = Date.now() + delay;
        if (!(await sleep(delay, signal))) return;
        const r = await this.heartbeat();
        if (r === "gone") {
          this.#registered = false;
          this.#o.metrics.registered.set(0);
          break;
        }
        delay = r === "ok" ? jittered(this.#o.intervalSec * 1000, 0.1, this.#o.random) : r;
      }
    }
  }
}
