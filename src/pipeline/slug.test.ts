import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, link, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimePaths, type PipelineContext } from "./context.ts";
import { copySlug, detachCache, scheduleCacheDetach, settleCache, storeSlug, unpackSlug } from "./slug.ts";
import { BlobTooLarge, LocalBlobStore } from "../blobs/store.ts";
import { closeSpawner, useSpawner } from "../core/spawner.ts";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { Readable } from "node:stream";

const UID = 60041;

describe("slug and build cache", { skip: process.getuid?.() !== 0 && "needs root (files of an app uid)" }, () => {
  let dir: string;
  let ctx: PipelineContext;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-slug-"));
    await chmod(dir, 0o755);
    const paths = runtimePaths(join(dir, "runtime"));
    await mkdir(paths.caches, { recursive: true });
    await mkdir(paths.slugs, { recursive: true });
    ctx = { paths, log: () => {}, blobs: new LocalBlobStore(join(dir, "blobs")), settings: { slugLimitBytes: 1024 * 1024 } } as unknown as PipelineContext;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * An app's cache and a slug built from it, as the Node.js buildpack leaves them: node_modules
   * hard-linked between the two, plus files of the cache the slug does not share.
   */
  async function cacheAndSlug(appId: string) {
    const cache = join(ctx.paths.caches, appId);
    const slug = join(ctx.paths.slugs, `${"a".repeat(64)}-${UID}-${appId}`);
    for (const d of [cache, join(cache, "node_modules", "pkg"), join(cache, "npm"), slug, join(slug, "node_modules", "pkg")]) {
      await mkdir(d, { recursive: true });
      await chown(d, UID, UID);
    }
    const files: [string, string, number][] = [["node_modules/pkg/index.js", "module.exports = 1;\n", 0o644], ["node_modules/pkg/cli.js", "#!/usr/bin/env node\n", 0o755]];
    for (const [rel, text, mode] of files) {
      await writeFile(join(cache, rel), text, { mode });
      await chown(join(cache, rel), UID, UID);
      await link(join(cache, rel), join(slug, rel));
    }
    // Linked within the cache only (npm's content store, say): not the slug's business.
    await writeFile(join(cache, "npm", "blob"), "content", { mode: 0o644 });
    await chown(join(cache, "npm", "blob"), UID, UID);
    await link(join(cache, "npm", "blob"), join(cache, "npm", "blob-again"));
    return { cache, slug };
  }

  it("stores the whole slug when the blob store starts reading after tar has ended", async () => {
    const tree = join(dir, "tree-late");
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, "server.js"), "console.log('up');\n", { mode: 0o644 });
    // A store whose put() first waits (a slow disk, a busy event loop): tar is long done by then.
    const blobs = new LocalBlobStore(join(dir, "blobs-late"));
    const late = { ...ctx, blobs: Object.assign(Object.create(blobs) as LocalBlobStore, { put: async (...a: Parameters<LocalBlobStore["put"]>) => (await new Promise((r) => setTimeout(r, 300)), blobs.put(...a)) }) } as PipelineContext;
    // tar spawned by this process, then through the spawn helper (the server's way).
    for (const through of ["spawn", "helper"]) {
      if (through === "helper") {
        const helper = useSpawner();
        for (let i = 0; i < 500 && !helper.streamsReady; i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(helper.streamsReady);
      }
      try {
        const { key, size } = await storeSlug(late, tree);
        assert.notEqual(key, createHash("sha256").digest("hex"), `not the empty blob (${through})`);
        assert.ok(size > 0);
        const out = join(dir, `unpacked-late-${through}`);
        await unpackSlug(late, key, out);
        assert.equal(await readFile(join(out, "server.js"), "utf8"), "console.log('up');\n");
      } finally {
        closeSpawner();
      }
    }
  });

  it("stores a slug as a reproducible zstd tarball and unpacks it as root's, and unpacks a gzip slug stored before", async () => {
    const tree = join(dir, "tree");
    await mkdir(join(tree, "bin"), { recursive: true });
    await writeFile(join(tree, "server.js"), "console.log('up');\n", { mode: 0o644 });
    await writeFile(join(tree, "bin", "start"), "#!/bin/sh\nexec node server.js\n", { mode: 0o755 });
    for (const p of [tree, join(tree, "bin"), join(tree, "server.js"), join(tree, "bin", "start")]) await chown(p, UID, UID);
    const { key, size } = await storeSlug(ctx, tree);
    assert.deepEqual(await storeSlug(ctx, tree), { key, size }, "the same tree gives the same blob");
    const path = (ctx.blobs as LocalBlobStore).localPath(key);
    assert.deepEqual([...(await readFile(path)).subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], "zstd");
    const out = join(ctx.paths.slugs, key);
    await unpackSlug(ctx, key, out);
    assert.equal(await readFile(join(out, "server.js"), "utf8"), "console.log('up');\n");
    const start = await stat(join(out, "bin", "start"));
    assert.equal(start.mode & 0o777, 0o755);
    assert.equal(start.uid, 0, "an unpacked slug's files are root's");
    // A build tree on another file system is copied instead, as root's, with the same blob.
    const copied = join(ctx.paths.slugs, "copied");
    assert.deepEqual(await copySlug(ctx, tree, copied), { key, size });
    const copiedStart = await stat(join(copied, "bin", "start"));
    assert.deepEqual([copiedStart.uid, copiedStart.mode & 0o777], [0, 0o755]);
    // Whatever the build tree's own mode, the copy's top directory can be traversed.
    await chmod(tree, 0o700);
    await copySlug(ctx, tree, copied);
    assert.equal((await stat(copied)).mode & 0o777, 0o755);
    await chmod(tree, 0o755);
    // A slug stored as gzip, as before zstd.
    const old = await ctx.blobs.put(Readable.from([execFileSync("tar", ["-cz", "--owner=0", "--group=0", "-C", tree, "."])]));
    await unpackSlug(ctx, old.key, join(ctx.paths.slugs, old.key));
    assert.equal(await readFile(join(ctx.paths.slugs, old.key, "bin", "start"), "utf8"), "#!/bin/sh\nexec node server.js\n");
    // A blob that is neither: a clear error, and no half-unpacked directory.
    const junk = await ctx.blobs.put(Readable.from([Buffer.from("not a slug at all")]));
    await assert.rejects(unpackSlug(ctx, junk.key, join(ctx.paths.slugs, junk.key)), /unpacking slug/);
    assert.ok(!existsSync(join(ctx.paths.slugs, junk.key)));
    assert.ok(!existsSync(`${join(ctx.paths.slugs, junk.key)}.tmp-${process.pid}`));
  });

  it("refuses a slug over the size limit, and keeps nothing of it", async () => {
    const tree = join(dir, "big-tree");
    await mkdir(tree);
    await writeFile(join(tree, "data.bin"), randomBytes(2 * 1024 * 1024)); // Incompressible, twice the limit.
    const blobsBefore = await ctx.blobs.list();
    await assert.rejects(storeSlug(ctx, tree), (err: unknown) => err instanceof BlobTooLarge && err.maxBytes === 1024 * 1024);
    assert.deepEqual(await ctx.blobs.list(), blobsBefore, "no blob, whole or partial");
  });

  it("gives the cache its own copy of every file it shares with the slug, and nothing else", async () => {
    const { cache, slug } = await cacheAndSlug("app-detach");
    const before = await stat(join(cache, "node_modules/pkg/cli.js"));
    assert.equal(await detachCache(cache, slug, UID), 2);
    for (const rel of ["node_modules/pkg/index.js", "node_modules/pkg/cli.js"]) {
      const [c, s] = await Promise.all([stat(join(cache, rel)), stat(join(slug, rel))]);
      assert.notEqual(c.ino, s.ino, rel);
      assert.equal(c.nlink, 1);
      assert.equal(s.nlink, 1);
      assert.equal(c.uid, UID);
      assert.equal(c.mode, s.mode);
      assert.equal(await readFile(join(cache, rel), "utf8"), await readFile(join(slug, rel), "utf8"));
    }
    assert.equal((await stat(join(cache, "node_modules/pkg/cli.js"))).mtimeMs, before.mtimeMs);
    assert.equal((await stat(join(cache, "npm", "blob"))).nlink, 2, "links within the cache stay");
    // A later build rewriting a cache file in place leaves the release's file alone.
    await writeFile(join(cache, "node_modules/pkg/index.js"), "module.exports = 2;\n");
    assert.equal(await readFile(join(slug, "node_modules/pkg/index.js"), "utf8"), "module.exports = 1;\n");
    assert.equal(await detachCache(cache, slug, UID), 0);
  });

  it("runs a scheduled detach at once when the app's next build asks, and one a stop cut short", async () => {
    const { cache, slug } = await cacheAndSlug("app-next");
    await scheduleCacheDetach(ctx, "app-next", UID, slug, 60_000);
    assert.ok(existsSync(join(ctx.paths.caches, ".detach-app-next")));
    await settleCache(ctx, "app-next", UID);
    assert.notEqual((await stat(join(cache, "node_modules/pkg/index.js"))).ino, (await stat(join(slug, "node_modules/pkg/index.js"))).ino);
    assert.ok(!existsSync(join(ctx.paths.caches, ".detach-app-next")));

    // The control plane stopped before the detach: only the marker is left.
    const second = await cacheAndSlug("app-stopped");
    await writeFile(join(ctx.paths.caches, ".detach-app-stopped"), second.slug);
    await settleCache(ctx, "app-stopped", UID);
    assert.equal((await stat(join(second.cache, "node_modules/pkg/index.js"))).nlink, 1);
    assert.ok(!existsSync(join(ctx.paths.caches, ".detach-app-stopped")));
  });
});
