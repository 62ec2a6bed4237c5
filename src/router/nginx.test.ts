import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRouterSuite } from "../../test/conformance/router.suite.ts";
import { defaultRouterWorkers, NginxRouter } from "./nginx.ts";
import { Supervisor } from "../formation/supervisor.ts";
import { AppLogs } from "../logs/store.ts";
import type { PipelineContext } from "../pipeline/context.ts";

runRouterSuite("nginx", async ({ dir, domain }) => new NginxRouter({ prefix: join(dir, "router"), domain }));

const isRoot = process.getuid?.() === 0;

/** Status code and body of GET / with `host`, on a fresh connection. */
function get(port: number, host: string, path = "/", body?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: body ? "POST" : "GET", agent: false, headers: { host } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** uid of each nginx worker of `master`, from /proc. */
function workerUids(master: number): number[] {
  const uids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) === master) uids.push(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]));
    } catch {
      // The process left meanwhile.
    }
  }
  return uids;
}

describe("nginx router", () => {
  const dirs: string[] = [];
  const routers: NginxRouter[] = [];
  after(async () => {
    for (const r of routers) await r.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const scratch = async (mode: number) => {
    const d = await mkdtemp(join(tmpdir(), "quai-nginx-"));
    await chmod(d, mode);
    dirs.push(d);
    return d;
  };

  it("runs workers unprivileged with their temp files in the prefix, and reports reload times", { skip: !isRoot && "needs root" }, async (t) => {
    const dir = await scratch(0o711);
    const router = new NginxRouter({ prefix: join(dir, "router"), workers: 2 });
    routers.push(router);
    await router.start();
    const master = router.masterPid as number;
    // A worker is forked as root and drops to nobody as it initialises: start() returns once one
    // worker answers, the other may still be a moment behind.
    let uids = workerUids(master);
    for (let i = 0; i < 100 && !(uids.length === 2 && uids.every((u) => u === 65534)); i++) {
      await new Promise((r) => setTimeout(r, 20));
      uids = workerUids(master);
    }
    assert.equal(uids.length, 2);
    assert.ok(uids.every((u) => u === 65534), `worker uids ${uids.join(",")}`);
    assert.equal(statSync(join(dir, "router", "temp", "client_body")).uid, 65534);
    assert.equal(statSync(join(dir, "router", "conf")).mode & 0o777, 0o700);
    const times: string[] = [];
    for (let i = 0; i < 5; i++) {
      await router.apply({ domain: "localhost", apps: [{ name: `app${i}`, hostnames: [], backends: [], accessLog: join(dir, "logs", `app${i}.log`) }] });
      const r = router.lastReload as { firstAnswerMs: number; liveMs: number };
      assert.ok(r.firstAnswerMs <= r.liveMs);
      times.push(`${r.firstAnswerMs.toFixed(0)}/${r.liveMs.toFixed(0)}`);
    }
    t.diagnostic(`SIGHUP → new generation first answers / live (ms): ${times.join(", ")}`);
    assert.equal(router.generation, 6);
    assert.equal((await get(router.httpPort, "app4.localhost")).status, 503);
  });

  it("gives workers a reachable directory when the prefix is inside a private one", { skip: !isRoot && "needs root" }, async () => {
    const dir = await scratch(0o700);
    const logs: string[] = [];
    const router = new NginxRouter({ prefix: join(dir, "router"), log: (l) => logs.push(l) });
    routers.push(router);
    await router.start();
    assert.ok(logs.some((l) => l.includes("cannot reach")), logs.join("\n"));
    const backend = http.createServer((req, res) => {
      let n = 0;
      req.on("data", (c: Buffer) => (n += c.length));
      req.on("end", () => res.end(String(n)));
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
    try {
      const port = (backend.address() as { port: number }).port;
      await router.apply({ domain: "localhost", apps: [{ name: "up", hostnames: [], backends: [{ host: "127.0.0.1", port }], accessLog: join(dir, "up.log") }] });
      assert.match((await get(router.httpPort, "nobody-here.localhost")).body, /No app at this address/);
      // Bigger than client_body_buffer_size: nginx writes it to a temp file first.
      const big = Buffer.alloc(2 * 1024 * 1024, 1);
      assert.deepEqual(await get(router.httpPort, "up.localhost", "/", big), { status: 200, body: String(big.length) });
      // Log rotation, with the logs where workers (nobody) cannot reach them.
      await rename(join(dir, "up.log"), join(dir, "up.log.1"));
      await router.reopenLogs();
      assert.equal((await get(router.httpPort, "up.localhost", "/after-rotation")).status, 200);
      // The worker logs a request once its response is sent: the line may land a moment later.
      let rotated = "";
      for (let i = 0; i < 100 && !rotated.includes("/after-rotation"); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 20));
        rotated = await readFile(join(dir, "up.log"), "utf8").catch(() => "");
      }
      assert.match(rotated, /\/after-rotation/);
      assert.doesNotMatch(await readFile(join(dir, "up.log.1"), "utf8"), /\/after-rotation/);
      // The router's own logs (requests for no app, its errors) are rotated past their size.
      const sup = new Supervisor({} as PipelineContext, router, new AppLogs(join(dir, "app-logs"), 100_000));
      const [own] = router.logFiles();
      assert.deepEqual(await sup.rotateRouterLogs(1024 * 1024), [], "below the size");
      assert.ok((await sup.rotateRouterLogs(10)).includes(own as string), "the access log of no app is rotated");
      await get(router.httpPort, "after-rotation.localhost");
      let fresh = "";
      for (let i = 0; i < 100 && !fresh.includes("after-rotation.localhost"); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 20));
        fresh = await readFile(own as string, "utf8").catch(() => "");
      }
      assert.match(fresh, /host=after-rotation\.localhost/);
      assert.doesNotMatch(fresh, /nobody-here/);
      assert.match(await readFile(`${own}.1`, "utf8"), /host=nobody-here\.localhost/);
    } finally {
      backend.closeAllConnections();
      backend.close();
    }
    await router.stop();
  });

  it("keeps serving after the control plane is SIGKILLed, and a new one re-attaches", async () => {
    const dir = await scratch(0o711);
    const prefix = join(dir, "router");
    const script = `
      import { NginxRouter } from ${JSON.stringify(new URL("./nginx.ts", import.meta.url).pathname)};
      const r = new NginxRouter({ prefix: ${JSON.stringify(prefix)} });
      await r.start();
      await r.apply({ domain: "localhost", apps: [{ name: "kept", hostnames: [], backends: [], accessLog: ${JSON.stringify(join(dir, "kept.log"))} }] });
      console.log(JSON.stringify({ port: r.httpPort, pid: r.masterPid }));
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    const [line] = (await once(child.stdout, "data")) as [Buffer];
    const { port, pid } = JSON.parse(line.toString("utf8")) as { port: number; pid: number };
    child.kill("SIGKILL");
    await once(child, "exit");
    assert.equal((await get(port, "kept.localhost")).status, 503);

    const again = new NginxRouter({ prefix });
    routers.push(again);
    await again.start();
    assert.equal(again.masterPid, pid);
    assert.equal(again.httpPort, port);
    await again.apply({ domain: "localhost", apps: [] });
    assert.equal((await get(port, "kept.localhost")).status, 404);
    await again.stop();
    await assert.rejects(get(port, "kept.localhost"), /ECONNREFUSED/);
  });

  it("runs one worker per CPU unless told, and a control plane with another count reloads into it", async () => {
    assert.deepEqual([1, 2, 3, 8, 64, 96].map((cpus) => defaultRouterWorkers(cpus)), [1, 2, 3, 8, 64, 64]);
    const prefix = join(await scratch(0o711), "router");
    const first = new NginxRouter({ prefix });
    routers.push(first);
    await first.start();
    const master = first.masterPid as number;
    // Workers left by a reload finish their requests and exit: count until it settles.
    const settled = async (want: number) => {
      let n = workerUids(master).length;
      for (let i = 0; i < 250 && n !== want; i++) {
        await new Promise((r) => setTimeout(r, 20));
        n = workerUids(master).length;
      }
      return n;
    };
    assert.equal(await settled(defaultRouterWorkers()), defaultRouterWorkers());
    const more = defaultRouterWorkers() + 1;
    const second = new NginxRouter({ prefix, workers: more });
    routers.push(second);
    await second.start();
    assert.equal(second.masterPid, master, "the running master is kept");
    assert.equal(await settled(more), more);
    await second.stop();
  });

  it("remembers a port chosen at run time and reuses it on a fresh start", async () => {
    const dir = await scratch(0o711);
    const prefix = join(dir, "router");
    const first = new NginxRouter({ prefix });
    routers.push(first);
    await first.start();
    const port = first.httpPort;
    await first.stop();
    const second = new NginxRouter({ prefix });
    routers.push(second);
    await second.start();
    assert.equal(second.httpPort, port);
    assert.notEqual(second.masterPid, first.masterPid);
    const saved = JSON.parse(await readFile(join(prefix, "router.json"), "utf8")) as { httpPort: number };
    assert.equal(saved.httpPort, port);
    await second.stop();
  });

  /**
   * Starts a router, runs `before` on its master, then starts a second router on the same prefix
   * without the first one's saved state: it finds a master it cannot drive.
   */
  const replaceUndrivable = async (before: (oldPid: number) => Promise<void> = async () => {}) => {
    const prefix = join(await scratch(0o711), "router");
    const first = new NginxRouter({ prefix });
    routers.push(first);
    await first.start();
    const oldPid = first.masterPid as number;
    await before(oldPid);
    await rm(join(prefix, "router.json"));
    const second = new NginxRouter({ prefix });
    routers.push(second);
    await second.start();
    return { oldPid, second };
  };

  it("replaces a master it cannot drive instead of starting a second one", async () => {
    const { oldPid, second } = await replaceUndrivable();
    assert.notEqual(second.masterPid, oldPid);
    assert.throws(() => process.kill(oldPid, 0), /ESRCH/);
    await second.stop();
  });

  it("kills the workers too of a master that would not quit, so none holds the ports on", async () => {
    let workers: number[] = [];
    const { oldPid, second } = await replaceUndrivable(async (pid) => {
      workers = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).split(" ").filter(Boolean).map(Number);
      assert.ok(workers.length > 0);
      // A frozen master does not act on SIGQUIT: the new router waits 5 s, then kills.
      process.kill(pid, "SIGSTOP");
    });
    /** Exited: no such process, or a zombie its parent has not reaped yet. */
    const gone = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") === true;
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 5000;
    while (![oldPid, ...workers].every(gone) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([oldPid, ...workers].filter((pid) => !gone(pid)), [], "processes of the old router still run");
    await second.stop();
  });

  it("fails to start with nginx's own message when the port is taken", async () => {
    const dir = await scratch(0o711);
    const holder = http.createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
    const port = (holder.address() as { port: number }).port;
    try {
      const router = new NginxRouter({ prefix: join(dir, "router"), httpPort: port });
      routers.push(router);
      await assert.rejects(router.start(), /Address already in use/);
    } finally {
      holder.close();
    }
  });

  it("applies 1,000 apps with custom domains, one of 253 characters", async (t) => {
    const dir = await scratch(0o711);
    const router = new NginxRouter({ prefix: join(dir, "router") });
    routers.push(router);
    await router.start();
    const long = ["a", "b", "c", "d"].map((ch, i) => ch.repeat(i === 3 ? 61 : 63)).join(".");
    const apps = Array.from({ length: 1000 }, (_, i) => ({
      name: `app-${i}`,
      hostnames: i === 0 ? [long] : [`www.app-${i}.example.fr`],
      backends: i % 2 ? [{ host: "127.0.0.1", port: 20000 + i }] : [],
      accessLog: join(dir, "logs", `app-${i}.log`),
    }));
    const t0 = performance.now();
    await router.apply({ domain: "localhost", apps });
    t.diagnostic(`apply of 1,000 apps: ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal((await get(router.httpPort, long)).status, 503);
    assert.equal((await get(router.httpPort, "www.app-998.example.fr")).status, 503);
    await router.stop();
  });

  it("keeps a burst's connections to the app open for the next burst", async () => {
    const dir = await scratch(0o755);
    const router = new NginxRouter({ prefix: join(dir, "router"), workers: 2 });
    routers.push(router);
    await router.start();
    // The backend holds each response until the whole burst has arrived, so every request of a
    // burst is in flight at once and nginx needs that many connections to the app.
    const burst = 48;
    let connections = 0;
    let waiting: (() => void)[] = [];
    const backend = http.createServer((_req, res) => {
      waiting.push(() => res.end("ok"));
      if (waiting.length === burst) {
        for (const release of waiting) release();
        waiting = [];
      }
    });
    backend.on("connection", () => connections++);
    backend.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
    const agent = new http.Agent({ keepAlive: true, maxSockets: burst });
    try {
      const port = (backend.address() as { port: number }).port;
      await router.apply({ domain: "localhost", apps: [{ name: "busy", hostnames: [], backends: [{ host: "127.0.0.1", port }], accessLog: join(dir, "busy.log") }] });
      const one = () =>
        new Promise<number>((resolvePromise, reject) => {
          http
            .get({ host: "127.0.0.1", port: router.httpPort, path: "/", agent, headers: { host: "busy.localhost" } }, (res) => {
              res.resume();
              res.on("end", () => resolvePromise(res.statusCode ?? 0));
            })
            .on("error", reject);
        });
      const fire = async () => assert.deepEqual(await Promise.all(Array.from({ length: burst }, one)), Array(burst).fill(200));
      await fire();
      assert.equal(connections, burst, "the first burst opens one connection to the app per request");
      await fire();
      await fire();
      // The same client connections reach the same workers, which still hold their connections.
      assert.equal(connections, burst, "later bursts reuse them");
    } finally {
      agent.destroy();
      backend.closeAllConnections();
      backend.close();
    }
  });

  it("refuses apply() before start()", async () => {
    const dir = await scratch(0o711);
    await mkdir(join(dir, "router"));
    const router = new NginxRouter({ prefix: join(dir, "router") });
    await assert.rejects(router.apply({ domain: "localhost", apps: [] }), /not running/);
  });
});
