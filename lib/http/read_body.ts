/**
 * Reads a byte stream into memory with a size cap, giving up (and cancelling the stream) as soon
 * as the cap is passed - used for API responses and request bodies alike, so neither a huge
 * answer nor a huge upload is ever buffered whole.
 *
 * @example
 * ```ts
 * import { readCapped } from "./read_body.ts";
 * const bytes = await readCapped(new Response("hello").body, 1024); // Uint8Array(5)
 * const none = await readCapped(new Response("x".repeat(2048)).body, 1024); // undefined
 * ```
 *
 * @module
 */

/** All bytes of `stream`, or `undefined` once more than `max` bytes arrived. */
export async function readCapped(
  stream: ReadableStream<Uint8Array> | null,
  max: number,
): Promise<Uint8Array | undefined> {
  if (!stream) return new Uint8Array();
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  return joinBytes(chunks, size);
}

/**
 * The chunks as one array (`size` is their total length); a single chunk is returned as is.
 *
 * @example
 * ```ts
 * joinBytes([new Uint8Array([1]), new Uint8Array([2, 3])], 3); // Uint8Array [1, 2, 3]
 * ```
 */
export function joinBytes(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
