/**
 * A fleet on the DevApi for poller tests: one registered VPS with many nodes and routes, and a
 * change of every route at once.
 *
 * @module
 */

import { SigmaClient } from "../../lib/api/client.ts";
import { DevApi } from "../../lib/api/dev_server.ts";
import { TEST_SYSTEM_INFO } from "../helpers.ts";

/** A registered VPS with `nodes` nodes of `routes` routes each on a fresh DevApi. */
export async function fleet(
  nodes: number,
  routes: number,
): Promise<{ dev: DevApi; vpsId: string; rows: string[] }> {
  const dev = new DevApi();
  dev.listen({ hostname: "127.0.0.1", port: 0 });
  const api = new SigmaClient({ baseUrl: dev.url, apiKey: undefined });
  const vps = await api.register({
    hostname: "fleet-host",
    ip_addresses: [],
    ssh_port: 22,
    system_info: TEST_SYSTEM_INFO,
  });
  const rows: string[] = [];
  for (let n = 0; n < nodes; n++) {
    const node = dev.addNode(vps.id, `node-${n}`);
    rows.push(node.id);
    for (let i = 0; i < routes; i++) {
      dev.addRoute(node.id, {
        name: `n${n}-r${i}`,
        listen_port: 20000 + i,
        backend_host: `10.0.${n & 255}.${i + 1}`,
        backend_port: 8000,
        cluster_type: "static",
        proxy_protocol: i % 3,
      });
    }
  }
  return { dev, vpsId: vps.id, rows };
}

/** Gives every route of every node a new backend port and listen port (CDS and LDS change). */
export function changeAll(dev: DevApi, round: number): void {
  for (const r of dev.routes) {
    r.backend_port = 8000 + round;
    r.listen_port += 1;
  }
  for (const n of dev.nodes) dev.bumpVersion(n.id);
}
