/**
 * Dockerfile and .dockerignore. No Docker engine runs here, so the image is checked in two ways:
 * the Dockerfile's instructions are parsed and held to issue #6 (multi-stage, pinned Deno from
 * npm, nothing downloaded from elsewhere, slim Debian with iproute2, non-root, OCI labels, a
 * HEALTHCHECK through the agent), and the build stage's real work — `deploy/install.sh` and the
 * launcher it installs — runs in launcher_test.ts.
 */
import assert from "node:assert/strict";
import { ROOT } from "./support.ts";

/** One Dockerfile instruction with its arguments (continuation lines joined). */
interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Parses a Dockerfile into instructions; `stage` counts FROM lines (0 before the first). */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = 0;
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (pending === "" && (line.trim() === "" || line.trimStart().startsWith("#"))) continue;
    if (line.trimStart().startsWith("#")) continue; // comment inside a continued instruction
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " ";
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const m = /^(\w+)\s+([\s\S]*)$/.exec(full);
    assert.ok(m, `instruction: ${full}`);
    const op = m[1].toUpperCase();
    if (op === "FROM") stage++;
    out.push({ op, args: m[2].trim(), stage });
  }
  return out;
}

/** The `.dockerignore` verdict for a context path (last matching pattern wins, `!` re-includes). */
export function dockerignored(patterns: string[], path: string): boolean {
  let ignored = false;
  const toRegex = (p: string) =>
    new RegExp(
      "^" + p.replace(/\/$/, "").replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, "\u0000")
        .replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]").replaceAll("\u0000", ".*") +
        "$",
    );
  for (const raw of patterns) {
    const neg = raw.startsWith("!");
    const re = toRegex(neg ? raw.slice(1) : raw);
    // A pattern matching a parent directory matches everything below it.
    const parts = path.split("/");
    const hit = parts.some((_, i) => re.test(parts.slice(0, i + 1).join("/")));
    if (hit) ignored = !neg;
  }
  return ignored;
}

function readDockerfile(text = Deno.readTextFileSync(`${ROOT}Dockerfile`)) {
  const ins = parseDockerfile(text);
  const stages = ins.filter((i) => i.op === "FROM");
  const last = stages.length;
  return { ins, stages, final: ins.filter((i) => i.stage === last) };
}

function ignorePatterns(): string[] {
  return Deno.readTextFileSync(`${ROOT}.dockerignore`).split("\n").map((l) => l.trim()).filter(
    (l) => l !== "" && !l.startsWith("#"),
  );
}

/** Problems of a Dockerfile against issue #6 (empty when it complies). */
function dockerfileProblems(text: string): string[] {
  const problems: string[] = [];
  const { ins, stages, final } = readDockerfile(text);
  if (stages.length < 2) problems.push("not multi-stage");
  if (!/^debian:[\w.-]*slim\b/.test(stages.at(-1)?.args ?? "")) {
    problems.push("the runtime base is not a slim Debian");
  }
  // Deno: pinned, from npm, the same version the tests run on.
  const arg = ins.find((i) => i.op === "ARG" && i.args.startsWith("DENO_VERSION="));
  if (arg?.args !== `DENO_VERSION=${Deno.version.deno}`) {
    problems.push(`DENO_VERSION is not pinned to ${Deno.version.deno}`);
  }
  if (
    !ins.some((i) => i.op === "RUN" && /npm install .*"?deno@\$\{DENO_VERSION\}"?/.test(i.args))
  ) {
    problems.push("Deno is not installed from npm at DENO_VERSION");
  }
  // Nothing fetched from anywhere but Debian and npm.
  for (const i of ins) {
    if (i.op === "ADD") problems.push(`ADD fetches or unpacks: ${i.args}`);
    if (i.op === "RUN" && /\b(curl|wget)\b|https?:\/\/|deno compile|deno upgrade/.test(i.args)) {
      problems.push(`RUN downloads from elsewhere: ${i.args}`);
    }
  }
  const apt = final.find((i) => i.op === "RUN" && /apt-get install/.test(i.args));
  if (!apt || !/\biproute2\b/.test(apt.args)) problems.push("the runtime lacks iproute2 (ss)");
  const user = final.filter((i) => i.op === "USER").at(-1)?.args;
  if (!user || /^(0|root)(:|$)/.test(user)) problems.push("the runtime runs as root");
  // Root with only SYS_PTRACE + DAC_READ_SEARCH (compose, Kubernetes) writes the state dir as
  // group 0; the default user as its owner.
  if (
    !final.some((i) =>
      i.op === "RUN" && /install -d -o \S+ -g 0 -m 07[67]0 \/var\/lib\/sigma-agent/.test(i.args)
    )
  ) {
    problems.push("the state dir is not writable by both the image user and capability-less root");
  }
  const labels = final.filter((i) => i.op === "LABEL").map((i) => i.args).join(" ");
  for (const key of ["title", "description", "version", "revision"]) {
    if (!labels.includes(`org.opencontainers.image.${key}=`)) problems.push(`no OCI label ${key}`);
  }
  const health = final.find((i) => i.op === "HEALTHCHECK")?.args ?? "";
  const cmd = /CMD\s+(\[.*\])\s*$/.exec(health);
  const argv = cmd ? JSON.parse(cmd[1]) as string[] : [];
  if (argv[0] !== "/usr/local/bin/sigma-agent" || argv[1] !== "status") {
    problems.push("HEALTHCHECK does not run `sigma-agent status` (exec form)");
  }
  // Issue 14: a `# syntax=` directive makes BuildKit pull a frontend image from Docker Hub.
  if (/^#\s*syntax\s*=/im.test(text)) {
    problems.push("a # syntax= directive fetches a BuildKit frontend from Docker Hub");
  }
  // `status` finds the agent through listen.json in the state dir: the variable must point there,
  // and the comment must say so (not the old "127.0.0.1:$AGENT_METRICS_PORT").
  const env = final.filter((i) => i.op === "ENV").map((i) => i.args).join(" ");
  if (!/\bAGENT_STATE_DIR=\/var\/lib\/sigma-agent\b/.test(env)) {
    problems.push("AGENT_STATE_DIR is not set, so the HEALTHCHECK cannot find listen.json");
  }
  const healthComment = text.split("\n").slice(
    0,
    text.split("\n").findIndex((l) => l.startsWith("HEALTHCHECK")),
  ).reverse();
  const comment = healthComment.slice(0, healthComment.findIndex((l) => !l.startsWith("#")))
    .join(" ");
  if (!/listen\.json/.test(comment) || /\$AGENT_METRICS_PORT/.test(comment)) {
    problems.push("the HEALTHCHECK comment does not say where `status` looks");
  }
  const entry = final.find((i) => i.op === "ENTRYPOINT")?.args;
  if (entry !== '["/usr/local/bin/sigma-agent"]') problems.push("ENTRYPOINT is not the agent");
  return problems;
}

Deno.test("Dockerfile: multi-stage, pinned Deno from npm, slim Debian + iproute2, non-root, labels, healthcheck", () => {
  assert.deepEqual(dockerfileProblems(Deno.readTextFileSync(`${ROOT}Dockerfile`)), []);
});

Deno.test("Dockerfile: the checks reject a Dockerfile that breaks the rules", () => {
  const good = Deno.readTextFileSync(`${ROOT}Dockerfile`);
  const cases: [string, string, RegExp][] = [
    ["root user", good.replace("USER 10001:10001", "USER root"), /runs as root/],
    [
      "curl download",
      good.replace("RUN apt-get update", "RUN curl -fsSL https://x | sh && apt-get update"),
      /downloads/,
    ],
    [
      "deno compile",
      good.replace("RUN deploy/install.sh /opt/sigma-agent", "RUN deno compile main.ts"),
      /downloads/,
    ],
    ["no iproute2", good.replace(" iproute2 ", " "), /iproute2/],
    [
      "other Deno",
      good.replace(`DENO_VERSION=${Deno.version.deno}`, "DENO_VERSION=2.0.0"),
      /pinned/,
    ],
    [
      "curl healthcheck",
      good.replace(
        'CMD ["/usr/local/bin/sigma-agent", "status"]',
        "CMD curl -f http://127.0.0.1:9102/healthz",
      ),
      /HEALTHCHECK/,
    ],
    ["fat base", good.replace("FROM debian:bookworm-slim", "FROM debian:bookworm"), /slim/],
    ["syntax directive", "# syntax=docker/dockerfile:1\n" + good, /syntax/],
    [
      "no state dir variable",
      good.replace("AGENT_STATE_DIR=/var/lib/sigma-agent", "AGENT_X=1"),
      /AGENT_STATE_DIR/,
    ],
    [
      "stale healthcheck comment",
      good.replace("$AGENT_STATE_DIR/listen.json", "127.0.0.1:$AGENT_METRICS_PORT"),
      /comment/,
    ],
    [
      "state dir",
      good.replace("-g 0 -m 0770 /var/lib/sigma-agent", "-g sigma -m 0750 /var/lib/sigma-agent"),
      /state dir/,
    ],
  ];
  for (const [what, text, re] of cases) {
    assert.notEqual(text, good, what);
    const problems = dockerfileProblems(text);
    assert.ok(problems.some((p) => re.test(p)), `${what}: ${problems.join("; ")}`);
  }
});

Deno.test("Dockerfile: every COPY source exists and passes .dockerignore; tests and secrets stay out", () => {
  const { ins } = readDockerfile();
  const patterns = ignorePatterns();
  const sources = ins.filter((i) => i.op === "COPY" && !i.args.startsWith("--from")).flatMap(
    (i) => {
      const parts = i.args.split(/\s+/);
      return parts.slice(0, -1);
    },
  );
  assert.ok(sources.length > 0);
  for (const src of sources) {
    Deno.statSync(`${ROOT}${src}`); // exists
    assert.equal(
      dockerignored(patterns, src.replace(/\/$/, "")),
      false,
      `${src} reaches the build`,
    );
  }
  // What install.sh copies into the image is what the Dockerfile sends.
  const install = Deno.readTextFileSync(`${ROOT}deploy/install.sh`);
  for (const m of install.matchAll(/"\$src\/([^"]+)"/g)) {
    assert.equal(dockerignored(patterns, m[1]), false, `install.sh needs ${m[1]}`);
    assert.ok(
      sources.some((s) => m[1] === s || m[1].startsWith(s.replace(/\/?$/, "/"))),
      `${m[1]} is copied`,
    );
  }
  for (
    const p of [
      ".git/config",
      "tests/helpers.ts",
      "node_modules/yaml/package.json",
      ".env",
      "dist/sigma-agent",
      "docs/status-page.png",
    ]
  ) {
    assert.equal(dockerignored(patterns, p), true, `${p} stays out of the build context`);
  }
});

Deno.test("Dockerfile: the .dockerignore matcher follows Docker's rules", () => {
  assert.equal(dockerignored(["*", "!lib/"], "lib/a/b.ts"), false);
  assert.equal(dockerignored(["*", "!lib/"], "libx/b.ts"), true);
  assert.equal(dockerignored(["**/*.md"], "a/b/c.md"), true);
  assert.equal(dockerignored(["tests", "!tests/keep.ts"], "tests/keep.ts"), false);
});
