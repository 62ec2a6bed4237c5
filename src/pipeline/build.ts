// Build: a source archive becomes a slug. The source is unpacked as the app's uid, buildpacks
// are chosen (.buildpacks, BUILDPACK_URL, else detection over the built-ins) and run with the
// Heroku buildpack API inside the sandbox, and the result is packed into a content-addressed slug.
import { existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, readdir, realpath, rename, rm, writeFile } from "node:fs/promises";
import { openAppOwnedFile } from "../core/files.ts";
import { join, resolve as resolvePath } from "node:path";
import { spawnStreaming, type StreamChild } from "../core/spawner.ts";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { randomBytes } from "node:crypto";
import { run } from "../core/run.ts";
import { BlobTooLarge } from "../blobs/store.ts";
import type { ContainerSpec, ExecResult } from "../runtime/types.ts";
import { BUILD_BOX, type PipelineContext } from "./context.ts";
import { plantCompileCache } from "./compile-cache.ts";
import { plantNpmContent } from "./npm-store.ts";
import { builtSlugDir, copySlug, scheduleCacheDetach, settleCache, storeSlug } from "./slug.ts";
import { parseProcfile, parseReleaseYaml, runnableTypes, type ProcessTypes } from "./procfile.ts";

/** A build failure: the deployment ends `build-error` with this message. */
export class BuildError extends Error {}

/** The built-in buildpacks, in detection order, and what each looks for. */
export const builtinBuildpacks = [
  { name: "nodejs", title: "Node.js", looksFor: "package.json" },
  { name: "php", title: "PHP", looksFor: "composer.json or index.php" },
  { name: "python", title: "Python", looksFor: "requirements.txt, setup.py, pyproject.toml or Pipfile" },
  { name: "static", title: "Static site", looksFor: "index.html (at the root, in public/ or dist/) or static.json" },
  { name: "procfile", title: "Procfile", looksFor: "a Procfile" },
] as const;

/** A buildpack chosen for a build: a directory on the host the app's uid can read. */
interface Buildpack {
  label: string;
  dir: string;
}

/** What a successful build leaves. */
export interface BuildResult {
  slugKey: string;
  slugSize: number;
  /** The unpacked slug (root-owned), reused by containers. */
  slugDir: string;
  processTypes: ProcessTypes;
}

/** Input of a build. */
export interface BuildJob {
  deploymentId: string;
  app: { id: string; name: string; uid: number };
  sourceKey: string;
  gitRef: string | null;
  /** The app's variables, references resolved: written to ENV_DIR, never on a command line. */
  env: Record<string, string>;
  /** The source unpacked as it was received (`Receipt.done`), if it was. */
  received?: Promise<string | undefined>;
  /** The build runner, started ahead (`prestartRunner`), if it was. */
  prestarted?: Promise<PrestartedRunner | undefined>;
}

const shellish = /[\s;&|`$<>()\\'"*?[\]{}!#~]/;

/** Maps well-known Heroku and Scalingo buildpack URLs to the built-in that does the same job. */
export function builtinForUrl(url: string): string | undefined {
  const m = /(?:^|\/)(?:heroku-buildpack-(nodejs|php|python|static)|(nodejs|php|python|static)-buildpack)(?:\.git)?(?:#.*)?$/.exec(url.trim());
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * Parses one `.buildpacks` line or a BUILDPACK_URL: a built-in name, a known URL, a git URL
 * (`https://`, `http://`, `git://`, `file://`, optional `#ref`), or an absolute path on the host.
 */
export function parseBuildpackRef(line: string, where: string): { builtin: string } | { git: string; ref?: string } | { path: string } {
  const v = line.trim();
  if (builtinBuildpacks.some((b) => b.name === v)) return { builtin: v };
  const builtin = builtinForUrl(v);
  if (builtin) return { builtin };
  if (/^(https?|git|file):\/\/[^\s]+$/.test(v) && !v.startsWith("-")) {
    const [url, ref] = v.split("#", 2) as [string, string | undefined];
    if (ref !== undefined && (ref === "" || ref.startsWith("-") || shellish.test(ref))) throw new BuildError(`${where}: "${ref}" is not a valid git ref`);
    return ref ? { git: url, ref } : { git: url };
  }
  if (v.startsWith("/") && !/[\0\n]/.test(v)) return { path: v };
  throw new BuildError(`${where} is not a buildpack: ${JSON.stringify(v)} (expected an https:// or git:// URL, an absolute path, or one of ${builtinBuildpacks.map((b) => b.name).join(", ")})`);
}

/** Runs the whole build; throws `BuildError` (or an abort) on failure. */
export async function buildSlug(ctx: PipelineContext, job: BuildJob, out: (text: string) => void, signal: AbortSignal): Promise<BuildResult> {
  const deadline = Date.now() + ctx.settings.buildTimeoutMs;
  const work = join(ctx.paths.builds, job.deploymentId);
  const { box, envDir } = buildDirs(work);
  const uid = job.app.uid;
  // A runner started ahead brings its directories: renamed to this build's (its sandbox holds
  // them by inode, so it sees the same ones). Otherwise they are made now.
  let pre = await job.prestarted?.catch(() => undefined);
  if (pre && !(await rename(pre.work, work).then(() => true, () => false))) {
    void pre.runner.stop(new Error("its directory could not be taken over"));
    pre = undefined;
  }
  if (!pre) await makeBuildDirs(work, uid);
  const cacheDir = join(ctx.paths.caches, job.app.id);
  const boxCache = join(box, "cache");
  try {
    const src = join(box, "src");
    // Unpacked as it was received (unpackOnReceipt) when it could be; else from the stored blob.
    const received = await job.received;
    if (!received || !(await rename(received, src).then(() => true, () => false))) {
      await mkdir(src, { mode: 0o700 });
      await chown(src, uid, uid);
      await unpackSource(ctx, job.sourceKey, src, uid);
    }
    const appDir = join(box, "app");
    await rename(await singleTopFolder(src), appDir);
    await rm(src, { recursive: true, force: true });

    await settleCache(ctx, job.app.id, uid);
    if (existsSync(cacheDir)) await rename(cacheDir, boxCache);
    else {
      await mkdir(boxCache, { mode: 0o700 });
      await chown(boxCache, uid, uid);
    }
    // Node.js apps' builds run npm: their first starts from the platform's compile cache seed,
    // and their npm cache gets, linked, what the platform's store has of their lockfile.
    if (existsSync(join(appDir, "package.json"))) {
      await Promise.all([
        plantCompileCache(ctx, boxCache, uid),
        ctx.settings.sharedNpmBytes > 0 ? plantNpmContent(ctx.paths.sharedNpm, boxCache, appDir, uid) : undefined,
      ]);
    }
    // Created here, by us, so chowned one by one without a process (or a symlink to follow).
    for (const [name, value] of Object.entries(job.env)) {
      await writeFile(join(envDir, name), value, { mode: 0o400, flag: "wx" });
      await chown(join(envDir, name), uid, uid);
    }
    await chown(envDir, uid, uid);
    await chmod(envDir, 0o500);

    const sandbox = (buildpacks: { source: string; target: string }, command: string[], id: string) => buildSpec(ctx, job, work, buildpacks, command, id);
    /** Runs `command` in the build sandbox; `what` names the step for a timeout or out-of-memory message. */
    const inSandbox = async (mount: { source: string; target: string }, command: string[], id: string, onOut: (t: string) => void, what: () => Promise<string>) => {
      const left = deadline - Date.now();
      if (left <= 0) throw new BuildError(`build timed out after ${Math.round(ctx.settings.buildTimeoutMs / 1000)} s`);
      const res = await ctx.runtime.exec(sandbox(mount, command, id), {
        onStdout: (b) => onOut(b.toString("utf8")),
        onStderr: (b) => onOut(b.toString("utf8")),
        signal,
        timeoutMs: left,
      });
      return settle(res, what);
    };
    /** The exit code of a build step that ran, or the BuildError that says why it was stopped. */
    const settle = async (res: ExecResult, what: () => Promise<string>) => {
      if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("aborted");
      if (res.timedOut || Date.now() >= deadline) throw new BuildError(`build timed out after ${Math.round(ctx.settings.buildTimeoutMs / 1000)} s (${await what()} was stopped)`);
      if (res.oomKilled) throw new BuildError(`${await what()} ran out of memory (build limit ${ctx.settings.buildSize}) and was killed`);
      return res.exitCode;
    };
    const exec = (bp: Buildpack, step: string, args: string[], onOut: (t: string) => void) =>
      inSandbox({ source: bp.dir, target: "/buildpack" }, [`/buildpack/bin/${step}`, ...args], step, onOut, async () => `${bp.label} ${step}`);

    const chosen = await chooseBuildpacks(ctx, appDir, job.env, work, uid, out);
    if (chosen) await pre?.runner.stop(new Error("the app names its buildpacks"));
    let types: ProcessTypes = {};
    if (!chosen) {
      // Detection over the built-ins, then the chosen one's compile and release, in one sandbox
      // (the build runner): a sandbox start costs tens of milliseconds, three made a redeploy slower.
      const stepFile = join(box, ".quai-step");
      const releaseFile = join(box, ".quai-release.yml");
      const step = async () => {
        const [verb = "", name = ""] = ((await readAppFile(stepFile, uid)) ?? "").trim().split(" ");
        const b = builtinBuildpacks.find((x) => x.name === name);
        return { verb, label: b?.title ?? "The build" };
      };
      const what = async () => {
        const s = await step();
        return `${s.label} ${s.verb}`;
      };
      let code: number | null;
      if (pre?.runner.ended()) {
        // It died waiting (killed, say): a new one starts. Said in the server's log: a push's
        // build then pays a sandbox start that the runner started ahead was there to save.
        ctx.log(`builds: the build runner started ahead for deployment ${job.deploymentId} had ended; starting another`);
        pre = undefined;
      }
      if (pre) {
        // Started ahead and waiting: told to go on, now that the app and its cache are in place.
        const runner = pre.runner;
        runner.sink.out = out;
        const onAbort = () => void runner.stop(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
        signal.addEventListener("abort", onAbort, { once: true });
        if (signal.aborted) onAbort();
        try {
          runner.go(job.gitRef ?? "");
          // Stopped by the abort, it rejects with the abort's reason.
          code = await settle(await runner.result, what);
        } finally {
          signal.removeEventListener("abort", onAbort);
        }
      } else {
        code = await inSandbox(RUNNER_MOUNT(ctx), runnerCommand(false), "build", out, what);
      }
      const last = await step();
      if (code === NO_BUILDPACK) {
        const tried = builtinBuildpacks.map((b) => `       ${b.title}: looks for ${b.looksFor}`).join("\n");
        throw new BuildError(`No buildpack could build this app. Tried, in order:\n${tried}\n       Add a Procfile, a .buildpacks file or a BUILDPACK_URL variable.`);
      }
      if (code !== 0 || last.verb !== "done") throw new BuildError(`${last.label} failed (bin/${last.verb || "compile"} exited with ${code ?? "a signal"})`);
      types = parseReleaseYaml((await readAppFile(releaseFile, uid)) ?? "");
    }

    for (const bp of chosen ?? []) {
      if (chosen && chosen.length > 1) out(`-----> Running buildpack ${bp.label}\n`);
      const code = await exec(bp, "compile", ["/app", "/cache", "/env"], out);
      if (code !== 0) throw new BuildError(`${bp.label} failed (bin/compile exited with ${code ?? "a signal"})`);
      if (existsSync(join(bp.dir, "bin", "release"))) {
        let yaml = "";
        const rc = await exec(bp, "release", ["/app"], (t) => (yaml += t));
        if (rc !== 0) throw new BuildError(`${bp.label} failed (bin/release exited with ${rc ?? "a signal"})`);
        types = { ...types, ...parseReleaseYaml(yaml) };
      }
    }
    const procfile = await readTreeFile(appDir, "Procfile", uid);
    if (procfile !== undefined) {
      try {
        types = { ...types, ...parseProcfile(procfile) };
      } catch (err) {
        throw new BuildError(err instanceof Error ? err.message : String(err));
      }
    }
    if (runnableTypes(types).length === 0) {
      throw new BuildError("No process to run: the app has no Procfile and no buildpack gave a default web process. Add a Procfile (web: <command>).");
    }
    out(`-----> Discovering process types\n       Procfile declares types -> ${runnableTypes(types).join(", ")}${types.postdeploy ? " (and a postdeploy hook)" : ""}\n`);

    out("-----> Compressing the slug\n");
    // The release's containers start in a few tens of milliseconds: the runtime readies itself.
    ctx.runtime.warm?.();
    // The build tree becomes the unpacked slug as it is, renamed (see slug.ts): containers mount
    // it read-only under a layer of their own, so nothing is copied between built and running.
    await mkdir(ctx.paths.slugs, { recursive: true, mode: 0o711 });
    const unpacked = join(ctx.paths.slugs, `.tmp-${job.deploymentId}`);
    const renamed = await rename(appDir, unpacked).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code !== "EXDEV") throw err;
      return false;
    });
    const { key, size } = await (renamed ? storeSlug(ctx, unpacked) : copySlug(ctx, appDir, unpacked)).catch((err: unknown) => {
      if (err instanceof BlobTooLarge) throw new BuildError(`The slug is larger than ${(err.maxBytes / 1024 / 1024).toFixed(1)} MB, the largest this platform keeps (QUAI_SLUG_LIMIT). Leave build tools, caches and test data out of the build's output.`);
      throw err;
    });
    out(`       Done: ${(size / 1024 / 1024).toFixed(1)} MB\n`);
    const slugDir = renamed ? builtSlugDir(ctx, key, uid) : join(ctx.paths.slugs, key);
    if (existsSync(slugDir)) {
      // The same slug as an earlier build's: that tree stays; this one is removed with the build's.
      await rename(unpacked, join(work, "unused-slug")).catch(() => rm(unpacked, { recursive: true, force: true }));
    } else {
      await rename(unpacked, slugDir);
      if (renamed) await scheduleCacheDetach(ctx, job.app.id, uid, slugDir, BACKGROUND_DELAY_MS);
    }
    return { slugKey: key, slugSize: size, slugDir, processTypes: types };
  } finally {
    // A runner started ahead that a failure left waiting goes too (a no-op once it has ended).
    await pre?.runner.stop(new Error("the build ended"));
    await cleanUpBuild(ctx, job.deploymentId, job.app.id);
  }
}

/** What a build's directory (`builds/<deployment id>/`) holds: the box (/quai/build: app and cache) and env. */
function buildDirs(work: string): { box: string; envDir: string } {
  return { box: join(work, "box"), envDir: join(work, "env") };
}

/**
 * Makes a build's directories, empty: the box (the app's) and the env directory (root's until
 * the variables are written into it). One directory holds the app and its cache, mounted once at
 * /quai/build, with /app and /cache linked into it: hard links between the two (node_modules
 * reuse) then work.
 */
async function makeBuildDirs(work: string, uid: number): Promise<void> {
  const { box, envDir } = buildDirs(work);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true, mode: 0o711 });
  await mkdir(box, { mode: 0o700 });
  await chown(box, uid, uid);
  await mkdir(envDir, { mode: 0o700 });
}

/** What the build runner mounts: the built-in buildpacks. */
const RUNNER_MOUNT = (ctx: PipelineContext) => ({ source: ctx.paths.buildpacks, target: "/buildpacks" });

/** The build runner's command; gated, it waits for a line on its stdin first (`prestartRunner`). */
const runnerCommand = (gated: boolean) => ["/quai/bin/build", ...(gated ? ["--gated"] : []), ...builtinBuildpacks.map((b) => `${b.name}:${b.title}`)];

/** The sandbox of a build step: the build's box, its env directory, `buildpacks` mounted where it says. */
function buildSpec(ctx: PipelineContext, job: { deploymentId: string; app: { name: string; uid: number }; gitRef: string | null }, work: string, buildpacks: { source: string; target: string }, command: string[], id: string): ContainerSpec {
  const uid = job.app.uid;
  const { box, envDir } = buildDirs(work);
  return {
    id: `build-${job.deploymentId.slice(0, 8)}-${id}`,
    app: job.app.name,
    uid,
    gid: uid,
    appDir: box,
    ...BUILD_BOX,
    symlinks: [...BUILD_BOX.symlinks],
    binds: [
      { source: envDir, target: "/env", writable: false },
      { ...buildpacks, writable: false },
      { source: ctx.paths.bin, target: "/quai/bin", writable: false },
      { source: ctx.paths.runtimes, target: "/quai/runtimes", writable: false },
      ...(ctx.settings.sharedNpmBytes > 0 ? [{ source: ctx.paths.sharedNpm, target: "/quai/shared/npm", writable: false }] : []),
    ],
    command,
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: "/app",
      LANG: "C.UTF-8",
      APP: job.app.name,
      STACK: "quai-24",
      SOURCE_VERSION: job.gitRef ?? "",
      BUILD_DIR: "/app",
      CACHE_DIR: "/cache",
      ENV_DIR: "/env",
      // Node.js's compile cache (npm turns it on; NODE_COMPILE_CACHE turns it on for every
      // program), kept with the app's build cache: in the sandbox's fresh /tmp, its default
      // place, npm compiled itself again at every build (~40 ms of each npm command).
      NODE_COMPILE_CACHE: "/cache/.node-compile-cache",
    },
    cwd: "/app",
    size: ctx.settings.buildSize,
    network: "host",
    logFile: "/dev/null",
  };
}

/** A build runner under way: its outcome, where its output goes, and its gate. */
export interface RunnerStart {
  /** Its exit; rejects when it was stopped. */
  result: Promise<ExecResult>;
  /** Where its output goes (the build that claims it sets this). */
  sink: { out: (text: string) => void };
  /** Lets a gated runner go on, with its SOURCE_VERSION (unknown when it started). */
  go(sourceVersion: string): void;
  /** Stops it (a gated runner that was never let go exits at once); resolves once it has ended. */
  stop(reason: Error): Promise<void>;
  /** Whether it has ended already (a gated one before it was let go: not usable). */
  ended(): boolean;
}

/** A build runner started ahead of its deployment, waiting in its sandbox for the build to claim it. */
export interface PrestartedRunner {
  /** Its directories (`builds/.pre-<deployment id>/`) until a build takes them. */
  work: string;
  runner: RunnerStart;
}

/** Prefix of the build directories of runners started ahead. */
export const PRESTART_PREFIX = ".pre-";

/**
 * Starts the build runner of a deployment that is about to be created (a push is under way), in
 * its sandbox with its directories empty, gated: it waits for word that the app and its cache are
 * in place. A sandbox start costs ~20 ms on the path of every build; started ahead, it overlaps
 * the rest of the push (see ADR 0031).
 */
export async function prestartRunner(ctx: PipelineContext, job: { deploymentId: string; app: { name: string; uid: number }; gitRef: string | null }): Promise<PrestartedRunner | undefined> {
  const work = join(ctx.paths.builds, `${PRESTART_PREFIX}${job.deploymentId}`);
  await makeBuildDirs(work, job.app.uid);
  const gate = new PassThrough();
  const stopper = new AbortController();
  // Until a build claims it, what it prints is kept (a little), for the log if it fails to start.
  let early = "";
  const sink = {
    out: (text: string): void => {
      if (early.length < 1000) early += text;
    },
  };
  // The gated runner says "ready" on stdout once its sandbox is up (bubblewrap has bound the
  // directories by path by then: they may be renamed from that moment on), then nothing more
  // until it is let go.
  let ready: (ok: boolean) => void = () => undefined;
  const isReady = new Promise<boolean>((resolve) => (ready = resolve));
  let head: string | undefined = "";
  const onStdout = (b: Buffer) => {
    if (head === undefined) return sink.out(b.toString("utf8"));
    head += b.toString("utf8");
    const eol = head.indexOf("\n");
    if (eol < 0) return;
    const [line, rest] = [head.slice(0, eol), head.slice(eol + 1)];
    head = undefined;
    ready(line === "ready");
    if (rest) sink.out(rest);
  };
  // Its box is empty until the build fills it (/app, a link into it, leads nowhere yet): it
  // starts in the box itself, and the runner goes to /app once let go.
  const spec = { ...buildSpec(ctx, job, work, RUNNER_MOUNT(ctx), runnerCommand(true), "build"), cwd: BUILD_BOX.appMount };
  const result = ctx.runtime.exec(spec, {
    stdin: gate,
    onStdout,
    onStderr: (b) => sink.out(b.toString("utf8")),
    signal: stopper.signal,
    timeoutMs: ctx.settings.buildTimeoutMs,
  });
  // Ended before it said ready (stopped, or its sandbox failed): not usable.
  let ended = false;
  const end = () => {
    ended = true;
    ready(false);
  };
  result.then(end, end);
  const runner: RunnerStart = {
    result,
    sink,
    go: (sourceVersion) => void gate.end(`${sourceVersion.replace(/\s/g, "")}\n`),
    stop: async (reason) => {
      gate.end();
      if (!stopper.signal.aborted) stopper.abort(reason);
      await result.catch(() => undefined);
    },
    ended: () => ended,
  };
  // A sandbox that neither says ready nor ends (it should take tens of milliseconds) is not waited for.
  const slow = setTimeout(() => ready(false), 10_000);
  const isUp = await isReady;
  clearTimeout(slow);
  if (!isUp) {
    ctx.log(`builds: the build runner started ahead for deployment ${job.deploymentId} did not start${early.trim() ? `: ${early.trim().slice(0, 300)}` : ""}; its build will start one`);
    await runner.stop(new Error("its sandbox did not start"));
    await rm(work, { recursive: true, force: true });
    return undefined;
  }
  return { work, runner };
}

/** Exit code of the build runner when no built-in buildpack accepts the app. */
const NO_BUILDPACK = 100;

/**
 * Reads a file the build left in its box (the app's): opened without following a symlink, and
 * only if it is a regular file of the app's uid, at most 1 MiB; undefined otherwise. Root must not
 * be led to read, and show, a file of the host.
 */
export async function readAppFile(path: string, uid: number): Promise<string | undefined> {
  const fh = await openAppOwnedFile(path, uid);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(Math.min((await fh.stat()).size, 1024 * 1024));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } finally {
    await fh.close();
  }
}

/**
 * Reads a file of the app's tree that the control plane interprets (Procfile, .buildpacks):
 * undefined when there is none. A symlink is followed only within the tree (a repository may link
 * Procfile to Procfile.prod), and what it reaches must be a regular file of the app's uid: a link
 * to a file of the host, a FIFO or a device is refused, never read as root.
 */
async function readTreeFile(appDir: string, name: string, uid: number): Promise<string | undefined> {
  const path = join(appDir, name);
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  const root = await realpath(appDir);
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) throw new BuildError(`${name} is a symlink to nothing: make it the file itself`);
  if (!real.startsWith(`${root}/`)) throw new BuildError(`${name} is a symlink out of the app's tree: make it a file of the app`);
  const text = await readAppFile(real, uid);
  if (text === undefined) throw new BuildError(`${name} is not a regular file: make it a text file of the app`);
  return text;
}

/** Build trees being deleted in the background. */
export const TRASH_PREFIX = ".trash-";
/** How long background clean-up waits after a build: the new release's containers boot meanwhile. */
const BACKGROUND_DELAY_MS = 5000;

/** Runs `task` in the background after `BACKGROUND_DELAY_MS` (not keeping the process alive). */
function later(task: () => Promise<unknown>, onError: (err: unknown) => void): void {
  setTimeout(() => void task().catch(onError), BACKGROUND_DELAY_MS).unref();
}

/**
 * Removes what a build leaves (work directory, half-unpacked slug) and gives the app its build
 * cache back: after every build, and at start-up for builds a stopped control plane cut short.
 */
export async function cleanUpBuild(ctx: PipelineContext, deploymentId: string, appId: string): Promise<void> {
  const work = join(ctx.paths.builds, deploymentId);
  const boxCache = join(work, "box", "cache");
  await rm(join(ctx.paths.slugs, `.tmp-${deploymentId}`), { recursive: true, force: true }).catch(() => {});
  if (existsSync(boxCache) && !existsSync(join(ctx.paths.caches, appId))) await rename(boxCache, join(ctx.paths.caches, appId)).catch(() => {});
  // The build tree (a whole app with its node_modules) is removed after the deployment goes on:
  // renamed aside at once, deleted a little later in the background, once the new containers
  // booted (thousands of unlinks would compete with them), and at start-up if the server stopped.
  const trash = join(ctx.paths.builds, `${TRASH_PREFIX}${deploymentId}`);
  if (await rename(work, trash).then(() => true, () => false)) later(() => rm(trash, { recursive: true, force: true }), (err) => ctx.log(`build: removing ${trash}: ${String(err)}`));
  else {
    await rm(work, { recursive: true, force: true }).catch(() => {});
  }
}

async function runOk(cmd: string, args: string[]): Promise<void> {
  const res = await run(cmd, args);
  if (res.code !== 0) throw new Error(`${cmd} failed: ${res.stderr.trim()}`);
}

/**
 * tar unpacking a gzipped source archive from its stdin into `dest`, as the app's uid and gid
 * without supplementary groups (what spawn does with uid and gid), so a hostile archive can only
 * write where that uid may.
 */
function spawnUntar(dest: string, uid: number): StreamChild & { stdin: Writable; stderr: Readable } {
  const child = spawnStreaming("tar", ["-xz", "--no-same-owner", "--no-same-permissions", "-C", dest, "-f", "-"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, uid, stdio: ["pipe", "ignore", "pipe"] });
  child.stdin!.on("error", () => {}); // It ended early: its exit status says why.
  return child as StreamChild & { stdin: Writable; stderr: Readable };
}

/** Unpacks the stored source archive `key` into `dest` (see `spawnUntar`). */
async function unpackSource(ctx: PipelineContext, key: string, dest: string, uid: number): Promise<void> {
  const source = await ctx.blobs.get(key);
  const child = spawnUntar(dest, uid);
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  source.pipe(child.stdin);
  const code = await new Promise<number | null>((r) => child.on("close", r));
  if (code !== 0) throw new BuildError(`the source archive could not be unpacked (it must be a gzipped tar archive): ${err.trim().split("\n").slice(-3).join(" ")}`);
}

/** Prefix of a source unpacked as it was received (`unpackOnReceipt`), under `paths.builds`. */
export const RECEIVED_PREFIX = ".src-";

/** A source archive being unpacked as it is received. */
export interface Receipt {
  /** Takes the archive's bytes. */
  input: NodeJS.WritableStream;
  /** The unpacked tree's directory, or undefined when tar failed or was stopped (nothing is left then). */
  done: Promise<string | undefined>;
  /** Stops the unpack (the archive was refused). */
  abort(): void;
}

/**
 * Unpacks a source archive while it is received, as the app's uid, into a directory of its own
 * under `paths.builds`: the build then finds it unpacked instead of unpacking the stored blob,
 * which took a push about 15 ms. When tar fails, the build unpacks the blob itself and reports
 * the error.
 */
export async function unpackOnReceipt(ctx: PipelineContext, uid: number): Promise<Receipt> {
  const dir = join(ctx.paths.builds, `${RECEIVED_PREFIX}${randomBytes(8).toString("hex")}`);
  await mkdir(dir, { mode: 0o700 });
  await chown(dir, uid, uid);
  const child = spawnUntar(dir, uid);
  child.stderr.resume();
  let aborted = false;
  const done = new Promise<boolean>((resolve) => {
    child.on("close", (code) => resolve(code === 0 && !aborted));
    child.on("error", () => resolve(false));
  }).then(async (ok) => {
    if (ok) return dir;
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    return undefined;
  });
  return {
    input: child.stdin,
    done,
    abort: () => {
      aborted = true;
      child.kill("SIGKILL");
    },
  };
}

/** The app's root: the archive's single top folder (Scalingo's contract), or the archive root. */
async function singleTopFolder(dir: string): Promise<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  if (entries.length === 1 && entries[0]?.isDirectory()) return join(dir, entries[0].name);
  if (entries.length === 0) throw new BuildError("the source archive is empty");
  return dir;
}

/** Buildpacks named by `.buildpacks` or BUILDPACK_URL, fetched and ready; undefined means detect. */
async function chooseBuildpacks(ctx: PipelineContext, appDir: string, env: Record<string, string>, work: string, uid: number, out: (t: string) => void): Promise<Buildpack[] | undefined> {
  let refs: { ref: ReturnType<typeof parseBuildpackRef>; where: string }[] = [];
  const listed = await readTreeFile(appDir, ".buildpacks", uid);
  if (listed !== undefined) {
    const lines = listed.split(/\r?\n/);
    lines.forEach((l, i) => {
      if (l.trim() === "" || l.trim().startsWith("#")) return;
      refs.push({ ref: parseBuildpackRef(l, `.buildpacks line ${i + 1}`), where: `.buildpacks line ${i + 1}` });
    });
    if (refs.length === 0) throw new BuildError(".buildpacks is empty: list one buildpack per line");
    out(`-----> Using the ${refs.length} buildpack${refs.length > 1 ? "s" : ""} listed in .buildpacks\n`);
  } else if (env.BUILDPACK_URL) {
    refs = [{ ref: parseBuildpackRef(env.BUILDPACK_URL, "BUILDPACK_URL"), where: "BUILDPACK_URL" }];
    out(`-----> Using the buildpack in BUILDPACK_URL\n`);
  } else {
    return undefined;
  }
  const result: Buildpack[] = [];
  const dest = join(work, "buildpacks");
  // Fetched and copied as the app's uid: a buildpack reference can only read what the app could.
  await mkdir(dest, { recursive: true, mode: 0o711 });
  await chown(dest, uid, uid);
  const asApp = ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--"];
  // The allowed directories resolved too, once, so a link among them compares like with like.
  const allowed = await Promise.all(ctx.settings.buildpackDirs.map((d) => realpath(d).catch(() => d)));
  for (const [i, { ref, where }] of refs.entries()) {
    const dir = join(dest, String(i));
    if ("builtin" in ref) {
      const b = builtinBuildpacks.find((x) => x.name === ref.builtin);
      result.push({ label: b?.title ?? ref.builtin, dir: join(ctx.paths.buildpacks, ref.builtin) });
      continue;
    }
    // Resolved first (symlinks and ..): /allowed/../etc must not pass for a directory under /allowed.
    const given = "path" in ref ? ref.path : ref.git.startsWith("file://") ? decodeURIComponent(new URL(ref.git).pathname) : undefined;
    const local = given === undefined ? undefined : await realpath(given).catch(() => resolvePath(given));
    if (local !== undefined && !allowed.some((d) => local === d || local.startsWith(d.endsWith("/") ? d : `${d}/`))) {
      throw new BuildError(`${where}: ${local} is on the host, outside the directories this platform allows buildpacks from (QUAI_BUILDPACK_DIRS${ctx.settings.buildpackDirs.length ? `: ${ctx.settings.buildpackDirs.join(", ")}` : " is empty"})`);
    }
    if ("git" in ref) {
      out(`       Fetching ${ref.git}${ref.ref ? `#${ref.ref}` : ""}\n`);
      const args = [...asApp, "git", "clone", "--quiet", "--depth", "1", ...(ref.ref ? ["--branch", ref.ref] : []), "--", ref.git, dir];
      // A repository on the host belongs to another user than the app's: tell git (through the
      // global config of this throwaway HOME; git's local transport drops GIT_CONFIG_* variables).
      await writeFile(join(dest, ".gitconfig"), "[safe]\n\tdirectory = *\n", { mode: 0o644 });
      const res = await run(args[0] as string, args.slice(1), { env: { PATH: process.env.PATH, GIT_TERMINAL_PROMPT: "0", HOME: dest } });
      if (res.code !== 0) throw new BuildError(`${where}: could not fetch ${ref.git}: ${res.stderr.trim().split("\n").pop()}`);
      result.push({ label: ref.git.replace(/\.git$/, "").split("/").pop() ?? ref.git, dir });
    } else {
      const res = await run(asApp[0] as string, [...asApp.slice(1), "cp", "-R", "--", local ?? ref.path, dir]);
      if (res.code !== 0 || !existsSync(join(dir, "bin", "compile"))) throw new BuildError(`${where}: ${ref.path} is not a buildpack directory the app may read (no readable bin/compile)`);
      result.push({ label: ref.path.split("/").pop() ?? ref.path, dir });
    }
    await runOk("chmod", ["-R", "a+rX", dir]);
  }
  return result;
}

