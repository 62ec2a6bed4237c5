// What a container of the local driver must not do: see or touch the host and other apps, exceed
// its size, signal host processes, or hold privileges; and it must outlive the control plane.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { randomBytes } from "node:crypto";
import { LocalRuntime } from "./local.ts";
import { hostRootEntries } from "./sandbox.ts";
import { containerSizes, type ContainerSpec } from "./types.ts";

const PY = "/usr/bin/python3";
const UID = 60002;
const PIDS_LIMIT = 64;

let base: string;
let stateDir: string;
let rt: LocalRuntime;
const ids = new Set<string>();
const hostChildren: ChildProcess[] = [];

before(async () => {
  base = await mkdtemp(join(tmpdir(), "quai-rt-isolation-"));
  await chmod(base, 0o755);
  stateDir = join(base, "state");
  // A small pids limit keeps the fork bomb quick; memory stays size S's 256 MB.
  rt = new LocalRuntime({ stateDir, limits: (size) => ({ memoryBytes: containerSizes[size].memoryMb << 20, pids: PIDS_LIMIT, cpuShares: containerSizes[size].cpuShares }) });
});

after(async () => {
  for (const id of ids) {
    await rt.stop(id, 0).catch(() => undefined);
    await rt.remove(id).catch(() => undefined);
  }
  for (const c of hostChildren) c.kill("SIGKILL");
  await rm(base, { recursive: true, force: true });
});

async function spec(label: string, command: string[], over: Partial<ContainerSpec> = {}): Promise<ContainerSpec> {
  const id = `iso-${label}-${randomBytes(3).toString("hex")}`;
  const appDir = join(base, id);
  await mkdir(appDir, { mode: 0o755 });
  ids.add(id);
  return { id, app: "isolated", uid: UID, gid: UID, appDir, appWritable: false, command, env: {}, size: "S", network: "none", logFile: join(base, `${id}.log`), ...over };
}

/** Runs Python in the sandbox and parses the JSON it prints last. */
async function probe<T>(label: string, code: string, over: Partial<ContainerSpec> = {}, args: string[] = []): Promise<T> {
  const s = await spec(label, [PY, "-c", `import json, os, sys\n${code}`, ...args], over);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const res = await rt.exec(s, { onStdout: (b) => out.push(b), onStderr: (b) => err.push(b) });
  const stdout = Buffer.concat(out).toString("utf8").trim();
  assert.equal(res.exitCode, 0, `${stdout}\n${Buffer.concat(err).toString("utf8")}`);
  return JSON.parse(stdout.split("\n").at(-1) as string) as T;
}

async function waitForLog(s: ContainerSpec, text: string): Promise<string> {
  for (let i = 0; i < 1000; i++) {
    const content = await readFile(s.logFile, "utf8").catch(() => "");
    if (content.includes(text)) return content;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`log of ${s.id} never showed ${text}`);
}

describe("local sandbox isolation", () => {
  it("shows the system and /app, nothing else of the host: not other apps, QUAI_HOME, /root, /work or the checkout", async () => {
    const otherApp = join(base, "other-app");
    const quaiHome = join(base, "quai-home");
    await mkdir(otherApp, { mode: 0o755 });
    await mkdir(quaiHome, { mode: 0o755 });
    // World-readable on purpose: only the mount namespace may hide them.
    await writeFile(join(otherApp, "secret"), "other app's code", { mode: 0o644 });
    await writeFile(join(quaiHome, "keyring"), "platform secrets", { mode: 0o644 });
    const paths = [join(otherApp, "secret"), join(quaiHome, "keyring"), otherApp, quaiHome, base, "/root", "/work", process.cwd(), "/home", "/var", "/run", "/opt", "/srv", "/mnt", "/sys", "/boot"];
    const got = await probe<{ root: string[]; tmp: string[]; visible: string[] }>(
      "fs",
      `paths = json.loads(sys.argv[1])\nprint(json.dumps({"root": sorted(os.listdir("/")), "tmp": os.listdir("/tmp"), "visible": [p for p in paths if os.path.lexists(p)]}))`,
      {},
      [JSON.stringify(paths)],
    );
    const expected = ["app", "dev", "etc", "proc", "tmp", "usr", ...hostRootEntries().map((e) => e.name)].sort();
    assert.deepEqual(got.root, expected);
    assert.deepEqual(got.tmp, [], "a private, empty /tmp");
    assert.deepEqual(got.visible, []);
  });

  it("cannot write outside /app, /tmp and /dev/shm; /app only when the spec makes it writable", async () => {
    const attempts = `ok = []\nfor p in ["/x", "/usr/x", "/etc/x", "/app/x", "/dev/x", "/proc/x", "/proc/sys/kernel/hostname", "/tmp/x", "/dev/shm/x"]:\n    try:\n        open(p, "w").write("x")\n        ok.append(p)\n    except OSError:\n        pass\nprint(json.dumps(ok))`;
    assert.deepEqual(await probe<string[]>("ro", attempts), ["/tmp/x", "/dev/shm/x"]);
    const s = await spec("rw", [PY, "-c", `import json\n${attempts}`], { appWritable: true });
    await chown(s.appDir, UID, UID);
    const out: Buffer[] = [];
    await rt.exec(s, { onStdout: (b) => out.push(b), onStderr: (b) => out.push(b) });
    assert.deepEqual(JSON.parse(Buffer.concat(out).toString()), ["/app/x", "/tmp/x", "/dev/shm/x"]);
    assert.equal((await stat(join(s.appDir, "x"))).uid, UID, "files written in /app belong to the app's uid on the host");
  });

  it("layers a writable /app over a slug it cannot change, with the mount in the container's namespace only", async () => {
    // A slug as the pipeline leaves it (root's), and a container layer holding its directories, the app's.
    const slug = join(base, "slug-layered");
    await mkdir(join(slug, "var"), { recursive: true, mode: 0o755 });
    await writeFile(join(slug, "server.js"), "release code\n", { mode: 0o644 });
    const upper = join(base, "layer-layered");
    const work = join(base, "layer-work-layered");
    await mkdir(join(upper, "var"), { recursive: true });
    await mkdir(work);
    for (const d of [upper, join(upper, "var")]) await chown(d, UID, UID);
    const code = [
      "res = {'read': open('/app/server.js').read()}",
      "for name, fn in [('append', lambda: open('/app/server.js', 'a').write('x')), ('add', lambda: open('/app/var/cache.txt', 'w').write('c')), ('remove', lambda: os.remove('/app/server.js'))]:",
      "    try:",
      "        fn(); res[name] = 'ok'",
      "    except OSError as e:",
      "        res[name] = e.errno",
      "res['listing'] = sorted(os.listdir('/app'))",
      "print(json.dumps(res))",
    ].join("\n");
    const s = await spec("layered", [PY, "-c", `import json, os\n${code}`], { appWritable: true, appLayers: { lower: slug, upper, work } });
    const out: Buffer[] = [];
    const res = await rt.exec(s, { onStdout: (b) => out.push(b), onStderr: (b) => out.push(b) });
    assert.equal(res.exitCode, 0, Buffer.concat(out).toString());
    const got = JSON.parse(Buffer.concat(out).toString().trim().split("\n").at(-1) as string) as Record<string, unknown>;
    assert.equal(got.read, "release code\n");
    assert.equal(got.append, 13, "the slug's files are root's: not writable in place (EACCES)");
    assert.equal(got.add, "ok");
    assert.equal(got.remove, "ok", "its directories are the app's: it may replace or remove a file");
    assert.deepEqual(got.listing, ["var"]);
    // The slug is untouched; the changes are in the container's layer; the host never saw the mount.
    assert.equal(await readFile(join(slug, "server.js"), "utf8"), "release code\n");
    await assert.rejects(stat(join(slug, "var", "cache.txt")));
    assert.equal((await stat(join(upper, "var", "cache.txt"))).uid, UID);
    assert.ok(!(await readFile("/proc/self/mountinfo", "utf8")).includes(s.appDir), "the overlay is mounted in the container's namespace only");
  });

  it("runs as the app's non-root uid, without capabilities, in its own pid namespace, unable to make user namespaces", async () => {
    const s = await spec("ids", ["/bin/sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status; hostname; ls /proc | grep -c '^[0-9]'; unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied"]);
    const out: Buffer[] = [];
    await rt.exec(s, { onStdout: (b) => out.push(b), onStderr: (b) => out.push(b) });
    const [uid, gid, groups, capEff, hostname, processes, userns] = Buffer.concat(out).toString().trim().split("\n");
    assert.equal(uid, String(UID));
    assert.equal(gid, String(UID));
    assert.equal(groups, String(UID));
    assert.match(capEff ?? "", /^CapEff:\s+0+$/);
    assert.equal(hostname, s.id);
    assert.ok(Number(processes) <= 6, `sees only its own processes (${processes})`);
    assert.equal(userns, "userns-denied");
  });

  it("cannot signal a host process", async () => {
    const victim = spawn("/bin/sleep", ["30"], { stdio: "ignore" });
    hostChildren.push(victim);
    await new Promise((r) => victim.once("spawn", r));
    const errors = await probe<string[]>("kill", `out = []\nfor sig in (0, 9, 15):\n    try:\n        os.kill(${victim.pid}, sig)\n        out.append("delivered")\n    except OSError as e:\n        out.append(type(e).__name__)\nprint(json.dumps(out))`);
    assert.deepEqual(errors, ["ProcessLookupError", "ProcessLookupError", "ProcessLookupError"]);
    assert.equal(victim.exitCode, null);
    assert.equal(victim.signalCode, null);
  });

  it("network none reaches no host service; network host does", async () => {
    const server: Server = createServer((c) => c.end("hello"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const code = `import socket\ntry:\n    c = socket.create_connection(("127.0.0.1", ${port}), timeout=2)\n    print(json.dumps(c.recv(5).decode()))\nexcept OSError as e:\n    print(json.dumps(type(e).__name__))`;
    try {
      assert.notEqual(await probe<string>("net-none", code), "hello");
      assert.equal(await probe<string>("net-host", code, { network: "host" }), "hello");
    } finally {
      server.close();
    }
  });

  it("keeps env secrets and host paths out of every process's command line", async () => {
    const secret = `s3cret-${randomBytes(8).toString("hex")}`;
    const s = await spec("secret", [PY, "-c", `import os\nprint(open("/proc/1/cmdline").read(), flush=True)\nos.system("sleep 30")`], { env: { DATABASE_URL: `postgres://u:${secret}@db/x` } });
    await rt.start(s);
    const inside = await waitForLog(s, "bwrap");
    assert.ok(!inside.includes(s.appDir), "the app does not learn the host path of its /app");
    for (const pid of await rt.cgroups.pids(s.id)) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      assert.ok(!cmdline.includes(secret), `pid ${pid}: ${cmdline}`);
    }
    await rt.stop(s.id, 0);
  });

  it("stops a fork bomb at the pids limit", async () => {
    const code = `import os, time\nn = 0\ntry:\n    while n < 10000:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint("forked", n, flush=True)\ntime.sleep(60)`;
    const s = await spec("forkbomb", [PY, "-c", code]);
    await rt.start(s);
    const log = await waitForLog(s, "forked");
    const forked = Number(/forked (\d+)/.exec(log)?.[1]);
    assert.ok(forked < PIDS_LIMIT && forked > 10, `forked ${forked}`);
    assert.ok(((await rt.stats(s.id))?.pids ?? Infinity) <= PIDS_LIMIT);
    const t = Date.now();
    assert.equal((await rt.stop(s.id, 0)).status, "exited");
    assert.ok(Date.now() - t < 3000);
    assert.deepEqual(await rt.cgroups.pids(s.id), []);
  });

  it("OOM-kills an app allocating past its size and says so", async () => {
    const code = `b = b"x" * (400 << 20)\nprint("allocated 400 MB")`;
    const s = await spec("oom", [PY, "-c", code]);
    await rt.start(s);
    const done = await rt.wait(s.id);
    assert.equal(done.oomKilled, true);
    assert.equal(done.exitCode, 137);
    assert.doesNotMatch(await readFile(s.logFile, "utf8"), /allocated/);
    const viaExec = await rt.exec(await spec("oom-exec", [PY, "-c", code]), { onStdout: () => undefined, onStderr: () => undefined });
    assert.equal(viaExec.oomKilled, true);
  });

  it("keeps running when the control plane that started it is killed, and is recovered", async () => {
    const s = await spec("orphan", [PY, "-c", `import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(9))\nprint("ready", flush=True)\nwhile True: time.sleep(1)`]);
    const script = join(base, "control-plane.mjs");
    await writeFile(
      script,
      `import { LocalRuntime } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, "local.ts")).href)};\n` +
        `const rt = new LocalRuntime({ stateDir: ${JSON.stringify(stateDir)} });\n` +
        `const st = await rt.start(${JSON.stringify(s)});\nconsole.log(JSON.stringify(st));\nsetInterval(() => {}, 1000);\n`,
    );
    const plane = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
    hostChildren.push(plane);
    const line = await new Promise<string>((resolve) => plane.stdout?.once("data", (b: Buffer) => resolve(b.toString())));
    const started = JSON.parse(line) as { pid: number };
    plane.kill("SIGKILL");
    await new Promise((r) => plane.once("exit", r));
    await waitForLog(s, "ready");
    const found = await new LocalRuntime({ stateDir }).recover(s);
    assert.equal(found.status, "running");
    assert.equal(found.pid, started.pid);
    const stopped = await rt.stop(s.id, 5000);
    assert.equal(stopped.exitCode, 9);
  });
});

describe("local driver records", () => {
  it("start() rejects with bwrap's message when the sandbox cannot be set up", async () => {
    const s = await spec("badbind", ["/bin/true"], { binds: [{ source: join(base, "missing"), target: "/data", writable: false }] });
    await assert.rejects(rt.start(s), /failed to start: .*missing/);
    assert.equal((await rt.inspect(s.id))?.status, "exited");
  });

  it("will not follow a symlink planted where the log file goes", async () => {
    const target = join(base, "not-a-log");
    await writeFile(target, "");
    const s = await spec("symlog", ["/bin/true"]);
    await symlink(target, s.logFile);
    await assert.rejects(rt.start(s), /ELOOP/);
  });

  it("refuses to start an id that is running, or to remove it; starts it again once it exited, with a fresh group", async () => {
    const oom = `b = b"x" * (400 << 20)`;
    const s = await spec("reuse", [PY, "-c", `import time\nprint("ready", flush=True)\ntime.sleep(60)`]);
    await rt.start(s);
    await assert.rejects(rt.start(s), /already running/);
    await assert.rejects(rt.remove(s.id), /is running/);
    await rt.stop(s.id, 0);
    await rt.start({ ...s, command: [PY, "-c", oom] });
    assert.equal((await rt.wait(s.id)).oomKilled, true);
    // So short-lived that start() may already report it exited.
    await rt.start({ ...s, command: ["/bin/sh", "-c", "exit 2"] });
    const done = await rt.wait(s.id);
    assert.equal(done.exitCode, 2);
    assert.equal(done.oomKilled, false, "the OOM count of the previous run is gone with its group");
  });

  it("does not mistake a reused pid for the container, and reports a container of an earlier boot as unknown", async () => {
    const reused = await spec("pidreuse", ["/bin/true"]);
    const lost = await spec("reboot", ["/bin/true"]);
    const rec = (id: string, over: object) => ({ id, status: "running", pid: process.pid, pidStartTicks: 1, bootId: "", startedAt: new Date().toISOString(), ...over });
    const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    await mkdir(join(stateDir, reused.id), { recursive: true });
    await writeFile(join(stateDir, reused.id, "state.json"), JSON.stringify(rec(reused.id, { bootId })));
    await mkdir(join(stateDir, lost.id), { recursive: true });
    await writeFile(join(stateDir, lost.id, "state.json"), JSON.stringify(rec(lost.id, { bootId: "another-boot" })));
    const fresh = new LocalRuntime({ stateDir });
    const a = await fresh.recover(reused);
    assert.equal(a.status, "exited", "this test process holds the pid, but started at another time");
    assert.equal(a.exitCode, null);
    assert.equal((await fresh.recover(lost)).status, "unknown");
  });
});
