/**
 * The embedded dev sigma-api (lib/api/dev_server.ts) as a standalone server, for
 * `docker compose --profile dev up`: the agent container points `SIGMA_API_URL` at it, so the
 * whole stack runs without a real sigma-api. In-memory only; not for production.
 *
 * Usage: `deno run --allow-net=127.0.0.1 deploy/dev_api.ts [--hostname 127.0.0.1] [--port 3000]`
 *
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 deploy/dev_api.ts --port 3000 &
 * curl http://127.0.0.1:3000/api/vps
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEMO_NODE_ID, DevApi } from "../lib/api/dev_server.ts";

/** Parses the flags, serves until SIGTERM/SIGINT; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "3000" },
        "api-key": { type: "string" },
      },
    }));
  } catch (e) {
    console.error(`dev_api: ${(e as Error).message}`);
    return 2;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`dev_api: invalid --port ${JSON.stringify(values.port)}`);
    return 2;
  }
  const api = new DevApi({ seedDemo: true, apiKey: values["api-key"] });
  const url = api.listen({ hostname: values.hostname, port });
  console.log(JSON.stringify({ msg: "dev sigma-api listening", url, demo_node_id: DEMO_NODE_ID }));
  await new Promise<void>((resolve) => {
    for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, resolve);
  });
  await api.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
