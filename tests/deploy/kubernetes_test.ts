/**
 * deploy/kubernetes/: every object — as written and as rendered by `kubectl kustomize` (offline)
 * — validates against the Kubernetes OpenAPI schemas (npm `kubernetes-models`), has no field the
 * API does not define (a type check against the same models' generated types), and the DaemonSet
 * has what issue #6 asks for. The Envoy bootstrap in the ConfigMap is strictly valid.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { VERSION } from "../../lib/core/config.ts";
import { strictBootstrapFromYaml } from "../support/upstream_protos.ts";
import { ROOT, run, which } from "./support.ts";

const DIR = `${ROOT}deploy/kubernetes`;

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

function parseDocs(text: string, where: string): Obj[] {
  return parseAllDocuments(text).flatMap((d) => {
    if (d.errors.length) throw new Error(`${where}: ${d.errors[0].message}`);
    const v = d.toJS();
    return v === null ? [] : [v as Obj];
  });
}

/** The objects of the kustomization's `resources`, as written. */
async function resourceDocs(dir = DIR): Promise<Obj[]> {
  const k =
    parseDocs(await Deno.readTextFile(`${dir}/kustomization.yaml`), "kustomization.yaml")[0];
  const docs: Obj[] = [];
  for (const file of k.resources as string[]) {
    docs.push(...parseDocs(await Deno.readTextFile(`${dir}/${file}`), file));
  }
  return docs;
}

/** The module of `kubernetes-models` that defines an object's kind. */
function modelPath(o: Obj): string {
  assert.ok(typeof o.apiVersion === "string" && typeof o.kind === "string", "apiVersion and kind");
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}

/** Validates each object with its model's OpenAPI validator; returns the problems. */
async function schemaProblems(docs: Obj[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of docs) {
    const where = `${o.kind}/${o.metadata?.name}`;
    let mod: Obj;
    try {
      mod = await import(modelPath(o));
    } catch (e) {
      problems.push(`${where}: no model for ${o.apiVersion} ${o.kind} (${(e as Error).message})`);
      continue;
    }
    try {
      new mod[o.kind](o).validate();
    } catch (e) {
      problems.push(`${where}: ${(e as Error).message}`);
    }
  }
  return problems;
}

/**
 * Unknown fields: the OpenAPI validators accept them, so each object is type-checked as an object
 * literal against the model's generated interface (`deno check`), where an excess property is an
 * error. Returns the type checker's complaints (empty when all objects are clean).
 */
async function unknownFieldProblems(docs: Obj[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sigma-k8s-types-" });
  try {
    const lines = docs.flatMap((o, i) => [
      `import type { I${o.kind} as T${i} } from "${modelPath(o)}";`,
      `export const doc${i}: T${i} = ${JSON.stringify(o, null, 2)};`,
    ]);
    const file = `${dir}/objects.ts`;
    await Deno.writeTextFile(file, lines.join("\n") + "\n");
    const r = await run(Deno.execPath(), [
      "check",
      "--quiet",
      "--config",
      `${ROOT}deno.json`,
      file,
    ], { env: { NO_COLOR: "1" } });
    return r.code === 0 ? "" : r.stdout + r.stderr;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function kustomize(dir = DIR): Promise<Obj[]> {
  const kubectl = which("kubectl");
  assert.ok(kubectl, "kubectl is installed");
  const r = await run(kubectl, ["kustomize", dir]);
  assert.equal(r.code, 0, r.stderr);
  return parseDocs(r.stdout, "kubectl kustomize");
}

/**
 * The kustomization rendered without kubectl, for the features it uses: namespace, generated
 * ConfigMaps (literals and files; names left without kustomize's hash suffix, references
 * unchanged) and image tags. kubectl is not in Debian's repositories, so a fresh CI machine may
 * lack it; the real `kubectl kustomize` output is checked the same way where it exists.
 */
async function renderWithoutKubectl(dir = DIR): Promise<Obj[]> {
  const k =
    parseDocs(await Deno.readTextFile(`${dir}/kustomization.yaml`), "kustomization.yaml")[0];
  const docs = await resourceDocs(dir);
  for (const gen of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {};
    for (const lit of gen.literals ?? []) {
      const eq = lit.indexOf("=");
      data[lit.slice(0, eq)] = lit.slice(eq + 1);
    }
    for (const f of gen.files ?? []) {
      const [key, path] = f.includes("=") ? f.split("=") : [f.split("/").pop(), f];
      data[key] = await Deno.readTextFile(`${dir}/${path}`);
    }
    docs.push({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: gen.name }, data });
  }
  for (const d of docs) {
    if (d.kind !== "Namespace" && k.namespace) d.metadata.namespace = k.namespace;
    for (const c of d.spec?.template?.spec?.containers ?? []) {
      const img = (k.images ?? []).find((i: Obj) => i.name === c.image.split(":")[0]);
      if (img) c.image = `${img.newName ?? img.name}:${img.newTag}`;
    }
  }
  return docs;
}

/** Renderers to check: always the built-in one, and kubectl's where it is installed. */
const RENDERERS: [string, () => Promise<Obj[]>][] = [
  ["rendered without kubectl", () => renderWithoutKubectl()],
  ["rendered by kubectl kustomize", () => kustomize()],
];

function kubectlMissing(name: string): boolean {
  if (!name.includes("kubectl") || which("kubectl")) return false;
  console.warn(
    "skipping kubectl kustomize: kubectl is not installed (not in Debian's repositories)",
  );
  return true;
}

Deno.test("kubernetes: every resource validates against the OpenAPI schemas, no unknown fields", async () => {
  const docs = await resourceDocs();
  assert.deepEqual(docs.map((d) => d.kind).sort(), [
    "DaemonSet",
    "Namespace",
    "Service",
    "ServiceAccount",
  ]);
  assert.deepEqual(await schemaProblems(docs), []);
  assert.equal(await unknownFieldProblems(docs), "");
});

Deno.test("kubernetes: the validators reject broken manifests", async () => {
  const ds = (await resourceDocs()).find((d) => d.kind === "DaemonSet")!;
  const clone = () => structuredClone(ds);

  const wrongType = clone();
  wrongType.spec.template.spec.containers = "agent";
  assert.notDeepEqual(await schemaProblems([wrongType]), [], "a wrong type fails the schema");

  const badProbe = clone();
  badProbe.spec.template.spec.containers[0].readinessProbe.httpGet.port = { name: "metrics" };
  assert.notDeepEqual(
    await schemaProblems([badProbe]),
    [],
    "an int-or-string given an object fails",
  );

  const typo = clone();
  typo.spec.template.spec.hostPid = true;
  const complaint = await unknownFieldProblems([typo]);
  assert.match(complaint, /hostPid/, "a misspelt field is an unknown field");
});

for (const [how, render] of RENDERERS) {
  Deno.test({
    name: `kubernetes: all objects ${how} validate`,
    ignore: kubectlMissing(how),
    async fn() {
      const docs = await render();
      assert.deepEqual(
        docs.map((d) => d.kind).sort(),
        ["ConfigMap", "ConfigMap", "DaemonSet", "Namespace", "Service", "ServiceAccount"],
      );
      for (const d of docs) assert.equal(d.metadata.namespace ?? "sigma-system", "sigma-system");
      assert.deepEqual(await schemaProblems(docs), []);
      assert.equal(await unknownFieldProblems(docs), "");
    },
  });
}

for (const [how, render] of RENDERERS) {
  Deno.test({
    name: `kubernetes: the DaemonSet (${how}) runs the agent and an Envoy sidecar as issue #6 asks`,
    ignore: kubectlMissing(how),
    async fn() {
      const docs = await render();
      const ds = docs.find((d) => d.kind === "DaemonSet")!;
      const configMaps = docs.filter((d) => d.kind === "ConfigMap");
      const pod = ds.spec.template.spec;
      assert.equal(pod.hostNetwork, true);
      assert.equal(pod.hostPID, true);
      assert.equal(ds.spec.updateStrategy.type, "RollingUpdate");
      assert.ok(
        pod.tolerations.some((t: Obj) => t.operator === "Exists" && !t.key && !t.effect),
        "tolerates every taint, so it runs on every node",
      );
      for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) {
        assert.equal(ds.spec.template.metadata.labels[k], v, "selector matches the pod labels");
      }
      const service = docs.find((d) => d.kind === "Service")!;
      for (const [k, v] of Object.entries(service.spec.selector)) {
        assert.equal(ds.spec.template.metadata.labels[k], v, "the Service selects the pods");
      }

      const agent = pod.containers.find((c: Obj) => c.name === "agent");
      const envoy = pod.containers.find((c: Obj) => c.name === "envoy");
      assert.ok(agent && envoy);
      assert.equal(agent.image, `sigma-agent:${VERSION}`, "image tag follows the agent version");
      assert.ok(agent.securityContext.capabilities.add.includes("SYS_PTRACE"));
      for (const c of pod.containers) {
        for (const kind of ["requests", "limits"]) {
          assert.ok(c.resources?.[kind]?.cpu && c.resources?.[kind]?.memory, `${c.name} ${kind}`);
        }
      }

      // Settings: the agent's env from the generated ConfigMap; the API key only from a Secret.
      const settingsRef = agent.envFrom.find((e: Obj) => e.configMapRef).configMapRef.name;
      const settings = configMaps.find((c) => c.metadata.name === settingsRef)!.data;
      const key = agent.env.find((e: Obj) => e.name === "SIGMA_API_KEY");
      assert.ok(
        key.valueFrom.secretKeyRef.name && key.valueFrom.secretKeyRef.key,
        "API key from a Secret",
      );
      assert.equal(key.value, undefined);
      assert.ok(!("SIGMA_API_KEY" in settings), "no API key in a ConfigMap");
      // POST /ports/allocate is never open: its token comes from the same Secret.
      const token = agent.env.find((e: Obj) => e.name === "AGENT_ALLOCATE_TOKEN");
      assert.deepEqual(token?.valueFrom?.secretKeyRef, {
        name: key.valueFrom.secretKeyRef.name,
        key: "allocate-token",
      });
      assert.ok(!("AGENT_ALLOCATE_TOKEN" in settings), "no allocate token in a ConfigMap");
      assert.ok(!docs.some((d) => d.kind === "Secret"), "no Secret with a literal key is shipped");
      for (const c of configMaps) {
        assert.doesNotMatch(
          JSON.stringify(c.data),
          /\bsk_|api[_-]?key\s*[:=]/i,
          "no key material in ConfigMaps",
        );
      }

      // Probes on the metrics port the agent is configured with.
      const metricsPort = agent.ports.find((p: Obj) =>
        p.name === agent.readinessProbe.httpGet.port
      );
      assert.equal(agent.readinessProbe.httpGet.path, "/readyz");
      assert.equal(agent.livenessProbe.httpGet.path, "/healthz");
      assert.equal(agent.livenessProbe.httpGet.port, agent.readinessProbe.httpGet.port);
      assert.equal(String(metricsPort.containerPort), settings.AGENT_METRICS_PORT);

      // The host root, read-only, for disk info (and the host's hostname).
      const hostMount = agent.volumeMounts.find((m: Obj) =>
        m.mountPath === settings.AGENT_DISK_PATH
      );
      assert.ok(hostMount?.readOnly, "the disk path is a read-only host mount");
      const hostVolume = pod.volumes.find((v: Obj) => v.name === hostMount.name);
      assert.equal(hostVolume.hostPath.path, "/etc/hostname");
      assert.equal(hostMount.mountPath, "/etc/host_hostname");

      // Envoy: node id from the node name (downward API), bootstrap from the ConfigMap.
      const nodeNameEnv = envoy.env.find((e: Obj) =>
        e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName"
      );
      assert.ok(nodeNameEnv, "NODE_NAME from the downward API");
      const argAfter = (flag: string) => envoy.args[envoy.args.indexOf(flag) + 1];
      assert.equal(argAfter("--service-node"), `$(${nodeNameEnv.name})`);
      const configPath: string = argAfter("--config-path");
      const mount = envoy.volumeMounts.find((m: Obj) => configPath.startsWith(m.mountPath + "/"));
      const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
      const bootstrapMap = configMaps.find((c) => c.metadata.name === volume.configMap.name)!;
      const bootstrapText = bootstrapMap.data[configPath.slice(mount.mountPath.length + 1)];
      // deno-lint-ignore no-explicit-any
      const bootstrap = strictBootstrapFromYaml(bootstrapText) as any;
      const sa = bootstrap.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0]
        .endpoint.address.socket_address;
      assert.equal(
        String(sa.port_value),
        settings.AGENT_XDS_PORT,
        "Envoy dials the agent's xDS port",
      );
      assert.equal(sa.address, settings.AGENT_XDS_ADDR);
      assert.equal(settings.AGENT_XDS_ENABLED, "true");
    },
  });
}
