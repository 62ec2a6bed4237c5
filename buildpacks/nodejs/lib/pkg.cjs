#!/usr/bin/env node
// JSON and semver questions the Node.js buildpack's bash scripts ask (package.json fields,
// version resolution). CommonJS without dependencies of its own, so that any Node.js >= 12 runs
// it; semver comes from the system npm (QUAI_SEMVER = path of npm's bundled `semver` module).
"use strict";

// lock-plan's copies run on libuv's thread pool, several at a time (read before its first use).
const COPIES_AT_ONCE = 16;
process.env.UV_THREADPOOL_SIZE = String(COPIES_AT_ONCE);
const fs = require("fs");

const [, , cmd, ...args] = process.argv;

function fail(message, code = 1) {
  process.stderr.write(message + "\n");
  process.exit(code);
}

function semver() {
  const path = process.env.QUAI_SEMVER;
  if (!path) fail("internal error: QUAI_SEMVER is not set");
  return require(path);
}

/** Reads and parses a JSON file; a syntax error names the file and the parser's message. */
function readJson(file, label) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    fail(`Cannot read ${label}: ${e.message}`);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (e) {
    let where = "";
    const pos = /at position (\d+)/.exec(e.message);
    if (pos && !/line \d+/.test(e.message)) {
      const before = text.slice(0, Number(pos[1])).split("\n");
      where = ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
    }
    fail(`${label} is not valid JSON: ${e.message}${where}`);
  }
}

function readPackage(file) {
  const pkg = readJson(file, "package.json");
  if (pkg === null || typeof pkg !== "object" || Array.isArray(pkg)) fail("package.json must contain a JSON object");
  return pkg;
}

function get(obj, dotted) {
  let v = obj;
  for (const k of dotted.split(".")) {
    if (v === null || typeof v !== "object" || !Object.prototype.hasOwnProperty.call(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

/** Stable JSON: object keys sorted, so that equal content gives equal cache keys. */
function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }
  return JSON.stringify(v === undefined ? null : v);
}

function readStdin() {
  try {
    return fs.readFileSync(0, "utf8");
  } catch {
    return "";
  }
}

/** The versions an `npm view <pkg>@<range> version --json` printed (a string or an array). */
function versionsFrom(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return { error: text.trim() || "npm printed nothing" };
  }
  if (typeof data === "string") return { versions: [data] };
  if (Array.isArray(data)) return { versions: data.filter((v) => typeof v === "string") };
  if (data && typeof data === "object" && data.error) {
    return { error: data.error.summary || data.error.code || "npm view failed", code: data.error.code };
  }
  return { error: "unexpected answer from npm view" };
}

/** Lines "key=value" for the shell; values never hold a newline. */
function facts(lines) {
  return Object.entries(lines).map(([k, v]) => `${k}=${String(v ?? "").replace(/[\r\n]+/g, " ")}\n`).join("");
}

function stringField(pkg, dotted) {
  const v = get(pkg, dotted);
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") fail(`package.json: "${dotted}" must be a string, got ${JSON.stringify(v)}`);
  return v.trim();
}

/** The package paths (node_modules/...) a lockfile's `packages` marks "dev": true: what `npm prune --omit=dev` removes. */
function devPaths(packages) {
  return Object.keys(packages).filter((k) => k.startsWith("node_modules/") && !k.split("/").includes("..") && packages[k] && packages[k].dev === true);
}

/** `stat(file)`, or null when it fails (no such file). */
function statOrNull(stat, file) {
  try {
    return stat(file);
  } catch {
    return null;
  }
}

/**
 * What the build needs from an npm lockfile. Copies from the platform's shared npm store
 * (STORE/content-v2, when there is one) into the app's npm cache (CACHE/_cacache/content-v2) the
 * tarballs the lockfile names by a sha512 integrity and the cache lacks (npm checks each against
 * the lockfile); `copied` also counts those the platform linked there before the build. And
 * writes to DEV_PATHS the package paths the lockfile marks "dev": true (what `npm prune
 * --omit=dev` removes after `npm ci`), unless the lockfile is too old to say.
 */
async function lockPlan(lockFile, store, cache, devPathsFile) {
  let lock;
  try {
    lock = JSON.parse(fs.readFileSync(lockFile, "utf8").replace(/^\uFEFF/, ""));
  } catch {
    // Unreadable: npm itself will say what is wrong with it.
    return { copied: 0, named: 0 };
  }
  const path = require("path");
  const digests = require("./lock-digests.cjs").lockfileDigests(lock);
  const packages = lock && lock.lockfileVersion >= 2 && lock.packages && typeof lock.packages === "object" ? lock.packages : undefined;
  const copies = [];
  // Files the platform linked into the cache before the build (the store's own, same inode).
  let linked = 0;
  if (fs.existsSync(path.join(store, "content-v2"))) {
    for (const hex of digests) {
      const rel = path.join("content-v2", "sha512", hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
      const from = statOrNull(fs.statSync, path.join(store, rel));
      if (!from) continue;
      const to = path.join(cache, "_cacache", rel);
      const there = statOrNull(fs.lstatSync, to);
      if (!there) copies.push({ from: path.join(store, rel), to });
      else if (there.ino === from.ino && there.dev === from.dev) linked++;
    }
  }
  if (packages) {
    fs.writeFileSync(devPathsFile, devPaths(packages).map((k) => k + "\n").join(""));
  }
  // Several copies at a time: each is mostly waiting on the disk (a directory or two, a file).
  let copied = 0;
  const copyNext = async () => {
    for (let job = copies.pop(); job; job = copies.pop()) {
      try {
        await fs.promises.mkdir(path.dirname(job.to), { recursive: true });
        await fs.promises.copyFile(job.from, job.to);
        copied++;
      } catch {
        // A file npm will then download.
      }
    }
  };
  await Promise.all(Array.from({ length: COPIES_AT_ONCE }, copyNext));
  return { copied: copied + linked, named: digests.length };
}

/** The start script when `node <file> [args]` can run it without npm (see direct-start), else "". */
function directStart(scripts) {
  const start = typeof scripts.start === "string" ? scripts.start.trim() : "";
  return /^node( [A-Za-z0-9_./=:@%+-]+)+$/.test(start) && !scripts.prestart && !scripts.poststart ? start : "";
}

/** The newest platform Node.js version in RANGE ("" = any): rc 0 with it, 1 if none, 2 if RANGE is not a range. */
function nodeChoice(range, versions) {
  const s = semver();
  if (range && s.validRange(range) === null) return { rc: 2 };
  const valid = versions.filter((v) => s.valid(v));
  const best = range ? s.maxSatisfying(valid, range) : s.rsort(valid)[0];
  return best ? { rc: 0, version: best } : { rc: 1 };
}

/** "system VERSION" when the system npm suits this Node.js (and engines.npm, a valid range or ""), else "fetch SPEC". */
function npmChoice(nodeVersion, npmRoot, enginesNpm) {
  const s = semver();
  const npmPkg = readJson(npmRoot + "/package.json", "npm's package.json");
  const runsOnNode = !npmPkg.engines || !npmPkg.engines.node || s.satisfies(nodeVersion, npmPkg.engines.node);
  if (runsOnNode && (!enginesNpm || s.satisfies(npmPkg.version, enginesNpm))) return `system ${npmPkg.version}`;
  if (enginesNpm) return `fetch ${enginesNpm}`;
  const spec = s.gte(nodeVersion, "18.17.0") ? "10" : s.gte(nodeVersion, "14.17.0") ? "9" : s.gte(nodeVersion, "12.13.0") ? "8" : "6";
  return `fetch ${spec}`;
}

async function main() {
  switch (cmd) {
    // facts FILE [SYSTEM_NPM_ROOT VERSION...]: everything the build needs to know about
    // package.json, in one process start (a Node.js start costs ~0.1 s: asking field by field made
    // a redeploy a second slower). Given the system npm and the platform's Node.js versions, also
    // what node-choice and npm-choice would answer (node_choice_rc 0, 1 or 2, as node-choice exits).
    case "facts": {
      const pkg = readPackage(args[0]);
      const [npmRoot, ...platformVersions] = args.slice(1);
      const pm = get(pkg, "packageManager");
      let packageManager = "";
      if (pm !== undefined && pm !== null) {
        const m = typeof pm === "string" ? /^(npm|yarn|pnpm)@([0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.-]*)(\+.*)?$/.exec(pm.trim()) : null;
        if (!m) fail(`package.json: "packageManager" must look like "pnpm@9.12.0" (npm, yarn or pnpm), got ${JSON.stringify(pm)}`);
        packageManager = `${m[1]} ${m[2]}`;
      }
      const scripts = pkg.scripts && typeof pkg.scripts === "object" ? pkg.scripts : {};
      const wanted = ["heroku-prebuild", "preinstall", "install", "postinstall", "prepare", "heroku-postbuild", "build", "heroku-cleanup", "start"];
      const keys = ["dependencies", "devDependencies", "optionalDependencies", "peerDependencies",
        "bundleDependencies", "bundledDependencies", "overrides", "resolutions", "workspaces", "pnpm"];
      const picked = {};
      for (const k of keys) if (pkg[k] !== undefined) picked[k] = pkg[k];
      const enginesNode = stringField(pkg, "engines.node");
      const enginesNpm = stringField(pkg, "engines.npm");
      const choices = {};
      if (npmRoot) {
        const node = nodeChoice(enginesNode, platformVersions);
        choices.node_choice = node.version || "";
        choices.node_choice_rc = node.rc;
        // npm-choice itself reports a bad engines.npm, in its turn.
        choices.npm_choice = node.version && (!enginesNpm || semver().validRange(enginesNpm) !== null) ? npmChoice(node.version, npmRoot, enginesNpm) : "";
      }
      // Asked for (LOCK_PLAN_OUT set): the npm lockfile's plan too, saving the build a Node.js start.
      const plan = {};
      if (process.env.LOCK_PLAN_OUT) {
        const dir = require("path").dirname(args[0]);
        const lockName = ["package-lock.json", "npm-shrinkwrap.json"].find((f) => fs.existsSync(dir + "/" + f));
        if (lockName) {
          const { copied, named } = await lockPlan(dir + "/" + lockName, process.env.LOCK_PLAN_STORE || "", process.env.LOCK_PLAN_CACHE || "", process.env.LOCK_PLAN_OUT);
          plan.lock_plan_lockfile = lockName;
          plan.lock_plan = `${copied} ${named}`;
        }
      }
      process.stdout.write(facts({
        ...plan,
        ...choices,
        // The default web process as far as package.json decides it (bin/release's rules).
        web_process: directStart(scripts) || (scripts.start !== undefined && scripts.start !== null ? "npm start" : ""),
        engines_node: enginesNode,
        engines_npm: enginesNpm,
        package_manager: packageManager,
        workspaces: pkg.workspaces ? 1 : 0,
        scripts: wanted.filter((n) => typeof scripts[n] === "string").join(" "),
        deps_hash: require("crypto").createHash("sha256").update(canonical(picked)).digest("hex"),
      }));
      break;
    }
    // node-choice RANGE VERSION...: the newest platform VERSION in RANGE ("" = any; exit 1 if
    // none), and whether RANGE is valid at all (exit 2 if not).
    case "node-choice": {
      const [range, ...versions] = args;
      const { rc, version } = nodeChoice(range, versions);
      if (rc !== 0) process.exit(rc);
      process.stdout.write(version);
      break;
    }
    // npm-choice NODE_VERSION SYSTEM_NPM_ROOT ENGINES_NPM: "system VERSION" when the system npm
    // suits this Node.js (and engines.npm), else "fetch SPEC" for the npm to download.
    case "npm-choice": {
      const [nodeVersion, npmRoot, enginesNpm] = args;
      if (enginesNpm && semver().validRange(enginesNpm) === null) fail(`engines.npm "${enginesNpm}" in package.json is not a semver range.`);
      process.stdout.write(npmChoice(nodeVersion, npmRoot, enginesNpm));
      break;
    }
    // pruned FULL_LOCK PRUNED_LOCK: the package paths (node_modules/...) that `npm prune` removed,
    // from npm's hidden lockfiles before and after.
    case "pruned": {
      const before = readJson(args[0], "node_modules/.package-lock.json").packages || {};
      const after = readJson(args[1], "node_modules/.package-lock.json").packages || {};
      const removed = Object.keys(before).filter((k) => k.startsWith("node_modules/") && !(k in after) && !k.split("/").includes(".."));
      process.stdout.write(removed.map((k) => k + "\n").join(""));
      break;
    }
    // lock-plan LOCKFILE STORE CACHE DEV_PATHS: see lockPlan; prints "COPIED NAMED".
    case "lock-plan": {
      const { copied, named } = await lockPlan(args[0], args[1], args[2], args[3]);
      process.stdout.write(`${copied} ${named}`);
      break;
    }
    // prune-dev HIDDEN_LOCK OUT: what `npm prune --omit=dev` does, read from npm's own flags: the
    // package paths the hidden lockfile (node_modules/.package-lock.json) marks "dev": true are
    // printed, and the hidden lockfile without them is written to OUT. Exit 1 when the lockfile is
    // too old to carry the flags (lockfileVersion 1): npm prune must do it then.
    case "prune-dev": {
      const lock = readJson(args[0], "node_modules/.package-lock.json");
      if (!lock || typeof lock !== "object" || !(lock.lockfileVersion >= 2) || !lock.packages || typeof lock.packages !== "object") process.exit(1);
      const removed = devPaths(lock.packages);
      for (const path of removed) delete lock.packages[path];
      fs.writeFileSync(args[1], JSON.stringify(lock, null, 2) + "\n");
      process.stdout.write(removed.map((k) => k + "\n").join(""));
      break;
    }
    // direct-start FILE: prints the start script when it is a plain `node <file> [args]` with no
    // prestart/poststart hook and nothing for a shell to interpret, so the web process can run it
    // without npm (a second faster, and SIGTERM reaches node itself); exit 1 otherwise.
    case "direct-start": {
      const start = directStart(readPackage(args[0]).scripts || {});
      if (!start) process.exit(1);
      process.stdout.write(start);
      break;
    }
    // has FILE PATH: exit 0 when the (dotted) field exists and is not null.
    case "has": {
      const v = get(readPackage(args[0]), args[1]);
      process.exit(v === undefined || v === null ? 1 : 0);
      break;
    }
    // pick RANGE < npm-view-json: prints the newest version; exit 2 when nothing matches, 3 when
    // npm failed otherwise (its message on stderr).
    case "pick": {
      const s = semver();
      const res = versionsFrom(readStdin());
      if (res.code === "E404") process.exit(2);
      if (res.error) fail(res.error, 3);
      const stable = res.versions.filter((v) => s.valid(v) && s.prerelease(v) === null);
      const pool = stable.length > 0 ? stable : res.versions.filter((v) => s.valid(v));
      const best = args[0] ? s.maxSatisfying(pool, args[0], { includePrerelease: false }) || s.rsort(pool)[0] : s.rsort(pool)[0];
      if (!best) process.exit(2);
      process.stdout.write(best);
      break;
    }
    // majors < npm-view-versions-json: prints the major lines with a stable release ("0.10, ..., 24").
    case "majors": {
      const s = semver();
      const res = versionsFrom(readStdin());
      if (res.error) fail(res.error, 3);
      const lines = new Map();
      for (const v of res.versions) {
        if (!s.valid(v) || s.prerelease(v) !== null) continue;
        const line = s.major(v) === 0 ? `0.${s.minor(v)}` : String(s.major(v));
        const key = s.major(v) * 1000 + (s.major(v) === 0 ? s.minor(v) : 0);
        lines.set(key, line);
      }
      process.stdout.write([...lines.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]).join(", "));
      break;
    }
    default:
      fail("usage: pkg.cjs facts|node-choice|npm-choice|pick|majors|pruned|prune-dev|lock-plan|direct-start|has ...");
  }
}

main().catch((err) => fail(`internal error: ${err && err.stack ? err.stack : err}`));
