// How add-on servers run: detached from the control plane (new session, output to a log file
// in the instance's dir, not our child once we restart), as an unprivileged uid when Quai runs
// as root (PostgreSQL and MariaDB refuse root; a user namespace maps that uid back to root
// outside so the files stay the platform's), inside a cgroup sized by the plan. Every engine
// starts its server through `startDetached`; the capability re-adopts a server from its
// recorded pid and start time (`isAlive`) after a control-plane restart.
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { detectCgroups, type Cgroups } from "../runtime/cgroups.ts";
import { isAlive, procStat } from "../runtime/proc.ts";
import type { Instance, PlanSpec, ServerProcess } from "./engine.ts";

/** Unprivileged uid the servers run as (inside their user namespace) when Quai is root. */
export const SERVER_UID = 65534;

const cgroupExec = fileURLToPath(new URL("../../libexec/cgroup-exec", import.meta.url));
let cgroups: Cgroups | null | undefined;

/** The host's cgroups, or null where none can limit (then servers run without a memory cap). */
function hostCgroups(): Cgroups | null {
  if (cgroups === undefined) {
    try {
      cgroups = process.getuid?.() === 0 ? detectCgroups() : null;
    } catch {
      cgroups = null;
    }
  }
  return cgroups;
}

/** cgroup name of an instance. */
export const cgroupName = (inst: Pick<Instance, "id">): string => `addon-${inst.id}`;

/** Argv prefix that runs `bin` as SERVER_UID in a user namespace when we are root. */
export function unprivileged(bin: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [bin, args];
  return ["unshare", ["--user", `--map-user=${SERVER_UID}`, `--map-group=${SERVER_UID}`, bin, ...args]];
}

/**
 * Starts `bin args` detached, unprivileged, in the instance's cgroup (memory = plan; pids and CPU
 * generous), stdout and stderr appended to `logFile`. Resolves with its pid and start time as
 * soon as it is spawned; callers then wait for readiness (`waitForPort`).
 */
export async function startDetached(inst: Instance, bin: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const groups = hostCgroups();
  let [cmd, argv] = unprivileged(bin, args);
  if (groups) {
    await groups.create(cgroupName(inst), limitsFor(inst.plan));
    argv = [...groups.procsFiles(cgroupName(inst)), "--", cmd, ...argv];
    cmd = cgroupExec;
  }
  const fd = openSync(logFile, "a", 0o600);
  try {
    const child = spawn(cmd, argv, {
      detached: true,
      stdio: ["ignore", fd, fd],
      cwd: inst.dir,
      env: { PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", LANG: "C.UTF-8", ...env },
    });
    const pid = await new Promise<number>((resolvePromise, reject) => {
      child.once("error", reject);
      child.once("spawn", () => resolvePromise(child.pid as number));
    });
    child.unref();
    const stat = procStat(pid);
    return { pid, startTicks: stat?.startTicks ?? 0 };
  } finally {
    closeSync(fd);
  }
}

/** cgroup limits of a plan: its memory, room for the server's processes, one CPU share. */
export function limitsFor(plan: PlanSpec): { memoryBytes: number; pids: number; cpuShares: number } {
  return { memoryBytes: plan.memoryBytes, pids: Math.max(64, plan.maxConnections * 2 + 32), cpuShares: 1024 };
}

/** Whether `proc` still runs (same pid and start time, not a zombie). */
export function serverAlive(proc: ServerProcess | undefined): boolean {
  return proc !== undefined && isAlive(proc.pid, proc.startTicks);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a TCP connection to 127.0.0.1:`port` succeeds now. */
export function canConnect(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Polls `ready` until it is true; rejects when `proc` exits first (with the log's tail) or after
 * `timeoutMs`.
 */
export async function waitUntil(ready: () => Promise<boolean>, proc: ServerProcess, what: string, timeoutMs = 30_000, tail: () => Promise<string[]> = async () => []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (await ready().catch(() => false)) return;
    if (!serverAlive(proc)) throw new Error(`${what} exited while starting:\n${(await tail()).join("\n")}`);
    if (Date.now() > deadline) throw new Error(`${what} did not become ready within ${timeoutMs} ms:\n${(await tail()).join("\n")}`);
    await sleep(delay);
  }
}

/**
 * Stops `proc`: `signal` first, SIGKILL after `graceMs`; then kills whatever is left in the
 * instance's cgroup and removes it. No error if it is not running.
 */
export async function stopDetached(inst: Instance, proc: ServerProcess | undefined, signal: NodeJS.Signals = "SIGTERM", graceMs = 20_000): Promise<void> {
  if (serverAlive(proc)) {
    const p = proc as ServerProcess;
    try {
      process.kill(p.pid, signal);
    } catch {
      /* gone */
    }
    const deadline = Date.now() + graceMs;
    while (serverAlive(p) && Date.now() < deadline) await sleep(20);
    if (serverAlive(p)) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
      while (serverAlive(p)) await sleep(20);
    }
  }
  const groups = hostCgroups();
  if (groups?.exists(cgroupName(inst))) await groups.remove(cgroupName(inst));
}

/** Last `lines` lines of a text file ("" lines dropped), [] when it does not exist. */
export async function tailFile(file: string, lines: number): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l !== "").slice(-lines);
}

/** Bytes used under `dir` (du -sb semantics, apparent size of regular files). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) total += (await lstat(p).catch(() => ({ size: 0 }))).size;
    }
  };
  await walk(dir);
  return total;
}
