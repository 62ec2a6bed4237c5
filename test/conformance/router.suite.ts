// What every RouterDriver must do, checked against a real router process and real backends (small
// node:http servers on loopback). Each driver's test file is a call to `runRouterSuite`.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { Socket } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RouteApp, RouterDriver, RouterState } from "../../src/router/types.ts";
import { trackReuse } from "../../src/testing/reuse.ts";

/** What the suite gives a driver factory. */
export interface RouterSuiteOptions {
  /** Scratch directory of this run: the driver keeps its files under it. Same value on re-attach. */
  dir: string;
  /** Platform domain (apps answer at <app>.<domain>). */
  domain: string;
}

/** A loopback HTTP server standing in for an app's web container. */
interface Backend {
  id: string;
  port: number;
  /** Stops listening and drops every connection, upgraded ones included. */
  close(): Promise<void>;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** What a backend answers: who it is and what it received. */
interface Echo {
  backend: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
}

const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function startBackend(id: string, port = 0): Promise<Backend> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on("data", (c: Buffer) => (bodyBytes += c.length));
    req.on("end", () => {
      if (req.url === "/big") {
        // Larger than the router's proxy buffers: exercises its temp files.
        const big = Buffer.alloc(4 * 1024 * 1024, "q");
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": big.length });
        res.end(big);
        return;
      }
      const echo: Echo = { backend: id, method: req.method ?? "", url: req.url ?? "", headers: req.headers, bodyBytes };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(echo));
    });
  });
  // A minimal WebSocket server: the handshake by hand, then every byte echoed back.
  server.on("upgrade", (req: http.IncomingMessage, socket: Socket) => {
    const key = req.headers["sec-websocket-key"];
    if (req.headers.upgrade?.toLowerCase() !== "websocket" || typeof key !== "string") {
      socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
      return;
    }
    const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Backend: ${id}\r\n\r\n`);
    socket.on("data", (c: Buffer) => socket.write(c));
    socket.on("error", () => {});
  });
  // Upgraded sockets leave the server's bookkeeping: track them all so close() cannot hang.
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return new Promise((resolvePromise, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const addr = server.address();
      const close = () =>
        new Promise<void>((r) => {
          server.close(() => r());
          for (const socket of sockets) socket.destroy();
        });
      resolvePromise({ id, port: typeof addr === "object" && addr ? addr.port : 0, close });
    });
  });
}

/** One request on a fresh connection. */
function request(port: number, host: string, opts: { path?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: opts.path ?? "/", method: opts.method ?? "GET", agent: false, headers: { host, ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

const echoOf = (r: Reply): Echo => JSON.parse(r.body) as Echo;

/** Runs the router conformance suite against drivers made by `newRouter` (not yet started). */
export function runRouterSuite(name: string, newRouter: (opts: RouterSuiteOptions) => Promise<RouterDriver>): void {
  describe(`router conformance: ${name}`, () => {
    const domain = "quai.test";
    let dir: string;
    let router: RouterDriver;
    let a: Backend;
    let b: Backend;
    let c: Backend;
    const host = (app: string) => `${app}.${domain}`;
    const appLog = (app: string) => join(dir, "logs", `${app}.access.log`);
    const app = (name: string, backends: Backend[], hostnames: string[] = []): RouteApp => ({
      name,
      hostnames,
      backends: backends.map((be) => ({ host: "127.0.0.1", port: be.port })),
      accessLog: appLog(name),
    });
    /** The usual table: web on a, two on a+b, idle with nothing running. */
    const baseState = (): RouterState => ({
      domain,
      apps: [app("web", [a], ["www.example.test"]), app("two", [a, b]), app("idle", [])],
    });
    const get = (appHost: string, opts?: Parameters<typeof request>[2]) => request(router.httpPort, appHost, opts);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `quai-router-${name}-`));
      // mkdtemp makes it 0700; a router whose workers drop privileges must be able to traverse it.
      await chmod(dir, 0o711);
      [a, b, c] = await Promise.all([startBackend("a"), startBackend("b"), startBackend("c")]);
      router = await newRouter({ dir, domain });
      await router.start();
      await router.apply(baseState());
    });

    after(async () => {
      await router?.stop().catch(() => {});
      await Promise.all([a, b, c].map((be) => be?.close()));
      await rm(dir, { recursive: true, force: true });
    });

    it("serves an app at <app>.<domain> and at its custom hostnames", async () => {
      assert.ok(router.httpPort > 0);
      for (const h of [host("web"), "www.example.test", `${host("web")}:${router.httpPort}`, "WWW.Example.Test"]) {
        const r = await get(h, { path: "/hello?x=1" });
        assert.equal(r.status, 200, h);
        const echo = echoOf(r);
        assert.equal(echo.backend, "a");
        assert.equal(echo.url, "/hello?x=1");
      }
    });

    it("answers an unknown host with a 404 page", async () => {
      for (const h of [host("nope"), "example.org", domain]) {
        const r = await get(h);
        assert.equal(r.status, 404, h);
        assert.match(String(r.headers["content-type"]), /^text\/html/);
        assert.match(r.body, /No app at this address/);
      }
    });

    it("answers an app without running web containers with a 503 page and Retry-After", async () => {
      const r = await get(host("idle"), { path: "/anything" });
      assert.equal(r.status, 503);
      assert.match(String(r.headers["content-type"]), /^text\/html/);
      assert.match(r.body, /No running web container/);
      assert.ok(Number(r.headers["retry-after"]) > 0);
      assert.ok(r.headers["x-request-id"]);
    });

    it("spreads requests over all backends of an app", async () => {
      const seen = new Map<string, number>();
      for (let i = 0; i < 20; i++) {
        const r = await get(host("two"));
        assert.equal(r.status, 200);
        const id = echoOf(r).backend;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      assert.deepEqual([...seen.keys()].sort(), ["a", "b"]);
      assert.ok((seen.get("a") ?? 0) >= 5 && (seen.get("b") ?? 0) >= 5, `uneven: ${JSON.stringify([...seen])}`);
    });

    it("gives the app a request id, the client address, scheme, port and Host", async () => {
      const r = await get(host("web"), { headers: { "x-forwarded-for": "203.0.113.7" } });
      const h = echoOf(r).headers;
      const id = r.headers["x-request-id"];
      assert.ok(typeof id === "string" && id.length >= 20, `response X-Request-ID ${String(id)}`);
      assert.equal(h["x-request-id"], id);
      assert.equal(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
      assert.equal(h["x-forwarded-proto"], "http");
      assert.equal(h["x-forwarded-port"], String(router.httpPort));
      assert.equal(h.host, host("web"));
      // The app sees the hostname the router matched, with the client's port if it gave one.
      const withPort = echoOf(await get(`WWW.Example.Test:${router.httpPort}`)).headers;
      assert.equal(withPort.host, `www.example.test:${router.httpPort}`);
      // A client's own id is kept when it looks like one, replaced when it does not.
      const mine = randomBytes(16).toString("hex");
      const kept = await get(host("web"), { headers: { "x-request-id": mine } });
      assert.equal(kept.headers["x-request-id"], mine);
      assert.equal(echoOf(kept).headers["x-request-id"], mine);
      const replaced = await get(host("web"), { headers: { "x-request-id": "bad id; <script>" } });
      assert.notEqual(echoOf(replaced).headers["x-request-id"], "bad id; <script>");
      assert.match(String(echoOf(replaced).headers["x-request-id"]), /^[A-Za-z0-9+/=_.:-]{20,200}$/);
    });

    it("proxies WebSocket upgrades both ways", async () => {
      const key = randomBytes(16).toString("base64");
      const { res, socket } = await new Promise<{ res: http.IncomingMessage; socket: Socket }>((resolvePromise, reject) => {
        const req = http.request({
          host: "127.0.0.1",
          port: router.httpPort,
          agent: false,
          headers: { host: host("web"), connection: "Upgrade", upgrade: "websocket", "sec-websocket-key": key, "sec-websocket-version": "13" },
        });
        req.on("upgrade", (res2: http.IncomingMessage, socket2: Socket) => resolvePromise({ res: res2, socket: socket2 }));
        req.on("response", (res2) => reject(new Error(`no upgrade: HTTP ${res2.statusCode}`)));
        req.on("error", reject);
        req.end();
      });
      try {
        assert.equal(res.statusCode, 101);
        assert.equal(res.headers["sec-websocket-accept"], createHash("sha1").update(key + WS_GUID).digest("base64"));
        const echoed = new Promise<string>((r) => socket.once("data", (d: Buffer) => r(d.toString("utf8"))));
        socket.write("ping over the router");
        assert.equal(await echoed, "ping over the router");
      } finally {
        socket.destroy();
      }
    });

    it("writes one access log line per request to the app's log", async () => {
      const ids = [0, 1, 2].map(() => randomBytes(12).toString("hex"));
      for (const id of ids) assert.equal((await get(host("two"), { path: `/logged/${id}`, headers: { "x-request-id": id } })).status, 200);
      // Logs may be written a moment after the response.
      let lines: string[] = [];
      for (let i = 0; i < 50; i++) {
        lines = (await readFile(appLog("two"), "utf8").catch(() => "")).split("\n").filter((l) => ids.some((id) => l.includes(id)));
        if (lines.length === ids.length) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(lines.length, ids.length, lines.join("\n"));
      for (const [i, line] of lines.entries()) {
        assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/, "ISO 8601 time first");
        for (const part of [ids[i] as string, "127.0.0.1", "GET", `/logged/${ids[i]}`, "200"]) assert.ok(line.includes(part), `${part} missing in: ${line}`);
        assert.match(line, new RegExp(`127\\.0\\.0\\.1:(${a.port}|${b.port})`), "upstream address");
        assert.match(line, /\d+\.\d{3}/, "durations");
      }
    });

    it("passes large request and response bodies", async () => {
      const body = randomBytes(3 * 1024 * 1024);
      const up = await get(host("web"), { method: "POST", path: "/upload", body, headers: { "content-type": "application/octet-stream" } });
      assert.equal(up.status, 200);
      assert.equal(echoOf(up).bodyBytes, body.length);
      const down = await get(host("web"), { path: "/big" });
      assert.equal(down.status, 200);
      assert.equal(down.body.length, 4 * 1024 * 1024);
    });

    it("rejects an invalid state and keeps serving the previous one", async () => {
      for (const bad of [
        { ...app("web", [c]), hostnames: ["bad host; return 200"] },
        { ...app("web", [c]), name: "Web}" },
        { ...app("web", [c]), accessLog: "relative/path.log" },
        { ...app("web", [c]), accessLog: `${dir}/$host.log` },
      ]) {
        await assert.rejects(router.apply({ domain, apps: [bad] }), Error);
      }
      // Two apps claiming one hostname.
      await assert.rejects(router.apply({ domain, apps: [app("web", [c], ["same.example.test"]), app("other", [c], ["same.example.test"])] }), /same\.example\.test/);
      // Valid-looking but refused by the server: the access log is a directory.
      await assert.rejects(router.apply({ domain, apps: [{ ...app("web", [c]), accessLog: dir }] }), /Is a directory|directory/i);
      const r = await get(host("web"));
      assert.equal(r.status, 200);
      assert.equal(echoOf(r).backend, "a");
      assert.equal((await get(host("idle"))).status, 503);
    });

    it("coalesces concurrent apply() calls: the last state wins", async () => {
      const states = [c, a, b, c].map((be) => ({ domain, apps: [app("web", [be]), app("idle", [])] }));
      await Promise.all(states.map((s) => router.apply(s)));
      assert.equal(echoOf(await get(host("web"))).backend, "c");
      await router.apply(baseState());
    });

    it("switches backends with no failed request under load", async (t) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
      let stop = false;
      let ok = 0;
      let retried = 0;
      const failures: string[] = [];
      const once = (fresh = false) =>
        new Promise<Reply>((resolvePromise, reject) => {
          const req = http.get({ host: "127.0.0.1", port: router.httpPort, path: "/", agent: fresh ? false : agent, headers: { host: host("web") } }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => (body += d));
            res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body }));
            res.on("error", reject);
          });
          const reused = trackReuse(req);
          req.on("error", (err: NodeJS.ErrnoException) => reject(Object.assign(err, { reused: reused() })));
        });
      const client = async () => {
        while (!stop) {
          let r: Reply;
          try {
            r = await once();
          } catch (err) {
            // A kept-alive connection the router closed (old workers leaving) before any byte of
            // the response: HTTP clients retry an idempotent request then, once, on a new connection.
            const e = err as NodeJS.ErrnoException & { reused?: boolean };
            if (!(e.reused && (e.code === "ECONNRESET" || e.message === "socket hang up"))) {
              failures.push(e.message);
              continue;
            }
            retried++;
            try {
              r = await once(true);
            } catch (err2) {
              failures.push(`after retry: ${(err2 as Error).message}`);
              continue;
            }
          }
          if (r.status === 200) ok++;
          else failures.push(`HTTP ${r.status}`);
        }
      };
      const clients = Array.from({ length: 4 }, client);
      try {
        for (let i = 0; i < 5; i++) {
          await new Promise((r) => setTimeout(r, 60));
          await router.apply({ domain, apps: [app("web", [i % 2 === 0 ? b : a]), app("idle", [])] });
        }
        await new Promise((r) => setTimeout(r, 60));
      } finally {
        stop = true;
        await Promise.all(clients);
        agent.destroy();
      }
      t.diagnostic(`${ok} requests during 5 switches, ${retried} retried once after the router closed an idle kept-alive connection`);
      assert.deepEqual(failures, []);
      assert.ok(ok > 50, `only ${ok} requests went through (${retried} retried)`);
      // The last apply put web on b.
      assert.equal(echoOf(await get(host("web"))).backend, "b");
      await router.apply(baseState());
    });

    it("tries incoming backends first, falls back to backups while they refuse, and moves traffic the moment they listen", async () => {
      // Two ports nothing listens on yet: the new release's web containers, booting.
      const boot = await Promise.all([startBackend("boot-1"), startBackend("boot-2")]);
      await Promise.all(boot.map((be) => be.close()));
      const [p1, p2] = boot.map((be) => be.port) as [number, number];
      const state: RouterState = {
        domain,
        apps: [
          {
            ...app("web", []),
            backends: [
              { host: "127.0.0.1", port: p1, role: "incoming" },
              { host: "127.0.0.1", port: p2, role: "incoming" },
              { host: "127.0.0.1", port: a.port, role: "backup" },
            ],
          },
          app("idle", []),
        ],
      };
      await router.apply(state);
      const seen = async (n: number) => {
        const ids: string[] = [];
        for (let i = 0; i < n; i++) {
          const r = await get(host("web"));
          assert.equal(r.status, 200);
          ids.push(echoOf(r).backend);
        }
        return [...new Set(ids)].sort();
      };
      assert.deepEqual(await seen(10), ["a"]);
      // One listens: it gets every request at once, with no apply in between; then both.
      const first = await startBackend("new-1", p1);
      try {
        assert.deepEqual(await seen(10), ["new-1"]);
        const second = await startBackend("new-2", p2);
        try {
          assert.deepEqual(await seen(20), ["new-1", "new-2"]);
        } finally {
          await second.close();
        }
        // One of them gone again: the other serves, never the backup while an incoming answers.
        assert.deepEqual(await seen(10), ["new-1"]);
      } finally {
        await first.close();
      }
      assert.deepEqual(await seen(5), ["a"]);
      await router.apply(baseState());
    });

    it("re-attaches a new driver to the running router and applies through it", async () => {
      const port = router.httpPort;
      const second = await newRouter({ dir, domain });
      await second.start();
      assert.equal(second.httpPort, port);
      // The state applied before the restart is still served.
      assert.equal(echoOf(await get(host("web"))).backend, "a");
      router = second;
      await router.apply({ domain, apps: [app("web", [c]), app("idle", [])] });
      assert.equal(echoOf(await get(host("web"))).backend, "c");
      assert.equal((await get(host("two"))).status, 404);
    });

    it("stops", async () => {
      const port = router.httpPort;
      await router.stop();
      await assert.rejects(request(port, host("web")), /ECONNREFUSED/);
    });
  });
}
