import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";

describe("stray promise rejections in the server", () => {
  it("are logged with their stack, and the process keeps running", async () => {
    const script = `
      import { logStrayRejections } from ${JSON.stringify(new URL("./rejections.ts", import.meta.url).pathname)};
      logStrayRejections((line) => process.stderr.write(line + "\\n"));
      setTimeout(() => void Promise.reject(new Error("WAL shipping of a deleted app")), 10);
      setTimeout(() => { console.log("still serving"); process.exit(0); }, 300);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const [code] = (await once(child, "exit")) as [number];
    assert.equal(code, 0, err);
    assert.equal(out, "still serving\n");
    assert.match(err, /internal error in a background task .* the server keeps running: Error: WAL shipping of a deleted app\n\s+at /);
  });

  it("without it, Node.js stops the process: the case the server must not meet", async () => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", `setTimeout(() => void Promise.reject(new Error("x")), 10); setTimeout(() => console.log("still serving"), 300);`], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    const [code] = (await once(child, "exit")) as [number];
    assert.notEqual(code, 0);
    assert.equal(out, "");
  });
});
