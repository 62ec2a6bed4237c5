// The issuer's DNS gate, on a real store with a stub resolver and a stand-in for the ACME server
// that counts requests: a domain not pointing at the platform is never ordered, waits as
// "pending_dns" with one event, and is ordered at the first check after its DNS is fixed.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testDb, type TestDb } from "../testing/db.ts";
import { makeTestCa } from "../testing/tls.ts";
import { bindPort } from "../core/net.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp, findApp } from "../apps/service.ts";
import { domainJson } from "../domains/service.ts";
import { Keyring } from "../variables/keyring.ts";
import { CertificateIssuer, PENDING_DNS } from "./issuer.ts";
import type { DnsResolver } from "./dns.ts";

describe("CertificateIssuer: only domains that resolve to the platform are ordered", () => {
  let store: TestDb;
  let dir: string;
  let actor: Actor;
  let keyring: Keyring;
  let acme: Server;
  let acmePort = 0;
  /** Requests that reached the stand-in ACME server: any one means an order was attempted. */
  const acmeRequests: string[] = [];
  /** What the stub DNS answers for A queries; no AAAA records at all. */
  const a = new Map<string, string[]>();
  const resolver: DnsResolver = {
    resolve4: async (name) => {
      const v = a.get(name);
      if (!v) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: "ENOTFOUND" });
      return v;
    },
    resolve6: async (name) => {
      throw Object.assign(new Error(`queryAaaa ENODATA ${name}`), { code: "ENODATA" });
    },
  };

  before(async () => {
    store = await testDb();
    dir = await mkdtemp(join(tmpdir(), "quai-issuer-"));
    actor = (await ensureUser(store.db, "tls@quai.test", "owner")).user;
    keyring = await Keyring.open(join(dir, "master.json"));
    await createApp(store.db, actor, "dns-app", { domain: "quai.test" });
    // Answers 404 to everything: an issuance that gets this far fails at the directory.
    acme = createServer((req, res) => {
      acmeRequests.push(`${req.method} ${req.url}`);
      res.writeHead(404).end();
    });
    acmePort = await bindPort("127.0.0.1", 0, (port) => new Promise<number>((resolvePromise, reject) => {
      acme.once("error", reject);
      acme.listen(port, "127.0.0.1", () => resolvePromise(port));
    }));
  });
  after(async () => {
    await new Promise((r) => acme.close(r));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const issuer = (logs: string[]) =>
    new CertificateIssuer({
      db: store.db,
      keyring,
      directoryUrl: `http://127.0.0.1:${acmePort}/dir`,
      acmeRoot: join(dir, "acme"),
      accountFile: join(dir, "acme-account.json"),
      syncRouter: async () => {},
      log: (l) => logs.push(l),
      publicAddresses: ["127.0.0.0/8", "::1", "203.0.113.7"],
      resolver,
      checkMs: 60_000,
    });

  async function addDomain(name: string, cert?: string): Promise<string> {
    const app = await findApp(store.db, actor, "dns-app");
    const row = await store.db.insertInto("domains").values({ app_id: app.id, name, ...(cert ? { tls_cert: cert, tls_source: "acme", tls_status: "active" } : {}) }).returning("id").executeTakeFirstOrThrow();
    return row.id;
  }
  const domainRow = (id: string) => store.db.selectFrom("domains").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
  const failures = async (name: string) =>
    (await store.db.selectFrom("events").select("type_data").where("type", "=", "certificate_failed").execute()).map((e) => e.type_data as Record<string, unknown>).filter((d) => d.domain === name);

  it("leaves a domain resolving elsewhere pending, with one event, and orders nothing", async () => {
    a.set("elsewhere.quai.test", ["192.0.2.10"]);
    const id = await addDomain("elsewhere.quai.test");
    const logs: string[] = [];
    const i = issuer(logs);
    try {
      i.request(id);
      for (let n = 0; n < 3; n++) await i.check();
    } finally {
      i.close();
    }
    assert.deepEqual(acmeRequests, [], "no request reached the ACME server");
    const d = await domainRow(id);
    assert.equal(d.tls_status, PENDING_DNS);
    assert.equal(d.tls_error, "elsewhere.quai.test resolves to 192.0.2.10, not to this platform (192.0.2.10 is not its own); expected 127.0.0.0/8, ::1, 203.0.113.7");
    const json = domainJson(d, await findApp(store.db, actor, "dns-app"));
    assert.equal(json.letsencrypt_status, "pending_dns");
    assert.equal(json.ssl, false);
    const events = await failures("elsewhere.quai.test");
    assert.equal(events.length, 1, "one event, not one per check");
    assert.deepEqual(events[0]?.dns, { resolves_to: ["192.0.2.10"], not_platform: ["192.0.2.10"] });
    assert.deepEqual(events[0]?.expected, ["127.0.0.0/8", "::1", "203.0.113.7"]);
    assert.equal(logs.filter((l) => l.includes("elsewhere.quai.test")).length, 1);
  });

  it("looks again at the next check, without backoff, and orders once the domain points here", async () => {
    const id = (await store.db.selectFrom("domains").select("id").where("name", "=", "elsewhere.quai.test").executeTakeFirstOrThrow()).id;
    const i = issuer([]);
    try {
      // Pointing somewhere else again is a new situation: one more event.
      a.set("elsewhere.quai.test", ["192.0.2.11"]);
      await i.check();
      await i.check();
      assert.equal((await failures("elsewhere.quai.test")).length, 2);
      assert.deepEqual(acmeRequests, []);
      a.set("elsewhere.quai.test", ["203.0.113.7"]);
      await i.check();
    } finally {
      i.close();
    }
    assert.ok(acmeRequests.length > 0, "the order was attempted");
    const d = await domainRow(id);
    // The stand-in is no ACME server: the attempt fails, for that reason and no longer DNS.
    assert.equal(d.tls_status, "error");
    assert.match(d.tls_error ?? "", /ACME directory unreachable .* HTTP 404/);
    // Out of the way of the next tests' checks.
    await store.db.deleteFrom("domains").where("id", "=", id).execute();
    acmeRequests.length = 0;
  });

  it("a domain with no record at all waits too", async () => {
    const id = await addDomain("nowhere.quai.test");
    const i = issuer([]);
    try {
      // Checks asked for while one waits its turn join it instead of queueing behind it.
      const first = i.check();
      assert.equal(i.check(), first);
      await first;
      assert.notEqual(i.check(), first);
      await i.check();
    } finally {
      i.close();
    }
    const d = await domainRow(id);
    assert.equal(d.tls_status, PENDING_DNS);
    assert.match(d.tls_error ?? "", /^nowhere\.quai\.test has no A or AAAA record; expected /);
    assert.deepEqual(acmeRequests, []);
  });

  it("keeps a certificate due for renewal serving when the domain moved away, and says why once", async () => {
    const ca = await makeTestCa();
    const { certPem } = await ca.issue(["moved.quai.test"], { expired: true });
    a.set("moved.quai.test", ["198.51.100.1"]);
    const id = await addDomain("moved.quai.test", certPem);
    const i = issuer([]);
    try {
      await i.check();
      await i.check();
    } finally {
      i.close();
    }
    const d = await domainRow(id);
    assert.equal(d.tls_status, "active");
    assert.equal(d.tls_cert, certPem);
    assert.match(d.tls_error ?? "", /^moved\.quai\.test resolves to 198\.51\.100\.1, not to this platform/);
    assert.equal((await failures("moved.quai.test")).length, 1);
    assert.deepEqual(acmeRequests, []);
  });

  it("refuses public addresses that are not addresses", () => {
    assert.throws(() => new CertificateIssuer({ db: store.db, keyring, directoryUrl: "http://127.0.0.1:1/dir", acmeRoot: dir, accountFile: join(dir, "a.json"), syncRouter: async () => {}, log: () => {}, publicAddresses: ["203.0.113.0/24", "platform.example.com"] }), /"platform\.example\.com" is not an IP address/);
    assert.throws(() => new CertificateIssuer({ db: store.db, keyring, directoryUrl: "http://127.0.0.1:1/dir", acmeRoot: dir, accountFile: join(dir, "a.json"), syncRouter: async () => {}, log: () => {}, dnsServers: ["not a server"] }), /IP address/);
  });
});
