// The PHP and Python buildpacks, run on the host the way Quai's build runner runs them in its
// sandbox: fixture → detect → compile → release → web process from .profile.d → HTTP answer.
// Until the sandboxed runner lands, the build happens at a temporary BUILD_DIR and the web
// process runs from there (the Python venv holds absolute paths, so it is not moved).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile, appendFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunResult } from "../core/run.ts";

const root = new URL("../..", import.meta.url).pathname;
const fixtures = join(root, "test/fixtures/apps");
const buildpacks = join(root, "buildpacks");
const PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * Runs a program with an argv array and no stdin. (core/run.ts's `run` writes an empty stdin,
 * which fails with EPIPE when the program exits first, as bin/detect does.)
 */
function run(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal }): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, signal: opts.signal, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

async function runChecked(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal }): Promise<RunResult> {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${res.code ?? res.signal}: ${res.stderr || res.stdout}`);
  return res;
}

let scratch = "";
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "quai-bp-php-python-"));
});
after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface Build {
  buildDir: string;
  cacheDir: string;
  detect: RunResult;
  compile: RunResult;
  release: RunResult;
  /** compile's stdout and stderr together, as a build log shows them. */
  log: string;
  compileMs: number;
}

/** Copies a fixture to a fresh BUILD_DIR, lets `prepare` change it, then runs detect, compile and release. */
async function build(
  buildpack: "php" | "python",
  fixture: string,
  opts: { env?: Record<string, string>; prepare?: (buildDir: string) => Promise<void> } = {},
): Promise<Build> {
  const dir = await mkdtemp(join(scratch, `${fixture}-`));
  const buildDir = join(dir, "app");
  const cacheDir = join(dir, "cache");
  const envDir = join(dir, "env");
  await cp(join(fixtures, fixture), buildDir, { recursive: true });
  await mkdir(cacheDir);
  await mkdir(envDir);
  for (const [name, value] of Object.entries(opts.env ?? {})) await writeFile(join(envDir, name), value);
  await opts.prepare?.(buildDir);

  const bin = join(buildpacks, buildpack, "bin");
  const env = { PATH, HOME: buildDir };
  const signal = AbortSignal.timeout(120_000);
  const detect = await run(join(bin, "detect"), [buildDir], { env, signal });
  const started = Date.now();
  const compile = await run(join(bin, "compile"), [buildDir, cacheDir, envDir], { env, cwd: buildDir, signal });
  const compileMs = Date.now() - started;
  const release = await run(join(bin, "release"), [buildDir], { env, signal });
  return { buildDir, cacheDir, detect, compile, release, log: compile.stdout + compile.stderr, compileMs };
}

/** The `web:` command of bin/release's YAML. */
function webCommand(release: RunResult): string {
  assert.equal(release.code, 0, release.stderr);
  const m = /^default_process_types:\s*\n\s+web:\s*(.+)$/m.exec(release.stdout);
  assert.ok(m?.[1], `no web process in:\n${release.stdout}`);
  return m[1].trim();
}

/** A free port in 20000–32000: below the ephemeral range, where outgoing connections take theirs. */
async function freeAppPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const ok = await new Promise<boolean>((resolvePromise) => {
      const srv = createServer();
      srv.once("error", () => resolvePromise(false));
      srv.listen({ host: "127.0.0.1", port, exclusive: true }, () => srv.close(() => resolvePromise(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free port in 20000-32000");
}

interface Web {
  child: ChildProcess;
  port: number;
  logs: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a process command the way Quai's launcher does: .profile.d/*.sh sourced with HOME at
 * the app, then the command line (Procfile syntax, so $PORT expands) replacing the shell.
 */
async function startWeb(buildDir: string, command: string, env: Record<string, string> = {}): Promise<Web> {
  const port = await freeAppPort();
  const child = spawn(
    "bash",
    ["-c", 'for f in .profile.d/*.sh; do . "$f"; done; exec bash -c "$1"', "quai-launch", command],
    { cwd: buildDir, env: { PATH, HOME: buildDir, PORT: String(port), ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) =>
    child.on("exit", (code, signal) => resolvePromise({ code, signal })),
  );
  return { child, port, logs: () => out, exited };
}

interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET without keep-alive, so no socket outlives the test. */
function get(port: number, path: string): Promise<HttpAnswer> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("timeout", () => req.destroy(new Error("HTTP timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** Retries until the web process answers, failing early with its logs when it exits. */
async function waitForHttp(web: Web, path: string, timeoutMs = 20_000): Promise<HttpAnswer> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void web.exited.then(() => (exited = true));
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (exited) assert.fail(`web process exited before answering:\n${web.logs()}`);
    try {
      return await get(web.port, path);
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.fail(`no HTTP answer on ${web.port} within ${timeoutMs} ms (${String(lastError)}):\n${web.logs()}`);
}

interface Proc {
  ppid: number;
  comm: string;
}

/** Every process below `pid`, read from /proc. */
async function descendants(pid: number): Promise<Map<number, Proc>> {
  const all = new Map<number, Proc>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      all.set(Number(entry), { ppid, comm });
    } catch {
      // gone meanwhile
    }
  }
  const found = new Map<number, Proc>();
  let frontier = new Set([pid]);
  while (frontier.size > 0) {
    const next = new Set<number>();
    for (const [p, info] of all) {
      if (frontier.has(info.ppid) && !found.has(p)) {
        found.set(p, info);
        next.add(p);
      }
    }
    frontier = next;
  }
  return found;
}

/** The processes of `procs` still alive (zombies included: nobody reaped them). */
async function stillRunning(procs: Map<number, Proc>): Promise<string[]> {
  const alive: string[] = [];
  for (const [pid, { comm }] of procs) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      if (stat.includes(`(${comm})`)) alive.push(`${pid} ${comm}`);
    } catch {
      // gone
    }
  }
  return alive;
}

async function waitExit(web: Web, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`web process still running after ${ms} ms:\n${web.logs()}`)), ms);
  });
  try {
    return await Promise.race([web.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops a web process that a failed assertion left running. */
function kill(web: Web | undefined): void {
  if (web && web.child.exitCode === null && web.child.signalCode === null) web.child.kill("SIGKILL");
}

describe("PHP buildpack", () => {
  let app: Build;
  before(async () => {
    app = await build("php", "php-app");
    await writeFile(join(app.buildDir, "public/slow.php"), '<?php\nusleep(1000000);\necho "slow done";\n');
  });

  test("detects composer.json or index.php, and nothing else", async () => {
    assert.equal(app.detect.code, 0);
    assert.equal(app.detect.stdout.trim(), "PHP");
    const other = await run(join(buildpacks, "php/bin/detect"), [join(fixtures, "python-app")], { env: { PATH } });
    assert.equal(other.code, 1);
  });

  test("builds php-app offline from a path repository", () => {
    assert.equal(app.compile.code, 0, app.log);
    assert.match(app.compile.stdout, /^-----> Installing dependencies with Composer$/m);
    assert.match(app.compile.stdout, /^ {7}Document root: \/public$/m);
    assert.ok(existsSync(join(app.buildDir, "vendor/autoload.php")));
    assert.ok(existsSync(join(app.buildDir, ".profile.d/php.sh")));
    assert.equal(webCommand(app.release), ".quai/php/bin/quai-php-web");
  });

  test("serves through nginx + php-fpm, and SIGTERM stops both", async () => {
    let web: Web | undefined;
    try {
      web = await startWeb(app.buildDir, webCommand(app.release), { APP_GREETING: "bonjour" });
      const home = await waitForHttp(web, "/some/route?x=1");
      assert.equal(home.status, 200, home.body);
      assert.match(home.body, /^hello from php$/m);
      assert.match(home.body, /^uri: \/some\/route\?x=1$/m, "front controller gets every route");
      assert.match(home.body, /^env: bonjour$/m, "app variables reach PHP (clear_env = no)");
      assert.match(home.body, /^sapi: fpm-fcgi$/m);
      assert.equal(home.headers["x-quai-include"], "yes", "extra.paas.nginx-includes applied");
      const file = await get(web.port, "/static.txt");
      assert.equal(file.body, "static file\n");
      assert.equal((await get(web.port, "/.user.ini")).status, 403, "dotfiles are never served");

      const procs = await descendants(web.child.pid ?? 0);
      const names = [...procs.values()].map((p) => p.comm);
      assert.ok(names.some((n) => n.startsWith("php-fpm")), `no php-fpm among ${names.join(", ")}`);
      assert.ok(names.includes("nginx"), `no nginx among ${names.join(", ")}`);
      // A request in flight when SIGTERM arrives still gets its answer.
      const slow = get(web.port, "/slow.php");
      await new Promise((r) => setTimeout(r, 300));
      web.child.kill("SIGTERM");
      assert.equal((await slow).body, "slow done");
      const exit = await waitExit(web, 15_000);
      assert.equal(exit.code, 0, web.logs());
      assert.match(web.logs(), /"GET \/some\/route\?x=1 HTTP\/1\.1" 200/, "nginx's access log reaches stdout");
      assert.deepEqual(await stillRunning(procs), [], "nginx and php-fpm are gone");
      assert.match(web.logs(), /stopping \(graceful\)/);
    } finally {
      kill(web);
    }
  });

  test("the web process ends when nginx dies, and takes php-fpm down", async () => {
    let web: Web | undefined;
    try {
      web = await startWeb(app.buildDir, webCommand(app.release));
      assert.equal((await waitForHttp(web, "/")).status, 200);
      const procs = await descendants(web.child.pid ?? 0);
      // The start script runs as the launched process itself (exec), so nginx's master is its child.
      const master = [...procs].find(([, p]) => p.comm === "nginx" && p.ppid === web?.child.pid)?.[0];
      assert.ok(master, "nginx is running");
      process.kill(master, "SIGTERM");
      const exit = await waitExit(web, 15_000);
      assert.notEqual(exit.code, 0, "a dead nginx is a crashed container");
      assert.match(web.logs(), /nginx exited/);
      assert.deepEqual(await stillRunning(procs), [], "php-fpm is stopped too");
    } finally {
      kill(web);
    }
  });

  test("app values stay data: env values are not run, a hostile document root is refused", async () => {
    const marker = join(scratch, "pwned");
    const res = await build("php", "php-app", {
      env: { EVIL: `$(touch ${marker})\n\`touch ${marker}\`; touch ${marker}` },
      prepare: async (dir) => {
        const composer = JSON.parse(await readFile(join(dir, "composer.json"), "utf8")) as { extra: { paas: Record<string, string> } };
        composer.extra.paas["document-root"] = "public; } server { listen 80; root /";
        await writeFile(join(dir, "composer.json"), JSON.stringify(composer, null, 4));
      },
    });
    assert.equal(res.compile.code, 1);
    assert.match(res.compile.stderr, /extra\.paas\.document-root must be a relative path inside the app/);
    assert.ok(!existsSync(marker), "an env value was executed");
  });

  test("php-missing-dep fails fast, naming the package", async () => {
    const res = await build("php", "php-missing-dep");
    assert.notEqual(res.compile.code, 0);
    assert.ok(res.compileMs < 60_000, `took ${res.compileMs} ms`);
    assert.match(res.compile.stderr, /^ ! {5}monolog\/monolog \^3\.0: /m);
    assert.match(res.compile.stderr, /offline/);
  });

  test("an unsatisfiable PHP version or a missing extension fails clearly", async () => {
    const phpVersion = (await runChecked("php", ["-r", "echo PHP_MAJOR_VERSION, '.', PHP_MINOR_VERSION, '.', PHP_RELEASE_VERSION;"], { env: { PATH } })).stdout;
    const res = await build("php", "php-app", {
      prepare: async (dir) => {
        const composer = JSON.parse(await readFile(join(dir, "composer.json"), "utf8")) as { require: Record<string, string> };
        composer.require["php"] = "^7.4";
        composer.require["ext-imagick"] = "*";
        await writeFile(join(dir, "composer.json"), JSON.stringify(composer, null, 4));
      },
    });
    assert.equal(res.compile.code, 1);
    assert.ok(res.compile.stderr.includes(`composer.json requires PHP ^7.4, but the available PHP is ${phpVersion}`), res.log);
    assert.match(res.compile.stderr, /requires the PHP extension imagick \(ext-imagick\), which is not available/);
    assert.doesNotMatch(res.compile.stdout, /Installing dependencies/, "fails before Composer runs");
  });

  test("a committed vendor/ with composer.lock installs offline; without vendor/ the build names the package", async () => {
    // A packagist package whose dist URL is unreachable from builds; only vendor/ holds it.
    const pkg = {
      name: "acme/vendored",
      version: "1.2.0",
      version_normalized: "1.2.0.0",
      dist: { type: "zip", url: "https://repo.packagist.org/acme/vendored-1.2.0.zip", reference: "0123456789abcdef0123456789abcdef01234567", shasum: "" },
      type: "library",
      autoload: { "psr-4": { "Acme\\Vendored\\": "src/" } },
    };
    const writeApp = async (dir: string, withVendor: boolean) => {
      await rm(join(dir, "packages"), { recursive: true });
      await rm(join(dir, "composer.lock"));
      const composerJson = JSON.stringify({ name: "quai/vendored-app", require: { php: ">=8.1", "acme/vendored": "1.2.0" } }, null, 4);
      await writeFile(join(dir, "composer.json"), composerJson);
      const hash = await run("php", ["-r", 'require "/usr/share/php/Composer/autoload.php"; echo Composer\\Package\\Locker::getContentHash(file_get_contents($argv[1]));', join(dir, "composer.json")], { env: { PATH } });
      const lock = {
        "content-hash": hash.code === 0 ? hash.stdout : "",
        packages: [pkg],
        "packages-dev": [],
        aliases: [],
        "minimum-stability": "stable",
        "stability-flags": [],
        "prefer-stable": false,
        "prefer-lowest": false,
        platform: { php: ">=8.1" },
        "platform-dev": [],
        "plugin-api-version": "2.3.0",
      };
      await writeFile(join(dir, "composer.lock"), JSON.stringify(lock, null, 4));
      await writeFile(join(dir, "public/index.php"), '<?php\nrequire __DIR__ . "/../vendor/autoload.php";\necho Acme\\Vendored\\Hello::say(), "\\n";\n');
      if (!withVendor) return;
      await mkdir(join(dir, "vendor/acme/vendored/src"), { recursive: true });
      await mkdir(join(dir, "vendor/composer"), { recursive: true });
      await writeFile(join(dir, "vendor/acme/vendored/composer.json"), JSON.stringify({ name: pkg.name, autoload: pkg.autoload }));
      await writeFile(join(dir, "vendor/acme/vendored/src/Hello.php"), '<?php\nnamespace Acme\\Vendored;\nfinal class Hello { public static function say(): string { return "hello from vendor"; } }\n');
      const installed = { packages: [{ ...pkg, "install-path": "../acme/vendored" }], dev: false, "dev-package-names": [] };
      await writeFile(join(dir, "vendor/composer/installed.json"), JSON.stringify(installed, null, 4));
    };

    const vendored = await build("php", "php-app", { prepare: (dir) => writeApp(dir, true) });
    assert.equal(vendored.compile.code, 0, vendored.log);
    assert.match(vendored.compile.stdout, /Using the committed vendor\/ directory/);
    assert.match(vendored.compile.stdout, /Nothing to install, update or remove/);
    const out = await runChecked("php", [join(vendored.buildDir, "public/index.php")], { env: { PATH } });
    assert.equal(out.stdout, "hello from vendor\n");

    const bare = await build("php", "php-app", { prepare: (dir) => writeApp(dir, false) });
    assert.equal(bare.compile.code, 1);
    assert.match(bare.compile.stderr, /acme\/vendored 1\.2\.0: not in vendor\/, not in a path repository, not in the build cache/);
    assert.ok(bare.compileMs < 60_000);
  });
});

describe("Python buildpack", () => {
  let wheels = "";
  let app: Build;
  const withWheels = (extra?: (dir: string) => Promise<void>) => async (dir: string) => {
    await cp(wheels, join(dir, "vendor/wheels"), { recursive: true });
    await extra?.(dir);
  };

  before(async () => {
    // PyPI is out of reach: wheels of our tiny package and of gunicorn (from the Debian
    // python3-gunicorn module files, under a minimal pyproject) are built here, with the
    // system's setuptools, and copied into each app's vendor/wheels.
    wheels = join(scratch, "wheels");
    const src = join(scratch, "wheel-src");
    await cp(join(fixtures, "python-app/packages/quai-hello"), join(src, "quai-hello"), { recursive: true });
    const gunicornModule = "/usr/lib/python3/dist-packages/gunicorn";
    const version = (await runChecked("/usr/bin/python3", ["-c", "import gunicorn; print(gunicorn.__version__)"], { env: { PATH } })).stdout.trim();
    await cp(gunicornModule, join(src, "gunicorn/gunicorn"), { recursive: true, filter: (p) => !p.includes("__pycache__") });
    await writeFile(
      join(src, "gunicorn/pyproject.toml"),
      [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        'name = "gunicorn"',
        `version = "${version}"`,
        "# gunicorn 20 imports pkg_resources.",
        'dependencies = ["setuptools"]',
        "",
        "[project.scripts]",
        'gunicorn = "gunicorn.app.wsgiapp:run"',
        "",
        "[tool.setuptools.packages.find]",
        'include = ["gunicorn*"]',
        "",
      ].join("\n"),
    );
    // A stand-in "django" of ours: enough for manage.py collectstatic to be run by the build.
    await mkdir(join(src, "django/django"), { recursive: true });
    await writeFile(join(src, "django/django/__init__.py"), '"""Test stand-in: the build only checks that django imports."""\n');
    await writeFile(
      join(src, "django/pyproject.toml"),
      '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "django"\nversion = "0.0.1"\n\n[tool.setuptools]\npackages = ["django"]\n',
    );
    await runChecked(
      "/usr/bin/python3",
      ["-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check", "-w", wheels,
        join(src, "quai-hello"), join(src, "gunicorn"), join(src, "django")],
      { env: { PATH, HOME: scratch }, signal: AbortSignal.timeout(60_000) },
    );
    app = await build("python", "python-app", { prepare: withWheels() });
    // A slow route, to see SIGTERM let a request in flight finish.
    await appendFile(
      join(app.buildDir, "app.py"),
      "\n\n_app = application\n\n\ndef application(environ, start_response):\n" +
        "    if environ['PATH_INFO'] == '/slow':\n        import time\n        time.sleep(1)\n" +
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n        return [b'slow done']\n" +
        "    return _app(environ, start_response)\n",
    );
  });

  test("detects requirements.txt, setup.py, pyproject.toml or Pipfile", async () => {
    assert.equal(app.detect.code, 0);
    assert.equal(app.detect.stdout.trim(), "Python");
    const detect = join(buildpacks, "python/bin/detect");
    assert.equal((await run(detect, [join(fixtures, "php-app")], { env: { PATH } })).code, 1);
    for (const file of ["setup.py", "pyproject.toml", "Pipfile"]) {
      const dir = await mkdtemp(join(scratch, "detect-"));
      await writeFile(join(dir, file), "");
      assert.equal((await run(detect, [dir], { env: { PATH } })).code, 0, file);
    }
  });

  test("builds python-app offline into .venv with a gunicorn web process", async () => {
    assert.equal(app.compile.code, 0, app.log);
    assert.match(app.compile.stdout, /Successfully installed .*gunicorn-/);
    assert.equal(webCommand(app.release), "gunicorn app:application --bind 127.0.0.1:$PORT");
    const profile = await readFile(join(app.buildDir, ".profile.d/python.sh"), "utf8");
    assert.match(profile, /\$HOME\/\.venv\/bin/);
    assert.match(profile, /PYTHONUNBUFFERED=1/);
    const cfg = await readFile(join(app.buildDir, ".venv/pyvenv.cfg"), "utf8");
    assert.match(cfg, /include-system-site-packages = false/);
  });

  test("serves through gunicorn and stops on SIGTERM", async () => {
    let web: Web | undefined;
    try {
      web = await startWeb(app.buildDir, webCommand(app.release), { APP_GREETING: "salut" });
      const res = await waitForHttp(web, "/hello");
      assert.equal(res.status, 200, res.body);
      assert.equal(res.body, "hello from python\npath: /hello\nenv: salut\n");
      assert.equal(res.headers["server"], "gunicorn");
      const procs = await descendants(web.child.pid ?? 0);
      const slow = get(web.port, "/slow");
      await new Promise((r) => setTimeout(r, 300));
      web.child.kill("SIGTERM");
      assert.equal((await slow).body, "slow done", "a request in flight finishes");
      const exit = await waitExit(web, 15_000);
      assert.equal(exit.code, 0, web.logs());
      assert.deepEqual(await stillRunning(procs), []);
    } finally {
      kill(web);
    }
  });

  test("a requirement missing from the wheels fails fast, naming it", async () => {
    const res = await build("python", "python-app", {
      prepare: withWheels((dir) => appendFile(join(dir, "requirements.txt"), "requests==2.31.0\n")),
    });
    assert.equal(res.compile.code, 1);
    assert.match(res.compile.stderr, /^ ! {5}Package requests \(requests==2\.31\.0\) is not available offline/m);
    assert.ok(res.compileMs < 60_000);
  });

  test("a requirement that needs the network is refused before pip runs", async () => {
    const res = await build("python", "python-app", {
      prepare: withWheels((dir) => appendFile(join(dir, "requirements.txt"), "git+https://github.com/example/thing.git#egg=thing\n")),
    });
    assert.equal(res.compile.code, 1);
    assert.match(res.compile.stderr, /needs the network/);
    assert.doesNotMatch(res.compile.stdout, /Installing packages/);
  });

  test("--find-links lines of requirements.txt are honoured", async () => {
    const res = await build("python", "python-app", {
      prepare: async (dir) => {
        await cp(wheels, join(dir, "wheelhouse"), { recursive: true });
        await writeFile(join(dir, "requirements.txt"), "-f wheelhouse\ngunicorn\nquai-hello==1.0.0\n");
      },
    });
    assert.equal(res.compile.code, 0, res.log);
    assert.match(res.compile.stdout, /Successfully installed .*quai-hello-1\.0\.0/);
  });

  test("Pipfile.lock and pyproject.toml dependencies become requirements; VCS ones are refused", async () => {
    const inspect = join(buildpacks, "python/lib/inspect.py");
    const requirements = async (files: Record<string, string>) => {
      const dir = await mkdtemp(join(scratch, "req-"));
      for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
      const res = await run("/usr/bin/python3", ["-I", "-B", inspect, "requirements", dir, join(dir, "out.txt")], { env: { PATH } });
      const out = res.code === 0 && res.stdout.trim() ? await readFile(res.stdout.trim(), "utf8") : "";
      return { res, out };
    };
    const pipfile = await requirements({
      Pipfile: "",
      "Pipfile.lock": JSON.stringify({
        default: { flask: { version: "==3.0.0" }, uvloop: { version: "==0.19.0", markers: "sys_platform == 'linux'" }, mylib: { path: "./lib", editable: true } },
        develop: { pytest: { version: "==8.0.0" } },
      }),
    });
    assert.equal(pipfile.out, "flask==3.0.0\n-e ./lib\nuvloop==0.19.0 ; sys_platform == 'linux'\n");
    const pyproject = await requirements({ "pyproject.toml": '[project]\nname = "x"\nversion = "1"\ndependencies = ["gunicorn>=20", "quai-hello"]\n' });
    assert.equal(pyproject.out, "gunicorn>=20\nquai-hello\n");
    assert.equal((await requirements({ Pipfile: "" })).res.stdout.trim(), "Pipfile found without Pipfile.lock: commit Pipfile.lock (pipenv lock) or a requirements.txt");
    const vcs = await requirements({ "Pipfile.lock": JSON.stringify({ default: { thing: { git: "https://github.com/x/thing.git" } } }) });
    assert.equal(vcs.res.code, 1);
    assert.match(vcs.res.stdout, /thing comes from a VCS or URL/);
  });

  test("an unavailable Python version fails clearly", async () => {
    const res = await build("python", "python-app", {
      prepare: withWheels((dir) => writeFile(join(dir, "runtime.txt"), "python-3.9.18\n")),
    });
    assert.equal(res.compile.code, 1);
    assert.match(res.compile.stderr, /runtime\.txt asks for Python 3\.9\.18, but the available Python is 3\.11\.\d+/);
  });

  test("a Django project gets collectstatic and a wsgi default web process", async () => {
    const djangoApp = async (dir: string) => {
      await rm(join(dir, "app.py"));
      await appendFile(join(dir, "requirements.txt"), "django\n");
      await mkdir(join(dir, "mysite"));
      await writeFile(join(dir, "mysite/__init__.py"), "");
      await writeFile(join(dir, "mysite/settings.py"), "STATIC_ROOT = 'staticfiles'\n");
      await writeFile(join(dir, "mysite/wsgi.py"), "def application(environ, start_response):\n    raise NotImplementedError\n");
      // Records how the build called it; a real manage.py would hand over to Django.
      await writeFile(
        join(dir, "manage.py"),
        "import os, sys\nos.makedirs('staticfiles', exist_ok=True)\nopen('staticfiles/ran', 'w').write(' '.join(sys.argv[1:]) + ' ' + os.environ.get('SECRET_KEY', ''))\nprint('0 static files copied')\n",
      );
    };
    const res = await build("python", "python-app", { env: { SECRET_KEY: "s3cret" }, prepare: withWheels(djangoApp) });
    assert.equal(res.compile.code, 0, res.log);
    assert.match(res.compile.stdout, /^-----> Running Django's collectstatic$/m);
    assert.equal(await readFile(join(res.buildDir, "staticfiles/ran"), "utf8"), "collectstatic --noinput s3cret");
    assert.equal(webCommand(res.release), "gunicorn mysite.wsgi:application --bind 127.0.0.1:$PORT");

    const skipped = await build("python", "python-app", { env: { DISABLE_COLLECTSTATIC: "1" }, prepare: withWheels(djangoApp) });
    assert.equal(skipped.compile.code, 0, skipped.log);
    assert.doesNotMatch(skipped.compile.stdout, /collectstatic/);
    assert.ok(!existsSync(join(skipped.buildDir, "staticfiles/ran")));
  });
});
