// Slugs: the compressed tarball of a build stored in the BlobStore (content-addressed), and the
// same tree unpacked under `paths.slugs`, the read-only lower layer of every container of the
// releases that use it.
//
// A build's tree becomes its unpacked slug by a rename: nothing is copied on the way from
// "built" to "running". That tree shares inodes with the app's build cache (the Node.js buildpack
// hard-links node_modules from it), and a later build may rewrite a cache file in place: so the
// cache is given its own copies of those files in the background (`detachCache`) before the
// app's next build may touch it. See docs/adr/0026-slugs-by-rename-and-container-overlays.md.
import { spawnStreaming } from "../core/spawner.ts";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable, type Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { run } from "../core/run.ts";
import { BlobTooLarge } from "../blobs/store.ts";
import type { PipelineContext } from "./context.ts";

/** Where a slug built for the app of uid `uid` is unpacked: its own tree, the app's files. */
export function builtSlugDir(ctx: PipelineContext, key: string, uid: number): string {
  return join(ctx.paths.slugs, `${key}-${uid}`);
}

/**
 * The unpacked slug a container of `uid` runs on: the tree its own build left, else one unpacked
 * from the blob (root's files; after a restore, or a slug another app built), made if missing.
 */
export async function slugDirFor(ctx: PipelineContext, key: string, uid: number): Promise<{ dir: string; appOwned: boolean }> {
  const own = builtSlugDir(ctx, key, uid);
  if (existsSync(own)) return { dir: own, appOwned: true };
  const shared = join(ctx.paths.slugs, key);
  if (!existsSync(shared)) await unpackSlug(ctx, key, shared);
  return { dir: shared, appOwned: false };
}

/** Name of an unpacked slug directory: its key, and the app uid that built it if it did. */
export const SLUG_DIR = /^([0-9a-f]{64})(?:-(\d+))?$/;

/**
 * Slugs are zstd-compressed, level 1: about half of gzip's time here, and smaller. The `zstd`
 * program compresses beside tar (Node.js's own zstd stream took a third longer: it hands the
 * work to its thread pool one chunk at a time), with --single-thread: its default second thread
 * for I/O cost the Express fixture's 3 MB slug ~3 ms more (15 against 12 ms), for the same size.
 * Slugs stored before are gzip, told apart by their first bytes when unpacked.
 */
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * Stores `dir` as the slug tarball, then unpacks that into `unpackTo` as root's files: for a
 * build tree that cannot be renamed into `paths.slugs` (another file system).
 */
export async function copySlug(ctx: PipelineContext, dir: string, unpackTo: string): Promise<{ key: string; size: number }> {
  const info = await storeSlug(ctx, dir);
  await rm(unpackTo, { recursive: true, force: true });
  await unpackSlug(ctx, info.key, unpackTo);
  return info;
}

/**
 * Stores `dir` as the slug tarball (reproducible: sorted, owner 0, mtime 0); its key and size.
 * tar starts zstd itself: one process start, and tar judges the compressor's exit status too.
 * A slug over `slugLimitBytes` (compressed) throws `BlobTooLarge`, and nothing of it is kept.
 */
export async function storeSlug(ctx: PipelineContext, dir: string): Promise<{ key: string; size: number }> {
  const tar = spawnStreaming("tar", ["-c", "--use-compress-program=zstd -1 -q --single-thread", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", dir, "."], { env: process.env, stdio: ["ignore", "pipe", "pipe"] });
  // Taken at once, held until the blob store reads it: the store starts after an await, and
  // output nobody reads when its program exits is let go (spawn does so even for a paused
  // stream). A small tree's tar could exit first, and its slug was then stored empty.
  const archive = tar.stdout!.pipe(new PassThrough());
  let err = "";
  tar.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const closed = new Promise<number | null>((r) => {
    tar.on("close", r);
    tar.on("error", (e) => {
      err += `${e.message}\n`;
      r(null);
    });
  });
  const stored = await ctx.blobs.put(archive, { maxBytes: ctx.settings.slugLimitBytes }).then(
    (info) => info,
    (e: unknown) => {
      // Nothing reads its output any more: tar goes, and so does what it had written.
      tar.kill("SIGKILL");
      tar.stdout!.destroy();
      return e instanceof Error ? e : new Error(String(e));
    },
  );
  if (stored instanceof BlobTooLarge) {
    await closed;
    throw stored;
  }
  if ((await closed) !== 0 || stored instanceof Error) {
    throw new Error(`packing the slug failed: ${err.trim() || (stored instanceof Error ? stored.message : "")}`);
  }
  return stored;
}

/** Unpacks a slug blob into `dir` (after a restart, or on another host). */
export async function unpackSlug(ctx: PipelineContext, key: string, dir: string): Promise<void> {
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o755 });
  const child = spawnStreaming("tar", ["-x", "--same-owner", "-C", tmp, "-f", "-"], { env: process.env, stdio: ["pipe", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const code = new Promise<number | null>((r) => {
    child.on("close", r);
    child.on("error", (e: Error) => {
      err += `${e.message}\n`;
      r(null);
    });
  });
  child.stdin!.on("error", () => {});
  const source = await ctx.blobs.get(key);
  // tar may end as soon as it has read the archive's end marker, before the padding after it:
  // its exit status, not the pipe closing early, says whether the slug was unpacked.
  const piped = await pipeline(source, await decompressorFor(source), child.stdin!).then(() => undefined, (e: unknown) => e);
  if ((await code) !== 0) {
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`unpacking slug ${key} failed: ${err.trim() || String(piped)}`);
  }
  // The archive's "." entry gave the top directory the build tree's mode.
  await chmod(tmp, 0o755);
  await rename(tmp, dir);
}

/** What decompresses a slug blob: zstd, or gzip for slugs stored before zstd (peeks, then puts back). */
async function decompressorFor(source: Readable): Promise<Transform> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const done = (chunk: Buffer | null, err?: unknown) => {
      source.off("readable", onReadable).off("end", onEnd).off("error", onError);
      if (err) reject(err);
      else resolve(chunk ?? Buffer.alloc(0));
    };
    const onReadable = () => done(source.read() as Buffer | null);
    const onEnd = () => done(null);
    const onError = (e: unknown) => done(null, e);
    source.on("readable", onReadable).on("end", onEnd).on("error", onError);
  });
  source.unshift(head);
  return head.subarray(0, 4).equals(ZSTD_MAGIC) ? createZstdDecompress() : createGunzip();
}

// --- The build cache's own copies ------------------------------------------------------------------

/** Detaches waiting to run, by cache directory (one app's builds run one at a time). */
const pending = new Map<string, () => Promise<void>>();

/** Marker of a detach not yet done, beside the caches (root's, out of the app's reach). */
const marker = (ctx: PipelineContext, appId: string) => join(ctx.paths.caches, `.detach-${appId}`);

/**
 * Arranges for the app's build cache to stop sharing files with `slugDir`: in the background
 * once the deployment ends (`startCacheDetach`: the release's containers boot meanwhile) or after
 * `delayMs` at the latest, and at once if the app's next build asks first (`settleCache`). A
 * marker file survives a stop of the control plane.
 */
export async function scheduleCacheDetach(ctx: PipelineContext, appId: string, uid: number, slugDir: string, delayMs: number): Promise<void> {
  const cacheDir = join(ctx.paths.caches, appId);
  await writeFile(marker(ctx, appId), slugDir, { mode: 0o600 });
  let done: Promise<void> | undefined;
  const runIt = () =>
    (done ??= detachCache(cacheDir, slugDir, uid)
      .then(() => rm(marker(ctx, appId), { force: true }))
      .finally(() => {
        if (pending.get(cacheDir) === runIt) pending.delete(cacheDir);
      }));
  pending.set(cacheDir, runIt);
  setTimeout(() => void runIt().catch(logDetachError(ctx, appId)), delayMs).unref();
}

/** Starts a scheduled detach now (its deployment has ended: nothing boots any more). */
export function startCacheDetach(ctx: PipelineContext, appId: string): void {
  void pending.get(join(ctx.paths.caches, appId))?.().catch(logDetachError(ctx, appId));
}

/** The app is deleted: lets a detach under way end (it writes there), then removes its build cache. */
export async function removeCache(ctx: PipelineContext, appId: string): Promise<void> {
  const cacheDir = join(ctx.paths.caches, appId);
  await pending.get(cacheDir)?.().catch(() => {});
  await rm(cacheDir, { recursive: true, force: true });
  await rm(marker(ctx, appId), { force: true });
}

const logDetachError = (ctx: PipelineContext, appId: string) => (err: unknown) => ctx.log(`build: detaching the build cache of ${appId}: ${String(err)}`);

/** Before a build takes the app's cache: finishes a detach scheduled or cut short by a stop. */
export async function settleCache(ctx: PipelineContext, appId: string, uid: number): Promise<void> {
  const cacheDir = join(ctx.paths.caches, appId);
  const scheduled = pending.get(cacheDir);
  if (scheduled) {
    await scheduled();
    return;
  }
  const slugDir = await readFile(marker(ctx, appId), "utf8").catch(() => undefined);
  if (slugDir === undefined) return;
  if (existsSync(slugDir) && existsSync(cacheDir)) await detachCache(cacheDir, slugDir, uid);
  await rm(marker(ctx, appId), { force: true });
}

/**
 * Gives `cacheDir` its own copy of every file it shares (same inode) with `slugDir`: tar reads
 * them and writes them back, unlinking each first, as the app's uid (the cache is the app's; the
 * copies keep its modes and times).
 */
export async function detachCache(cacheDir: string, slugDir: string, uid: number): Promise<number> {
  const slugInodes = await run("find", [slugDir, "-type", "f", "-links", "+1", "-printf", "%i\\n"]);
  if (slugInodes.code !== 0) throw new Error(`listing ${slugDir}: ${slugInodes.stderr.trim()}`);
  const inodes = new Set(slugInodes.stdout.split("\n").filter(Boolean));
  if (inodes.size === 0) return 0;
  // As the app's uid and gid, without supplementary groups (what spawn does with uid and gid).
  const asApp = { cwd: cacheDir, uid, gid: uid };
  const listed = await run("find", [".", "-type", "f", "-links", "+1", "-printf", "%i %P\\0"], asApp);
  if (listed.code !== 0) throw new Error(`listing ${cacheDir}: ${listed.stderr.trim()}`);
  const shared = listed.stdout.split("\0").filter(Boolean).flatMap((entry) => {
    const space = entry.indexOf(" ");
    return inodes.has(entry.slice(0, space)) ? [entry.slice(space + 1)] : [];
  });
  if (shared.length === 0) return 0;
  const script = 'tar -c --format=posix --null --no-recursion -T - -f - | tar -x --unlink-first --preserve-permissions -f -';
  const res = await run("/bin/sh", ["-c", script], { ...asApp, input: `${shared.join("\0")}\0` });
  if (res.code !== 0) throw new Error(`copying ${shared.length} shared files of ${cacheDir}: ${res.stderr.trim()}`);
  return shared.length;
}

