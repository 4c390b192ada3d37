/**
 * Runs `ss -tulnp` (the agent may run `ss` and nothing else: `--allow-run=ss`) and returns the
 * system's listening TCP ports with their owning process names. `ss` reads `/proc` itself, which
 * Deno's sandbox does not let the agent do.
 *
 * @example
 * ```ts
 * import { readListeningPorts } from "./listeners.ts";
 * const ports = await readListeningPorts(); // Map { 22 => "sshd", 9102 => "deno", ... }
 * ```
 *
 * @module
 */

import { listeningPorts, parseSsOutput } from "./ss.ts";

/** How to run `ss`. */
export interface SsCommandOptions {
  /** Executable, default `ss` (resolved through `PATH`). */
  command?: string;
  /** Arguments, default `-tulnp`. */
  args?: string[];
  /** Kill `ss` and fail after this long, default 10 000 ms. */
  timeoutMs?: number;
}

/** `ss` could not be run or failed; the message says why, in operator terms. */
export class SsError extends Error {
  override name = "SsError";
}

const decoder = new TextDecoder();

/**
 * Runs `ss` and parses its output into port -> process name (undefined when `ss` could not see
 * the owner, e.g. when the agent is not root).
 *
 * @throws {SsError} when `ss` is missing, not permitted, times out or exits non-zero
 *
 * @example
 * ```ts
 * try {
 *   await readListeningPorts({ command: "/nonexistent/ss" });
 * } catch (e) {
 *   // SsError: ss not found (/nonexistent/ss): install iproute2
 * }
 * ```
 */
export async function readListeningPorts(
  opts: SsCommandOptions = {},
): Promise<Map<number, string | undefined>> {
  const command = opts.command ?? "ss";
  const args = opts.args ?? ["-tulnp"];
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new SsError(`ss not found (${command}): install iproute2`);
    }
    if (e instanceof Deno.errors.NotCapable) {
      throw new SsError(`not permitted to run ${command}: the agent needs --allow-run=ss`);
    }
    throw new SsError(`cannot run ${command}: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  if (abort.signal.aborted) throw new SsError(`${command} timed out after ${timeoutMs} ms`);
  if (!output.success) {
    const stderr = decoder.decode(output.stderr).trim().split("\n")[0] ?? "";
    const how = output.signal ? `was killed by ${output.signal}` : `exited with ${output.code}`;
    throw new SsError(`${command} ${args.join(" ")} ${how}${stderr ? `: ${stderr}` : ""}`);
  }
  return listeningPorts(parseSsOutput(decoder.decode(output.stdout)));
}
