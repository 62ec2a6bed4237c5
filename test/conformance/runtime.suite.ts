// The behaviour every RuntimeDriver must have (Nomad's driver conformance idea): each driver's
// test file calls runRuntimeSuite with a factory. Real processes, no mocks.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventEmitter } from "node:events";
import { PassThrough, Readable } from "node:stream";
import { randomBytes } from "node:crypto";
import type { ContainerSpec, RuntimeDriver } from "../../src/runtime/types.ts";

const PY = "/usr/bin/python3";
/** An app that says "ready", then on SIGTERM says "term" and exits with `code`. */
const TERM_APP = (code: number) =>
  `import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: (print("term", flush=True), sys.exit(${code})))\nprint("ready", flush=True)\nwhile True: time.sleep(1)`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Registers the conformance tests of a driver. `newDriver` is called once for the suite and
 * again to simulate a control-plane restart: drivers it returns must share their state.
 */
export function runRuntimeSuite(name: string, newDriver: () => Promise<RuntimeDriver>): void {
  describe(`RuntimeDriver conformance: ${name}`, () => {
    let driver: RuntimeDriver;
    let base: string;
    const ids = new Set<string>();

    before(async () => {
      driver = await newDriver();
      base = await mkdtemp(join(tmpdir(), "quai-rt-suite-"));
      await chmod(base, 0o755); // The container's uid must reach its app dir.
    });

    after(async () => {
      for (const id of ids) {
        await driver.stop(id, 0).catch(() => undefined);
        await driver.remove(id).catch(() => undefined);
      }
      await rm(base, { recursive: true, force: true });
    });

    async function spec(label: string, command: string[], over: Partial<ContainerSpec> = {}): Promise<ContainerSpec> {
      const id = `conf-${label}-${randomBytes(3).toString("hex")}`;
      const appDir = join(base, id);
      await mkdir(appDir, { mode: 0o755 });
      ids.add(id);
      return { id, app: "conformance", uid: 60001, gid: 60001, appDir, appWritable: false, command, env: {}, size: "S", network: "none", logFile: join(base, `${id}.log`), ...over };
    }

    async function log(s: ContainerSpec): Promise<string> {
      return readFile(s.logFile, "utf8").catch(() => "");
    }

    async function waitForLog(s: ContainerSpec, text: string, timeoutMs = 10_000): Promise<string> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const content = await log(s);
        if (content.includes(text)) return content;
        if (Date.now() > until) assert.fail(`log of ${s.id} never showed ${JSON.stringify(text)}: ${JSON.stringify(content)}`);
        await sleep(10);
      }
    }

    async function execText(s: ContainerSpec, io: { stdin?: NodeJS.ReadableStream; timeoutMs?: number; tty?: boolean; signal?: AbortSignal } = {}) {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const res = await driver.exec(s, { ...io, onStdout: (b) => out.push(b), onStderr: (b) => err.push(b) });
      return { ...res, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
    }

    it("starts a container, reports it running, and stop() delivers SIGTERM", async () => {
      const s = await spec("term", [PY, "-c", TERM_APP(3)]);
      const started = await driver.start(s);
      assert.equal(started.status, "running");
      assert.equal(typeof started.pid, "number");
      assert.ok(!Number.isNaN(Date.parse(started.startedAt)));
      await waitForLog(s, "ready");
      assert.equal((await driver.inspect(s.id))?.status, "running");
      const t = Date.now();
      const stopped = await driver.stop(s.id, 10_000);
      assert.ok(Date.now() - t < 5000, "a process that honours SIGTERM stops before the grace period ends");
      assert.equal(stopped.status, "exited");
      assert.equal(stopped.exitCode, 3);
      assert.equal(stopped.oomKilled, false);
      assert.match(await log(s), /term/);
      const again = await driver.stop(s.id, 10_000);
      assert.equal(again.exitCode, 3, "stop is idempotent");
      assert.equal((await driver.inspect(s.id))?.exitCode, 3);
    });

    it("stop() SIGKILLs a process that ignores SIGTERM once the grace period is over", async () => {
      const code = `import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint("ready", flush=True)\nwhile True: time.sleep(1)`;
      const s = await spec("kill", [PY, "-c", code]);
      await driver.start(s);
      await waitForLog(s, "ready");
      const t = Date.now();
      const stopped = await driver.stop(s.id, 400);
      const took = Date.now() - t;
      assert.ok(took >= 380, `waited the grace period (${took} ms)`);
      assert.ok(took < 5000, `then killed it (${took} ms)`);
      assert.equal(stopped.status, "exited");
      assert.ok(stopped.exitCode === 137 || stopped.signal === "SIGKILL", JSON.stringify(stopped));
    });

    it("keeps the exit code of a process that ends by itself", async () => {
      const s = await spec("exit", ["/bin/sh", "-c", "exit 7"]);
      await driver.start(s);
      const done = await driver.wait(s.id);
      assert.equal(done.status, "exited");
      assert.equal(done.exitCode, 7);
      assert.ok(done.finishedAt !== undefined && !Number.isNaN(Date.parse(done.finishedAt)));
      assert.equal((await driver.inspect(s.id))?.exitCode, 7);
    });

    it("gives the app exactly the spec's environment, with HOME=/app when not set", async () => {
      const env = { LC_ALL: "C.UTF-8", FOO: "bar baz", TRICKY: `a'b"c $(id) \`id\` ;|& * \\ \n second line`, EMPTY: "" };
      const s = await spec("env", [PY, "-c", "import json, os; print(json.dumps(dict(os.environ)))"], { env });
      await driver.start(s);
      assert.equal((await driver.wait(s.id)).exitCode, 0);
      const seen = JSON.parse((await log(s)).trim()) as Record<string, string>;
      // PWD is the sandbox's working directory, set by the sandbox as any shell would.
      assert.deepEqual(seen, { ...env, HOME: "/app", PWD: "/app" });
    });

    it("appends stdout and stderr to the log file", async () => {
      const s = await spec("log", ["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
      await writeFile(s.logFile, "earlier line\n");
      await driver.start(s);
      await driver.wait(s.id);
      const content = await log(s);
      assert.ok(content.startsWith("earlier line\n"), content);
      assert.match(content, /^to-stdout$/m);
      assert.match(content, /^to-stderr$/m);
    });

    it("a new driver instance recovers a running container, stops it and learns its exit code", async () => {
      const s = await spec("recover", [PY, "-c", TERM_APP(5)]);
      const started = await driver.start(s);
      await waitForLog(s, "ready");
      const restarted = await newDriver();
      const found = await restarted.recover(s);
      assert.equal(found.status, "running");
      assert.equal(found.pid, started.pid);
      assert.ok(((await restarted.stats(s.id))?.pids ?? 0) >= 1);
      const stopped = await restarted.stop(s.id, 10_000);
      assert.equal(stopped.status, "exited");
      assert.equal(stopped.exitCode, 5);
      assert.match(await log(s), /term/);
    });

    it("recover() reports the exit code of a container that ended while no driver watched", async () => {
      const s = await spec("recover-exited", ["/bin/sh", "-c", "sleep 0.2; exit 4"]);
      await driver.start(s);
      await sleep(500);
      const restarted = await newDriver();
      const found = await restarted.recover(s);
      const done = found.status === "running" ? await restarted.wait(s.id) : found;
      assert.equal(done.status, "exited");
      assert.equal(done.exitCode, 4);
    });

    it("recover() of a container never started reports it unknown; inspect() of an unknown id is undefined", async () => {
      const s = await spec("never", ["/bin/true"]);
      assert.equal((await (await newDriver()).recover(s)).status, "unknown");
      assert.equal(await driver.inspect(`conf-nobody-${randomBytes(3).toString("hex")}`), undefined);
    });

    it("wait() can be aborted without stopping the container", async () => {
      const s = await spec("wait-abort", [PY, "-c", TERM_APP(0)]);
      await driver.start(s);
      await assert.rejects(driver.wait(s.id, AbortSignal.timeout(150)));
      assert.equal((await driver.inspect(s.id))?.status, "running");
      assert.equal((await driver.stop(s.id, 5000)).status, "exited");
    });

    it("stats() reports the container's memory, pids and CPU", async () => {
      const code = `import time\nb = b"x" * (64 << 20)\nx = 0\nfor i in range(2_000_000): x += i\nprint("ready", flush=True)\nwhile True: time.sleep(1)`;
      const s = await spec("stats", [PY, "-c", code]);
      await driver.start(s);
      await waitForLog(s, "ready");
      const st = await driver.stats(s.id);
      assert.ok(st, "stats of a running container");
      assert.ok(st.memoryBytes >= 60 << 20 && st.memoryBytes < 256 << 20, `memory ${st.memoryBytes}`);
      assert.equal(st.memoryLimitBytes, 256 * 1024 * 1024);
      assert.ok(st.pids >= 1, `pids ${st.pids}`);
      assert.ok(st.cpuNanos > 10_000_000, `cpu ${st.cpuNanos}`);
      await driver.stop(s.id, 0);
    });

    it("remove() forgets an exited container", async () => {
      const s = await spec("remove", ["/bin/true"]);
      await driver.start(s);
      await driver.wait(s.id);
      await driver.remove(s.id);
      assert.equal(await driver.inspect(s.id), undefined);
      assert.equal(await driver.stats(s.id), undefined);
    });

    it("exec() streams stdout and stderr apart and returns the exit code", async () => {
      const s = await spec("exec", ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
      const res = await execText(s);
      assert.equal(res.exitCode, 3);
      assert.equal(res.stdout, "out\n");
      assert.equal(res.stderr, "err\n");
      assert.equal(res.oomKilled, false);
      assert.notEqual(res.timedOut, true);
    });

    it("exec() feeds stdin to the process", async () => {
      const s = await spec("stdin", [PY, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"]);
      const res = await execText(s, { stdin: Readable.from([Buffer.from("hello "), Buffer.from("world")]) });
      assert.equal(res.exitCode, 0);
      assert.equal(res.stdout, "HELLO WORLD");
    });

    it("exec() kills a process that outlives timeoutMs and says it timed out", async () => {
      const s = await spec("timeout", ["/bin/sleep", "30"]);
      const t = Date.now();
      const res = await execText(s, { timeoutMs: 300 });
      assert.ok(Date.now() - t < 5000);
      assert.equal(res.timedOut, true);
      assert.notEqual(res.exitCode, 0);
    });

    it("exec() is killed when its signal aborts", async () => {
      const s = await spec("abort", ["/bin/sleep", "30"]);
      const t = Date.now();
      await assert.rejects(execText(s, { signal: AbortSignal.timeout(200) }));
      assert.ok(Date.now() - t < 5000);
    });

    it("exec() with tty runs on a terminal and passes argv through intact", async () => {
      const args = ["a b", `c'd"e`, "$(id)", "`id`", ";|&", ""];
      const s = await spec("tty", [PY, "-c", "import json, os, sys; print(os.isatty(0), os.isatty(1), json.dumps(sys.argv[1:], separators=(',', ':')))", ...args]);
      const res = await execText(s, { tty: true });
      assert.equal(res.exitCode, 0, res.stdout + res.stderr);
      assert.match(res.stdout, /True True/);
      assert.ok(res.stdout.includes(JSON.stringify(args)), res.stdout);
      const failing = await execText(await spec("tty-exit", ["/bin/sh", "-c", "exit 5"]), { tty: true });
      assert.equal(failing.exitCode, 5);
    });

    it("exec() with tty forwards stdin, and its end reaches the program as end of input", async () => {
      const res = await execText(await spec("tty-cat", ["/bin/cat"]), { tty: true, stdin: Readable.from([Buffer.from("hello\n")]), timeoutMs: 10_000 });
      assert.notEqual(res.timedOut, true, "cat saw the end of its input");
      assert.equal(res.exitCode, 0);
      assert.match(res.stdout, /hello/);
    });

    it("exec() with tty follows the terminal's size changes, and the program is told (SIGWINCH)", async () => {
      // The program prints its size, then again when told it changed, then once more after a
      // line of input; a size out of range is dropped, and a large input arrives whole.
      const program = [
        "import os, signal, sys",
        "def show(*_): print('size %d %d' % os.get_terminal_size(), flush=True)",
        "signal.signal(signal.SIGWINCH, show)",
        "show()",
        "line = sys.stdin.readline()",
        "print('read %d' % len(line.strip()), flush=True)",
        "show()",
      ].join("\n");
      const stdin = new PassThrough();
      const resizes = new EventEmitter<{ resize: [cols: number, rows: number] }>();
      let out = "";
      let step = 0;
      const res = await driver.exec(await spec("tty-resize", [PY, "-c", program]), {
        tty: true,
        stdin,
        resizes,
        timeoutMs: 15_000,
        onStdout: (b) => {
          out += b.toString();
          const sizes = (out.match(/size \d+ \d+/g) ?? []).length;
          if (step === 0 && sizes === 1) {
            step = 1;
            resizes.emit("resize", 132, 43);
          } else if (step === 1 && sizes === 2) {
            step = 2;
            resizes.emit("resize", 0, 50);
            resizes.emit("resize", 70_000, 50);
            stdin.write(`${"x".repeat(3000)}\n`);
          }
        },
        onStderr: () => {},
      });
      assert.notEqual(res.timedOut, true, out);
      assert.equal(res.exitCode, 0, out);
      assert.deepEqual(out.match(/(size|read) \d+( \d+)?/g), ["size 80 24", "size 132 43", "read 3000", "size 132 43"]);
    });
  });
}
