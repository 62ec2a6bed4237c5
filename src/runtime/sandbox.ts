// The command line of a sandboxed container: libexec/sandbox-exec (as root: join the cgroups; for
// a layered /app, mount its overlay in a mount namespace of its own; then drop to the app's uid
// for good) → bubblewrap (namespaces, read-only system, private /tmp) → the app.
import { accessSync, constants, lstatSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
import type { ContainerSpec } from "./types.ts";

/** A top-level entry of / recreated in the sandbox (merged-usr Debian: /bin → usr/bin, ...). */
export type RootEntry = { name: string; kind: "symlink"; target: string } | { name: string; kind: "dir" };

/** Facts about the host the argv depends on; `probeHost` reads them once. */
export interface SandboxHost {
  bwrap: string;
  /** libexec/sandbox-exec (built from its C source by scripts/setup.sh). */
  sandboxExec: string;
  /** /bin, /sbin, /lib* as found on the host (besides /usr and /etc, always bound read-only). */
  rootEntries: RootEntry[];
}

/** Per-run choices. */
export interface SandboxOptions {
  /** Files joining the container's cgroups (`Cgroups.procsFiles`). */
  procsFiles: string[];
  /** Fd bwrap reads its options from (`bwrapArgs`, NUL-separated). */
  argsFd: number;
  /** Fd bwrap writes its JSON status to (child pid, then exit code). */
  statusFd?: number;
  /** Kill the sandbox when its parent dies: for one-off execs, never for app containers. */
  dieWithParent?: boolean;
  /** Runs this instead of `spec.command` (the pty wrapper of a tty exec). */
  command?: string[];
}

/**
 * The program to spawn and bwrap's options. The options (env values are secrets, bind sources
 * are host paths) go through a pipe with `--args FD` rather than argv, so neither host users
 * (`ps`) nor the app (/proc/1/cmdline) can read them.
 */
export interface SandboxCommand {
  argv: string[];
  bwrapArgs: string[];
}

/** Where an app's root directory and working directory are inside the sandbox. */
export const APP_ROOT = "/app";

/** Linux host names are at most 64 bytes; bwrap fails on longer ones. */
const HOSTNAME_MAX = 63;

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
const ENV_NAME = /^[^=\0]+$/;

function assertSandboxPath(what: string, p: string): void {
  if (!p.startsWith("/") || p.includes("\0") || p.split("/").includes("..")) {
    throw new Error(`${what} must be an absolute path without "..": ${JSON.stringify(p)}`);
  }
}

/** Throws unless `id` is safe as a file, cgroup and host name: it names all three. */
export function assertContainerId(id: string): void {
  if (!ID.test(id)) throw new Error(`invalid container id ${JSON.stringify(id)}: letters, digits, "_", "." and "-", at most 200`);
}

/** Throws on a spec that would not make a safe or valid sandbox. */
export function validateSpec(spec: ContainerSpec): void {
  assertContainerId(spec.id);
  for (const [what, n] of [["uid", spec.uid], ["gid", spec.gid]] as const) {
    if (!Number.isInteger(n) || n <= 0 || n >= 2 ** 32 - 1) throw new Error(`container ${what} must be a positive integer (never root): ${n}`);
  }
  assertSandboxPath("appDir", spec.appDir);
  if (spec.appLayers !== undefined) {
    for (const [what, p] of [["appLayers.lower", spec.appLayers.lower], ["appLayers.upper", spec.appLayers.upper], ["appLayers.work", spec.appLayers.work]] as const) {
      assertSandboxPath(what, p);
      // Mount option syntax: "," separates options, ":" lower layers, "\" escapes.
      if (/[,:\\\s]/.test(p)) throw new Error(`${what} must not contain ",", ":", "\\" or white space: ${JSON.stringify(p)}`);
    }
  }
  if (spec.appMount !== undefined) assertSandboxPath("appMount", spec.appMount);
  for (const l of spec.symlinks ?? []) {
    assertSandboxPath("symlink", l.link);
    assertSandboxPath("symlink target", l.target);
  }
  if (spec.cwd !== undefined) assertSandboxPath("cwd", spec.cwd);
  for (const b of spec.binds ?? []) {
    assertSandboxPath("bind source", b.source);
    assertSandboxPath("bind target", b.target);
  }
  if (spec.command.length === 0 || spec.command.some((a) => a.includes("\0"))) throw new Error("command must be a non-empty argv without NUL bytes");
  for (const [k, v] of Object.entries(spec.env)) {
    if (!ENV_NAME.test(k) || v.includes("\0")) throw new Error(`invalid environment variable ${JSON.stringify(k)}: no "=" or NUL in names, no NUL in values`);
  }
}

/** Builds the sandbox command for `spec`. Pure: same inputs, same argv (see sandbox.test.ts). */
export function sandboxCommand(spec: ContainerSpec, host: SandboxHost, opts: SandboxOptions): SandboxCommand {
  validateSpec(spec);
  const a: string[] = [];
  a.push("--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup");
  if (spec.network === "none") a.push("--unshare-net");
  a.push("--hostname", spec.id.slice(0, HOSTNAME_MAX));
  a.push("--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc");
  for (const e of host.rootEntries) {
    if (e.kind === "symlink") a.push("--symlink", e.target, `/${e.name}`);
    else a.push("--ro-bind", `/${e.name}`, `/${e.name}`);
  }
  // /dev/shm is a tmpfs of its own so POSIX shared memory works once /dev is read-only.
  a.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp");
  a.push(spec.appWritable ? "--bind" : "--ro-bind", spec.appDir, spec.appMount ?? APP_ROOT);
  for (const b of spec.binds ?? []) a.push(b.writable ? "--bind" : "--ro-bind", b.source, b.target);
  for (const l of spec.symlinks ?? []) a.push("--symlink", l.target, l.link);
  // bwrap builds / and /dev as writable tmpfs; once every mount point exists, freeze them, so
  // /app, /tmp, /dev/shm and writable binds are the only places an app writes (all charged to
  // its memory limit or on its own disk).
  a.push("--remount-ro", "/dev", "--remount-ro", "/");
  a.push("--chdir", spec.cwd ?? APP_ROOT);
  a.push("--cap-drop", "ALL", "--new-session");
  if (opts.dieWithParent) a.push("--die-with-parent");
  if (opts.statusFd !== undefined) a.push("--json-status-fd", String(opts.statusFd));
  a.push("--clearenv");
  const env: Record<string, string> = { HOME: APP_ROOT, ...spec.env };
  for (const [k, v] of Object.entries(env)) a.push("--setenv", k, v);

  const layers = spec.appLayers;
  const argv = [
    host.sandboxExec,
    ...opts.procsFiles.flatMap((f) => ["--cgroup", f]),
    ...(layers ? ["--overlay", layers.lower, layers.upper, layers.work, spec.appDir] : []),
    "--uid", String(spec.uid), "--gid", String(spec.gid), "--",
    host.bwrap, "--args", String(opts.argsFd), "--",
    ...(opts.command ?? spec.command),
  ];
  return { argv, bwrapArgs: a };
}

/** bwrap's `--args` format: each argument followed by a NUL byte. */
export function encodeArgs(args: readonly string[]): Buffer {
  return Buffer.from(args.map((x) => `${x}\0`).join(""), "utf8");
}

/** Which of /bin, /sbin, /lib* exist on the host, as symlinks or directories. */
export function hostRootEntries(): RootEntry[] {
  const rootEntries: RootEntry[] = [];
  for (const name of ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    try {
      const st = lstatSync(`/${name}`);
      if (st.isSymbolicLink()) rootEntries.push({ name, kind: "symlink", target: readlinkSync(`/${name}`) });
      else if (st.isDirectory()) rootEntries.push({ name, kind: "dir" });
    } catch {
      // Absent on this host: nothing to recreate.
    }
  }
  return rootEntries;
}

/** Reads the host facts; throws when `sandboxExec` was not built (scripts/setup.sh builds it). */
export function probeHost(sandboxExec: string, bwrap = "/usr/bin/bwrap"): SandboxHost {
  try {
    accessSync(sandboxExec, constants.X_OK);
  } catch {
    throw new Error(`${sandboxExec} is missing or not executable: run \`npm run setup\` (it builds it from ${basename(sandboxExec)}.c)`);
  }
  return { bwrap, sandboxExec, rootEntries: hostRootEntries() };
}
