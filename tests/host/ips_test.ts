import assert from "node:assert/strict";
import {
  collectIps,
  isBridgeInterface,
  isPublic,
  isRfc1918,
  labelFor,
} from "../../lib/host/ips.ts";

Deno.test("labels: internal only for RFC 1918 IPv4", () => {
  assert.equal(labelFor("10.1.2.3"), "internal");
  assert.equal(labelFor("172.16.0.1"), "internal");
  assert.equal(labelFor("172.31.255.255"), "internal");
  assert.equal(labelFor("172.32.0.1"), "");
  assert.equal(labelFor("172.15.0.1"), "");
  assert.equal(labelFor("192.168.1.1"), "internal");
  assert.equal(labelFor("100.64.0.1"), "");
  assert.equal(labelFor("8.8.8.8"), "");
  assert.equal(labelFor("2001:db8::1"), "");
  assert.equal(labelFor("fd00::1"), "");
  assert.ok(isRfc1918("10.0.0.0") && !isRfc1918("11.0.0.0"));
});

Deno.test("public: not RFC 1918, CGNAT, loopback, link-local or ULA", () => {
  assert.ok(isPublic("203.0.113.7"));
  assert.ok(isPublic("2a01:4f8::1"));
  for (
    const ip of [
      "10.0.0.1",
      "172.20.1.1",
      "192.168.0.2",
      "100.100.1.1",
      "127.0.0.1",
      "169.254.1.1",
      "::1",
      "fe80::1",
      "fd12::1",
    ]
  ) {
    assert.ok(!isPublic(ip), ip);
  }
});

Deno.test("bridge interfaces by name, not by address range", () => {
  for (
    const n of [
      "docker0",
      "br-1a2b3c",
      "veth12ab",
      "cni0",
      "flannel.1",
      "cali1234",
      "lo",
      "virbr0",
      "cilium_host",
    ]
  ) {
    assert.ok(isBridgeInterface(n), n);
  }
  for (const n of ["eth0", "ens3", "enp1s0", "wg0", "bond0", "eth0.100"]) {
    assert.ok(!isBridgeInterface(n), n);
  }
});

Deno.test("collectIps keeps AWS 172.31.x on eth0, drops docker/loopback/link-local, sorts and dedupes", () => {
  const got = collectIps([
    { name: "lo", family: "IPv4", address: "127.0.0.1" },
    { name: "lo", family: "IPv6", address: "::1" },
    { name: "eth0", family: "IPv4", address: "172.31.5.9" },
    { name: "eth0", family: "IPv6", address: "fe80::1%eth0" },
    { name: "eth0", family: "IPv6", address: "2a01:4f8::2" },
    { name: "eth1", family: "IPv4", address: "203.0.113.7" },
    { name: "eth1:0", family: "IPv4", address: "203.0.113.7" },
    { name: "docker0", family: "IPv4", address: "172.17.0.1" },
    { name: "br-abc", family: "IPv4", address: "172.18.0.1" },
    { name: "veth1", family: "IPv6", address: "fe80::2" },
    { name: "ens4", family: "IPv4", address: "169.254.3.3" },
  ]);
  assert.deepEqual(got, [
    { ip: "172.31.5.9", label: "internal" },
    { ip: "203.0.113.7", label: "" },
    { ip: "2a01:4f8::2", label: "" },
  ]);
});
