// Custom domains end to end, through the real router: a domain added answers at once, belongs to
// one app at a time, internationalised names are stored as punycode, a canonical domain makes
// the app's other hostnames redirect, and a removed domain stops answering.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import { readFile, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { gitApp, httpGet, pythonWebApp, startPlatform, traversableTempDir, type TestPlatform } from "../src/testing/platform.ts";
import { bearer } from "../src/testing/platform.ts";
import { makeTestCa, type TestCa } from "../src/testing/tls.ts";

let p: TestPlatform;
let httpsPort = 0;
let ca: TestCa;
const get = (host: string, path = "/", headers: Record<string, string> = {}) => httpGet(p.routerPort, host, path, headers);

/** GET over HTTPS with SNI `host`, trusting only `caPem`; resolves with what the client saw. */
function getTls(host: string, caPem: string, path = "/"): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined>; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port: httpsPort, path, servername: host, headers: { host }, ca: caPem, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, protocol: (res.socket as import("node:tls").TLSSocket).getProtocol?.() ?? null }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("custom domains", () => {
  before(async () => {
    p = await startPlatform();
    ca = await makeTestCa();
    const info = (await (await fetch(`${p.url}/v1/platform`, { headers: { authorization: `Bearer ${await bearer(p.url, p.token)}` } })).json()) as { platform: { router: { https: string } } };
    httpsPort = Number(new URL(info.platform.router.https).port);
    for (const app of ["site", "other"]) {
      assert.equal((await p.quai(["create", app])).code, 0);
      const push = await p.push(app, await gitApp(pythonWebApp(`this is ${app}`)));
      assert.equal(push.code, 0, push.stderr);
    }
  });
  after(async () => {
    await p?.close();
  });

  it("answers on a domain as soon as it is added", async () => {
    assert.equal((await get("www.site.test")).status, 404, "unknown before");
    const add = await p.quai(["--app", "site", "domains-add", "www.site.test"]);
    assert.equal(add.code, 0, add.stderr);
    const res = await get("www.site.test");
    assert.equal(res.status, 200);
    assert.equal(res.body, "this is site");
  });

  it("gives a domain to one app at a time (409), and refuses names it cannot serve (422)", async () => {
    const taken = await p.quai(["--app", "other", "domains-add", "WWW.Site.Test."]);
    assert.equal(taken.code, 73);
    assert.match(taken.stderr, /www\.site\.test already belongs to another app/);
    const again = await p.quai(["--app", "site", "domains-add", "www.site.test"]);
    assert.equal(again.code, 73);
    assert.match(again.stderr, /www\.site\.test is already a domain of site/);
    for (const bad of ["localhost", "127.0.0.1", "*.site.test", `${"a".repeat(300)}.test`, "other.localhost"]) {
      const res = await p.quai(["--app", "other", "domains-add", bad]);
      assert.equal(res.code, 65, `${bad}: ${res.stderr}`);
    }
  });

  it("stores an internationalised name as punycode and shows both", async () => {
    const add = await p.quai(["--app", "other", "domains-add", "café.test"]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /xn--caf-dma\.test \(café\.test\)/);
    const list = JSON.parse((await p.quai(["--app", "other", "--json", "domains"])).stdout) as { name: string; name_unicode: string }[];
    assert.deepEqual(list.map((d) => [d.name, d.name_unicode]), [["xn--caf-dma.test", "café.test"]]);
    assert.equal((await get("xn--caf-dma.test")).body, "this is other");
  });

  it("redirects the app's other hostnames to its canonical domain (301)", async () => {
    assert.equal((await p.quai(["--app", "site", "domains-add", "site.test"])).code, 0);
    const set = await p.quai(["--app", "site", "domains-set-canonical", "www.site.test"]);
    assert.equal(set.code, 0, set.stderr);
    const fromApex = await get("site.test", "/path?q=1");
    assert.equal(fromApex.status, 301);
    assert.equal(fromApex.headers.location, "http://www.site.test/path?q=1");
    const fromPlatform = await get("site.localhost", "/");
    assert.equal(fromPlatform.status, 301);
    assert.equal((await get("www.site.test")).status, 200);
    const notMine = await p.quai(["--app", "site", "domains-set-canonical", "xn--caf-dma.test"]);
    assert.equal(notMine.code, 66, "only one of the app's own domains");
    assert.equal((await p.quai(["--app", "site", "domains-unset-canonical"])).code, 0);
    assert.equal((await get("site.test")).status, 200);
  });

  it("serves a domain over HTTPS with its uploaded certificate (SNI, TLS 1.2+), and refuses bad ones", async () => {
    const dir = await traversableTempDir("quai-certs-");
    const write = async (name: string, text: string) => {
      await writeFile(join(dir, name), text);
      return join(dir, name);
    };
    const good = await ca.issue(["www.site.test"]);
    const other = await ca.issue(["www.site.test"]);
    const wrongName = await ca.issue(["elsewhere.test"]);
    const expired = await ca.issue(["www.site.test"], { expired: true });
    // A key nginx's OpenSSL finds too small: it would refuse the whole routing table for it.
    const weakDir = await traversableTempDir("quai-weak-");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "30", "-subj", "/CN=www.site.test", "-addext", "subjectAltName=DNS:www.site.test", "-keyout", join(weakDir, "k.pem"), "-out", join(weakDir, "c.pem")], { stdio: "ignore" });
    const weak = { certPem: await readFile(join(weakDir, "c.pem"), "utf8"), keyPem: await readFile(join(weakDir, "k.pem"), "utf8") };
    const refused: [string, string, RegExp][] = [
      [weak.certPem, weak.keyPem, /TLS refuses it \(.*key too small\)/],
      [good.certPem, other.keyPem, /does not match/],
      [wrongName.certPem, wrongName.keyPem, /not www\.site\.test/],
      [expired.certPem, expired.keyPem, /expired/],
      ["not a certificate", good.keyPem, /not a PEM certificate/],
      // nginx would refuse a chain with a bad block, and with it every app's routes.
      [`${good.certPem}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`, good.keyPem, /a certificate of the chain is not a valid PEM certificate/],
      [`${good.certPem}\nsomething else\n`, good.keyPem, /holds something else than PEM certificates/],
    ];
    for (const [cert, key, why] of refused) {
      const res = await p.quai(["--app", "site", "domains-ssl", "www.site.test", "--cert", await write("c.pem", cert), "--key", await write("k.pem", key)]);
      assert.equal(res.code, 65, res.stderr);
      assert.match(res.stderr, why);
    }
    const ok = await p.quai(["--app", "site", "domains-ssl", "www.site.test", "--cert", await write("c.pem", good.certPem), "--key", await write("k.pem", good.keyPem)]);
    assert.equal(ok.code, 0, ok.stderr);
    const res = await getTls("www.site.test", ca.certPem, "/headers");
    assert.equal(res.status, 200);
    assert.match(res.protocol ?? "", /^TLSv1\.[23]$/);
    // The app sees the scheme the client used.
    assert.match(res.body, /^x-forwarded-proto: https$/m);
    assert.match((await get("www.site.test", "/headers")).body, /^x-forwarded-proto: http$/m);
    // Forwarding headers are the router's alone: a client's are not passed for them.
    const spoofed = (await get("www.site.test", "/headers", { "x-forwarded-proto": "https", "x-forwarded-host": "evil.test", forwarded: "for=6.6.6.6;host=evil.test", "x-real-ip": "6.6.6.6", "x-forwarded-port": "1" })).body;
    assert.match(spoofed, /^x-forwarded-proto: http$/m);
    assert.doesNotMatch(spoofed, /evil\.test|6\.6\.6\.6|^x-forwarded-port: 1$/m);
    const list = JSON.parse((await p.quai(["--app", "site", "--json", "domains"])).stdout) as { name: string; ssl: boolean; validity: string }[];
    assert.equal(list.find((d) => d.name === "www.site.test")?.ssl, true);
    // A name without a certificate of its own gets the platform's, which this CA did not sign.
    await assert.rejects(getTls("site.test", ca.certPem));
  });

  it("forces HTTPS: plain HTTP gets 301 (ACME challenges excepted), HTTPS answers carry HSTS", async () => {
    const on = await p.quai(["--app", "site", "app-update", "--force-https", "true"]);
    assert.equal(on.code, 0, on.stderr);
    const plain = await get("www.site.test", "/a?b=1");
    assert.equal(plain.status, 301);
    assert.equal(plain.headers.location, `https://www.site.test:${httpsPort}/a?b=1`);
    assert.equal((await get("www.site.test", "/.well-known/acme-challenge/missing")).status, 404, "challenges stay on HTTP");
    const secure = await getTls("www.site.test", ca.certPem);
    assert.equal(secure.status, 200);
    assert.match(String(secure.headers["strict-transport-security"]), /max-age=\d+/);
    assert.ok(secure.headers["x-request-id"], "request ids over HTTPS too");
    assert.equal((await p.quai(["--app", "site", "app-update", "--force-https", "false"])).code, 0);
    assert.equal((await get("www.site.test")).status, 200);
  });

  it("stops answering on a removed domain", async () => {
    const res = await p.quai(["--app", "site", "domains-remove", "www.site.test"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await get("www.site.test")).status, 404);
    const again = await p.quai(["--app", "site", "domains-remove", "www.site.test"]);
    assert.equal(again.code, 66);
    const events = await p.quai(["--app", "site", "events"]);
    assert.match(events.stdout, /new_domain/);
    assert.match(events.stdout, /delete_domain/);
  });
});
