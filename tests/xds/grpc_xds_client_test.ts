/**
 * gRPC's own xDS client (`@grpc/grpc-js-xds`) against our server: a real, independent ADS
 * implementation that validates what it receives. gRPC clients accept only listeners with an
 * `api_listener`, so it NACKs our TCP-proxy listener: we must record that real NACK with its
 * message and not resend the rejected version.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as grpcXds from "@grpc/grpc-js-xds";
import { metricValue, route, waitUntil, withServer } from "./xds_client.ts";

Deno.test({
  name:
    "grpc-js-xds client: connects over ADS, gets answered, its real NACK is recorded and not answered with a resend",
  // The xDS client is a process-wide singleton that keeps its own timers after the channel closes.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withServer(async (env) => {
      env.install("grpc-client", "1", [route("a", 10001)]);
      Deno.env.set(
        "GRPC_XDS_BOOTSTRAP_CONFIG",
        JSON.stringify({
          xds_servers: [{
            server_uri: `127.0.0.1:${env.port}`,
            channel_creds: [{ type: "insecure" }],
            server_features: ["xds_v3"],
          }],
          node: { id: "grpc-client", cluster: "sigma", locality: {} },
        }),
      );
      grpcXds.register();
      const client = new grpc.Client("xds:///listener-a", grpc.credentials.createInsecure());
      try {
        // Connecting makes the channel resolve the target through xDS (an LDS subscription).
        client.getChannel().getConnectivityState(true);
        await waitUntil(
          async () =>
            (await metricValue(env.metrics.xdsNacksTotal, {
              node_id: "grpc-client",
              type: "lds",
            })) >= 1,
          30_000,
          "the gRPC client's NACK",
        );
        const node = env.server.status().nodes.find((n) => n.node_id === "grpc-client")!;
        assert.equal(node.connected_streams, 1);
        assert.equal(node.last_nack?.type, "lds");
        assert.equal(node.last_nack?.version, "1");
        assert.ok(node.last_nack!.error.length > 0);
        const logged = env.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "xds: NACK");
        assert.equal(logged.error, node.last_nack!.error);
        console.log(`gRPC's NACK: ${node.last_nack!.error}`);
        // Parked: however long we wait, the rejected listener set is not pushed again.
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(
          await metricValue(env.metrics.xdsPushesTotal, { node_id: "grpc-client", type: "lds" }),
          1,
        );
        assert.equal(
          await metricValue(env.metrics.xdsNacksTotal, { node_id: "grpc-client", type: "lds" }),
          1,
        );
        // A real change is pushed to the same client (and rejected again, for the same reason).
        env.install("grpc-client", "2", [route("a", 10005)]);
        await waitUntil(
          async () =>
            (await metricValue(env.metrics.xdsNacksTotal, {
              node_id: "grpc-client",
              type: "lds",
            })) >= 2,
          30_000,
          "the NACK of version 2",
        );
        assert.equal(
          env.server.status().nodes.find((n) => n.node_id === "grpc-client")!.last_nack?.version,
          "2",
        );
      } finally {
        client.close();
        Deno.env.delete("GRPC_XDS_BOOTSTRAP_CONFIG");
      }
    });
  },
});
