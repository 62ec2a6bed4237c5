import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { text } from "node:stream/consumers";
import { QuaiError } from "./errors.ts";
import { fetchArchive, forbiddenAddress, guardLookup } from "./outbound.ts";

describe("archive downloads", () => {
  let server: http.Server;
  let base = "";
  let hits = 0;

  before(async () => {
    server = http.createServer((req, res) => {
      hits++;
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/app.tar.gz") res.writeHead(200).end("archive bytes");
      else if (url.pathname === "/moved") res.writeHead(302, { location: "/app.tar.gz" }).end();
      else if (url.pathname === "/to-metadata") res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
      else if (url.pathname === "/to-ftp") res.writeHead(301, { location: "ftp://127.0.0.1/app.tar.gz" }).end();
      else if (url.pathname === "/loop") res.writeHead(307, { location: "/loop" }).end();
      else res.writeHead(404).end("not found");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => server.close());

  const fails = async (url: string, code: string, message: RegExp) => {
    await assert.rejects(fetchArchive(url), (err: unknown) => err instanceof QuaiError && err.code === code && message.test(err.message));
  };

  it("tells link-local, unspecified and multicast addresses from the others", () => {
    for (const a of ["169.254.169.254", "169.254.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "fe80::1", "FEBF::1", "ff02::1", "::ffff:169.254.169.254", "fd00:ec2::254"]) assert.equal(forbiddenAddress(a), true, a);
    for (const a of ["127.0.0.1", "10.0.0.5", "192.168.1.2", "169.255.0.1", "8.8.8.8", "::1", "2001:db8::1", "fd00::1", "::ffff:127.0.0.1"]) assert.equal(forbiddenAddress(a), false, a);
  });

  it("fails a name's lookup when any of its addresses is forbidden (as a rebinding DNS would answer)", async () => {
    const answer = (addresses: string[]) => guardLookup((_host, _opts, cb) => cb(null, addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }))));
    const run = (addresses: string[], all: boolean) => new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((r) => answer(addresses)("files.example", { all }, (err, address) => r({ err, address })));
    const bad = await run(["10.0.0.7", "169.254.169.254"], true);
    assert.equal(bad.err?.code, "QUAI_FORBIDDEN_ADDRESS");
    assert.equal((await run(["fe80::1"], false)).err?.code, "QUAI_FORBIDDEN_ADDRESS");
    const good = await run(["10.0.0.7"], false);
    assert.equal(good.err, null);
    assert.equal(good.address, "10.0.0.7");
    assert.deepEqual((await run(["10.0.0.7", "::1"], true)).address, [{ address: "10.0.0.7", family: 4 }, { address: "::1", family: 6 }]);
  });

  it("downloads from loopback and private networks, following redirects", async () => {
    assert.equal(await text(await fetchArchive(`${base}/app.tar.gz`)), "archive bytes");
    assert.equal(await text(await fetchArchive(`${base}/moved`)), "archive bytes");
    // A name is resolved through the guard, then connected to.
    const port = new URL(base).port;
    assert.equal(await text(await fetchArchive(`http://localhost:${port}/app.tar.gz`)), "archive bytes");
  });

  it("refuses link-local and other forbidden addresses before connecting, also behind a redirect", async () => {
    const before = hits;
    await fails("http://169.254.169.254/latest/meta-data/", "deployment_source_invalid", /link-local/);
    await fails("http://[fe80::1]/app.tar.gz", "deployment_source_invalid", /link-local/);
    await fails("http://0.0.0.0/app.tar.gz", "deployment_source_invalid", /link-local/);
    await fails("http://[fd00:0ec2:0::254]/latest/meta-data/", "deployment_source_invalid", /fd00:ec2::254/);
    assert.equal(hits, before, "nothing was fetched");
    await fails(`${base}/to-metadata`, "deployment_source_invalid", /169\.254\.169\.254/);
    await fails(`${base}/to-ftp`, "deployment_source_invalid", /redirects to ftp:/);
  });

  it("says what went wrong with a source it cannot fetch", async () => {
    await fails("ftp://127.0.0.1/app.tar.gz", "deployment_source_invalid", /http:\/\/ or https:\/\//);
    await fails("not a url", "deployment_source_invalid", /is not a URL/);
    await fails(`${base}/nope.tar.gz`, "deployment_source_unreachable", /answered 404/);
    await fails(`${base}/loop`, "deployment_source_unreachable", /more than 5 redirects/);
    await fails("http://127.0.0.1:1/app.tar.gz", "deployment_source_unreachable", /ECONNREFUSED/);
  });
});
