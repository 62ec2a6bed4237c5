import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chown, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readAppFile } from "./build.ts";

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
