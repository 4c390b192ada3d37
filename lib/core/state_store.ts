/**
 * The agent's state directory: small JSON files written atomically (temp file, fsync, rename),
 * so a crash or power loss leaves either the old or the new file, never half of one.
 *
 * @example
 * ```ts
 * import { StateStore } from "./state_store.ts";
 * const store = new StateStore(await Deno.makeTempDir());
 * await store.write("vps.json", { id: "42" });
 * const vps = await store.read<{ id: string }>("vps.json"); // { id: "42" }
 * ```
 *
 * @module
 */

/** Reads and writes JSON documents in one directory. */
export class StateStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir.replace(/\/+$/, "") || "/";
  }

  /** Path of `name` inside the directory. */
  path(name: string): string {
    if (name.includes("/") || name.startsWith(".")) {
      throw new Error(`invalid state file name: ${name}`);
    }
    return `${this.dir}/${name}`;
  }

  /** Creates the directory (mode 0700) if needed. */
  async ensureDir(): Promise<void> {
    await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Reads `name`; `undefined` when it does not exist.
   *
   * @throws when the file exists but is not valid JSON (callers log and ignore it)
   */
  async read<T>(name: string): Promise<T | undefined> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    return JSON.parse(text) as T;
  }

  /** Writes `value` as JSON to `name` atomically. */
  write(name: string, value: unknown): Promise<void> {
    return this.writeText(name, JSON.stringify(value));
  }

  /**
   * Writes `text` (already serialized JSON) to `name` atomically: for callers that build a large
   * document from pieces they keep, instead of serializing everything again.
   */
  writeText(name: string, text: string): Promise<void> {
    return this.writeBytes(name, new TextEncoder().encode(text));
  }

  /**
   * Writes `data` (UTF-8 JSON) to `name` atomically: for callers that keep their pieces as bytes
   * and join them with one copy, so a large document is never a string to encode again.
   */
  async writeBytes(name: string, data: Uint8Array): Promise<void> {
    await this.ensureDir();
    const final = this.path(name);
    const tmp = `${final}.tmp-${crypto.randomUUID()}`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      let off = 0;
      while (off < data.length) off += await file.write(data.subarray(off));
      await file.sync();
    } finally {
      file.close();
    }
    try {
      await Deno.rename(tmp, final);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}
