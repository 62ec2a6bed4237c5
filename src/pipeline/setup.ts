// Prepares the runtime root at server start: directory modes every app uid can traverse, the
// built-in buildpacks, the container launcher, and the Node.js and npm runtimes Quai offers to builds.
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../core/run.ts";
import { QuaiError } from "../core/errors.ts";
import type { RuntimePaths } from "./context.ts";
import { PRESTART_PREFIX, RECEIVED_PREFIX, TRASH_PREFIX } from "./build.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The launcher every container starts with: sources the buildpacks' .profile.d scripts (as
 * Heroku does), then runs a Procfile line with bash (`--shell "line"`) or an argv as given.
 */
const launcher = `#!/bin/bash
# Quai's container launcher (mounted read-only at /quai/bin/launch).
cd /app || exit 1
export HOME=/app
for f in /app/.profile.d/*.sh; do
  if [ -r "$f" ]; then . "$f"; fi
done
if [ "$1" = "--shell" ]; then
  # A line that is one plain command (words of ordinary characters, with $VAR and \${VAR}) runs
  # from this shell, as bash -c would run it, without a second bash start (~5 ms). Any other line
  # (quotes, operators, redirections, globs, a leading VAR=value, a shell builtin) goes to bash -c.
  quai_line=$2
  set --
  quai_chars='[A-Za-z0-9_./:=@%+,-]*'
  quai_var='(\\$[A-Za-z_][A-Za-z0-9_]*|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\})'
  quai_plain="^ *([A-Za-z0-9_./+-]+)( +$quai_chars($quai_var$quai_chars)*)* *\\$"
  if [[ $quai_line =~ $quai_plain ]] && ! help -d "\${BASH_REMATCH[1]}" >/dev/null 2>&1 && ! declare -F "\${BASH_REMATCH[1]}" >/dev/null; then
    unset quai_chars quai_var quai_plain
    BASH_ARGV0=/bin/bash
    eval "exec $quai_line"
  fi
  exec /bin/bash -c "$quai_line"
fi
# An argv (quai run): a program that is not on PATH is said as a shell says it, not as exec does.
case $1 in
  */*) ;;
  *) if ! command -v -- "$1" >/dev/null; then echo "$1: command not found" >&2; exit 127; fi ;;
esac
exec "$@"
`;

/**
 * The build runner (mounted read-only at /quai/bin/build in builds, the built-in buildpacks at
 * /buildpacks): with --gated, waits for a line on stdin first (see `prestartRunner`); then
 * bin/detect of each built-in named (`name:Title`), in order; the first that accepts
 * the app runs bin/compile, then bin/release, all in one sandbox. The step under way is in
 * /quai/build/.quai-step ("detect|compile|release|done NAME"), the release's YAML goes to
 * /quai/build/.quai-release.yml (both outside /app, so not in the slug). Exit 100: no buildpack
 * accepted the app; otherwise the failing step's own exit code.
 */
const buildRunner = `#!/bin/bash
# Quai's build runner (see src/pipeline/setup.ts).
set -u
if [ "\${1:-}" = --gated ]; then
  # Started ahead of its build (a push under way): says it is up, then waits for the control
  # plane's word, a line on stdin, that the app and its cache are in place. The line is the
  # commit (SOURCE_VERSION), unknown when the sandbox started. End of input: not needed after all.
  shift
  echo ready
  IFS= read -r SOURCE_VERSION || exit 125
  export SOURCE_VERSION
  cd /app || exit 1
fi
quai_step=/quai/build/.quai-step
# The built-ins' bin/detect and bin/release are short bash scripts: sourced in a subshell (a
# fork) rather than run (a fork, an exec and a bash start each), with the runner's own names
# prefixed so that they cannot show through.
for quai_spec in "$@"; do
  quai_name="\${quai_spec%%:*}" quai_title="\${quai_spec#*:}"
  quai_bp="/buildpacks/$quai_name"
  printf 'detect %s\n' "$quai_name" >"$quai_step"
  if quai_said="$(. "$quai_bp/bin/detect" /app 2>/dev/null)"; then
    quai_said="\${quai_said%%$'\n'*}"
    printf -- '-----> %s app detected\n' "\${quai_said:-$quai_title}"
    printf 'compile %s\n' "$quai_name" >"$quai_step"
    "$quai_bp/bin/compile" /app /cache /env || exit $?
    if [ -x "$quai_bp/bin/release" ]; then
      printf 'release %s\n' "$quai_name" >"$quai_step"
      (. "$quai_bp/bin/release" /app) >/quai/build/.quai-release.yml || exit $?
    fi
    printf 'done %s\n' "$quai_name" >"$quai_step"
    exit 0
  fi
done
exit 100
`;

/** Checks that an unprivileged uid can reach `dir` (every parent must be searchable by others). */
export async function assertTraversable(dir: string): Promise<void> {
  const res = await run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-x", dir]);
  if (res.code !== 0) {
    throw new QuaiError("config_invalid", `the runtime directory ${dir} is not reachable by app users: each parent directory needs the x bit for others (chmod o+x), or set QUAI_RUNTIME_DIR to a directory outside a private home`);
  }
}

/** Creates the runtime tree and refreshes the built-ins. */
export async function prepareRuntime(paths: RuntimePaths): Promise<void> {
  await mkdir(paths.root, { recursive: true, mode: 0o711 });
  await chmod(paths.root, 0o711);
  await assertTraversable(paths.root);
  for (const d of [paths.builds, paths.slugs, paths.containers, paths.caches, paths.runtimes, paths.bin]) {
    await mkdir(d, { recursive: true, mode: 0o711 });
    await chmod(d, 0o711);
  }
  await mkdir(join(paths.logs, "router"), { recursive: true, mode: 0o700 });
  // Build trees a stopped server was still deleting, and sources it had unpacked as they were
  // received (only the process that unpacked one can hand it to its build).
  for (const name of await readdir(paths.builds)) {
    if (name.startsWith(TRASH_PREFIX) || name.startsWith(RECEIVED_PREFIX) || name.startsWith(PRESTART_PREFIX)) await rm(join(paths.builds, name), { recursive: true, force: true });
  }
  await mkdir(join(paths.sharedNpm, "content-v2"), { recursive: true, mode: 0o755 });
  await chmod(join(paths.sharedNpm, ".."), 0o755);
  await chmod(paths.sharedNpm, 0o755);
  // Built-in buildpacks: a fresh copy each start, readable by every app uid.
  await rm(paths.buildpacks, { recursive: true, force: true });
  await mkdir(paths.buildpacks, { mode: 0o755 });
  for (const name of await readdir(join(repoRoot, "buildpacks"))) {
    const res = await run("cp", ["-R", "--", join(repoRoot, "buildpacks", name), join(paths.buildpacks, name)]);
    if (res.code !== 0) throw new Error(`copying buildpack ${name}: ${res.stderr}`);
  }
  await run("chmod", ["-R", "a+rX", paths.buildpacks]);
  await writeFile(join(paths.bin, "launch"), launcher, { mode: 0o755 });
  await writeFile(join(paths.bin, "build"), buildRunner, { mode: 0o755 });
  await chmod(paths.bin, 0o755);
  await chmod(paths.runtimes, 0o755);
  // Node.js: the same build Quai runs on (the pinned `node` package), offered to builds at
  // /quai/runtimes/node/<version>. Versions are never removed: slugs link to them.
  const version = process.versions.node;
  const dest = join(paths.runtimes, "node", version);
  if (!existsSync(join(dest, "bin", "node"))) {
    const tmp = `${dest}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(join(tmp, "bin"), { recursive: true, mode: 0o755 });
    const binary = await realpath(process.execPath);
    // A hard link when on the same file system (instant), a copy otherwise.
    let res = await run("ln", ["--", binary, join(tmp, "bin", "node")]);
    if (res.code !== 0) res = await run("cp", ["--", binary, join(tmp, "bin", "node")]);
    if (res.code !== 0) throw new Error(`offering Node.js ${version} to builds: ${res.stderr}`);
    await run("chmod", ["-R", "a+rX", tmp]);
    await run("mv", ["--", tmp, dest]);
  }
  await offerSystemNpm(paths);
}

/** The host's npm: the `npm` on PATH (resolved to its package directory), else Debian's place. */
export async function systemNpmRoot(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      const cli = await realpath(join(dir, "npm"));
      if (cli.endsWith(join("bin", "npm-cli.js"))) return dirname(dirname(cli));
    } catch {
      // Not in this directory.
    }
  }
  return existsSync("/usr/lib/node_modules/npm/package.json") ? "/usr/lib/node_modules/npm" : undefined;
}

/**
 * npm: the host's, offered to builds at /quai/runtimes/npm/<version> so that a slug links to it
 * (as it links to Node.js) instead of carrying its 2,000 files. Versions are never removed.
 */
async function offerSystemNpm(paths: RuntimePaths): Promise<void> {
  const root = await systemNpmRoot();
  if (!root) return;
  let version: unknown;
  try {
    version = (JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version?: unknown }).version;
  } catch {
    return;
  }
  if (typeof version !== "string" || !/^\d+\.\d+\.\d+$/.test(version)) return;
  const dest = join(paths.runtimes, "npm", version);
  if (existsSync(join(dest, "package.json"))) return;
  const tmp = `${dest}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
  const res = await run("cp", ["-R", "--", root, tmp]);
  if (res.code !== 0) throw new Error(`offering npm ${version} to builds: ${res.stderr}`);
  await run("chmod", ["-R", "a+rX,go-w", tmp]);
  await run("mv", ["--", tmp, dest]);
}
