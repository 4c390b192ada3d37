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

/** Size of the buffer {@linkcode StateStore.writeParts} encodes through. */
const PART_BUFFER_BYTES = 64 * 1024;

const encoder = new TextEncoder();

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
    return this.writeParts(name, [JSON.stringify(value)]);
  }

  /**
   * Writes the concatenation of `parts` (already serialized JSON) to `name` atomically, encoding
   * them through one small reused buffer: a large document assembled from pieces its caller keeps
   * is never built as one string or one byte array.
   */
  async writeParts(name: string, parts: Iterable<string>): Promise<void> {
    await this.ensureDir();
    const final = this.path(name);
    const tmp = `${final}.tmp-${crypto.randomUUID()}`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const buf = new Uint8Array(PART_BUFFER_BYTES);
      let used = 0;
      const flush = async () => {
        let off = 0;
        while (off < used) off += await file.write(buf.subarray(off, used));
        used = 0;
      };
      for (let part of parts) {
        while (part.length > 0) {
          // A UTF-16 unit is at most 3 UTF-8 bytes: flush first when the part might not fit.
          if (PART_BUFFER_BYTES - used < 4) await flush();
          const { read, written } = encoder.encodeInto(part, buf.subarray(used));
          used += written;
          part = part.slice(read);
          if (part.length > 0) await flush();
        }
      }
      await flush();
      await file.sync();
    } catch (e) {
      file.close();
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    file.close();
    try {
      await Deno.rename(tmp, final);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}
