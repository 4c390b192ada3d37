/**
 * The status board: each feature registers a function that describes its current state, and
 * `/status`, the HTML page and `sigma-agent status` read the board. Features never read each
 * other's state through it; it only flows out to the servers.
 *
 * @example
 * ```ts
 * import { StatusBoard } from "./board.ts";
 * const board = new StatusBoard();
 * board.provide("ports", () => ({ available: 10 }));
 * board.snapshot(); // { ports: { available: 10 } }
 * ```
 *
 * @module
 */

import { assessHealth } from "./health.ts";

/** Collects per-feature status providers. */
export class StatusBoard {
  readonly #providers = new Map<string, () => unknown>();

  /** Registers (or replaces) the provider of section `name`. */
  provide(name: string, fn: () => unknown): void {
    this.#providers.set(name, fn);
  }

  /** Every section's current value; a throwing provider yields `{ error }` instead. */
  snapshot(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, fn] of this.#providers) {
      try {
        out[name] = fn();
      } catch (e) {
        out[name] = { error: (e as Error).message };
      }
    }
    return out;
  }

  /** The `/status` document: every section plus the health verdict over them. */
  document(): Record<string, unknown> {
    const sections = this.snapshot();
    return { generated_at: new Date().toISOString(), ...sections, health: assessHealth(sections) };
  }
}
