import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { testDb, type TestDb } from "../testing/db.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp, destroyApp, findApp } from "../apps/service.ts";
import { Keyring } from "../variables/keyring.ts";
import { LocalBlobStore } from "../blobs/store.ts";
import { createRelease } from "./release.ts";
import { runtimePaths, type PipelineContext } from "./context.ts";
import { collectGarbage } from "./gc.ts";

describe("pipeline garbage collection", () => {
  let store: TestDb;
  let dir: string;
  let actor: Actor;
  let ctx: PipelineContext;
  before(async () => {
    store = await testDb();
    dir = await mkdtemp(join(tmpdir(), "quai-gc-"));
    actor = (await ensureUser(store.db, "gc@quai.test", "owner")).user;
    const paths = runtimePaths(join(dir, "runtime"));
    await mkdir(paths.slugs, { recursive: true });
    ctx = { db: store.db, keyring: await Keyring.open(join(dir, "keys.json")), blobs: new LocalBlobStore(join(dir, "blobs")), paths } as unknown as PipelineContext;
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps the slugs releases refer to and collects the rest once their app is gone", async () => {
    await createApp(store.db, actor, "gc-kept", { domain: "quai.test" });
    await createApp(store.db, actor, "gc-gone", { domain: "quai.test" });
    const kept = await findApp(store.db, actor, "gc-kept");
    const gone = await findApp(store.db, actor, "gc-gone");
    const slugA = await ctx.blobs.put(Readable.from(["slug of kept"]));
    const slugB = await ctx.blobs.put(Readable.from(["slug of gone"]));
    const orphan = await ctx.blobs.put(Readable.from(["a source archive nobody needs"]));
    for (const [app, slug] of [[kept, slugA], [gone, slugB]] as const) {
      await createRelease(store.db, ctx.keyring, { appId: app.id, deploymentId: null, gitRef: null, slugKey: slug.key, slugSize: slug.size, processTypes: { web: "x" }, config: {}, description: "test", createdBy: null });
      // Unpacked from the blob, and as the app's own build left it.
      await mkdir(join(ctx.paths.slugs, slug.key));
      await mkdir(join(ctx.paths.slugs, `${slug.key}-60001`));
    }
    // A build's slug on its way in: not a slug directory yet, never collected here.
    await mkdir(join(ctx.paths.slugs, ".tmp-deployment"));
    // Fresh blobs are never collected: a build may be between storing its slug and its release.
    assert.deepEqual(await collectGarbage(ctx), { blobs: 0, bytes: 0, slugDirs: 0 });

    await destroyApp(store.db, actor, gone, "gc-gone");
    const res = await collectGarbage(ctx, 0);
    assert.equal(res.blobs, 2);
    assert.equal(res.slugDirs, 2);
    assert.ok(await ctx.blobs.has(slugA.key));
    assert.ok(!(await ctx.blobs.has(slugB.key)));
    assert.ok(!(await ctx.blobs.has(orphan.key)));
    assert.ok(existsSync(join(ctx.paths.slugs, slugA.key)));
    assert.ok(existsSync(join(ctx.paths.slugs, `${slugA.key}-60001`)));
    assert.ok(!existsSync(join(ctx.paths.slugs, slugB.key)));
    assert.ok(!existsSync(join(ctx.paths.slugs, `${slugB.key}-60001`)));
    assert.ok(existsSync(join(ctx.paths.slugs, ".tmp-deployment")));
  });
});
