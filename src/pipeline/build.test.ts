import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { prestartRunner, readAppFile } from "./build.ts";
import { runtimePaths, type PipelineContext } from "./context.ts";
import { prepareRuntime } from "./setup.ts";
import { LocalRuntime } from "../runtime/local.ts";

const APP_UID = 61234;

describe("files a build leaves for the control plane", { skip: process.getuid?.() !== 0 && "needs root (chown)" }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-build-files-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads the app's own regular file", async () => {
    const file = join(dir, "release.yml");
    await writeFile(file, "default_process_types:\n  web: node server.js\n");
    await chown(file, APP_UID, APP_UID);
    assert.equal(await readAppFile(file, APP_UID), "default_process_types:\n  web: node server.js\n");
  });

  it("never follows a symlink the build left, so a host file is never read for it", async () => {
    const secret = join(dir, "host-secret");
    await writeFile(secret, "web: cat /etc/shadow");
    await chown(secret, APP_UID, APP_UID);
    const link = join(dir, "linked.yml");
    await symlink(secret, link);
    assert.equal(await readAppFile(link, APP_UID), undefined);
  });

  it("refuses a file of another uid, a FIFO (which would block) and a missing file", async () => {
    const foreign = join(dir, "foreign.yml");
    await writeFile(foreign, "web: x");
    assert.equal(await readAppFile(foreign, APP_UID), undefined, "root's file");
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    await chown(fifo, APP_UID, APP_UID);
    assert.equal(await readAppFile(fifo, APP_UID), undefined);
    assert.equal(await readAppFile(join(dir, "missing"), APP_UID), undefined);
  });
});

describe("a build runner started ahead of its build", { skip: process.getuid?.() !== 0 && "needs root (sandboxes, cgroups)" }, () => {
  const uid = 60043;
  let dir: string;
  let ctx: PipelineContext;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-prestart-"));
    await chmod(dir, 0o755);
    const paths = runtimePaths(join(dir, "runtime"));
    await prepareRuntime(paths);
    // A buildpack of the first built-in's name that shows what its compile saw.
    const bp = join(paths.buildpacks, "nodejs", "bin");
    await writeFile(join(bp, "detect"), "#!/bin/bash\n[ -f \"$1/app.txt\" ] && echo Shown\n", { mode: 0o755 });
    await writeFile(join(bp, "compile"), '#!/bin/bash\necho "compiled $(cat "$1/app.txt") at $SOURCE_VERSION in $PWD"\n', { mode: 0o755 });
    await rm(join(bp, "release"), { force: true });
    ctx = {
      paths,
      runtime: new LocalRuntime({ stateDir: join(dir, "state") }),
      settings: { buildTimeoutMs: 60_000, buildSize: "M", sharedNpmBytes: 0 },
      log: () => {},
    } as unknown as PipelineContext;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is up before the app is in its box, then builds what is put there with the commit it is given", async () => {
    const pre = await prestartRunner(ctx, { deploymentId: randomUUID(), app: { name: "pre", uid }, gitRef: null });
    assert.ok(pre, "the runner's sandbox came up and said ready");
    // What a build does once it claims the runner: the app appears in the box the sandbox holds.
    const app = join(pre.work, "box", "app");
    await mkdir(app);
    await writeFile(join(app, "app.txt"), "v2");
    await chown(app, uid, uid);
    let out = "";
    pre.runner.sink.out = (text) => (out += text);
    pre.runner.go("0123abcd");
    const res = await pre.runner.result;
    assert.equal(res.exitCode, 0, out);
    assert.match(out, /-----> Shown app detected/);
    assert.match(out, /compiled v2 at 0123abcd in \/app\n/);
  });

  it("ends, and gives back nothing, when no build claims it", async () => {
    const pre = await prestartRunner(ctx, { deploymentId: randomUUID(), app: { name: "pre", uid }, gitRef: null });
    assert.ok(pre);
    assert.equal(pre.runner.ended(), false, "it waits for its build");
    pre.runner.stop(new Error("the push deployed nothing"));
    await assert.rejects(pre.runner.result, /the push deployed nothing/);
    assert.equal(pre.runner.ended(), true);
  });
});
