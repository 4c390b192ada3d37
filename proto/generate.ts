/**
 * Regenerates the TypeScript in `proto/gen/` from our minimal `.proto` files with `buf` and
 * `protoc-gen-es`, both pinned npm packages run through `npx` (only node/npm are needed; npx
 * downloads them on first use). Run it with `deno task proto`.
 *
 * `tests/xds/proto_gen_test.ts` calls {@linkcode generateProtos} with a temporary output directory
 * to check that the committed `proto/gen/` is what the generator produces.
 *
 * @example
 * ```ts
 * import { generateProtos } from "./generate.ts";
 * await generateProtos(); // rewrites proto/gen/ in place
 * ```
 *
 * @module
 */

/** The buf CLI (npm package `@bufbuild/buf`) version used for codegen. */
export const BUF_VERSION = "1.75.0";
/** Must match the `@bufbuild/protobuf` runtime version in deno.json / deno.lock. */
export const PROTOC_GEN_ES_VERSION = "2.17.0";

/** The repository root (parent of this file's directory). */
export const REPO_ROOT: string = new URL("..", import.meta.url).pathname;

/**
 * Runs `buf generate` with the repository's `buf.gen.yaml`.
 *
 * @param outBase Base directory for the output; the code lands in `<outBase>/proto/gen/`.
 *   Defaults to the repository root, i.e. regenerates `proto/gen/` in place.
 * @throws Error with buf's output when generation fails.
 *
 * @example
 * ```ts
 * import { generateProtos } from "./generate.ts";
 * const dir = await Deno.makeTempDir();
 * await generateProtos(dir); // writes <dir>/proto/gen/**\/*_pb.ts
 * ```
 */
export async function generateProtos(outBase: string = REPO_ROOT): Promise<void> {
  const args = [
    "--yes",
    "--loglevel=error",
    "-p",
    `@bufbuild/buf@${BUF_VERSION}`,
    "-p",
    `@bufbuild/protoc-gen-es@${PROTOC_GEN_ES_VERSION}`,
    "--",
    "buf",
    "generate",
    "--template",
    "buf.gen.yaml",
    "-o",
    outBase,
  ];
  const out = await new Deno.Command("npx", {
    args,
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const decoder = new TextDecoder();
    throw new Error(
      `buf generate failed (exit ${out.code}): ${decoder.decode(out.stderr)}${
        decoder.decode(out.stdout)
      }`,
    );
  }
}

if (import.meta.main) {
  await generateProtos();
  console.log("proto/gen/ regenerated");
}
