/**
 * What an operator sees of a running agent: the status board every feature publishes a section
 * to (`board.ts`, served as `/status`), the health verdict computed from it (`health.ts`), the
 * HTML page (`page.ts`, `/status` for browsers) and the `sigma-agent status` CLI (`cli.ts`).
 *
 * May import: `core`. The board only holds providers that features register; it reads their
 * state when asked and never reaches into a feature's module.
 *
 * @example
 * ```ts
 * import { StatusBoard } from "./status/mod.ts";
 * const board = new StatusBoard();
 * board.provide("ports", () => ({ scans: 1 }));
 * ```
 *
 * @module
 */
export { StatusBoard } from "./board.ts";
export { statusCommand } from "./cli.ts";
export type { CommandResult } from "./cli.ts";
export { assessHealth } from "./health.ts";
export type { Health } from "./health.ts";
export { statusPageRoute } from "./page.ts";
