// Node.js's compile cache in builds. npm turns the cache on (and NODE_COMPILE_CACHE, set in every
// build, turns it on for every Node.js program): each app's build cache keeps its own at
// /cache/.node-compile-cache. A new app's first build would compile all of npm again (~0.15 s of
// `npm ci` here), so it starts from a seed: the compile cache of the platform's own npm, made once
// by the platform in the build sandbox from nothing but npm and an empty package (never from an
// app's build: a compile cache holds code, and one app must not hand code to another).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../core/run.ts";
import { BUILD_BOX, type PipelineContext } from "./context.ts";

/** The unprivileged uid the seed is made as (app uids start at 61000). */
const SEED_UID = 60900;

/** The newest version directory under `dir` (x.y.z names), if any. */
async function newest(dir: string): Promise<string | undefined> {
  const versions = (await readdir(dir).catch(() => [] as string[])).filter((v) => /^\d+\.\d+\.\d+$/.test(v));
  const key = (v: string) => v.split(".").map((n) => n.padStart(6, "0")).join(".");
  return versions.sort((a, b) => key(a).localeCompare(key(b))).at(-1);
}

/** Where the seed of the platform's current Node.js and npm is, whether made yet or not. */
async function seedDir(ctx: PipelineContext): Promise<{ dir: string; node: string; npm: string } | undefined> {
  const [node, npm] = await Promise.all([newest(join(ctx.paths.runtimes, "node")), newest(join(ctx.paths.runtimes, "npm"))]);
  if (!node || !npm) return undefined;
  return { dir: join(ctx.paths.root, "shared", "node-compile-cache", `node-${node}-npm-${npm}`), node, npm };
}

let making: Promise<void> | undefined;

/**
 * Makes the seed if it is missing (once per Node.js and npm version, kept across restarts): in
 * the build sandbox, without network, `npm ci` and `npm run` of an empty package. In the
 * background of a build that found none; a failure is logged and the next such build retries.
 */
export function makeCompileCacheSeed(ctx: PipelineContext): Promise<void> {
  making ??= makeSeed(ctx)
    .catch((err: unknown) => ctx.log(`build: making the compile cache seed: ${String(err)}`))
    .finally(() => (making = undefined));
  return making;
}

async function makeSeed(ctx: PipelineContext): Promise<void> {
  const seed = await seedDir(ctx);
  if (!seed || existsSync(seed.dir)) return;
  const work = join(ctx.paths.builds, `.seed-${randomBytes(4).toString("hex")}`);
  const box = join(work, "box");
  try {
    // The work directory only searchable by others, as a build's: the sandbox's uid reaches its box.
    await mkdir(work, { mode: 0o711 });
    for (const d of [box, join(box, "app"), join(box, "cache")]) await mkdir(d, { mode: 0o700 });
    const pkg = { name: "quai-compile-cache-seed", version: "1.0.0", private: true, scripts: { seed: "node -e 0" } };
    const lock = { name: pkg.name, version: pkg.version, lockfileVersion: 3, requires: true, packages: { "": { name: pkg.name, version: pkg.version } } };
    await writeFile(join(box, "app", "package.json"), JSON.stringify(pkg));
    await writeFile(join(box, "app", "package-lock.json"), JSON.stringify(lock));
    for (const p of [box, join(box, "app"), join(box, "cache"), join(box, "app", "package.json"), join(box, "app", "package-lock.json")]) await chown(p, SEED_UID, SEED_UID);
    const npm = `/quai/runtimes/npm/${seed.npm}/bin/npm-cli.js`;
    let said = "";
    const res = await ctx.runtime.exec(
      {
        id: `seed-${randomBytes(4).toString("hex")}`,
        app: "quai-seed",
        uid: SEED_UID,
        gid: SEED_UID,
        appDir: box,
        ...BUILD_BOX,
        symlinks: [...BUILD_BOX.symlinks],
        binds: [{ source: ctx.paths.runtimes, target: "/quai/runtimes", writable: false }],
        command: ["/bin/sh", "-c", 'node "$1" ci --prefer-offline --no-audit --no-fund --loglevel=error && node "$1" run seed --silent', "seed", npm],
        env: { PATH: `/quai/runtimes/node/${seed.node}/bin:/usr/bin:/bin`, HOME: "/app", LANG: "C.UTF-8", NODE_COMPILE_CACHE: "/cache/.node-compile-cache", npm_config_cache: "/cache/npm" },
        cwd: "/app",
        size: ctx.settings.buildSize,
        network: "none",
        logFile: "/dev/null",
      },
      { onStdout: () => undefined, onStderr: (b) => (said += b.toString("utf8")), timeoutMs: 5 * 60_000 },
    );
    if (res.exitCode !== 0) throw new Error(`npm exited with ${res.exitCode ?? res.signal}: ${said.trim().slice(-300)}`);
    const made = join(box, "cache", ".node-compile-cache");
    // Root's from now on, readable by all: builds get copies.
    const own = await run("chown", ["-R", "--no-dereference", "0:0", "--", made]);
    if (own.code !== 0) throw new Error(own.stderr.trim());
    await run("chmod", ["-R", "a+rX,go-w", "--", made]);
    await mkdir(join(seed.dir, ".."), { recursive: true, mode: 0o755 });
    await rename(made, seed.dir);
    ctx.log(`build: made the compile cache seed for Node.js ${seed.node} and npm ${seed.npm}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Gives a build cache that has no compile cache the seed, as `uid`'s: Node.js names its cache's
 * directory after the version, the flags and the uid (`v24.21.0-x64-<hash>-<uid>`). The seed's
 * files are hard-linked, root's and read-only: a file written here takes ~0.4 ms (the 500-odd of
 * npm's cache took 0.2-0.3 s of a new app's first build), a link next to nothing. Node.js never
 * writes into an entry: it writes a temporary file and renames it over the entry, in the
 * directory, which is the app's. So a build replaces its links and never touches the seed.
 * Where links cannot be made (another filesystem), the files are copied as `uid`.
 * Returns false when there is no seed yet (then one is made in the background) or it could not
 * be used (logged).
 */
export async function plantCompileCache(ctx: PipelineContext, cacheDir: string, uid: number): Promise<boolean> {
  const target = join(cacheDir, ".node-compile-cache");
  if (existsSync(target)) return true;
  const seed = await seedDir(ctx);
  if (!seed || !existsSync(seed.dir)) {
    void makeCompileCacheSeed(ctx);
    return false;
  }
  const tmp = `${target}.tmp-${randomBytes(4).toString("hex")}`;
  await mkdir(tmp, { mode: 0o700 });
  await chown(tmp, uid, uid);
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  for (const sub of await readdir(seed.dir)) {
    const m = /^(v[\w.-]+)-\d+$/.exec(sub);
    if (!m) continue;
    const from = join(seed.dir, sub);
    const to = join(tmp, `${m[1]}-${uid}`);
    let res = await run("cp", ["-R", "--link", "--", from, to], { env });
    if (res.code === 0) await chown(to, uid, uid);
    else {
      await rm(to, { recursive: true, force: true });
      res = await run("cp", ["-R", "--no-preserve=all", "--", from, to], { uid, gid: uid, env });
    }
    if (res.code !== 0) {
      // The build goes on without it (npm compiles itself, as before there was a seed).
      ctx.log(`build: planting the compile cache seed: ${res.stderr.trim()}`);
      await rm(tmp, { recursive: true, force: true });
      return false;
    }
  }
  await rename(tmp, target);
  return true;
}
