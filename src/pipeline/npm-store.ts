// The shared npm package store: what one app's build downloaded, the first build of another app
// reuses, as a warm npm cache would. npm reads a tarball whose integrity the lockfile gives
// straight from its cache's content store (`_cacache/content-v2/sha512/<hex>`), with no index
// entry, and checks it against that integrity. So the platform keeps those files alone: after a
// successful build, root copies the new ones out of the app's npm cache, each kept only if its
// SHA-512 is its name. Before a build, root hard-links what the app's lockfile names into the
// app's own cache (`plantNpmContent`): root's files, read-only to the app, so nothing of the store
// can be changed through them. (Builds also see the store read-only at /quai/shared/npm; the
// Node.js buildpack copies from it what is still missing, as for a lockfile not at the root.)
// Nothing an app writes reaches another app unverified, and the store is bounded in size.
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chown, link, lstat, mkdir, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { openAppOwnedFile } from "../core/files.ts";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";

/** Where a content file lives under a `content-v2` directory, by its hex SHA-512. */
const HEX = /^[0-9a-f]{128}$/;

/** Directories of a content store: content-v2/sha512/<2 hex>/<2 hex>/<124 hex>. */
function contentPath(root: string, hex: string): string {
  return join(root, "content-v2", "sha512", hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
}

/** A directory's entries, [] when it is missing or not a real directory (never follows a symlink). */
async function realDirEntries(dir: string): Promise<string[]> {
  const st = await lstat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return [];
  return readdir(dir).catch(() => []);
}

/** What a harvest did. */
export interface HarvestResult {
  added: number;
  rejected: number;
  removed: number;
}

/**
 * Copies into `store` the npm content files of an app's build cache (`cacheDir`, owned by `uid`)
 * that it lacks. A file is read without following symlinks, must be a regular file of the app's
 * uid, and is kept only if the SHA-512 of what was read is its name. Then the oldest files go
 * until the store is within `maxBytes`.
 */
export async function harvestNpmContent(cacheDir: string, uid: number, store: string, maxBytes: number): Promise<HarvestResult> {
  const result: HarvestResult = { added: 0, rejected: 0, removed: 0 };
  for await (const { hex, path } of contentFiles(join(cacheDir, "npm", "_cacache"))) {
    const dest = contentPath(store, hex);
    if (await stat(dest).then(() => true, () => false)) continue;
    if (await copyVerified(path, uid, hex, dest)) result.added++;
    else result.rejected++;
  }
  if (result.added > 0) result.removed = await trim(store, maxBytes);
  return result;
}

/** The files of a content store `root` (content-v2/sha512/<2>/<2>/<124 hex>), with the hex SHA-512 their path spells. */
async function* contentFiles(root: string): AsyncGenerator<{ hex: string; path: string }> {
  const base = join(root, "content-v2", "sha512");
  for (const a of await realDirEntries(base)) {
    if (!/^[0-9a-f]{2}$/.test(a)) continue;
    for (const b of await realDirEntries(join(base, a))) {
      if (!/^[0-9a-f]{2}$/.test(b)) continue;
      for (const rest of await realDirEntries(join(base, a, b))) {
        const hex = a + b + rest;
        if (HEX.test(hex)) yield { hex, path: join(base, a, b, rest) };
      }
    }
  }
}

/** Copies `src` to `dest` through a temporary file if it is the app's regular file whose SHA-512 is `hex`. */
async function copyVerified(src: string, uid: number, hex: string, dest: string): Promise<boolean> {
  const fh = await openAppOwnedFile(src, uid);
  if (!fh) return false;
  const dir = join(dest, "..");
  const tmp = join(dir, `.tmp-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const hash = createHash("sha512");
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    });
    await pipeline(fh.createReadStream({ autoClose: false }), meter, createWriteStream(tmp, { mode: 0o644 }));
    if (hash.digest("hex") !== hex) {
      await rm(tmp, { force: true });
      return false;
    }
    await rename(tmp, dest);
    return true;
  } catch {
    await rm(tmp, { force: true });
    return false;
  } finally {
    await fh.close();
  }
}

/** A lockfile larger than this is left to the buildpack (which copies what it names). */
const LOCKFILE_MAX_BYTES = 32 * 1024 * 1024;

/** The lockfile's sha512 digests: the buildpack's own reading of it (buildpacks/nodejs/lib/lock-digests.cjs). */
const { lockfileDigests } = createRequire(import.meta.url)("../../buildpacks/nodejs/lib/lock-digests.cjs") as { lockfileDigests: (lock: unknown) => string[] };

/**
 * Hard-links into the app's new npm cache (`cacheDir`/npm/_cacache, owned by `uid`) the content files
 * its lockfile (`appDir`/package-lock.json or npm-shrinkwrap.json) names that `store` has and the
 * cache lacks: `npm ci --prefer-offline` then finds them, as the buildpack's copies gave them,
 * without writing them again (creating a file costs ~0.4 ms here; a new app's ~70 copies took
 * 0.1-0.2 s). The links are root's and read-only: the app can drop them, not change them. The
 * directories made on the way are the app's (npm adds to them); a path through anything but the
 * app's own real directories is left alone, so a symlink in the cache cannot lead root elsewhere.
 * Returns how many files were linked.
 */
export async function plantNpmContent(store: string, cacheDir: string, appDir: string, uid: number): Promise<number> {
  const root = join(cacheDir, "npm", "_cacache");
  // Only into an npm cache that has no content yet (a new app's, or after the cache was deleted):
  // later builds reuse node_modules or need a few new packages, which the buildpack copies, and
  // checking every package of the lockfile again took a code-only redeploy ~10 ms.
  if (await lstat(join(root, "content-v2")).then(() => true, () => false)) return 0;
  let fh: FileHandle | undefined;
  for (const name of ["npm-shrinkwrap.json", "package-lock.json"]) if ((fh = await openAppOwnedFile(join(appDir, name), uid))) break;
  if (!fh) return 0;
  let lock: unknown;
  try {
    const size = (await fh.stat()).size;
    if (size > LOCKFILE_MAX_BYTES) return 0;
    lock = JSON.parse((await fh.readFile("utf8")).replace(/^\uFEFF/, ""));
  } catch {
    return 0; // npm says what is wrong with it.
  } finally {
    await fh.close();
  }
  // Each directory once: checked to be the app's real one, or made as the app's.
  const dirs = new Map<string, Promise<boolean>>();
  const ensureDir = (dir: string): Promise<boolean> => {
    let p = dirs.get(dir);
    if (!p) {
      p = (async () => {
        if (dir !== cacheDir && !(await ensureDir(join(dir, "..")))) return false;
        const st = await lstat(dir).catch(() => undefined);
        if (st) return st.isDirectory() && st.uid === uid;
        if (dir === cacheDir) return false;
        await mkdir(dir, { mode: 0o755 });
        await chown(dir, uid, uid);
        return true;
      })().catch(() => false);
      dirs.set(dir, p);
    }
    return p;
  };
  let linked = 0;
  await Promise.all(
    lockfileDigests(lock).map(async (hex) => {
      const from = contentPath(store, hex);
      if (!(await lstat(from).then((st) => st.isFile(), () => false))) return;
      const to = contentPath(root, hex);
      if (!(await ensureDir(join(to, "..")))) return;
      // A file already there, like any other failure, leaves that package to the buildpack.
      if (await link(from, to).then(() => true, () => false)) linked++;
    }),
  );
  return linked;
}

/** Removes the oldest content files until the store holds at most `maxBytes`; returns how many went. */
async function trim(store: string, maxBytes: number): Promise<number> {
  const files: { path: string; size: number; mtimeMs: number }[] = [];
  for await (const { path } of contentFiles(store)) {
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) files.push({ path, size: st.size, mtimeMs: st.mtimeMs });
  }
  let total = files.reduce((s, f) => s + f.size, 0);
  let removed = 0;
  files.sort((x, y) => x.mtimeMs - y.mtimeMs);
  for (const f of files) {
    if (total <= maxBytes) break;
    await rm(f.path, { force: true });
    total -= f.size;
    removed++;
  }
  return removed;
}
