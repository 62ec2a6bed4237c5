// Automatic certificates end to end, against a local pebble: a domain added gets a certificate
// issued through HTTP-01 answered by the router, served over HTTPS; a domain whose DNS points
// elsewhere is not ordered and waits ("pending_dns") with one event; a short-lived certificate is
// renewed by itself; with the ACME server down, renewal fails with an event and the certificate in
// place keeps serving. The platform resolves names with pebble's mock DNS, as pebble does.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { request as httpsRequest } from "node:https";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bearer, gitApp, pythonWebApp, startPlatform, traversableTempDir, until, type TestPlatform } from "../src/testing/platform.ts";
import { startPebble, type Pebble } from "../src/testing/pebble.ts";
import { freePort } from "../src/core/net.ts";

let p: TestPlatform;
let pebble: Pebble;
let httpsPort = 0;

function getTls(host: string, caPem: string): Promise<{ status: number; body: string; validTo: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: "127.0.0.1", port: httpsPort, path: "/", servername: host, headers: { host }, ca: caPem, agent: false }, (res) => {
      let body = "";
      const validTo = (res.socket as import("node:tls").TLSSocket).getPeerCertificate().valid_to;
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, validTo }));
    });
    req.on("error", reject);
    req.end();
  });
}

interface DomainJson {
  name: string;
  ssl: boolean;
  validity: string | null;
  letsencrypt_status: string;
  tls_error: string | null;
}

async function domain(name: string): Promise<DomainJson> {
  const list = JSON.parse((await p.quai(["--app", "tls-app", "--json", "domains"])).stdout) as DomainJson[];
  return list.find((d) => d.name === name) as DomainJson;
}

/** The app's `certificate_failed` events about `name`, newest first. */
async function failures(name: string): Promise<{ type_data: Record<string, unknown> }[]> {
  const events = JSON.parse((await p.quai(["--app", "tls-app", "--json", "events"])).stdout) as { type: string; type_data: Record<string, unknown> }[];
  return events.filter((e) => e.type === "certificate_failed" && e.type_data.domain === name);
}

describe("automatic certificates (ACME, against pebble)", () => {
  before(async () => {
    // pebble validates HTTP-01 on the router's HTTP port: choose it first.
    const routerPort = await freePort();
    pebble = await startPebble({ httpPort: routerPort, certificateValiditySeconds: 30 });
    const dir = await traversableTempDir("quai-acme-");
    const caFile = join(dir, "pebble-ca.pem");
    await writeFile(caFile, pebble.caCertPem);
    p = await startPlatform({ QUAI_ROUTER_PORT: String(routerPort), QUAI_ACME: "on", QUAI_ACME_DIRECTORY: pebble.directoryUrl, QUAI_ACME_CA_FILE: caFile, QUAI_ACME_RETRY_SECONDS: "1", QUAI_ACME_CHECK_SECONDS: "1", QUAI_ACME_DNS_SERVERS: pebble.dnsServer });
    const info = (await (await fetch(`${p.url}/v1/platform`, { headers: { authorization: `Bearer ${await bearer(p.url, p.token)}` } })).json()) as { platform: { router: { https: string } } };
    httpsPort = Number(new URL(info.platform.router.https).port);
    assert.equal((await p.quai(["create", "tls-app"])).code, 0);
    const push = await p.push("tls-app", await gitApp(pythonWebApp("secured")));
    assert.equal(push.code, 0, push.stderr);
  });
  after(async () => {
    await p?.close();
    await pebble?.stop().catch(() => {});
  });

  let firstValidity = "";
  it("issues a certificate when a domain is added, and serves it over HTTPS", async () => {
    assert.equal((await p.quai(["--app", "tls-app", "domains-add", "app1.quai.test"])).code, 0);
    const d = await until("the certificate", async () => {
      const x = await domain("app1.quai.test");
      return x.ssl ? x : undefined;
    });
    assert.equal(d.letsencrypt_status, "created");
    firstValidity = d.validity as string;
    const res = await getTls("app1.quai.test", await pebble.issuerRootPem());
    assert.equal(res.status, 200);
    assert.equal(res.body, "secured");
    const events = await p.quai(["--app", "tls-app", "events"]);
    assert.match(events.stdout, /certificate_issued/);
  });

  it("orders nothing for a domain that resolves elsewhere: it waits for its DNS, with one event", async () => {
    await pebble.setDnsA("elsewhere.quai.test", ["192.0.2.10"]);
    assert.equal((await p.quai(["--app", "tls-app", "domains-add", "elsewhere.quai.test"])).code, 0);
    const d = await until("the DNS verdict", async () => {
      const x = await domain("elsewhere.quai.test");
      return x.tls_error ? x : undefined;
    });
    assert.equal(d.letsencrypt_status, "pending_dns");
    assert.equal(d.ssl, false);
    assert.match(d.tls_error ?? "", /^elsewhere\.quai\.test resolves to 192\.0\.2\.10, not to this platform .*; expected .*127\.0\.0\.0\/8/);
    // Checks run every second: a few of them later, still one event and no order.
    await new Promise((r) => setTimeout(r, 3000));
    const events = await failures("elsewhere.quai.test");
    assert.equal(events.length, 1);
    assert.deepEqual((events[0]?.type_data.dns as { resolves_to: string[] }).resolves_to, ["192.0.2.10"]);
    assert.equal((await domain("elsewhere.quai.test")).ssl, false);
    assert.equal((await p.quai(["--app", "tls-app", "domains-remove", "elsewhere.quai.test"])).code, 0);
  });

  it("renews a certificate before it expires, by itself", async () => {
    const renewed = await until("a renewal", async () => {
      const x = await domain("app1.quai.test");
      return x.validity && x.validity !== firstValidity ? x : undefined;
    }, 60_000);
    assert.ok(new Date(renewed.validity as string) > new Date(firstValidity));
    assert.match((await p.quai(["--app", "tls-app", "events"])).stdout, /certificate_renewed/);
  });

  it("with the ACME server down, records why and keeps serving the certificate in place", async () => {
    // A renewal may have failed once already while pebble was up (and succeeded at its retry):
    // only a failure after the stop counts.
    const before = (await failures("app1.quai.test")).length;
    await pebble.stopCa();
    await until("a failure event", async () => ((await failures("app1.quai.test")).length > before ? true : undefined), 60_000);
    const d = await domain("app1.quai.test");
    assert.ok(d.ssl, "still has its certificate");
    assert.match(d.tls_error ?? "", /ACME|unreachable|response/i);
    // The handshake still presents the certificate (trust aside: pebble's root is gone with it).
    const res = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port: httpsPort, path: "/", servername: "app1.quai.test", headers: { host: "app1.quai.test" }, rejectUnauthorized: false, agent: false }, (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(res, 200);
  });
});
