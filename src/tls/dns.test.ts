import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AddressSet, checkDomainDns, defaultPublicAddresses, type DnsResolver } from "./dns.ts";

/** A resolver answering from a table; a name missing is NXDOMAIN, an Error code value fails the lookup. */
function stub(table: Record<string, { a?: string[] | string; aaaa?: string[] | string }>): DnsResolver {
  const answer = (name: string, kind: "a" | "aaaa") => {
    const entry = table[name];
    const v = entry?.[kind];
    if (!entry) return Promise.reject(Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: "ENOTFOUND" }));
    if (v === undefined) return Promise.reject(Object.assign(new Error(`query ENODATA ${name}`), { code: "ENODATA" }));
    if (typeof v === "string") return Promise.reject(Object.assign(new Error(`query ${v} ${name}`), { code: v }));
    return Promise.resolve(v);
  };
  return { resolve4: (n) => answer(n, "a"), resolve6: (n) => answer(n, "aaaa") };
}

describe("AddressSet", () => {
  it("matches single IPv4 addresses and IPv4 networks", () => {
    const s = new AddressSet(["203.0.113.7", "10.0.0.0/8", "192.0.2.128/25"]);
    assert.equal(s.has("203.0.113.7"), true);
    assert.equal(s.has("203.0.113.8"), false);
    assert.equal(s.has("10.255.1.2"), true);
    assert.equal(s.has("11.0.0.1"), false);
    assert.equal(s.has("192.0.2.200"), true);
    assert.equal(s.has("192.0.2.127"), false);
  });

  it("matches IPv6 addresses and networks, whatever the spelling", () => {
    const s = new AddressSet(["2001:db8::1", "2001:db8:aa::/48"]);
    assert.equal(s.has("2001:db8::1"), true);
    assert.equal(s.has("2001:DB8:0:0:0:0:0:1"), true);
    assert.equal(s.has("2001:db8::2"), false);
    assert.equal(s.has("2001:db8:aa:ffff::9"), true);
    assert.equal(s.has("2001:db8:ab::9"), false);
    assert.equal(s.has("fe80::1%eth0"), false);
    assert.equal(new AddressSet(["fe80::/10"]).has("fe80::1%eth0"), true);
  });

  it("matches IPv4-mapped IPv6 addresses against IPv4 entries, and the other way round", () => {
    const v4 = new AddressSet(["127.0.0.0/8", "203.0.113.7"]);
    assert.equal(v4.has("::ffff:127.0.0.1"), true);
    assert.equal(v4.has("::ffff:203.0.113.7"), true);
    assert.equal(v4.has("::ffff:203.0.113.8"), false);
    const mapped = new AddressSet(["::ffff:198.51.100.1"]);
    assert.equal(mapped.has("198.51.100.1"), true);
    assert.equal(mapped.has("198.51.100.2"), false);
  });

  it("does not match what is not an address", () => {
    const s = new AddressSet(["0.0.0.0/0", "::/0"]);
    for (const x of ["", "localhost", "1.2.3", "1.2.3.4/32", "::g"]) assert.equal(s.has(x), false, x);
    assert.equal(s.has("1.2.3.4"), true);
  });

  it("refuses entries that are neither an address nor a network, naming them", () => {
    for (const bad of ["", "example.com", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/8/8", "10.0.0.0/", "10.0.0.0/-1", "fe80::1%eth0", "1.2.3.4.5"]) {
      assert.throws(() => new AddressSet([bad]), (err: Error) => err.message.startsWith(JSON.stringify(bad)), bad);
    }
    assert.deepEqual(new AddressSet([" 192.0.2.1 ", "::1"]).entries, ["192.0.2.1", "::1"]);
  });
});

describe("defaultPublicAddresses", () => {
  it("is every interface address (zone index dropped) with the loopback networks", () => {
    const info = (address: string, family: "IPv4" | "IPv6") => ({ address, family, netmask: "", mac: "00:00:00:00:00:00", internal: false, cidr: null, scopeid: 0 }) as const;
    const got = defaultPublicAddresses({ eth0: [info("198.51.100.4", "IPv4"), info("2001:db8::4", "IPv6"), info("fe80::4%eth0", "IPv6")], lo: [info("127.0.0.1", "IPv4"), info("::1", "IPv6")] });
    assert.deepEqual(got.sort(), ["127.0.0.0/8", "127.0.0.1", "198.51.100.4", "2001:db8::4", "::1", "fe80::4"].sort());
    const s = new AddressSet(got);
    assert.equal(s.has("127.0.0.53"), true);
    assert.equal(s.has("198.51.100.4"), true);
  });
});

describe("checkDomainDns", () => {
  const platform = new AddressSet(["127.0.0.0/8", "::1", "203.0.113.7", "2001:db8::7"]);
  const resolver = stub({
    "here.quai.test": { a: ["127.0.0.1"] },
    "dual.quai.test": { a: ["203.0.113.7"], aaaa: ["2001:db8::7"] },
    "elsewhere.quai.test": { a: ["192.0.2.10"] },
    "half.quai.test": { a: ["203.0.113.7"], aaaa: ["2001:db8::99"] },
    "empty.quai.test": {},
    "broken.quai.test": { a: "ESERVFAIL", aaaa: "ETIMEOUT" },
    "v6fails.quai.test": { a: ["203.0.113.7"], aaaa: "ETIMEOUT" },
  });

  it("is ok when every record is the platform's", async () => {
    assert.deepEqual(await checkDomainDns("here.quai.test", resolver, platform), { ok: true, addresses: ["127.0.0.1"], foreign: [], reason: undefined });
    assert.equal((await checkDomainDns("dual.quai.test", resolver, platform)).ok, true);
  });

  it("says what the name resolves to and what was expected", async () => {
    const c = await checkDomainDns("elsewhere.quai.test", resolver, platform);
    assert.equal(c.ok, false);
    assert.deepEqual(c.foreign, ["192.0.2.10"]);
    assert.equal(c.reason, "elsewhere.quai.test resolves to 192.0.2.10, not to this platform (192.0.2.10 is not its own); expected 127.0.0.0/8, ::1, 203.0.113.7, 2001:db8::7");
  });

  it("is not ok with one foreign record among the platform's (the CA may pick it)", async () => {
    const c = await checkDomainDns("half.quai.test", resolver, platform);
    assert.equal(c.ok, false);
    assert.deepEqual(c.addresses, ["2001:db8::99", "203.0.113.7"]);
    assert.deepEqual(c.foreign, ["2001:db8::99"]);
  });

  it("is not ok without records, or when the lookup fails", async () => {
    assert.match((await checkDomainDns("missing.quai.test", resolver, platform)).reason ?? "", /^missing\.quai\.test has no A or AAAA record; expected /);
    assert.match((await checkDomainDns("empty.quai.test", resolver, platform)).reason ?? "", /^empty\.quai\.test has no A or AAAA record/);
    assert.match((await checkDomainDns("broken.quai.test", resolver, platform)).reason ?? "", /^DNS lookup of broken\.quai\.test failed \(ESERVFAIL, ETIMEOUT\)/);
    assert.equal((await checkDomainDns("v6fails.quai.test", resolver, platform)).ok, false);
  });
});
