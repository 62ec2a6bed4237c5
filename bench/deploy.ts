// Deploy pipeline benchmarks, each against a floor measured in the same run: push → built and
// push → live of the Express fixture (new app, code-only redeploy) against the same steps done
// by hand, failed requests during redeploys under load, and the sandbox's start cost and memory
// per idle container. Router throughput, the fourth of the issue's figures, is bench/router.ts.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { chownSync, closeSync, mkdirSync, openSync, statSync, watch } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { run } from "../src/core/run.ts";
import { freePort } from "../src/core/net.ts";
import { LocalRuntime } from "../src/runtime/local.ts";
import { encodeArgs, probeHost, sandboxCommand } from "../src/runtime/sandbox.ts";
import { systemNpmRoot } from "../src/pipeline/setup.ts";
import type { ContainerSpec } from "../src/runtime/types.ts";
import { commitAll, gitApp, httpGet, startPlatform, traversableTempDir, type TestPlatform } from "../src/testing/platform.ts";

const FIXTURE = fileURLToPath(new URL("../test/fixtures/apps/express", import.meta.url));
const LIBEXEC = fileURLToPath(new URL("../libexec", import.meta.url));
const TARGET_BUILT = 1.3;
const TARGET_LIVE = 1.5;
const TARGET_SANDBOX_MS = 50;
const TARGET_SANDBOX_MB = 5;
/** Router and app polls while waiting for a release to answer. */
const POLL_MS = 5;

const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length === 0) return NaN;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile. */
function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(p * s.length) - 1)] as number;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The machine, with the 1-minute load average at the benchmark's start and now (other work on the host skews every figure). */
const machine = (loadAtStart: number) => `Node.js ${process.version}, ${cpus().length} CPUs, load average ${loadAtStart.toFixed(1)} at start, ${(loadavg()[0] ?? NaN).toFixed(1)} at end`;

const sec = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "-");
const verdict = (ok: boolean) => (ok ? "PASS" : "MISS");

// --- Cleanup: what a benchmark still holds when it fails or the run is interrupted ----------------

const closers = new Set<() => Promise<void>>();
/** Closers running now (started by a benchmark's own `finally` or by `closeDeployBenches`). */
const running = new Set<Promise<void>>();

/** Registers `fn` to run at the end of the benchmark (or on `closeDeployBenches`); returns a runner. */
function defer(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  const runOnce = (): Promise<void> => {
    if (done) return done;
    closers.delete(runOnce);
    const p = fn().catch((err: unknown) => {
      log(`bench: cleanup: ${err instanceof Error ? err.message : String(err)}`);
    });
    done = p;
    running.add(p);
    void p.then(() => running.delete(p));
    return p;
  };
  closers.add(runOnce);
  return runOnce;
}

let closingAll: Promise<void> | undefined;
/** Aborted by `closeDeployBenches`: ends the programs a benchmark runs (git, npm) when it is interrupted. */
let aborter = new AbortController();

/**
 * Stops every platform, process and temp directory a deploy benchmark still holds, newest first,
 * and resolves once those already being closed are done too (SIGINT path and normal end share it).
 */
export function closeDeployBenches(): Promise<void> {
  closingAll ??= (async () => {
    aborter.abort(new Error("benchmark interrupted"));
    aborter = new AbortController();
    try {
      while (closers.size > 0) for (const close of [...closers].reverse()) await close();
      await Promise.all([...running]);
    } finally {
      closingAll = undefined;
    }
  })();
  return closingAll;
}

/** A platform that `closeDeployBenches` stops (closing it removes its files). */
async function platform(): Promise<{ p: TestPlatform; close: () => Promise<void> }> {
  const p = await startPlatform();
  return { p, close: defer(() => p.close()) };
}

async function tempDir(prefix: string): Promise<{ dir: string; close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // Retries: a program ended by the abort may still be writing there for a moment.
  return { dir, close: defer(() => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })) };
}

// --- The Express fixture --------------------------------------------------------------------------

const FIXTURE_BODY = '"hello from express v1\\n"';

/** The fixture's files (no node_modules or build output), answering `body` on GET /. */
async function expressApp(body: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await readdir(join(FIXTURE, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && e.name !== "build") await walk(path);
      } else {
        files[path] = await readFile(join(FIXTURE, path), "utf8");
      }
    }
  };
  await walk("");
  const server = files["server.js"] ?? "";
  if (!server.includes(FIXTURE_BODY)) throw new Error(`test/fixtures/apps/express/server.js no longer answers ${FIXTURE_BODY}: update bench/deploy.ts`);
  files["server.js"] = server.replace(FIXTURE_BODY, JSON.stringify(body));
  return files;
}

/** Gives the work tree's server.js a new body and commits it (a code-only change). */
async function commitBody(dir: string, body: string): Promise<void> {
  const files = await expressApp(body);
  await writeFile(join(dir, "server.js"), files["server.js"] as string);
  await commitAll(dir, body.trim());
}

const bodyOf = (label: string) => `hello from express ${label}\n`;

// --- Quai: a timed `git push` ------------------------------------------------------------------------

/** Lines of the deployment output that mark the end of a phase (first match wins). */
const MARKS = [
  ["queued", /^-----> Deployment \S+ of .* queued/],
  ["detected", / app detected$/],
  ["compiled", /^-----> Discovering process types/],
  ["packed", /^ {7}Done: [\d.]+ MB/],
  ["built", /^-----> Release v\d+ created/],
  ["starting", /^-----> Starting /],
  ["up", /^ {7}\d+ containers? up/],
  ["switched", /^-----> Switched traffic to v\d+/],
] as const;
type Mark = (typeof MARKS)[number][0];

/** What a timed push saw: its output lines with their arrival (ms after the push started). */
interface PushTiming {
  code: number | null;
  lines: { ms: number; text: string }[];
  marks: Partial<Record<Mark, number>>;
  /** First 200 with the new body through the router, ms after the push started. */
  liveMs: number;
}

/**
 * Pushes `dir` to `app` and times it from the spawn of `git push`: each output line as it
 * arrives, and the first 200 through the router whose body is `want` (polled from the moment the
 * containers start, as a release cannot answer earlier).
 */
async function timedPush(p: TestPlatform, app: string, dir: string, want: string): Promise<PushTiming> {
  const u = new URL(p.url);
  const t0 = performance.now();
  const child = spawn("git", ["-C", dir, "push", "--porcelain", `http://user:${p.token}@${u.host}/${app}.git`, "HEAD:main"], {
    env: { ...process.env, GIT_TERMINAL_PROMPT: "0" },
    stdio: ["ignore", "ignore", "pipe"],
    signal: aborter.signal,
  });
  child.on("error", () => undefined); // An abort: the close event below reports it.
  const lines: PushTiming["lines"] = [];
  const marks: PushTiming["marks"] = {};
  let live: Promise<number> | undefined;
  const deadline = () => performance.now() + 120_000;
  const poll = () => (live ??= waitForBody(() => httpGet(p.routerPort, `${app}.localhost`, "/"), want, deadline()));
  let pending = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    const ms = performance.now() - t0;
    pending += chunk;
    const parts = pending.split(/\r?\n/);
    pending = parts.pop() ?? "";
    for (const raw of parts) {
      // git pads sideband lines with spaces (and an erase-line sequence on a terminal).
      // eslint-disable-next-line no-control-regex
      const text = raw.replace(/^remote: /, "").replace(/(\x1b\[K)?\s+$/, "");
      lines.push({ ms, text });
      for (const [name, re] of MARKS) if (marks[name] === undefined && re.test(text)) marks[name] = ms;
      if (marks.starting !== undefined) void poll().catch(() => undefined);
    }
  });
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`git push to ${app} exited with ${code}:\n${lines.map((l) => l.text).join("\n")}`);
  const liveAt = await poll();
  return { code, lines, marks, liveMs: liveAt - t0 };
}

/** Polls `get` until it answers 200 with `want`; resolves to that moment (performance.now()). */
async function waitForBody(get: () => Promise<{ status: number; body: string }>, want: string, until: number): Promise<number> {
  let last: string;
  for (;;) {
    try {
      const r = await get();
      if (r.status === 200 && r.body === want) return performance.now();
      last = `HTTP ${r.status}: ${r.body.slice(0, 80).trim()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (performance.now() > until) throw new Error(`never answered ${JSON.stringify(want)} (last: ${last})`);
    await sleep(POLL_MS);
  }
}

/** The push output's topics ("-----> ...") with when each started and how long it lasted. */
function timeline(t: PushTiming): string {
  const topics = t.lines.filter((l) => l.text.startsWith("-----> "));
  const out = topics.map((l, i) => {
    const next = topics[i + 1]?.ms ?? t.lines.at(-1)?.ms ?? l.ms;
    return `  ${sec(l.ms).padStart(6)} s  (${sec(next - l.ms).padStart(5)} s)  ${l.text}`;
  });
  out.push(`  ${sec(t.liveMs).padStart(6)} s             first 200 of the new release through the router`);
  return out.join("\n");
}

/** The detail lines the buildpack prints with its own step timings. */
function stepTimings(t: PushTiming): string[] {
  return t.lines.filter((l) => /(?:\bin |\()\d+\.\d{3}s\)?$/.test(l.text) || /Resolving|Downloading|found in the build cache/.test(l.text)).map((l) => `  ${sec(l.ms).padStart(6)} s  ${l.text.trim()}`);
}

// --- The floor: the same steps by hand -----------------------------------------------------------------

/** Step durations of a by-hand deploy (ms). */
interface FloorTiming {
  push: number;
  checkout: number;
  install: number;
  build: number;
  pack: number;
  startTo200: number;
}

const floorBuilt = (f: FloorTiming) => f.push + f.checkout + f.install + f.build + f.pack;
const floorLive = (f: FloorTiming) => f.push + f.checkout + f.install + f.build + f.startTo200;

/** The npm the buildpack uses (the system's, as the control plane finds it), run by this Node.js. */
async function systemNpm(): Promise<string> {
  const root = await systemNpmRoot();
  if (!root) throw new Error("floor: no npm on this host");
  return join(root, "bin", "npm-cli.js");
}

async function timed(what: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  const t0 = performance.now();
  const res = await run(cmd, args, { ...opts, signal: aborter.signal });
  if (res.code !== 0) throw new Error(`floor: ${what} failed (${res.code ?? res.signal}): ${(res.stderr || res.stdout).trim().slice(-800)}`);
  return performance.now() - t0;
}

/**
 * A deploy by hand: `git push` to a bare repository (a plain path), check it out into a fresh
 * directory, install (npm ci on the warm cache, or node_modules hard-linked from the previous
 * build), `npm run build`, then pack (tar -cz) and, separately timed, start the app and wait for
 * its first 200 with `want`.
 */
async function floorDeploy(o: { work: string; bare: string; dir: string; npmCache: string; modulesFrom?: string; want: string }): Promise<FloorTiming> {
  const npm = await systemNpm();
  const env = {
    ...process.env,
    PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
    npm_config_cache: o.npmCache,
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
  const push = await timed("git push", "git", ["-C", o.work, "push", "--porcelain", "--quiet", o.bare, "HEAD:main"]);
  const t0 = performance.now();
  await mkdir(o.dir, { recursive: true });
  await timed("git checkout", "git", [`--git-dir=${o.bare}`, `--work-tree=${o.dir}`, "checkout", "-f", "main"]);
  const checkout = performance.now() - t0;
  const install = o.modulesFrom
    ? await timed("cp -al node_modules", "cp", ["-al", "--", join(o.modulesFrom, "node_modules"), join(o.dir, "node_modules")])
    : await timed("npm ci", process.execPath, [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: o.dir, env });
  const build = await timed("npm run build", process.execPath, [npm, "run", "build", "--silent"], { cwd: o.dir, env });
  const pack = await timed("tar -cz", "tar", ["-cz", "-C", o.dir, "-f", `${o.dir}.tgz`, "."]);

  const port = await freePort();
  const t1 = performance.now();
  const app = spawn(process.execPath, ["server.js"], { cwd: o.dir, env: { PATH: env.PATH, PORT: String(port), NODE_ENV: "production" }, stdio: "ignore" });
  const stopApp = defer(async () => {
    if (app.exitCode === null && app.signalCode === null) {
      app.kill("SIGKILL");
      await once(app, "exit");
    }
  });
  try {
    const at = await waitForBody(() => httpGet(port, `127.0.0.1:${port}`, "/"), o.want, performance.now() + 30_000);
    return { push, checkout, install, build, pack, startTo200: at - t1 };
  } finally {
    await stopApp();
  }
}

// --- 1 and 2: push → built, push → live ------------------------------------------------------------

/** Figures of `benchDeployTimes`, in ms (medians over the rounds). */
export interface DeployTimesResult {
  cases: { name: "new app" | "redeploy"; quaiBuilt: number; floorBuilt: number; quaiLive: number; floorLive: number }[];
}

/**
 * Push → built (deployment reaches `pushing`: the "Release vN created" line that follows it) and
 * push → live (first 200 of the new release through the router) of the Express fixture, for a
 * new app after a first app warmed the platform and for a code-only redeploy, against the
 * by-hand floor in interleaved rounds.
 */
export async function benchDeployTimes(opts: { rounds?: number } = {}): Promise<DeployTimesResult> {
  const rounds = opts.rounds ?? 5;
  const started = performance.now();
  const load0 = loadavg()[0] ?? NaN;
  const { p, close } = await platform();
  const scratch = await tempDir("quai-bench-deploy-");
  try {
    const npmCache = join(scratch.dir, "npm-cache");
    const v1 = bodyOf("v1");

    // Warm-up: a first app through Quai; the floor's npm cache filled by one by-hand deploy.
    log("bench deploy: warm-up (a first app through Quai, one by-hand deploy for the npm cache)");
    const warm = await gitApp(await expressApp(v1));
    defer(() => rm(warm, { recursive: true, force: true }));
    const created = await p.quai(["create", "bench-warm"]);
    if (created.code !== 0) throw new Error(`quai create: ${created.stderr}`);
    const warmPush = await timedPush(p, "bench-warm", warm, v1);
    log(`bench deploy: warm-up push: built ${sec(warmPush.marks.built ?? NaN)} s, live ${sec(warmPush.liveMs)} s`);
    await run("git", ["init", "-q", "--bare", join(scratch.dir, "warm.git")]);
    await floorDeploy({ work: warm, bare: join(scratch.dir, "warm.git"), dir: join(scratch.dir, "warm-build"), npmCache, want: v1 });

    const quai = { new: [] as PushTiming[], redeploy: [] as PushTiming[] };
    const floor = { new: [] as FloorTiming[], redeploy: [] as FloorTiming[] };
    for (let r = 0; r < rounds; r++) {
      const app = `bench-new-${r}`;
      const work = await gitApp(await expressApp(v1));
      defer(() => rm(work, { recursive: true, force: true }));
      const bare = join(scratch.dir, `r${r}.git`);
      await run("git", ["init", "-q", "--bare", bare]);
      const res = await p.quai(["create", app]);
      if (res.code !== 0) throw new Error(`quai create ${app}: ${res.stderr}`);
      // Alternate which goes first, so neither always runs on the warmer machine.
      const pair = async (quaiStep: () => Promise<void>, floorStep: () => Promise<void>) => {
        if (r % 2 === 0) {
          await floorStep();
          await quaiStep();
        } else {
          await quaiStep();
          await floorStep();
        }
      };
      const newBuild = join(scratch.dir, `r${r}-new`);
      await pair(
        async () => void quai.new.push(await timedPush(p, app, work, v1)),
        async () => void floor.new.push(await floorDeploy({ work, bare, dir: newBuild, npmCache, want: v1 })),
      );
      const v2 = bodyOf(`v2-round-${r}`);
      await commitBody(work, v2);
      await pair(
        async () => void quai.redeploy.push(await timedPush(p, app, work, v2)),
        async () => void floor.redeploy.push(await floorDeploy({ work, bare, dir: join(scratch.dir, `r${r}-redeploy`), npmCache, modulesFrom: newBuild, want: v2 })),
      );
      const q = (t: PushTiming | undefined) => `built ${sec(t?.marks.built ?? NaN)} s, live ${sec(t?.liveMs ?? NaN)} s`;
      const f = (t: FloorTiming | undefined) => (t ? `built ${sec(floorBuilt(t))} s, live ${sec(floorLive(t))} s` : "-");
      log(`bench deploy: round ${r + 1}/${rounds}: new app: Quai ${q(quai.new.at(-1))}, floor ${f(floor.new.at(-1))}; redeploy: Quai ${q(quai.redeploy.at(-1))}, floor ${f(floor.redeploy.at(-1))}`);
    }

    const cases: DeployTimesResult["cases"] = (["new", "redeploy"] as const).map((k) => ({
      name: k === "new" ? "new app" : "redeploy",
      quaiBuilt: median(quai[k].map((t) => t.marks.built ?? NaN)),
      floorBuilt: median(floor[k].map(floorBuilt)),
      quaiLive: median(quai[k].map((t) => t.liveMs)),
      floorLive: median(floor[k].map(floorLive)),
    }));

    console.log(
      `\nDeploy times: Express fixture (test/fixtures/apps/express), ${rounds} interleaved rounds, medians;` +
        `\nQuai: \`git push\` start → built ("Release vN created", right after status pushing) and → first 200 of the new release through the router;` +
        `\n"new app": a first app was deployed before (warm-up), then the same code goes to a new app (Quai's build caches are per app: its npm cache
starts empty); "redeploy": server.js changed, lockfile unchanged.` +
        `\nFloor, same run: git push to a bare repo (file path) + checkout + npm ci --prefer-offline on a warm npm cache (new app) or cp -al node_modules` +
        `\n(redeploy) + npm run build, then tar -cz (built) or node server.js → first 200 (live); ${machine(load0)}.\n`,
    );
    const rows: string[][] = [];
    for (const c of cases) {
      rows.push([`push → built, ${c.name}`, sec(c.quaiBuilt), sec(c.floorBuilt), `${(c.quaiBuilt / c.floorBuilt).toFixed(2)}x`, `≤ ${TARGET_BUILT}x`, verdict(c.quaiBuilt / c.floorBuilt <= TARGET_BUILT)]);
    }
    for (const c of cases) {
      rows.push([`push → live, ${c.name}`, sec(c.quaiLive), sec(c.floorLive), `${(c.quaiLive / c.floorLive).toFixed(2)}x`, `≤ ${TARGET_LIVE}x`, verdict(c.quaiLive / c.floorLive <= TARGET_LIVE)]);
    }
    console.log(table(["case", "Quai s", "floor s", "Quai / floor", "target", ""], rows));

    // Where the time goes.
    const phase = (t: PushTiming, from: Mark | "push", to: Mark | "live") => {
      const a = from === "push" ? 0 : (t.marks[from] ?? NaN);
      const b = to === "live" ? t.liveMs : (t.marks[to] ?? NaN);
      return b - a;
    };
    const phases: [string, Mark | "push", Mark | "live"][] = [
      ["receive", "push", "queued"],
      ["detect", "queued", "detected"],
      ["compile", "detected", "compiled"],
      ["slug", "compiled", "packed"],
      ["release", "packed", "built"],
      ["containers", "built", "up"],
      ["switch", "up", "switched"],
      ["→ 200", "switched", "live"],
    ];
    console.log(`\nQuai, where the time goes (medians, s): receive = push → queued (git, hook, archive upload); detect = unpack + bin/detect;` +
      `\ncompile = bin/compile; slug = tar + zstd + store; containers = start + accept on $PORT; switch = router apply.\n`);
    console.log(table(["case", ...phases.map((x) => x[0])], (["new", "redeploy"] as const).map((k) => [k === "new" ? "new app" : "redeploy", ...phases.map(([, a, b]) => sec(median(quai[k].map((t) => phase(t, a, b)))))])));
    const steps: [string, (f: FloorTiming) => number][] = [["push", (f) => f.push], ["checkout", (f) => f.checkout], ["install", (f) => f.install], ["build", (f) => f.build], ["tar -cz", (f) => f.pack], ["start → 200", (f) => f.startTo200]];
    console.log(`\nFloor steps (medians, s):\n`);
    console.log(table(["case", ...steps.map((x) => x[0])], (["new", "redeploy"] as const).map((k) => [k === "new" ? "new app" : "redeploy", ...steps.map(([, fn]) => sec(median(floor[k].map(fn))))])));
    for (const k of ["new", "redeploy"] as const) {
      const last = quai[k].at(-1);
      if (!last) continue;
      console.log(`\nQuai ${k === "new" ? "new app" : "redeploy"}, last round: output topics (s from push start, duration), then the buildpack's own timings:`);
      console.log(timeline(last));
      console.log(stepTimings(last).join("\n"));
    }
    log(`bench deploy: done in ${sec(performance.now() - started)} s`);
    return { cases };
  } finally {
    await close();
    await closeDeployBenches();
  }
}

// --- 3: failed requests during redeploys under load -------------------------------------------------

/** Figures of `benchRedeployLoad`. */
export interface RedeployLoadResult {
  requests: number;
  failures: number;
  retries: number;
  failureSamples: string[];
  bodies: Record<string, number>;
  redeployMs: number[];
}

type Outcome = { status: number; body: string };
type RequestError = Error & { retryable?: boolean };

/**
 * One GET through the router on `agent`. A failure is retryable, as a browser would retry an
 * idempotent request, only when a reused keep-alive connection closed before any response byte.
 */
function getOnce(agent: http.Agent, port: number, host: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    let bytesBefore = 0;
    let responded = false;
    const req = http.request({ agent, host: "127.0.0.1", port, path: "/", headers: { host } }, (res) => {
      responded = true;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("close", () => {
        if (!res.complete) reject(Object.assign(new Error("response cut short"), { retryable: false }));
      });
    });
    req.on("socket", (s: Socket) => {
      socket = s;
      bytesBefore = s.bytesRead;
    });
    req.setTimeout(15_000, () => req.destroy(new Error("no answer within 15 s")));
    req.on("error", (err: RequestError) => {
      // Reused: Node.js's flag, or the connection had read a response before (a request that
      // waited for a socket is handed a freed one without the flag).
      err.retryable = (req.reusedSocket || bytesBefore > 0) && !responded && (socket === undefined || socket.bytesRead === bytesBefore);
      reject(err);
    });
    req.end();
  });
}

/**
 * `redeploys` consecutive code-only redeploys of the Express fixture while `clients` loops send
 * keep-alive GETs through the router; counts failed requests (target 0) and browser-like retries.
 */
export async function benchRedeployLoad(opts: { redeploys?: number; clients?: number; pauseMs?: number } = {}): Promise<RedeployLoadResult> {
  const redeploys = opts.redeploys ?? 5;
  const clients = opts.clients ?? 3;
  const pauseMs = opts.pauseMs ?? 5;
  const started = performance.now();
  const load0 = loadavg()[0] ?? NaN;
  const { p, close } = await platform();
  try {
    const app = "bench-load";
    const res = await p.quai(["create", app]);
    if (res.code !== 0) throw new Error(`quai create: ${res.stderr}`);
    const work = await gitApp(await expressApp(bodyOf("v0")));
    defer(() => rm(work, { recursive: true, force: true }));
    log("bench redeploy-load: first deploy");
    await timedPush(p, app, work, bodyOf("v0"));

    const result: RedeployLoadResult = { requests: 0, failures: 0, retries: 0, failureSamples: [], bodies: {}, redeployMs: [] };
    let stop = false;
    const fail = (what: string) => {
      result.failures++;
      if (result.failureSamples.length < 5) result.failureSamples.push(what);
    };
    const host = `${app}.localhost`;
    // One connection per client, as a browser tab keeps: a retry after a closed connection opens a new one.
    const agents = Array.from({ length: clients }, () => new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 }));
    const client = async (agent: http.Agent) => {
      while (!stop) {
        result.requests++;
        let r: Outcome | undefined;
        try {
          r = await getOnce(agent, p.routerPort, host);
        } catch (err) {
          if ((err as RequestError).retryable) {
            result.retries++;
            try {
              r = await getOnce(agent, p.routerPort, host);
            } catch (again) {
              fail(`after a retry: ${(again as Error).message}`);
            }
          } else fail((err as Error).message);
        }
        if (r) {
          if (r.status === 200) result.bodies[r.body.trim()] = (result.bodies[r.body.trim()] ?? 0) + 1;
          else fail(`HTTP ${r.status}: ${r.body.slice(0, 100).trim()}`);
        }
        await sleep(pauseMs);
      }
    };
    const loops = agents.map(client);
    try {
      for (let i = 1; i <= redeploys; i++) {
        const body = bodyOf(`v${i}`);
        await commitBody(work, body);
        const t = await timedPush(p, app, work, body);
        result.redeployMs.push(t.liveMs);
        log(`bench redeploy-load: redeploy ${i}/${redeploys} live in ${sec(t.liveMs)} s; ${result.requests} requests, ${result.failures} failed, ${result.retries} retried so far`);
      }
      // Let the last switch's old containers retire under load, as they would in production.
      await sleep(3000);
    } finally {
      stop = true;
      await Promise.all(loops);
      for (const agent of agents) agent.destroy();
    }

    console.log(
      `\nRedeploys under load: ${redeploys} consecutive code-only redeploys of the Express fixture, ${clients} keep-alive clients through the router` +
        `\n(${pauseMs} ms between requests); a request is retried once, as a browser does, only when a reused keep-alive connection` +
        `\ncloses before any response byte. Baseline: 0 failed requests. Target: 0. ${machine(load0)}.\n`,
    );
    const versions = Object.entries(result.bodies).map(([b, n]) => `${b.replace("hello from express ", "")}:${n}`).join(" ");
    console.log(
      table(
        ["requests", "failed", "retried", "redeploy → live s (median)", "target", ""],
        [[String(result.requests), String(result.failures), String(result.retries), sec(median(result.redeployMs)), "0 failed", verdict(result.failures === 0)]],
      ),
    );
    console.log(`Answers per release: ${versions}`);
    if (result.failureSamples.length > 0) console.log(`First failures:\n${result.failureSamples.map((f) => `  ${f}`).join("\n")}`);
    log(`bench redeploy-load: done in ${sec(performance.now() - started)} s`);
    return result;
  } finally {
    await close();
    await closeDeployBenches();
  }
}

// --- 4: sandbox start cost and memory per idle container ----------------------------------------------

/** Figures of `benchSandbox` (ms and bytes). */
export interface SandboxResult {
  directMs: number;
  sandboxMs: number;
  startResolvedMs: number;
  bwrapRssBytes: number;
  bwrapPssBytes: number;
}

/** Resolves when `file` (existing, empty) first has content: performance.now() then. */
function firstOutput(file: string): { at: Promise<number>; cancel: () => void } {
  let cancel = () => {};
  const at = new Promise<number>((resolve, reject) => {
    const check = () => {
      if (statSync(file).size > 0) {
        const t = performance.now();
        watcher.close();
        resolve(t);
      }
    };
    const watcher = watch(file, check);
    cancel = () => {
      watcher.close();
      reject(new Error(`no output in ${file}`));
    };
    check();
  });
  at.catch(() => undefined);
  return { at, cancel };
}

async function procNumbers(pid: number): Promise<{ comm: string; rss: number; pss: number }> {
  const comm = (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
  const kb = (re: RegExp, text: string) => Number(re.exec(text)?.[1] ?? NaN) * 1024;
  return { comm, rss: kb(/^VmRSS:\s+(\d+) kB/m, status), pss: kb(/^Pss:\s+(\d+) kB/m, rollup) };
}

/**
 * LocalRuntime directly: start() → the app's first output for `sh -c 'echo up; exec sleep 3600'`
 * against the same command spawned with child_process (baseline), interleaved, medians; the
 * cost split by spawning bwrap alone, sandbox-exec dropping to the uid + bwrap, and the whole argv start() spawns; then
 * VmRSS (and PSS) of the bwrap processes per idle container.
 */
export async function benchSandbox(opts: { runs?: number; idle?: number } = {}): Promise<SandboxResult | undefined> {
  const runs = opts.runs ?? 20;
  const idle = opts.idle ?? 10;
  if (process.getuid?.() !== 0) {
    console.log("\nSandbox start cost: skipped (needs root: cgroups and the switch to an app uid).");
    return undefined;
  }
  const started = performance.now();
  const load0 = loadavg()[0] ?? NaN;
  const base = await traversableTempDir("quai-bench-sandbox-");
  const removeBase = defer(() => rm(base, { recursive: true, force: true }));
  const runtime = new LocalRuntime({ stateDir: join(base, "state") });
  const appDir = join(base, "app");
  await mkdir(appDir, { mode: 0o755 });
  await mkdir(join(base, "logs"), { mode: 0o700 });
  const command = ["/bin/sh", "-c", "echo up; exec sleep 3600"];
  const env = { PATH: "/usr/bin:/bin" };
  const live = new Set<string>();
  const stopAll = defer(async () => {
    for (const id of live) {
      await runtime.stop(id, 0).catch(() => undefined);
      await runtime.remove(id).catch(() => undefined);
    }
  });
  // As an app container has it: /app an overlay of the slug (here an empty one) under a layer of its own.
  const spec = (id: string, cmd = command): ContainerSpec => {
    const layer = join(base, "layers", id);
    for (const d of ["upper", "work", "app"]) mkdirSync(join(layer, d), { recursive: true, mode: 0o755 });
    chownSync(join(layer, "upper"), 60001, 60001);
    return {
      id, app: "bench", uid: 60001, gid: 60001, appDir: join(layer, "app"), appLayers: { lower: appDir, upper: join(layer, "upper"), work: join(layer, "work") },
      appWritable: true, command: cmd, env, size: "S", network: "host", logFile: join(base, "logs", `${id}.log`),
    };
  };
  const newId = (label: string) => `bench-${label}-${randomBytes(3).toString("hex")}`;

  /** start() → first output; the container keeps running until `release`. */
  const sandboxed = async (): Promise<{ firstMs: number; startMs: number; id: string }> => {
    const s = spec(newId("sbx"));
    await writeFile(s.logFile, "");
    const out = firstOutput(s.logFile);
    live.add(s.id);
    const t0 = performance.now();
    await runtime.start(s);
    const startMs = performance.now() - t0;
    const timer = setTimeout(out.cancel, 10_000);
    const at = await out.at.finally(() => clearTimeout(timer));
    return { firstMs: at - t0, startMs, id: s.id };
  };
  const release = async (id: string) => {
    await runtime.stop(id, 0);
    await runtime.remove(id);
    live.delete(id);
  };
  /**
   * `argv` spawned as start() would (bwrap reads its options from fd 3) → first output; then
   * waits for its exit, after a SIGKILL when `kill` (a program that does not end by itself).
   */
  const spawned = async (argv: string[], bwrapArgs?: string[], kill = false): Promise<number> => {
    const file = join(base, "logs", `${newId("raw")}.log`);
    await writeFile(file, "");
    const out = firstOutput(file);
    const fd = openSync(file, "a");
    let child: ChildProcess;
    const t0 = performance.now();
    try {
      child = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", fd, fd, bwrapArgs ? "pipe" : "ignore"], env });
    } finally {
      closeSync(fd);
    }
    const exited = once(child, "exit");
    if (bwrapArgs) (child.stdio[3] as NodeJS.WritableStream).end(encodeArgs(bwrapArgs));
    const timer = setTimeout(out.cancel, 10_000);
    try {
      return (await out.at) - t0;
    } finally {
      clearTimeout(timer);
      if (kill) child.kill("SIGKILL");
      await exited;
    }
  };

  try {
    // Where the sandbox's time goes: the same bwrap options, with fewer wrappers around bwrap.
    const host = probeHost(join(LIBEXEC, "sandbox-exec"));
    const exiting = ["/bin/sh", "-c", "echo up"];
    const variants = {
      direct: [] as number[],
      bwrap: [] as number[],
      dropOnly: [] as number[],
      chain: [] as number[],
      start: [] as number[],
      startResolved: [] as number[],
    };
    const warmup = 2;
    for (let i = 0; i < runs + warmup; i++) {
      const keep = i >= warmup;
      const order = i % 2 === 0 ? ["direct", "sandbox"] : ["sandbox", "direct"];
      for (const which of order) {
        if (which === "direct") {
          const d = await spawned(command, undefined, true);
          if (keep) variants.direct.push(d);
        } else {
          const r = await sandboxed();
          await release(r.id);
          if (keep) {
            variants.start.push(r.firstMs);
            variants.startResolved.push(r.startMs);
          }
        }
      }
      // The split, with a cgroup of its own for the full chain (as start() makes).
      const id = newId("split");
      const s = spec(id, exiting);
      await runtime.cgroups.create(id, { memoryBytes: 256 * 1024 * 1024, pids: 256, cpuShares: 256 });
      try {
        const { argv, bwrapArgs } = sandboxCommand(s, host, { procsFiles: runtime.cgroups.procsFiles(id), argsFd: 3, dieWithParent: true });
        const b = argv.indexOf(host.bwrap);
        const bw = await spawned(argv.slice(b), bwrapArgs);
        // sandbox-exec dropping to the app's uid only: no cgroup, no overlay.
        const st = await spawned([host.sandboxExec, "--uid", String(s.uid), "--gid", String(s.gid), "--", ...argv.slice(b)], bwrapArgs);
        const ch = await spawned(argv, bwrapArgs);
        if (keep) {
          variants.bwrap.push(bw);
          variants.dropOnly.push(st);
          variants.chain.push(ch);
        }
      } finally {
        await runtime.cgroups.remove(id);
      }
    }

    // Idle containers: what the sandbox's own processes (both bwrap) hold per container.
    const ids: string[] = [];
    for (let i = 0; i < idle; i++) ids.push((await sandboxed()).id);
    await sleep(300);
    const perContainer: { rss: number; pss: number; appRss: number }[] = [];
    for (const id of ids) {
      let rss = 0;
      let pss = 0;
      let appRss = 0;
      for (const pid of await runtime.cgroups.pids(id)) {
        const n = await procNumbers(pid);
        if (n.comm === "bwrap") {
          rss += n.rss;
          pss += n.pss;
        } else appRss += n.rss;
      }
      perContainer.push({ rss, pss, appRss });
    }
    for (const id of ids) await release(id);

    const result: SandboxResult = {
      directMs: median(variants.direct),
      sandboxMs: median(variants.start),
      startResolvedMs: median(variants.startResolved),
      bwrapRssBytes: median(perContainer.map((c) => c.rss)),
      bwrapPssBytes: median(perContainer.map((c) => c.pss)),
    };
    const ms = (v: number[]) => [median(v).toFixed(1), percentile(v, 0.9).toFixed(1)];
    const cg = runtime.cgroups.version;
    console.log(
      `\nSandbox start: LocalRuntime (bubblewrap, cgroup v${cg}, uid 60001, network host, /app an overlay as for apps), argv ${JSON.stringify(command)};` +
        `\ntime to the app's first output (inotify on its log file), ${runs} interleaved runs after ${warmup} warm-up, median and p90.` +
        `\nBaseline, same run: the same command spawned with child_process. Target: ≤ ${TARGET_SANDBOX_MS} ms. ${machine(load0)}.\n`,
    );
    const mib = (b: number) => (b / 1024 / 1024).toFixed(2);
    console.log(
      table(
        ["variant", "median ms", "p90 ms", "× direct", "target", ""],
        [
          ["direct spawn (baseline)", ...ms(variants.direct), "1.00x", "", ""],
          ["LocalRuntime.start() → first output", ...ms(variants.start), `${(result.sandboxMs / result.directMs).toFixed(1)}x`, `≤ ${TARGET_SANDBOX_MS} ms`, verdict(result.sandboxMs <= TARGET_SANDBOX_MS)],
          ["  start() resolved", ...ms(variants.startResolved), `${(result.startResolvedMs / result.directMs).toFixed(1)}x`, "", ""],
          ["  split: bwrap alone (as root)", ...ms(variants.bwrap), `${(median(variants.bwrap) / result.directMs).toFixed(1)}x`, "", ""],
          ["  split: sandbox-exec (uid only) + bwrap", ...ms(variants.dropOnly), `${(median(variants.dropOnly) / result.directMs).toFixed(1)}x`, "", ""],
          ["  split: sandbox-exec (cgroups, overlay, uid) + bwrap", ...ms(variants.chain), `${(median(variants.chain) / result.directMs).toFixed(1)}x`, "", ""],
        ],
      ),
    );
    console.log(
      `\nIdle containers: ${idle} running; memory of each container's bwrap processes (outer bwrap + the sandbox's init), median per container;` +
        `\nVmRSS counts shared pages (libc) in full, PSS shares them out. Baseline: the app itself (sleep) ${mib(median(perContainer.map((c) => c.appRss)))} MiB VmRSS.\n`,
    );
    console.log(
      table(
        ["per idle container", "VmRSS MiB", "PSS MiB", "target", ""],
        [["bwrap processes", mib(result.bwrapRssBytes), mib(result.bwrapPssBytes), `≤ ${TARGET_SANDBOX_MB} MiB VmRSS`, verdict(result.bwrapRssBytes <= TARGET_SANDBOX_MB * 1024 * 1024)]],
      ),
    );
    log(`bench sandbox: done in ${sec(performance.now() - started)} s`);
    return result;
  } finally {
    await stopAll();
    await removeBase();
  }
}
