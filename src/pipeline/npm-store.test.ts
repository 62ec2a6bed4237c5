import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { harvestNpmContent, plantNpmContent } from "./npm-store.ts";

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

  describe("linked into a build's npm cache", () => {
    /** The store holding `data` (root's, as a harvest leaves it); its digest. */
    const stored = async (data: string) => {
      const hex = sha512(data);
      await mkdir(dirname(where(store, hex)), { recursive: true });
      await writeFile(where(store, hex), data, { mode: 0o644 });
      return hex;
    };
    const integrity = (data: string) => `sha512-${createHash("sha512").update(data).digest("base64")}`;
    /** An app directory with a lockfile naming `datas`' packages, owned by the app. */
    const appWith = async (name: string, datas: string[], lockName = "package-lock.json") => {
      const app = join(dir, name);
      await mkdir(app, { recursive: true });
      const packages: Record<string, unknown> = { "": { name: "x" } };
      datas.forEach((d, i) => (packages[`node_modules/p${i}`] = { version: "1.0.0", integrity: integrity(d) }));
      await writeFile(join(app, lockName), JSON.stringify({ lockfileVersion: 3, packages }));
      await chown(join(app, lockName), APP_UID, APP_UID);
      return app;
    };
    const freshCache = async (name: string) => {
      const c = join(dir, name);
      await mkdir(c, { mode: 0o700 });
      await chown(c, APP_UID, APP_UID);
      return c;
    };

    it("links what the lockfile names and the store has, root's and read-only, in directories of the app's", async () => {
      await rm(store, { recursive: true, force: true });
      const a = await stored("package a");
      const b = await stored("package b");
      const app = await appWith("app1", ["package a", "package b", "not in the store"]);
      const c = await freshCache("cache1");
      assert.equal(await plantNpmContent(store, c, app, APP_UID), 2);
      for (const hex of [a, b]) {
        const [mine, theirs] = await Promise.all([stat(where(join(c, "npm", "_cacache"), hex)), stat(where(store, hex))]);
        assert.equal(mine.ino, theirs.ino, "the store's own file");
        assert.equal(mine.uid, 0);
        assert.equal(mine.mode & 0o022, 0, "that the app cannot write");
      }
      assert.ok(!existsSync(where(join(c, "npm", "_cacache"), sha512("not in the store"))));
      for (const d of ["npm", "npm/_cacache", "npm/_cacache/content-v2/sha512", dirname(where("npm/_cacache", a))]) {
        assert.equal((await stat(join(c, d))).uid, APP_UID, `${d} is the app's`);
      }
      // Only into a new npm cache: a later build's finds it has content, and copies what it lacks itself.
      await rm(where(join(c, "npm", "_cacache"), a));
      assert.equal(await plantNpmContent(store, c, app, APP_UID), 0);
      assert.ok(!existsSync(where(join(c, "npm", "_cacache"), a)));
    });

    it("goes through no symlink the cache holds, and reads no lockfile that is a symlink or another uid's", async () => {
      await stored("package c");
      const elsewhere = join(dir, "elsewhere");
      await mkdir(elsewhere);
      const c = await freshCache("cache2");
      await symlink(elsewhere, join(c, "npm"));
      const app = await appWith("app2", ["package c"]);
      assert.equal(await plantNpmContent(store, c, app, APP_UID), 0);
      assert.deepEqual(await readdir(elsewhere), [], "nothing was made through the symlink");

      const app3 = join(dir, "app3");
      await mkdir(app3);
      await symlink(join(app, "package-lock.json"), join(app3, "package-lock.json"));
      assert.equal(await plantNpmContent(store, await freshCache("cache3"), app3, APP_UID), 0);
      const app4 = await appWith("app4", ["package c"]);
      await chown(join(app4, "package-lock.json"), 0, 0);
      assert.equal(await plantNpmContent(store, await freshCache("cache4"), app4, APP_UID), 0);
      assert.ok((await lstat(join(app3, "package-lock.json"))).isSymbolicLink());
    });
  });
});
