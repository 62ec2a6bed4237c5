import { spawn } from "node:child_process";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppLogs, SpoolReader } from "./store.ts";

const APP = "2d7c1a9e-5b43-4a0e-9a6f-3f1e2b7c8d90";
/** Runs `fn` with a new temporary directory, removed afterwards. */
async function inTempDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const line = (i: number) => `line ${String(i).padStart(6, "0")} ${"x".repeat(40)}\n`;

describe("SpoolReader", () => {
  it("ships complete lines once, keeps a partial line for later, and resumes from the saved offset", async () => {
    await inTempDir("quai-spool-", async (dir) => {
      const file = join(dir, "output.log");
      await writeFile(file, "one\ntwo\nthr");
      const reader = new SpoolReader();
      assert.equal(await reader.drain(file), "one\ntwo\n");
      assert.equal(await reader.drain(file), "");
      await appendFile(file, "ee\n");
      // A new reader (a restarted control plane) starts where the last one stopped.
      assert.equal(await new SpoolReader().drain(file), "three\n");
    });
  });

  it("gives back the disk of what it shipped past its truncation size; the writer goes on at the end", async () => {
    await inTempDir("quai-spool-", async (dir) => {
      const file = join(dir, "output.log");
      const reader = new SpoolReader(10_000);
      await writeFile(file, Array.from({ length: 1_000 }, (_, i) => line(i)).join(""));
      assert.equal((await reader.drain(file)).split("\n").length - 1, 1_000);
      // Of 53 KB shipped, less than a block stays on disk.
      assert.ok((await stat(file)).blocks * 512 <= 8192, `${(await stat(file)).blocks * 512} bytes on disk`);
      await appendFile(file, line(1_000));
      assert.equal(await reader.drain(file), line(1_000));
    });
  });

  it("loses no line and ships none twice while a process appends as it drains", async () => {
    await inTempDir("quai-spool-", async (dir) => {
      const file = join(dir, "output.log");
      const total = 60_000;
      // Another process, writing like a container does: O_APPEND, a line at a time.
      const writer = spawn(process.execPath, ["-e", `const fs = require("fs"); const fd = fs.openSync(${JSON.stringify(file)}, "a"); for (let i = 0; i < ${total}; i++) fs.writeSync(fd, ${JSON.stringify(line(0).slice(0, 5))} + String(i).padStart(6, "0") + " " + "x".repeat(40) + "\\n");`], { stdio: "inherit" });
      const exited = new Promise<number | null>((resolve) => writer.once("exit", resolve));
      let done = false;
      void exited.then(() => (done = true));
      const reader = new SpoolReader(64 * 1024);
      let shipped = "";
      while (!done) shipped += await reader.drain(file);
      shipped += await reader.drain(file);
      assert.equal(await exited, 0);
      const lines = shipped.split("\n").slice(0, -1);
      assert.equal(lines.length, total, "every line, once");
      lines.forEach((l, i) => {
        if (l !== line(i).trimEnd()) assert.fail(`line ${i} is ${JSON.stringify(l)}`);
      });
      assert.ok((await stat(file)).blocks * 512 < 512 * 1024, "the spool's shipped part was given back");
    });
  });

  it("skips a backlog beyond its bound, from the first whole line, and says how much", async () => {
    await inTempDir("quai-spool-", async (dir) => {
      const file = join(dir, "output.log");
      const all = Array.from({ length: 20_000 }, (_, i) => line(i)).join("");
      await writeFile(file, all);
      const reader = new SpoolReader(Infinity, 100_000);
      let shipped = "";
      for (let text = await reader.drain(file); text !== ""; text = await reader.drain(file)) shipped += text;
      const [note, ...rest] = shipped.split("\n").filter((l) => l !== "");
      const skipped = Number(/^quai: (\d+) bytes of older output skipped: more than 100000 bytes were waiting to be shipped$/.exec(note ?? "")?.[1]);
      assert.ok(skipped > all.length - 100_000 && skipped <= all.length - 100_000 + line(0).length, `skipped ${skipped}`);
      // What is shipped is the end of the spool, whole lines, in order.
      assert.ok(rest.length > 0 && rest.length <= 100_000 / line(0).length);
      assert.equal(rest.join("\n") + "\n", all.slice(skipped));
      assert.match(rest[0] as string, /^line \d{6} x{40}$/);
      assert.equal(rest.at(-1), line(19_999).trimEnd());
    });
  });
});

describe("AppLogs", () => {
  it("keeps at most its size per app over the current and one rotated file, newest lines last", async () => {
    await inTempDir("quai-applogs-", async (dir) => {
      const logs = new AppLogs(dir, 20_000);
      for (let i = 0; i < 2_000; i++) await logs.append(APP, [{ at: new Date(), source: "web-1", text: `request ${i}` }]);
      const files = await readdir(dir);
      assert.deepEqual(files.sort(), [`${APP}.log`, `${APP}.log.1`]);
      let bytes = 0;
      for (const f of files) bytes += (await stat(join(dir, f))).size;
      assert.ok(bytes <= 20_000 + 100, `${bytes} bytes kept`);
      const tail = await logs.tail(APP, 3);
      assert.deepEqual(tail.map((l) => l.replace(/^\S+ /, "")), ["[web-1] request 1997", "[web-1] request 1998", "[web-1] request 1999"]);
    });
  });

  it("removes an app's stream and drops its lines that arrive later", async () => {
    await inTempDir("quai-applogs-", async (dir) => {
      const logs = new AppLogs(dir, 20_000);
      for (let i = 0; i < 500; i++) void logs.append(APP, [{ at: new Date(), source: "router", text: `GET /${i}` }]);
      await logs.remove(APP);
      await logs.append(APP, [{ at: new Date(), source: "web-1", text: "late" }]);
      assert.deepEqual(await readdir(dir), []);
      assert.deepEqual(await logs.tail(APP, 10), []);
      await readFile(join(dir, `${APP}.log`)).then(
        () => assert.fail("the stream is gone"),
        () => {},
      );
    });
  });
});
