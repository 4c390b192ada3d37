/**
 * The `ss` parser on real captured output (fixtures/capture.sh: `ss -tulnp` with the Netid
 * column, `ss -tlnp` without it, with and without header, and as an unprivileged user who sees no
 * process column), odd process names, categories, and property tests.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { PORT_SOURCES } from "../../lib/core/metrics.ts";
import {
  countBySource,
  listeningPorts,
  parseSsLine,
  parseSsOutput,
  processCategory,
} from "../../lib/ports/ss.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** What fixtures/capture.sh started: port → process name (TCP listeners only). */
const CAPTURED = new Map<number, string>([
  [10000, "envoy"],
  [10001, "envoy"],
  [18080, "nginx"],
  [18443, "nginx"],
  [12222, "sshd"],
  [12223, "sshd"],
  [19100, "node_exporter"],
  [10808, "xray"],
  [21001, "my server"],
  [21003, "my server"],
  [21002, 'we"ird(x'],
  [21004, "sshd: root@pts/"],
  [21016, "sshd: root@pts/"],
]);

const sorted = (m: Map<number, string | undefined>) => [...m].sort((a, b) => a[0] - b[0]);

Deno.test("ss: `ss -tulnp` (Netid column) → every TCP listener, UDP skipped", () => {
  const ports = listeningPorts(parseSsOutput(fixture("ss_tulnp.txt")));
  assert.deepEqual(sorted(ports), sorted(CAPTURED));
  assert.equal(ports.has(10002), false, "UDP-only port 10002 is not a TCP listener");
  assert.equal(ports.has(10809), false, "UDP-only port 10809 is not a TCP listener");
  assert.equal(ports.has(21015), false, "an established connection is not a listener");
});

Deno.test("ss: `ss -tlnp` (no Netid column), with and without header, parses the same", () => {
  const withNetid = listeningPorts(parseSsOutput(fixture("ss_tulnp.txt")));
  for (const name of ["ss_tlnp.txt", "ss_tlnp_noheader.txt"]) {
    assert.deepEqual(sorted(listeningPorts(parseSsOutput(fixture(name)))), sorted(withNetid), name);
  }
});

Deno.test("ss: IPv4, IPv6, dual-stack `*` and interface-scoped addresses", () => {
  const listeners = parseSsOutput(fixture("ss_tulnp.txt"));
  const at = (port: number) => listeners.filter((l) => l.port === port).map((l) => l.address);
  assert.deepEqual(at(10000).sort(), ["0.0.0.0", "[::]"]);
  assert.deepEqual(at(19100), ["*"]);
  assert.deepEqual(at(21002), ["[::1]"]);
  assert.deepEqual(at(21003), ["127.0.0.1%lo"]);
  assert.deepEqual(at(10808), ["127.0.0.1"]);
});

Deno.test("ss: odd process fields (spaces, quotes, parentheses, several owners)", () => {
  const lines = fixture("ss_tulnp.txt").split("\n");
  const line = (port: number) => lines.find((l) => l.includes(`:${port} `))!;
  assert.equal(parseSsLine(line(21001))?.process, "my server");
  assert.equal(parseSsLine(line(21002))?.process, 'we"ird(x');
  assert.equal(parseSsLine(line(21004))?.process, "sshd: root@pts/");
  assert.equal(parseSsLine(line(18080))?.process, "nginx", "first of three nginx owners");
  // Older iproute2 printed no `pid=`; the name is still the first quoted string.
  assert.equal(
    parseSsLine('LISTEN 0 128 *:22 *:* users:(("sshd",812,3))')?.process,
    "sshd",
  );
});

Deno.test("ss: without privileges there is no process column → every port unknown", () => {
  const ports = listeningPorts(parseSsOutput(fixture("ss_tulnp_unprivileged.txt")));
  assert.deepEqual([...ports.keys()].sort(), [...CAPTURED.keys()].sort());
  assert.ok([...ports.values()].every((p) => p === undefined));
  const { used } = countBySource(ports);
  assert.equal(used.unknown, CAPTURED.size);
  assert.equal(used.other + used.envoy + used.sshd, 0);
});

Deno.test("ss: categories of the captured output, every source present", () => {
  const { used, otherDetail } = countBySource(
    listeningPorts(parseSsOutput(fixture("ss_tulnp.txt"))),
  );
  assert.deepEqual(Object.keys(used), [...PORT_SOURCES]);
  assert.deepEqual(used, {
    envoy: 2,
    sshd: 4,
    nginx: 2,
    node_exporter: 1,
    xray: 1,
    other: 3,
    unknown: 0,
  });
  assert.deepEqual([...otherDetail].sort(), [["my server", 2], ['we"ird(x', 1]]);
});

Deno.test("ss: processCategory follows contract D4 (substring, lower case, in order)", () => {
  const cases: [string | undefined, string][] = [
    ["envoy", "envoy"],
    ["Envoy-Proxy", "envoy"],
    ["sshd", "sshd"],
    ["nginx: worker", "nginx"],
    ["node_exporter", "node_exporter"],
    ["xray", "xray"],
    ["envoy-sshd", "envoy"], // envoy is checked first
    ["node-exporter", "other"], // only the underscore spelling counts
    ["postgres", "other"],
    ["", "unknown"],
    [undefined, "unknown"],
  ];
  for (const [name, want] of cases) assert.equal(processCategory(name), want, String(name));
});

Deno.test("ss: a named owner wins over an unnamed one on the same port, in any order", () => {
  const named = { address: "0.0.0.0", port: 80, process: "nginx" };
  const unnamed = { address: "[::]", port: 80 };
  assert.equal(listeningPorts([unnamed, named]).get(80), "nginx");
  assert.equal(listeningPorts([named, unnamed]).get(80), "nginx");
});

Deno.test("ss: non-listening and malformed lines are skipped", () => {
  for (
    const line of [
      "",
      "Netid State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess",
      "udp UNCONN 0 0 0.0.0.0:68 0.0.0.0:*",
      "ESTAB 0 0 10.0.0.1:22 10.0.0.2:50000",
      "tcp LISTEN 0 128",
      "LISTEN 0 128 0.0.0.0 0.0.0.0:*",
      "LISTEN 0 128 0.0.0.0:http 0.0.0.0:*",
      "LISTEN 0 128 0.0.0.0:0 0.0.0.0:*",
      "LISTEN 0 128 0.0.0.0:70000 0.0.0.0:*",
      "x y LISTEN 0 128 0.0.0.0:80 0.0.0.0:*",
    ]
  ) {
    assert.equal(parseSsLine(line), undefined, line);
  }
});

Deno.test("ss property: any input parses without throwing, ports stay in 1..65535", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => {
      for (const l of parseSsOutput(text)) assert.ok(l.port >= 1 && l.port <= 65535);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("ss property: generated listener lines round-trip port, address and process", () => {
  const address = fc.constantFrom(
    "0.0.0.0",
    "127.0.0.1",
    "*",
    "[::]",
    "[::1]",
    "127.0.0.53%lo",
    "[fe80::1%eth0]",
  );
  // A kernel comm: up to 15 bytes, anything but NUL and newline (quotes and spaces included).
  const comm = fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 15 }).filter((s) =>
    !/[\n\r\0]/.test(s) && !s.includes('",pid=')
  );
  fc.assert(
    fc.property(
      fc.boolean(),
      address,
      fc.integer({ min: 1, max: 65535 }),
      fc.option(comm, { nil: undefined }),
      fc.integer({ min: 1, max: 8 }),
      (netid, addr, port, name, pad) => {
        const sp = " ".repeat(pad);
        const process = name === undefined ? "" : `users:(("${name}",pid=42,fd=3))`;
        const line = `${netid ? "tcp" + sp : ""}LISTEN${sp}0${sp}4096${sp}${addr}:${port}${sp}` +
          `${addr}:*${sp}${process}`;
        const parsed = parseSsLine(line);
        assert.deepEqual(parsed, {
          address: addr,
          port,
          ...(name === undefined ? {} : { process: name }),
        }, line);
      },
    ),
    { numRuns: 2000 },
  );
});
