// End to end with real buildpacks: the fixture apps pushed with the real git client, built in
// the sandbox, started and asked through the router. Built-ins (Node.js from the npm registry,
// PHP, Python, static), two built-ins combined, a third-party buildpack by path and by git URL,
// and the ways a build fails — each refusing the push and leaving the previous release serving.
import { after, before, describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, type RunResult } from "../src/core/run.ts";
import { commitAll, pythonWebApp, startPlatform, traversableTempDir, type TestPlatform } from "../src/testing/platform.ts";

const fixtures = new URL("fixtures/apps/", import.meta.url).pathname;
// Host buildpacks are copied under the scratch directory, the only one QUAI_BUILDPACK_DIRS allows
// (and one the apps' uids can read, wherever the checkout lives).
let customBuildpack = "";
const badBuildpack = (name: "compile-fails" | "compile-hangs" | "compile-oom") => join(scratch, "bad-buildpacks", name);

let scratch = "";

interface Deployment {
  id: string;
  status: string;
  error: string | null;
}

async function git(dir: string, args: string[]): Promise<RunResult> {
  const res = await run("git", ["-C", dir, ...args]);
  assert.equal(res.code, 0, `git ${args.join(" ")}: ${res.stderr}`);
  return res;
}

/** A new git work tree under the scratch directory holding `files` (and `fixture`'s files, if given). */
async function workTree(name: string, content: { fixture?: string; files?: Record<string, string> }): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(dir);
  await git(dir, ["init", "-q", "-b", "main"]);
  await replaceTree(dir, content);
  return dir;
}

/** Replaces the work tree's files (not .git) with `fixture`'s and `files`, and commits. */
async function replaceTree(dir: string, content: { fixture?: string; files?: Record<string, string> }): Promise<void> {
  for (const entry of await readdir(dir)) if (entry !== ".git") await rm(join(dir, entry), { recursive: true, force: true });
  if (content.fixture) await cp(join(fixtures, content.fixture), dir, { recursive: true });
  for (const [file, text] of Object.entries(content.files ?? {})) {
    await mkdir(join(dir, file, ".."), { recursive: true });
    await writeFile(join(dir, file), text);
  }
  await commitAll(dir, `tree ${content.fixture ?? Object.keys(content.files ?? {}).join(",")}`);
}

/** Creates an app. */
async function createApp(p: TestPlatform, app: string): Promise<void> {
  const res = await p.quai(["create", app]);
  assert.equal(res.code, 0, res.stderr);
}

/** Pushes and expects a live deployment; returns git's output (the build log) and how long it took. */
async function deploy(p: TestPlatform, app: string, dir: string): Promise<{ output: string; seconds: number }> {
  const started = performance.now();
  const push = await p.push(app, dir);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(push.code, 0, `push of ${app} refused:\n${explain(p, push)}`);
  assert.match(push.stderr, new RegExp(`${app} is live at http://${app}\\.localhost:\\d+`));
  return { output: push.stderr, seconds };
}

/** git's whole answer and the end of the server's log, for a failed assertion. */
function explain(p: TestPlatform, push: RunResult): string {
  return `git exit code ${push.code}\n--- stdout\n${push.stdout}--- stderr\n${push.stderr}--- server log (end)\n${p.server.log.slice(-30).join("\n")}`;
}

async function deployments(p: TestPlatform, app: string): Promise<Deployment[]> {
  const res = await p.quai(["--app", app, "deployments", "--json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Deployment[];
}

/**
 * Pushes a build that must fail: git exits non-zero, the pusher reads `says`, the deployment
 * ends `build-error` with `error`, and the app still answers `serving.body` at `serving.path`.
 */
async function expectBuildError(p: TestPlatform, app: string, dir: string, expected: { says: RegExp; error: RegExp }, serving: { path: string; body: string }): Promise<string> {
  const push = await p.push(app, dir);
  const output = push.stderr;
  assert.notEqual(push.code, 0, `the push was accepted:\n${explain(p, push)}`);
  assert.match(push.stdout, /\[remote rejected\] \(pre-receive hook declined\)/, `the hook did not refuse the push:\n${explain(p, push)}`);
  assert.match(output, expected.says);
  assert.match(output, /remote: +!\s+Deployment build-error; the previous release keeps serving\./);
  const [latest] = await deployments(p, app);
  assert.equal(latest?.status, "build-error", JSON.stringify(latest));
  assert.match(latest?.error ?? "", expected.error);
  const res = await p.get(app, serving.path);
  assert.equal(res.status, 200, res.body);
  assert.equal(res.body, serving.body, "the previous release keeps serving");
  return output;
}

/** Wheels of python-app's dependencies (PyPI is out of reach): quai-hello, and gunicorn from Debian's module. */
async function pythonWheels(): Promise<string> {
  const wheels = join(scratch, "wheels");
  const src = join(scratch, "wheel-src");
  const env = { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: scratch };
  await cp(join(fixtures, "python-app/packages/quai-hello"), join(src, "quai-hello"), { recursive: true });
  const version = await run("/usr/bin/python3", ["-c", "import gunicorn; print(gunicorn.__version__)"], { env });
  assert.equal(version.code, 0, version.stderr);
  await cp("/usr/lib/python3/dist-packages/gunicorn", join(src, "gunicorn/gunicorn"), { recursive: true, filter: (f) => !f.includes("__pycache__") });
  await writeFile(
    join(src, "gunicorn/pyproject.toml"),
    `[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "gunicorn"\nversion = "${version.stdout.trim()}"\n# gunicorn 20 imports pkg_resources.\ndependencies = ["setuptools"]\n\n[project.scripts]\ngunicorn = "gunicorn.app.wsgiapp:run"\n\n[tool.setuptools.packages.find]\ninclude = ["gunicorn*"]\n`,
  );
  const args = ["-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check", "-w", wheels, join(src, "quai-hello"), join(src, "gunicorn")];
  const res = await run("/usr/bin/python3", args, { env });
  assert.equal(res.code, 0, res.stderr);
  return wheels;
}

function timing(t: TestContext, what: string, seconds: number): void {
  const line = `${what}: ${seconds.toFixed(1)} s`;
  console.log(line);
  t.diagnostic(line);
}

let p: TestPlatform;

before(async () => {
  scratch = await traversableTempDir("quai-bp-e2e-");
  customBuildpack = join(scratch, "custom-buildpack");
  await cp(join(fixtures, "custom-buildpack/buildpack"), customBuildpack, { recursive: true });
  await cp(join(fixtures, "bad-buildpacks"), join(scratch, "bad-buildpacks"), { recursive: true });
  p = await startPlatform({ QUAI_BUILDPACK_DIRS: scratch });
});

after(async () => {
  await p?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("built-in buildpacks through git push", () => {
  let express = { dir: "", output: "" };

  it("deploys express: npm ci from the registry, build script, devDependencies pruned, its start script", async (t) => {
    await createApp(p, "express");
    const dir = await workTree("express", { fixture: "express" });
    const first = await deploy(p, "express", dir);
    express = { dir, output: first.output };
    timing(t, "express first push (npm ci from the registry)", first.seconds);
    assert.match(first.output, /remote: -----> Node\.js app detected/);
    assert.match(first.output, /Running npm ci/);
    assert.match(first.output, /wrote build\/info\.json/, "the build script ran");
    assert.match(first.output, /Pruning devDependencies/);
    assert.match(first.output, /Procfile declares types -> web/);
    const home = await p.get("express");
    assert.equal(home.status, 200, home.body);
    assert.equal(home.body, "hello from express v1\n");
    const health = JSON.parse((await p.get("express", "/health")).body) as { ok: boolean; nodeEnv: string; builtAt: string };
    assert.equal(health.ok, true);
    assert.equal(health.nodeEnv, "production");
    assert.ok(Date.parse(health.builtAt) > Date.now() - 10 * 60_000, "build/info.json comes from this build");
    const ps = await p.quai(["--app", "express", "ps", "--json"]);
    assert.equal(ps.code, 0, ps.stderr);
    const web = (JSON.parse(ps.stdout) as { formation: { name: string; command: string | null }[] }).formation.find((f) => f.name === "web");
    assert.equal(web?.command, "node server.js", "the start script, run without npm");
    const modules = await p.quai(["--app", "express", "run", "node", "-e", "const fs = require('fs'); console.log(['express', 'kleur'].map((m) => m + '=' + fs.existsSync('node_modules/' + m)).join(' '))"]);
    assert.equal(modules.code, 0, modules.stderr);
    assert.equal(modules.stdout.trim(), "express=true kleur=false", "devDependencies pruned from the slug");
  });

  it("builds express with the platform's Node.js, not a download", () => {
    assert.ok(express.output, "express was deployed");
    assert.match(express.output, /Using Node\.js \S+, the platform's runtime/);
    assert.doesNotMatch(express.output, /Downloading Node\.js/);
  });

  it("redeploys express after a code-only change with node_modules from the build cache", async (t) => {
    assert.ok(express.dir, "express was deployed");
    const server = join(express.dir, "server.js");
    await writeFile(server, (await readFile(server, "utf8")).replace("express v1", "express v2"));
    await commitAll(express.dir, "v2");
    const second = await deploy(p, "express", express.dir);
    timing(t, "express code-only redeploy (node_modules from the build cache)", second.seconds);
    assert.match(second.output, /Reusing node_modules from the build cache: package-lock\.json and Node\.js \S+ unchanged/);
    assert.doesNotMatch(second.output, /Running npm ci/);
    assert.equal((await p.get("express")).body, "hello from express v2\n");
  });

  it("builds a second app with the same lockfile from the platform's npm store, with the registry out of reach", async () => {
    assert.ok(express.dir, "express was deployed");
    await createApp(p, "express-twin");
    // Nothing answers there: every package must come from the store the express builds filled.
    const set = await p.quai(["--app", "express-twin", "env-set", "NPM_CONFIG_REGISTRY=http://127.0.0.1:9/"]);
    assert.equal(set.code, 0, set.stderr);
    const { output } = await deploy(p, "express-twin", await workTree("express-twin", { fixture: "express" }));
    assert.match(output, /(\d+) of the \1 packages package-lock\.json names found in the platform's npm store/);
    assert.match(output, /Running npm ci/);
    assert.equal((await p.get("express-twin")).body, "hello from express v1\n");
  });

  it("deploys php-app: Composer path repository, php-fpm behind nginx", async () => {
    await createApp(p, "php-app");
    const { output } = await deploy(p, "php-app", await workTree("php-app", { fixture: "php-app" }));
    assert.match(output, /remote: -----> PHP app detected/);
    assert.match(output, /Installing dependencies with Composer/);
    const res = await p.get("php-app", "/some/route");
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /^hello from php$/m);
    assert.match(res.body, /^uri: \/some\/route$/m);
    assert.match(res.body, /^sapi: fpm-fcgi$/m);
    assert.equal((await p.get("php-app", "/static.txt")).body, "static file\n");
  });

  it("deploys python-app with vendored wheels, served by gunicorn", async () => {
    const wheels = await pythonWheels();
    await createApp(p, "python-app");
    const dir = await workTree("python-app", { fixture: "python-app" });
    await cp(wheels, join(dir, "vendor/wheels"), { recursive: true });
    await commitAll(dir, "vendored wheels");
    const { output } = await deploy(p, "python-app", dir);
    assert.match(output, /remote: -----> Python app detected/);
    assert.match(output, /Successfully installed .*gunicorn-/);
    const res = await p.get("python-app", "/hello");
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, "hello from python\npath: /hello\nenv: -\n");
  });

  it("deploys static-site, served by nginx", async () => {
    await createApp(p, "static-site");
    const { output } = await deploy(p, "static-site", await workTree("static-site", { fixture: "static-site" }));
    assert.match(output, /remote: -----> Static HTML app detected/);
    const index = await p.get("static-site");
    assert.equal(index.status, 200);
    assert.match(index.body, /<h1>hello from a static site<\/h1>/);
    assert.equal(index.headers["cache-control"], "no-cache", "the static buildpack's nginx rules apply");
    const css = await p.get("static-site", "/css/site.css");
    assert.equal(css.status, 200);
    assert.equal((await p.get("static-site", "/.git/config")).status, 404);
  });

  it("runs the buildpacks of .buildpacks in order: npm builds a PHP app's assets, PHP serves them", async () => {
    await createApp(p, "dialog-like");
    const { output } = await deploy(p, "dialog-like", await workTree("dialog-like", { fixture: "dialog-like" }));
    assert.match(output, /Using the 2 buildpacks listed in \.buildpacks/);
    const nodeAt = output.indexOf("Running buildpack Node.js");
    const phpAt = output.indexOf("Running buildpack PHP");
    assert.ok(nodeAt >= 0 && phpAt > nodeAt, "Node.js runs, then PHP");
    assert.match(output, /wrote public\/build\/app\.[0-9a-f]{8}\.css/);
    const page = await p.get("dialog-like");
    assert.equal(page.status, 200, page.body);
    assert.match(page.body, /^hello from dialog-like \(php\)$/m);
    assert.match(page.body, /^sapi: fpm-fcgi$/m, "the last buildpack's web process (PHP) runs");
    const stylesheet = /^stylesheet: (\/build\/app\.[0-9a-f]{8}\.css)$/m.exec(page.body)?.[1];
    assert.ok(stylesheet, `PHP found the npm build's manifest:\n${page.body}`);
    const css = await p.get("dialog-like", stylesheet);
    assert.equal(css.status, 200);
    assert.match(css.body, /^\/\* built by npm on Node\.js v\d+\.\d+\.\d+ \*\/\n/);
    assert.match(css.body, /^body \{ font-family: sans-serif; \}$/m);
  });
});

describe("third-party buildpacks", () => {
  let dir = "";
  let bare = "";
  // Shell syntax in a variable stays data (no $: values may refer to other variables).
  const greeting = `"bonjour" & <b>; \`id\` \\1`;

  before(async () => {
    // The fixture buildpack as a bare repository, tagged v1, reachable at a file:// URL.
    const src = await workTree("greeting-buildpack", {});
    await cp(customBuildpack, src, { recursive: true });
    await commitAll(src, "greeting buildpack");
    await git(src, ["tag", "v1"]);
    bare = join(scratch, "greeting-buildpack.git");
    await git(scratch, ["clone", "-q", "--bare", src, bare]);
    await createApp(p, "greeter");
    dir = await workTree("greeter", { fixture: "custom-buildpack/app", files: { ".buildpacks": `${customBuildpack}\n` } });
  });

  const greets = async (body: string) => {
    const sha = (await git(dir, ["rev-parse", "HEAD"])).stdout.trim();
    const res = await p.get("greeter", "/greeting.txt");
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, `${body} from a custom buildpack\n`);
    assert.equal((await p.get("greeter", "/version.txt")).body, `${sha}\n`, "this push was built");
  };

  it("builds with a buildpack at a host path named in .buildpacks, reading the app's variables", async () => {
    assert.equal((await p.quai(["--app", "greeter", "env-set", `GREETING=${greeting}`])).code, 0);
    const { output } = await deploy(p, "greeter", dir);
    assert.match(output, /Using the 1 buildpack listed in \.buildpacks/);
    assert.match(output, /-----> Greeting buildpack/);
    await greets(greeting);
  });

  it("builds with a buildpack at a file:// git URL named in .buildpacks", async () => {
    await writeFile(join(dir, ".buildpacks"), `file://${bare}\n`);
    await commitAll(dir, "buildpack from git");
    const { output } = await deploy(p, "greeter", dir);
    assert.match(output, new RegExp(`Fetching file://${bare}`));
    assert.match(output, /-----> Greeting buildpack/);
    await greets(greeting);
  });

  it("builds with BUILDPACK_URL: a file:// git URL with a #ref, then a host path", async () => {
    await rm(join(dir, ".buildpacks"));
    await commitAll(dir, "no .buildpacks");
    assert.equal((await p.quai(["--app", "greeter", "env-set", `BUILDPACK_URL=file://${bare}#v1`, "GREETING=salut"])).code, 0);
    const byUrl = await deploy(p, "greeter", dir);
    assert.match(byUrl.output, /Using the buildpack in BUILDPACK_URL/);
    assert.match(byUrl.output, new RegExp(`Fetching file://${bare}#v1`));
    await greets("salut");

    assert.equal((await p.quai(["--app", "greeter", "env-set", `BUILDPACK_URL=${customBuildpack}`, "GREETING=hola"])).code, 0);
    await commitAll(dir, "path in BUILDPACK_URL");
    const byPath = await deploy(p, "greeter", dir);
    assert.match(byPath.output, /Using the buildpack in BUILDPACK_URL/);
    assert.doesNotMatch(byPath.output, /Fetching/);
    await greets("hola");
  });
});

describe("failed builds refuse the push and keep the previous release serving", () => {
  let dir = "";
  const v1 = { path: "/", body: "v1" };

  before(async () => {
    await createApp(p, "broken");
    dir = await workTree("broken", { files: pythonWebApp("v1") });
    await deploy(p, "broken", dir);
  });

  it("a package.json that is not JSON: names the file and the parse error", async () => {
    await replaceTree(dir, { fixture: "bad-package-json" });
    await expectBuildError(p, "broken", dir, { says: /package\.json is not valid JSON: .*(Expected|Unexpected)/, error: /^Node\.js failed \(bin\/compile exited with 1\)$/ }, v1);
  });

  it("a package-lock.json missing a dependency: shows npm ci's error", async () => {
    await replaceTree(dir, { fixture: "missing-lock-package" });
    const output = await expectBuildError(p, "broken", dir, { says: /Missing: kleur@/, error: /^Node\.js failed \(bin\/compile exited with 1\)$/ }, v1);
    assert.match(output, /package-lock\.json does not match package\.json/);
  });

  it("a buildpack whose compile exits 1", async () => {
    await replaceTree(dir, { files: { ...pythonWebApp("v2"), ".buildpacks": `${badBuildpack("compile-fails")}\n` } });
    const output = await expectBuildError(p, "broken", dir, { says: /this buildpack always fails/, error: /^compile-fails failed \(bin\/compile exited with 1\)$/ }, v1);
    assert.match(output, /compile-fails failed \(bin\/compile exited with 1\)/);
  });

  it("a .buildpacks line that is neither a URL nor a path", async () => {
    await replaceTree(dir, { files: { ...pythonWebApp("v2"), ".buildpacks": "# ours\ngithub.com/acme/buildpack\n" } });
    const notABuildpack = /\.buildpacks line 2 is not a buildpack: "github\.com\/acme\/buildpack" \(expected an https:\/\/ or git:\/\/ URL, an absolute path/;
    await expectBuildError(p, "broken", dir, { says: notABuildpack, error: notABuildpack }, v1);
  });

  it("nothing detectable and no Procfile: lists what was tried", async () => {
    await replaceTree(dir, { files: { "README.txt": "nothing to build\n" } });
    const output = await expectBuildError(p, "broken", dir, { says: /No buildpack could build this app\. Tried, in order:/, error: /^No buildpack could build this app/ }, v1);
    for (const tried of ["Node.js: looks for package.json", "PHP: looks for composer.json or index.php", "Python: looks for requirements.txt", "Static site: looks for index.html", "Procfile: looks for a Procfile"]) {
      assert.ok(output.includes(tried), `"${tried}" missing from:\n${output}`);
    }
  });

  it("a build that allocates past its memory limit: says it ran out of memory", async () => {
    await replaceTree(dir, { files: { ...pythonWebApp("v2"), ".buildpacks": `${badBuildpack("compile-oom")}\n` } });
    const outOfMemory = /compile-oom compile ran out of memory \(build limit L\) and was killed/;
    const output = await expectBuildError(p, "broken", dir, { says: outOfMemory, error: outOfMemory }, v1);
    assert.doesNotMatch(output, /still alive/);
  });
});

describe("a build past QUAI_BUILD_TIMEOUT", () => {
  let slow: TestPlatform;
  let dir = "";

  before(async () => {
    slow = await startPlatform({ QUAI_BUILD_TIMEOUT: "5", QUAI_BUILDPACK_DIRS: scratch });
    await createApp(slow, "stuck");
    dir = await workTree("stuck", { files: pythonWebApp("v1") });
    await deploy(slow, "stuck", dir);
  });

  after(async () => {
    await slow?.close();
  });

  it("is stopped, says it timed out, and the previous release keeps serving", async (t) => {
    await replaceTree(dir, { files: { ...pythonWebApp("v2"), ".buildpacks": `${badBuildpack("compile-hangs")}\n` } });
    const timedOut = /build timed out after 5 s \(compile-hangs compile was stopped\)/;
    const started = performance.now();
    const output = await expectBuildError(slow, "stuck", dir, { says: timedOut, error: timedOut }, { path: "/", body: "v1" });
    timing(t, "hanging build refused", (performance.now() - started) / 1000);
    assert.match(output, /waiting for a server that never answers/);
    assert.ok(performance.now() - started < 30_000, "stopped near the limit");
  });
});
