import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { HelperGone, Spawner, type PipedChild } from "./spawner.ts";

/** A piped child's end: exit code and signal, and what its stdout and stderr said, at "close". */
function finished(child: PipedChild): Promise<{ code: number | null; signal: string | null; out: Buffer; err: string }> {
  const out: Buffer[] = [];
  let err = "";
  child.stdout?.on("data", (b: Buffer) => out.push(b));
  child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code: number | null, signal: string | null) => resolve({ code, signal, out: Buffer.concat(out), err }));
  });
}

/** Whether a process exists (signal 0). */
const exists = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("spawn helper", () => {
  let helper: Spawner;
  let dir: string;
  const env = { PATH: "/usr/bin:/bin", GREETING: "hello" };
  before(async () => {
    helper = new Spawner();
    dir = await mkdtemp(join(tmpdir(), "quai-spawner-"));
  });
  after(async () => {
    helper.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs a program with its argv, env, cwd and input, and keeps its outputs and exit code apart", async () => {
    const script = 'read -r line; printf "%s|%s|%s|%s" "$1" "$GREETING" "$PWD" "$line"; echo "to stderr" >&2; exit 3';
    const r = await helper.run("/bin/sh", ["-c", script, "sh", "a b; $(not run)"], { env, cwd: dir, input: "typed\n" });
    assert.equal(r.stdout.toString(), `a b; $(not run)|hello|${dir}|typed`);
    assert.equal(r.stderr.toString(), "to stderr\n");
    assert.equal(r.code, 3);
    assert.equal(r.signal, null);
  });

  it("runs as the uid and gid asked, without root's supplementary groups", async () => {
    const r = await helper.run("/bin/sh", ["-c", "id -u; id -g; id -G"], { env, uid: 60001, gid: 60001 });
    assert.equal(r.stdout.toString(), "60001\n60001\n60001\n");
  });

  it("reports a program killed by a signal, and refuses a program that does not exist as spawn does", async () => {
    const killed = await helper.run("/bin/sh", ["-c", "kill -KILL $$"], { env });
    assert.deepEqual([killed.code, killed.signal], [null, "SIGKILL"]);
    await assert.rejects(helper.run("/nonexistent/program", [], { env }), (err: NodeJS.ErrnoException) => err.code === "ENOENT");
  });

  it("an abort ends the program and rejects with an AbortError", async () => {
    const pidFile = join(dir, "pid");
    const ctl = new AbortController();
    const running = helper.run("/bin/sh", ["-c", `echo $$ > ${pidFile}; exec sleep 30`], { env, signal: ctl.signal });
    let pid = 0;
    for (let i = 0; i < 200 && !pid; i++) {
      pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim()) || 0;
      if (!pid) await new Promise((r) => setTimeout(r, 10));
    }
    ctl.abort();
    await assert.rejects(running, { name: "AbortError" });
    for (let i = 0; i < 100 && exists(pid); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(!exists(pid), "the program was ended");
  });

  it("starts a long-running program in a session of its own, its output appended to the log, fd 3 the status file and fd 4 its arguments", async () => {
    const log = join(dir, "start.log");
    const status = join(dir, "status.json");
    await writeFile(log, "earlier line\n");
    // It reports its own session (the 6th field of its /proc stat): it may be gone before we look.
    const sessionFile = join(dir, "session");
    const script = `cut -d" " -f6 /proc/$$/stat > ${sessionFile}; echo "out $GREETING"; echo "err" >&2; cat <&4 >&3; read -r x || echo "stdin is empty"; exit 7`;
    const child = await helper.start(["/bin/sh", "-c", script], { env, log, status, args: Buffer.from("the args\0") });
    assert.ok(child.pid && child.pid > 0);
    await child.ended();
    assert.equal(Number((await readFile(sessionFile, "utf8")).trim()), child.pid, "it leads its own session");
    assert.equal(child.exitCode, 7);
    assert.equal(await readFile(log, "utf8"), "earlier line\nout hello\nerr\nstdin is empty\n");
    assert.equal(await readFile(status, "utf8"), "the args\0");
  });

  it("gives every program of many started at once its own log, status file and arguments", async () => {
    const n = 24;
    const started = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        // Runs interleaved with the starts, so the helper's threads open and close fds meanwhile.
        const [child] = await Promise.all([
          helper.start(["/bin/sh", "-c", 'cat <&4 >&3; echo "log $0"', `p${i}`], { env, log: join(dir, `many-${i}.log`), status: join(dir, `many-${i}.json`), args: Buffer.from(`args ${i}`) }),
          helper.run("/bin/true", [], { env }),
        ]);
        await child.ended(); // It may have ended before this line: ended() knows.
        return child.exitCode;
      }),
    );
    assert.deepEqual(started, Array.from({ length: n }, () => 0));
    for (let i = 0; i < n; i++) {
      assert.equal(await readFile(join(dir, `many-${i}.json`), "utf8"), `args ${i}`);
      assert.equal(await readFile(join(dir, `many-${i}.log`), "utf8"), `log p${i}\n`);
    }
  });

  it("does not follow a symlink at the log's path", async () => {
    const target = join(dir, "elsewhere");
    await writeFile(target, "");
    const log = join(dir, "link.log");
    await (await import("node:fs/promises")).symlink(target, log);
    await assert.rejects(helper.start(["/bin/true"], { env, log, status: join(dir, "s2"), args: Buffer.alloc(0) }), (err: NodeJS.ErrnoException) => err.code === "ELOOP");
    assert.equal(await readFile(target, "utf8"), "");
  });

  it("a helper that cannot start fails its requests as HelperGone, for run() to spawn them itself", async () => {
    const logged: string[] = [];
    const broken = new Spawner((l) => logged.push(l), "/nonexistent/python3");
    await assert.rejects(broken.run("/bin/true", [], { env }), HelperGone);
    assert.equal(broken.alive, false);
    assert.match(logged.join("\n"), /spawn helper failed.*started directly from now on/);
  });

  it("once the helper is gone, a program it started is reported lost, not ended, and keeps running", { timeout: 20_000 }, async () => {
    const own = new Spawner();
    const child = await own.start(["/bin/sleep", "30"], { env, log: join(dir, "lost.log"), status: join(dir, "lost.json"), args: Buffer.alloc(0) });
    const lost = new Promise((r) => child.once("lost", r));
    own.close();
    await lost;
    assert.equal(own.alive, false);
    assert.equal(child.exitCode, null);
    assert.ok(exists(child.pid as number), "its program outlives it");
    process.kill(child.pid as number, "SIGKILL");
  });

  it("streams a program's fds through connections of its own: input, output and errors apart, an extra fd, its exit", async () => {
    await waitStreams(helper);
    const child = helper.pipe("sh", ["-c", "cat; cat <&3 >&2; exit 5"], { env, stdio: ["pipe", "pipe", "pipe", "pipe"] });
    const done = finished(child);
    child.stdin?.end("to stdin");
    (child.stdio[3] as NodeJS.WritableStream).end("to fd 3");
    const r = await done;
    assert.deepEqual([r.code, r.signal, r.out.toString(), r.err], [5, null, "to stdin", "to fd 3"]);
    assert.ok(child.pid && child.pid > 0);
  });

  it("carries megabytes both ways with backpressure, and gives an ignored fd /dev/null", async () => {
    await waitStreams(helper);
    const data = randomBytes(6 * 1024 * 1024);
    const child = helper.pipe("cat", [], { env, stdio: ["pipe", "pipe", "ignore"] });
    const done = finished(child);
    child.stdin?.end(data);
    const r = await done;
    assert.equal(r.code, 0);
    assert.equal(createHash("sha256").update(r.out).digest("hex"), createHash("sha256").update(data).digest("hex"));
    const quiet = helper.pipe("sh", ["-c", 'read -r x || echo "stdin is empty"; echo "said" >&2'], { env, stdio: ["ignore", "pipe", "ignore"] });
    const q = await finished(quiet);
    assert.deepEqual([q.code, q.out.toString()], [0, "stdin is empty\n"]);
  });

  it("reports a program that cannot start as spawn does (without throwing an unheard error), and kills one asked to before its pid was known", async () => {
    await waitStreams(helper);
    const missing = helper.pipe("no-such-program-here", [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const [err] = (await once(missing, "error")) as [NodeJS.ErrnoException];
    assert.equal(err.code, "ENOENT");
    // Nobody listening for "error": no throw (it would end the server), "close" says it did not run.
    const unheard = helper.pipe("no-such-program-here", [], { env, stdio: ["ignore", "pipe", "ignore"] });
    assert.deepEqual(await new Promise((r) => unheard.on("close", (...a: unknown[]) => r(a))), [null, null]);
    const sleeper = helper.pipe("sleep", ["30"], { env, stdio: ["ignore", "pipe", "ignore"] });
    sleeper.kill("SIGKILL");
    const r = await finished(sleeper);
    assert.deepEqual([r.code, r.signal], [null, "SIGKILL"]);
  });

  it("once the helper is gone, a program it piped runs on: its streams still carry, its status is unknown", { timeout: 20_000 }, async () => {
    const own = new Spawner();
    await waitStreams(own);
    const child = own.pipe("sh", ["-c", 'read -r x; echo "got $x"'], { env, stdio: ["pipe", "pipe", "ignore"] });
    await once(child, "spawn");
    const exited = once(child, "exit");
    own.close();
    await exited;
    const done = finished(child);
    child.stdin?.end("late input\n");
    const r = await done;
    assert.deepEqual([r.code, r.signal, r.out.toString()], [null, null, "got late input\n"]);
  });

  it("takes stream connections from root only: another uid's is closed, even with the request's token", { timeout: 30_000 }, async () => {
    // The helper spoken to directly, so that this test knows a pending request's token.
    const name = `quai-spawn-test-${randomBytes(6).toString("hex")}`;
    const raw = spawn("python3", ["-u", "-I", fileURLToPath(new URL("../../libexec/spawn-helper", import.meta.url)), "--streams", name], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      const replies: Record<string, unknown>[] = [];
      let buf = "";
      raw.stdout.on("data", (b: Buffer) => {
        buf += b.toString();
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          replies.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
          buf = buf.slice(i + 1);
        }
      });
      const until = async (ok: () => boolean) => {
        for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(ok());
      };
      await until(() => replies.some((r) => r.streams === true));
      const token = randomBytes(16).toString("hex");
      raw.stdin.write(`${JSON.stringify({ id: 1, op: "pipe", argv: ["cat"], env, token, sockets: [0, 1], null: [2] })}\n`);
      // An app's uid connects first, with the right token, for both fds. The helper may close a
      // connection before the header is even sent (its peer is checked first): that is closed too.
      const intruder = spawn("setpriv", ["--reuid=60001", "--regid=60001", "--clear-groups", "python3", "-I", "-c",
        "import socket,sys\nfor fd in ('00','01'):\n s=socket.socket(socket.AF_UNIX)\n s.connect('\\0'+sys.argv[1])\n try:\n  s.sendall((sys.argv[2]+fd).encode()+b'injected')\n  print('closed' if s.recv(100)==b'' else 'read')\n except (BrokenPipeError, ConnectionResetError):\n  print('closed')", name, token], { env });
      let said = "";
      intruder.stdout.on("data", (b: Buffer) => (said += b.toString()));
      intruder.stderr.on("data", (b: Buffer) => (said += b.toString()));
      const [code] = (await once(intruder, "close")) as [number];
      assert.equal(code, 0, said);
      assert.equal(said, "closed\nclosed\n", "both of its connections were closed unread");
      // Root's connections then get the program.
      const ins = connect({ path: `\0${name}` });
      const outs = connect({ path: `\0${name}` });
      ins.write(`${token}00`);
      outs.write(`${token}01`);
      let got = "";
      outs.on("data", (b: Buffer) => (got += b.toString()));
      ins.end("root's input");
      await once(outs, "end");
      assert.equal(got, "root's input");
      await until(() => replies.some((r) => r.id === 1 && r.code === 0));
    } finally {
      raw.stdin.end();
      await once(raw, "exit");
    }
  });
});

/** Waits until `helper` listens on its stream socket. */
async function waitStreams(helper: Spawner): Promise<void> {
  for (let i = 0; i < 500 && !helper.streamsReady; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(helper.streamsReady, "the helper listens for streams");
}
