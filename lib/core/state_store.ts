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

/** The pieces of a document for {@linkcode StateStore.writeParts}: text, or UTF-8 bytes. */
export type DocumentParts = Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>;

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
   * Writes the concatenation of `parts` (already serialized JSON, as text or as UTF-8 bytes) to
   * `name` atomically, through one small reused buffer: a large document assembled from pieces
   * its caller keeps is never built as one string or one byte array. A byte part is used before
   * the next part is asked for, so a producer may hand out the same buffer again.
   */
  async writeParts(name: string, parts: DocumentParts): Promise<void> {
    (await this.#writeAtomic(name, parts, false, undefined)).close();
  }

  /**
   * {@linkcode StateStore.writeParts}, then the written file stays open for reading, which the
   * caller closes: its bytes stay readable through the handle whatever later happens to `name`
   * (a later write replaces the name, never the file behind an open handle). `written.bytes`
   * counts the bytes of the parts used so far, so a producer learns where each of its parts lands
   * without encoding text itself.
   */
  writePartsAndOpen(
    name: string,
    parts: DocumentParts,
    written?: { bytes: number },
  ): Promise<Deno.FsFile> {
    return this.#writeAtomic(name, parts, true, written);
  }

  async #writeAtomic(
    name: string,
    parts: DocumentParts,
    read: boolean,
    written: { bytes: number } | undefined,
  ): Promise<Deno.FsFile> {
    await this.ensureDir();
    const final = this.path(name);
    const tmp = `${final}.tmp-${crypto.randomUUID()}`;
    const file = await Deno.open(tmp, {
      read,
      write: true,
      create: true,
      truncate: true,
      mode: 0o600,
    });
    try {
      const buf = new Uint8Array(PART_BUFFER_BYTES);
      let used = 0;
      const writeAll = async (bytes: Uint8Array) => {
        let off = 0;
        while (off < bytes.length) off += await file.write(bytes.subarray(off));
      };
      const flush = async () => {
        await writeAll(buf.subarray(0, used));
        used = 0;
      };
      for await (let part of parts) {
        if (typeof part !== "string") {
          if (part.length > PART_BUFFER_BYTES - used) await flush();
          if (part.length >= PART_BUFFER_BYTES) await writeAll(part);
          else {
            buf.set(part, used);
            used += part.length;
          }
          if (written) written.bytes += part.length;
          continue;
        }
        while (part.length > 0) {
          // A UTF-16 unit is at most 3 UTF-8 bytes: flush first when the part might not fit.
          if (PART_BUFFER_BYTES - used < 4) await flush();
          const done = encoder.encodeInto(part, buf.subarray(used));
          used += done.written;
          if (written) written.bytes += done.written;
          part = part.slice(done.read);
          if (part.length > 0) await flush();
        }
      }
      await flush();
      await file.sync();
      await Deno.rename(tmp, final);
    } catch (e) {
      file.close();
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
    return file;
  }
}
