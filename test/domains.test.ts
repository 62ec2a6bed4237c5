// Custom domains end to end, through the real router: a domain added answers at once, belongs to
// one app at a time, internationalised names are stored as punycode, a canonical domain makes
// the app's other hostnames redirect, and a removed domain stops answering.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { gitApp, httpGet, pythonWebApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;
const get = (host: string, path = "/") => httpGet(p.routerPort, host, path);

describe("custom domains", () => {
  before(async () => {
    p = await startPlatform();
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
    assert.match(taken.stderr, /already belongs/);
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
