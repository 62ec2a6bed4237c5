import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { createServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect } from "node:tls";
import { bindPort, freePort } from "../core/net.ts";
import { startPebble, type Pebble } from "../testing/pebble.ts";
import { certificateInfo, issueCertificate, renewalDue, type ChallengeStore } from "./acme.ts";

const DAY = 86_400_000;

/** The HTTP-01 side of the router, reduced to a map: what `set` stores, GET answers. */
class ChallengeServer implements ChallengeStore {
  readonly answers = new Map<string, string>();
  /** Host headers of the validation requests that reached us. */
  readonly hosts: string[] = [];
  /** When set, every answer is this instead of the key authorization. */
  wrongAnswer: string | undefined;
  server!: Server;
  port = 0;

  async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hosts.push(req.headers.host ?? "");
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? "");
      const answer = m ? this.answers.get(m[1]!) : undefined;
      if (answer === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" }).end(this.wrongAnswer ?? answer);
    });
    this.port = await bindPort("127.0.0.1", 0, (port) => new Promise<number>((resolvePromise, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => resolvePromise(port));
    }));
  }

  async set(token: string, keyAuthorization: string): Promise<void> {
    this.answers.set(token, keyAuthorization);
  }

  async remove(token: string): Promise<void> {
    this.answers.delete(token);
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

describe("ACME issuance against pebble", () => {
  const challenges = new ChallengeServer();
  let pebble: Pebble;
  let rootPem: string;
  let firstAccountKey = "";
  let firstAccountUrl = "";
  const logs: string[] = [];

  before(async () => {
    await challenges.listen();
    // Two intermediates, so the chain is more than one certificate; ten days of validity, so a
    // fresh certificate is already due for renewal under the 30-day rule.
    pebble = await startPebble({ httpPort: challenges.port, chainLength: 2, certificateValiditySeconds: 10 * 86_400 });
    rootPem = await pebble.issuerRootPem();
  });

  after(async () => {
    await pebble?.stop();
    await challenges.close();
  });

  it("issues a certificate for app1.quai.test that chains to pebble's root", async () => {
    const before = Date.now();
    const res = await issueCertificate({
      directoryUrl: pebble.directoryUrl,
      email: "ops@quai.test",
      domains: ["app1.quai.test"],
      challenge: challenges,
      caCertPem: pebble.caCertPem,
      log: (l) => logs.push(l),
    });
    firstAccountKey = res.accountKeyPem;
    firstAccountUrl = res.accountUrl;
    assert.match(res.accountKeyPem, /-----BEGIN PRIVATE KEY-----/);
    assert.match(res.keyPem, /-----BEGIN PRIVATE KEY-----/);
    assert.notEqual(res.keyPem, res.accountKeyPem, "the certificate's key is not the account's");
    assert.equal(splitPem(res.certPem).length, 1, "certPem holds the leaf alone");
    assert.equal(splitPem(res.chainPem).length, 2, "chainPem holds the two intermediates");

    const info = certificateInfo(res.certPem);
    assert.deepEqual(info.names, ["app1.quai.test"]);
    assert.match(info.issuer, /Pebble Intermediate CA/);
    assert.equal(res.notAfter.getTime(), info.notAfter.getTime());
    assert.ok(res.notBefore.getTime() <= Date.now() + 1000 && res.notAfter.getTime() > before);
    assert.ok(Math.abs(res.notAfter.getTime() - res.notBefore.getTime() - 10 * DAY) < 60_000, "validity follows pebble's certificateValidityPeriod");
    assert.equal(renewalDue(res.notAfter), true, "a 10-day certificate is due under the 30-day rule");
    assert.equal(renewalDue(res.notAfter, new Date(), 5), false);

    // Walk leaf → intermediates → root, each signed by the next.
    const certs = [res.certPem, ...splitPem(res.chainPem), rootPem].map((p) => new X509Certificate(p));
    for (let i = 0; i + 1 < certs.length; i++) {
      assert.ok(certs[i]!.checkIssued(certs[i + 1]!), `certificate ${i} names ${i + 1} as issuer`);
      assert.ok(certs[i]!.verify(certs[i + 1]!.publicKey), `certificate ${i} is signed by ${i + 1}`);
    }
    assert.ok(certs.at(-1)!.verify(certs.at(-1)!.publicKey), "the root is self-signed");

    // Pebble fetched the answer from us under the name being proved, and the answer is gone.
    assert.ok(challenges.hosts.some((h) => h.startsWith("app1.quai.test")), `validation came for app1.quai.test (saw ${challenges.hosts.join(", ")})`);
    assert.equal(challenges.answers.size, 0);
    assert.ok(logs.some((l) => /issued/.test(l)));
  });

  it("serves over TLS: a client trusting only pebble's root accepts certPem + chainPem for the name", async () => {
    const res = await issueCertificate({ directoryUrl: pebble.directoryUrl, accountKeyPem: firstAccountKey, domains: ["tls.quai.test"], challenge: challenges, caCertPem: pebble.caCertPem });
    const server = createHttpsServer({ key: res.keyPem, cert: res.certPem + res.chainPem }, (_req, out) => out.end("ok"));
    const port = await bindPort("127.0.0.1", 0, (p) => new Promise<number>((resolvePromise, reject) => {
      server.once("error", reject);
      server.listen(p, "127.0.0.1", () => resolvePromise(p));
    }));
    try {
      const authorized = await new Promise<boolean>((resolvePromise, reject) => {
        const sock = connect({ host: "127.0.0.1", port, servername: "tls.quai.test", ca: rootPem }, () => {
          resolvePromise(sock.authorized);
          sock.end();
        });
        sock.on("error", reject);
      });
      assert.equal(authorized, true);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it("reuses the account key: a second issuance uses the same account and covers several names", async () => {
    const res = await issueCertificate({
      directoryUrl: pebble.directoryUrl,
      accountKeyPem: firstAccountKey,
      // A new contact address updates the existing account rather than making another.
      email: "certs@quai.test",
      domains: ["app2.quai.test", "WWW.app2.quai.test", "app2.quai.test"],
      challenge: challenges,
      caCertPem: pebble.caCertPem,
    });
    assert.equal(res.accountKeyPem, firstAccountKey);
    assert.equal(res.accountUrl, firstAccountUrl);
    assert.deepEqual(certificateInfo(res.certPem).names.sort(), ["app2.quai.test", "www.app2.quai.test"]);
    assert.equal(challenges.answers.size, 0);
  });

  it("fails clearly when the challenge answer is wrong, and cleans up the answer", async () => {
    challenges.wrongAnswer = "not-the-key-authorization";
    try {
      await assert.rejects(
        issueCertificate({ directoryUrl: pebble.directoryUrl, accountKeyPem: firstAccountKey, domains: ["bad.quai.test"], challenge: challenges, caCertPem: pebble.caCertPem }),
        (err: Error) => {
          assert.match(err.message, /^challenge for bad\.quai\.test failed: /);
          // Pebble's own words about the mismatch reach the caller.
          assert.match(err.message, /not-the-key-authorization|key authorization/i);
          return true;
        },
      );
    } finally {
      challenges.wrongAnswer = undefined;
    }
    assert.equal(challenges.answers.size, 0);
  });

  it("fails clearly when nothing answers the challenge", async () => {
    const failing: ChallengeStore = { set: async () => {}, remove: async () => {} };
    await assert.rejects(
      issueCertificate({ directoryUrl: pebble.directoryUrl, accountKeyPem: firstAccountKey, domains: ["nothing.quai.test"], challenge: failing, caCertPem: pebble.caCertPem }),
      /^Error: challenge for nothing\.quai\.test failed: .*404/,
    );
  });

  it("reports a failing challenge store as a failed challenge", async () => {
    const broken: ChallengeStore = { set: async () => { throw new Error("router unreachable"); }, remove: async () => {} };
    await assert.rejects(
      issueCertificate({ directoryUrl: pebble.directoryUrl, accountKeyPem: firstAccountKey, domains: ["store.quai.test"], challenge: broken, caCertPem: pebble.caCertPem }),
      /^Error: challenge for store\.quai\.test failed: router unreachable$/,
    );
  });

  it("does not trust the ACME server's certificate without its CA", async () => {
    await assert.rejects(
      issueCertificate({ directoryUrl: pebble.directoryUrl, domains: ["app1.quai.test"], challenge: challenges }),
      /^Error: ACME directory unreachable at https:\/\/127\.0\.0\.1:\d+\/dir: .*certificate/,
    );
  });

  it("fails at once, without retrying, when the directory is unreachable", async () => {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}/dir`;
    const started = Date.now();
    await assert.rejects(
      issueCertificate({ directoryUrl: url, domains: ["app1.quai.test"], challenge: challenges, caCertPem: pebble.caCertPem }),
      (err: Error) => err.message.startsWith(`ACME directory unreachable at ${url}: `) && /ECONNREFUSED/.test(err.message),
    );
    assert.ok(Date.now() - started < 5000, "acme-client's own retries are off");
  });

  it("fails at once, with the cause, when the CA goes away in the middle of an issuance", async () => {
    const doomed = await startPebble({ httpPort: challenges.port });
    try {
      const stopping: ChallengeStore = { set: () => doomed.stop(), remove: async () => {} };
      const started = Date.now();
      await assert.rejects(
        issueCertificate({ directoryUrl: doomed.directoryUrl, domains: ["gone.quai.test"], challenge: stopping, caCertPem: doomed.caCertPem }),
        /^Error: challenge for gone\.quai\.test failed: no response from the ACME server/,
      );
      assert.ok(Date.now() - started < 10_000, "acme-client's own retries are off");
    } finally {
      await doomed.stop();
    }
  });

  it("says when the URL answers but is no ACME directory", async () => {
    await challenges.set("not-a-directory", "{}");
    try {
      await assert.rejects(
        issueCertificate({ directoryUrl: `http://127.0.0.1:${challenges.port}/.well-known/acme-challenge/not-a-directory`, domains: ["app1.quai.test"], challenge: challenges }),
        /is not an ACME directory/,
      );
      await assert.rejects(
        issueCertificate({ directoryUrl: `http://127.0.0.1:${challenges.port}/nowhere`, domains: ["app1.quai.test"], challenge: challenges }),
        /^Error: ACME directory unreachable at http:\/\/127\.0\.0\.1:\d+\/nowhere: HTTP 404$/,
      );
    } finally {
      await challenges.remove("not-a-directory");
    }
  });

  it("certificateInfo reads a certificate without names from its subject", () => {
    const info = certificateInfo(pebble.caCertPem);
    assert.deepEqual(info.names, ["quai test pebble https ca"]);
    assert.equal(info.issuer, "CN=Quai test pebble HTTPS CA");
    assert.ok(info.notBefore < info.notAfter);
  });

  it("refuses names HTTP-01 cannot prove, before any request", async () => {
    await assert.rejects(issueCertificate({ directoryUrl: "https://127.0.0.1:1/dir", domains: [], challenge: challenges }), /at least one domain/);
    await assert.rejects(issueCertificate({ directoryUrl: "https://127.0.0.1:1/dir", domains: ["*.quai.test"], challenge: challenges }), /wildcard/);
    await assert.rejects(issueCertificate({ directoryUrl: "https://127.0.0.1:1/dir", accountKeyPem: "nope", domains: ["a.quai.test"], challenge: challenges }), /account key/);
  });
});

describe("renewalDue", () => {
  const now = new Date("2025-06-01T00:00:00Z");
  const inDays = (d: number) => new Date(now.getTime() + d * DAY);
  it("is due within the window, at its edge and after expiry", () => {
    assert.equal(renewalDue(inDays(10), now), true);
    assert.equal(renewalDue(inDays(30), now), true);
    assert.equal(renewalDue(inDays(-1), now), true);
  });
  it("is not due before the window", () => {
    assert.equal(renewalDue(inDays(31), now), false);
    assert.equal(renewalDue(inDays(90), now), false);
  });
  it("takes another window", () => {
    assert.equal(renewalDue(inDays(10), now, 7), false);
    assert.equal(renewalDue(inDays(7), now, 7), true);
  });
});
