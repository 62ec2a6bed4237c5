import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { harvestNpmContent } from "./npm-store.ts";

const APP_UID = 61234;
const sha512 = (data: string | Buffer) => createHash("sha512").update(data).digest("hex");
const where = (root: string, hex: string) => join(root, "content-v2", "sha512", hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));

describe("shared npm package store", () => {
  let dir: string;
  let cache: string;
  let store: string;
  /** Puts `data` in the app's npm cache under the name `hex` (its own digest unless told otherwise), owned by `uid`. */
  const cached = async (data: string, opts: { hex?: string; uid?: number } = {}) => {
    const hex = opts.hex ?? sha512(data);
    const path = where(join(cache, "npm", "_cacache"), hex);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
    await chown(path, opts.uid ?? APP_UID, opts.uid ?? APP_UID);
    return hex;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-npm-store-"));
    cache = join(dir, "cache");
    store = join(dir, "store");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("takes the app's tarballs whose SHA-512 is their name, and only those", async () => {
    const good = await cached("express tarball bytes");
    const forged = await cached("a tampered tarball", { hex: sha512("lodash tarball bytes") });
    const rootOwned = await cached("a file the app does not own", { uid: 0 });
    // A symlink named as the digest of a file elsewhere on the host is not followed.
    const secret = join(dir, "secret.txt");
    await writeFile(secret, "host secret");
    const linked = sha512("host secret");
    const linkPath = where(join(cache, "npm", "_cacache"), linked);
    await mkdir(dirname(linkPath), { recursive: true });
    await symlink(secret, linkPath);

    const res = await harvestNpmContent(cache, APP_UID, store, 1024 * 1024);
    assert.deepEqual(res, { added: 1, rejected: 3, removed: 0 });
    assert.equal(await readFile(where(store, good), "utf8"), "express tarball bytes");
    for (const hex of [forged, rootOwned, linked]) assert.ok(!existsSync(where(store, hex)), `${hex.slice(0, 8)} kept out`);
    const st = await stat(where(store, good));
    assert.equal(st.uid, 0, "the store's copy is root's: no app can alter it");
    assert.equal(st.mode & 0o777, 0o644);

    // A second harvest copies nothing again.
    assert.deepEqual(await harvestNpmContent(cache, APP_UID, store, 1024 * 1024), { added: 0, rejected: 3, removed: 0 });
  });

  it("stays within its size bound, the oldest files going first", async () => {
    await rm(store, { recursive: true, force: true });
    await rm(cache, { recursive: true, force: true });
    const old = await cached("o".repeat(600));
    await harvestNpmContent(cache, APP_UID, store, 1000);
    await utimes(where(store, old), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    const fresh = await cached("n".repeat(600));
    const res = await harvestNpmContent(cache, APP_UID, store, 1000);
    assert.deepEqual(res, { added: 1, rejected: 0, removed: 1 });
    assert.ok(!existsSync(where(store, old)), "the oldest file went");
    assert.ok(existsSync(where(store, fresh)));
  });

  it("does nothing for a build cache with no npm cache in it", async () => {
    assert.deepEqual(await harvestNpmContent(join(dir, "no-such-cache"), APP_UID, store, 1000), { added: 0, rejected: 0, removed: 0 });
  });
});
