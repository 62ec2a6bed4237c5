import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, link, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimePaths, type PipelineContext } from "./context.ts";
import { detachCache, scheduleCacheDetach, settleCache } from "./slug.ts";

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
    ctx = { paths, log: () => {} } as unknown as PipelineContext;
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
