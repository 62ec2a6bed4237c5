// Maintenance mode end to end, through the real router: the 503 page with the message (escaped),
// allow-listed networks and the bypass cookie get through, a scheduled window starts and ends by
// itself, and the banner variables reach the app with a zero-downtime release.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request } from "node:http";
import { gitApp, pythonWebApp, startLoad, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** GET through the router, from `from` (a loopback address), with extra headers. */
function get(path: string, opts: { from?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: p.routerPort, path, localAddress: opts.from ?? "127.0.0.1", headers: { host: "shop.localhost", ...opts.headers }, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function untilStatus(status: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while ((await get("/")).status !== status) {
    if (Date.now() > end) throw new Error(`the app never answered ${status}`);
    await sleep(200);
  }
}

async function deploymentsSettled(): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const d = JSON.parse((await p.quai(["--app", "shop", "--json", "deployments"])).stdout) as { status: string }[];
    if (d.every((x) => !["queued", "building", "pushing", "starting"].includes(x.status))) return;
    await sleep(200);
  }
}

describe("maintenance mode", () => {
  before(async () => {
    p = await startPlatform();
    assert.equal((await p.quai(["create", "shop"])).code, 0);
    const push = await p.push("shop", await gitApp(pythonWebApp("open for business")));
    assert.equal(push.code, 0, push.stderr);
  });
  after(async () => {
    await p?.close();
  });

  it("answers the maintenance page (escaped message, 503, Retry-After) to all but allowed networks", async () => {
    const on = await p.quai(["--app", "shop", "maintenance", "on", "--message", "<script>alert(1)</script> Retour à 14h", "--allow-ip", "127.0.0.2"]);
    assert.equal(on.code, 0, on.stderr);
    const res = await get("/");
    assert.equal(res.status, 503);
    assert.match(res.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt; Retour à 14h/);
    assert.doesNotMatch(res.body, /<script>/);
    assert.ok(Number(res.headers["retry-after"]) > 0);
    assert.equal(res.headers["cache-control"], "no-store");
    const allowed = await get("/", { from: "127.0.0.2" });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.body, "open for business");
    const status = await p.quai(["--app", "shop", "maintenance"]);
    assert.match(status.stdout, /Maintenance ON since/);
    assert.match(status.stdout, /127\.0\.0\.2\/32/);
  });

  it("lets team members through with the bypass link's cookie, and nobody with a wrong token", async () => {
    const res = await p.quai(["--app", "shop", "--json", "maintenance", "bypass"]);
    assert.equal(res.code, 0, res.stderr);
    const { url, cookie } = JSON.parse(res.stdout) as { url: string; cookie: string };
    const link = new URL(url);
    const visit = await get(`${link.pathname}${link.search}`);
    assert.equal(visit.status, 302);
    const setCookie = String(visit.headers["set-cookie"]);
    assert.match(setCookie, /HttpOnly/);
    const through = await get("/", { headers: { cookie: setCookie.split(";")[0] as string } });
    assert.equal(through.status, 200);
    assert.equal((await get("/", { headers: { cookie } })).status, 200);
    assert.equal((await get(`${link.pathname}?token=${"0".repeat(32)}`)).status, 403);
    assert.equal((await get("/", { headers: { cookie: `quai_maintenance=${"0".repeat(32)}` } })).status, 503);
  });

  it("turns off, and records both changes as events", async () => {
    const off = await p.quai(["--app", "shop", "maintenance", "off"]);
    assert.equal(off.code, 0, off.stderr);
    assert.equal((await get("/")).status, 200);
    const again = await p.quai(["--app", "shop", "maintenance", "off"]);
    assert.equal(again.code, 66, "nothing to turn off");
    const events = await p.quai(["--app", "shop", "events"]);
    assert.match(events.stdout, /maintenance_on/);
    assert.match(events.stdout, /maintenance_off/);
  });

  it("starts and ends a scheduled window by itself", async () => {
    // Far enough ahead that the CLI answers before the start, even on a loaded machine.
    const at = new Date(Date.now() + 12_000).toISOString();
    const until = new Date(Date.now() + 18_000).toISOString();
    const res = await p.quai(["--app", "shop", "maintenance", "on", "--at", at, "--until", until, "--message", "Planned"]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /scheduled/);
    assert.equal((await get("/")).status, 200, "not yet");
    assert.match((await p.quai(["--app", "shop", "maintenance"])).stdout, /Scheduled:/);
    await untilStatus(503, 30_000);
    assert.match((await get("/")).body, /Planned/);
    await untilStatus(200, 30_000);
  });

  it("serves a page fetched from a URL, never one from a cloud metadata address, and none too large", async () => {
    const pages = createServer((req, res) => {
      if (req.url === "/page.html") res.writeHead(200, { "content-type": "text/html" }).end("<h1>Back at two</h1>");
      else if (req.url === "/to-metadata") res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      else res.writeHead(200).end("x".repeat(300 * 1024));
    });
    pages.listen(0, "127.0.0.1");
    await once(pages, "listening");
    const base = `http://127.0.0.1:${(pages.address() as { port: number }).port}`;
    try {
      for (const [url, pattern] of [["http://169.254.169.254/latest/meta-data/iam/", /link-local/], [`${base}/to-metadata`, /169\.254\.169\.254/], [`${base}/huge`, /larger than 262144 bytes/]] as const) {
        const res = await p.quai(["--app", "shop", "maintenance", "on", "--page-url", url]);
        assert.equal(res.code, 65, `${url}: ${res.stderr}`);
        assert.match(res.stderr, pattern);
      }
      assert.equal((await get("/")).status, 200, "none of them turned maintenance on");
      const on = await p.quai(["--app", "shop", "maintenance", "on", "--page-url", `${base}/page.html`]);
      assert.equal(on.code, 0, on.stderr);
      const res = await get("/");
      assert.equal(res.status, 503);
      assert.equal(res.body, "<h1>Back at two</h1>");
      assert.equal((await p.quai(["--app", "shop", "maintenance", "off"])).code, 0);
      await untilStatus(200);
    } finally {
      pages.close();
    }
  });

  it("refuses bad input with the catalogue's errors", async () => {
    const past = await p.quai(["--app", "shop", "maintenance", "on", "--until", "2020-01-01 10:00"]);
    assert.equal(past.code, 65);
    assert.match(past.stderr, /past/);
    const bogus = await p.quai(["--app", "shop", "maintenance", "on", "--allow-ip", "not-an-ip"]);
    assert.equal(bogus.code, 65);
    assert.match(bogus.stderr, /CIDR/);
    const badTime = await p.quai(["--app", "shop", "maintenance", "on", "--until", "25:99"]);
    assert.equal(badTime.code, 65);
    const long = await p.quai(["--app", "shop", "maintenance", "on", "--message", "x".repeat(2001)]);
    assert.equal(long.code, 65);
    assert.equal((await get("/")).status, 200, "none of them turned maintenance on");
  });

  it("shows the banner variables to the app after a release with no failed request", async () => {
    const load = startLoad(p.routerPort, "shop.localhost", 2);
    const res = await p.quai(["--app", "shop", "maintenance", "banner", "--message", "Coupure ce soir à 20h"]);
    assert.equal(res.code, 0, res.stderr);
    await deploymentsSettled();
    await sleep(500);
    const { ok, failures } = await load.stop();
    assert.deepEqual(failures, []);
    assert.ok(ok > 5);
    const env = (await get("/env")).body;
    assert.match(env, /^MAINTENANCE_BANNER_ENABLE=true$/m);
    assert.match(env, /^MAINTENANCE_BANNER_MESSAGE=Coupure ce soir à 20h$/m);
    assert.match(env, /^QUAI_MAINTENANCE_BANNER=Coupure ce soir à 20h$/m);
    const offRes = await p.quai(["--app", "shop", "maintenance", "banner", "--off"]);
    assert.equal(offRes.code, 0, offRes.stderr);
    await deploymentsSettled();
    assert.doesNotMatch((await get("/env")).body, /MAINTENANCE_BANNER/);
  });
});
