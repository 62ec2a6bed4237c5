// Container resource limits through Linux cgroups: one group per container under a `quai/` parent,
// behind one interface for cgroup v1 (these machines) and v2, with the root directory injectable.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Limits of one group, from the container size. */
export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** cgroup v1 cpu.shares (1024 = one default process); v2 converts to cpu.weight. */
  cpuShares: number;
}

/** What a group uses now. */
export interface CgroupUsage {
  /** Memory in use, without the inactive page cache the kernel drops first (as `docker stats`). */
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  cpuNanos: number;
}

/** One container's cgroup(s), addressed by container id. */
export interface Cgroups {
  readonly version: 1 | 2;
  /** Creates the group (idempotent) and sets its limits. */
  create(id: string, limits: CgroupLimits): Promise<void>;
  /**
   * Files a process writes its own pid into to join the group (one per v1 hierarchy, one for
   * v2): libexec/sandbox-exec takes them so the app starts inside its limits.
   */
  procsFiles(id: string): string[];
  /** True while the group exists. */
  exists(id: string): boolean;
  /** Memory, pids and CPU, or undefined when the group does not exist. */
  usage(id: string): Promise<CgroupUsage | undefined>;
  /** How many processes the kernel's OOM killer ended in this group (0 when unknown). */
  oomKills(id: string): Promise<number>;
  /** Host pids of the processes in the group. */
  pids(id: string): Promise<number[]>;
  /** SIGKILLs every process in the group and resolves once it is empty (or after a few seconds). */
  killAll(id: string): Promise<void>;
  /** Removes the group (killing what is left in it); no error if it is already gone. */
  remove(id: string): Promise<void>;
  /** Every group under Quai's parent, with when it was made (ms since the epoch). */
  list(): Promise<{ id: string; createdMs: number }[]>;
  /**
   * Readies the kernel for a process joining a group within milliseconds (see `warmMoves`);
   * moves nothing. Resolves when done; never rejects.
   */
  warm(): Promise<void>;
}

/**
 * The first process to change groups after a pause waits for the kernel: every move takes one
 * global lock, whose first taker after a pause waits for a read-copy-update grace period (5–15 ms
 * measured here, holding the mutex that creating a group needs too), while a move within a grace
 * period of the last one is quick (~0.2 ms). A sandbox joins its groups as its first step, on the
 * path of every container start. Writing the control plane's own pid into the group it is already
 * in takes that lock and moves nothing; repeated every few milliseconds, it keeps the lock quick.
 * The returned function keeps it so for `WARM_MS` from its last call: called a few tens of
 * milliseconds ahead of a start (a build packing its slug), the wait falls there, and the start's
 * own moves are quick. A worker thread waits, never the event loop. `procsFile` is that group's
 * `cgroup.procs`, from /proc/self/cgroup; nothing is done when it cannot be found.
 */
export function warmMoves(procsFile: () => string | undefined): () => Promise<void> {
  let until = 0;
  let running: Promise<void> | undefined;
  return () => {
    until = performance.now() + WARM_MS;
    return (running ??= (async () => {
      let file: string | undefined;
      try {
        file = procsFile();
      } catch {
        return; // No /proc/self/cgroup to read: nothing to warm.
      }
      if (file === undefined) return;
      while (performance.now() < until) {
        await writeFile(file, String(process.pid)).catch(() => undefined);
        await sleep(WARM_EVERY_MS);
      }
    })().finally(() => (running = undefined)));
  };
}

/** How long `warmMoves` keeps moves quick after its last call, and how often it moves nothing then. */
const WARM_MS = 40;
const WARM_EVERY_MS = 4;

/**
 * The `cgroup.procs` of the group this process is in, in the hierarchy mounted at `mount`:
 * `controller` names a v1 hierarchy, "" the v2 one. Undefined when /proc/self/cgroup lacks it.
 */
export function ownProcsFile(mount: string, controller: string, selfCgroup: string = readFileSync("/proc/self/cgroup", "utf8")): string | undefined {
  for (const line of selfCgroup.split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(\/.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    if (controller === "" ? controllers === "" : controllers.split(",").includes(controller)) {
      // The path is relative to the cgroup namespace's root, which is what the mount shows.
      if (path.split("/").includes("..")) return undefined;
      return join(mount, path, "cgroup.procs");
    }
  }
  return undefined;
}

/** Name of the parent group every container group lives under. */
export const PARENT = "quai";

/** The group directories under `parents` (by name, the oldest creation time of each). */
async function groupsUnder(parents: string[]): Promise<{ id: string; createdMs: number }[]> {
  const found = new Map<string, number>();
  for (const parent of parents) {
    for (const entry of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      // A group's ctime is its creation: joining or leaving it changes no attribute of the directory.
      const created = (await stat(join(parent, entry.name)).catch(() => undefined))?.ctimeMs;
      if (created !== undefined) found.set(entry.name, Math.min(created, found.get(entry.name) ?? Infinity));
    }
  }
  return [...found].map(([id, createdMs]) => ({ id, createdMs })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch {
    return undefined;
  }
}

async function readNumber(file: string): Promise<number> {
  const text = await readText(file);
  const n = Number((text ?? "").trim());
  return Number.isFinite(n) ? n : 0;
}

/** Reads `key value` lines (memory.stat, memory.events, cpu.stat, memory.oom_control). */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) out.set(key, Number(value));
  }
  return out;
}

async function readKeyed(file: string): Promise<Map<string, number>> {
  return parseKeyed((await readText(file)) ?? "");
}

async function readPids(file: string): Promise<number[]> {
  const text = (await readText(file)) ?? "";
  return text.split("\n").filter((l) => l.trim() !== "").map(Number).filter((n) => n > 0);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone: what we wanted.
  }
}

/** Kills what `list` returns until it returns nothing; repeats because processes can fork meanwhile. */
async function killLoop(list: () => Promise<number[]>): Promise<void> {
  for (let round = 0; round < 200; round++) {
    const pids = await list();
    if (pids.length === 0) return;
    for (const pid of pids) killQuietly(pid);
    await sleep(round < 10 ? 5 : 20);
  }
}

/** Removes a directory, retrying while the kernel still holds exiting processes in the group. */
async function rmdirRetry(dir: string, killAll: () => Promise<void>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      if (code !== "EBUSY" || attempt >= 50) throw err;
      await killAll();
      await sleep(20);
    }
  }
}

/** Directories of the cgroup v1 hierarchies Quai uses (a co-mounted "cpu,cpuacct" may repeat). */
export interface V1Mounts {
  memory: string;
  pids: string;
  cpu?: string;
  cpuacct?: string;
}

/** cgroup v1: one directory per hierarchy (memory, pids, cpu, cpuacct). */
export class CgroupsV1 implements Cgroups {
  readonly version = 1 as const;
  private readonly mounts: V1Mounts;

  constructor(mounts: V1Mounts) {
    this.mounts = mounts;
  }

  // The pids hierarchy: the lightest to take part in a move.
  readonly warm = warmMoves(() => ownProcsFile(this.mounts.pids, "pids"));

  private dir(controller: keyof V1Mounts, id: string): string | undefined {
    const root = this.mounts[controller];
    return root === undefined ? undefined : join(root, PARENT, id);
  }

  /** Distinct parents of the groups, `<hierarchy>/quai` (co-mounted hierarchies share one). */
  private parents(): string[] {
    const all = (["memory", "pids", "cpu", "cpuacct"] as const).map((c) => this.mounts[c]).filter((m): m is string => m !== undefined);
    return [...new Set(all)].map((m) => join(m, PARENT));
  }

  /** Distinct group directories, one per hierarchy. */
  private dirs(id: string): string[] {
    return this.parents().map((p) => join(p, id));
  }

  async create(id: string, limits: CgroupLimits): Promise<void> {
    // One hierarchy per controller: their directories and files are independent, so made at once
    // (a container's start waits on this).
    await Promise.all(this.dirs(id).map((dir) => mkdir(dir, { recursive: true })));
    const mem = this.dir("memory", id) as string;
    const cpu = this.dir("cpu", id);
    await Promise.all([
      (async () => {
        await writeFile(join(mem, "memory.limit_in_bytes"), String(limits.memoryBytes));
        // Without a memory+swap limit a container would page out past its size instead of being
        // OOM-killed; the file exists only when the kernel accounts swap (swapaccount=1). It
        // must not be below the memory limit, so it is written after it.
        if (existsSync(join(mem, "memory.memsw.limit_in_bytes"))) {
          await writeFile(join(mem, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes));
        } else {
          await writeFile(join(mem, "memory.swappiness"), "0").catch(() => undefined);
        }
      })(),
      writeFile(join(this.dir("pids", id) as string, "pids.max"), String(limits.pids)),
      cpu === undefined ? undefined : writeFile(join(cpu, "cpu.shares"), String(Math.max(2, Math.round(limits.cpuShares)))),
    ]);
  }

  procsFiles(id: string): string[] {
    return this.dirs(id).map((d) => join(d, "cgroup.procs"));
  }

  exists(id: string): boolean {
    return existsSync(this.dir("memory", id) as string);
  }

  async usage(id: string): Promise<CgroupUsage | undefined> {
    if (!this.exists(id)) return undefined;
    const mem = this.dir("memory", id) as string;
    const stat = await readKeyed(join(mem, "memory.stat"));
    const used = await readNumber(join(mem, "memory.usage_in_bytes"));
    const cpuacct = this.dir("cpuacct", id);
    return {
      memoryBytes: Math.max(0, used - (stat.get("total_inactive_file") ?? 0)),
      memoryLimitBytes: await readNumber(join(mem, "memory.limit_in_bytes")),
      pids: await readNumber(join(this.dir("pids", id) as string, "pids.current")),
      cpuNanos: cpuacct === undefined ? 0 : await readNumber(join(cpuacct, "cpuacct.usage")),
    };
  }

  async oomKills(id: string): Promise<number> {
    const mem = this.dir("memory", id) as string;
    const control = await readKeyed(join(mem, "memory.oom_control"));
    const kills = control.get("oom_kill");
    if (kills !== undefined) return kills;
    // Kernels before 4.13 have no oom_kill counter: a hit of the memory+swap limit is the best
    // sign left (the plain failcnt also counts page-cache reclaim, so it is not used).
    return (await readNumber(join(mem, "memory.memsw.failcnt"))) > 0 ? 1 : 0;
  }

  pids(id: string): Promise<number[]> {
    return readPids(join(this.dir("memory", id) as string, "cgroup.procs"));
  }

  killAll(id: string): Promise<void> {
    return killLoop(() => this.pids(id));
  }

  async remove(id: string): Promise<void> {
    if (this.exists(id)) await this.killAll(id);
    for (const dir of this.dirs(id)) if (existsSync(dir)) await rmdirRetry(dir, () => this.killAll(id));
  }

  list(): Promise<{ id: string; createdMs: number }[]> {
    return groupsUnder(this.parents());
  }
}

/**
 * cgroup v1 cpu.shares → v2 cpu.weight, proportionally (1024 shares = weight 100, both kernels'
 * defaults), so a container weighs against processes outside Quai as it would on v1.
 */
export function sharesToWeight(shares: number): number {
  return Math.min(10000, Math.max(1, Math.round((shares * 100) / 1024)));
}

/** cgroup v2: one unified directory per group. */
export class CgroupsV2 implements Cgroups {
  readonly version = 2 as const;
  private readonly root: string;

  /** `root` is the cgroup2 mount (or a delegated subtree) under which `quai/` is created. */
  constructor(root: string) {
    this.root = root;
  }

  // /proc/self/cgroup's paths start from the cgroup2 mount, which `root` is when detected.
  readonly warm = warmMoves(() => ownProcsFile(this.root, ""));

  private dir(id: string): string {
    return join(this.root, PARENT, id);
  }

  /**
   * Controllers must be enabled in every ancestor's subtree_control for the leaf to get them. One
   * write enables all; it fails whole if one is missing (no cpu controller), so then one by one.
   */
  private async enableControllers(dir: string): Promise<void> {
    const file = join(dir, "cgroup.subtree_control");
    try {
      await writeFile(file, "+memory +pids +cpu");
    } catch {
      for (const c of ["memory", "pids", "cpu"]) await writeFile(file, `+${c}`).catch(() => undefined);
    }
  }

  async create(id: string, limits: CgroupLimits): Promise<void> {
    const parent = join(this.root, PARENT);
    await mkdir(parent, { recursive: true });
    await this.enableControllers(this.root);
    await this.enableControllers(parent);
    const dir = this.dir(id);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "memory.max"), String(limits.memoryBytes));
    // Absent when the kernel does not account swap; then there is no swap to dodge the limit with.
    await writeFile(join(dir, "memory.swap.max"), "0").catch(() => undefined);
    await writeFile(join(dir, "pids.max"), String(limits.pids));
    await writeFile(join(dir, "cpu.weight"), String(sharesToWeight(limits.cpuShares)));
  }

  procsFiles(id: string): string[] {
    return [join(this.dir(id), "cgroup.procs")];
  }

  exists(id: string): boolean {
    return existsSync(this.dir(id));
  }

  async usage(id: string): Promise<CgroupUsage | undefined> {
    if (!this.exists(id)) return undefined;
    const dir = this.dir(id);
    const stat = await readKeyed(join(dir, "memory.stat"));
    const max = ((await readText(join(dir, "memory.max"))) ?? "").trim();
    return {
      memoryBytes: Math.max(0, (await readNumber(join(dir, "memory.current"))) - (stat.get("inactive_file") ?? 0)),
      memoryLimitBytes: max === "max" ? Number.MAX_SAFE_INTEGER : Number(max) || 0,
      pids: await readNumber(join(dir, "pids.current")),
      cpuNanos: ((await readKeyed(join(dir, "cpu.stat"))).get("usage_usec") ?? 0) * 1000,
    };
  }

  async oomKills(id: string): Promise<number> {
    return (await readKeyed(join(this.dir(id), "memory.events"))).get("oom_kill") ?? 0;
  }

  pids(id: string): Promise<number[]> {
    return readPids(join(this.dir(id), "cgroup.procs"));
  }

  async killAll(id: string): Promise<void> {
    // cgroup.kill (Linux 5.14+) kills the whole group atomically, racing no fork.
    const kill = join(this.dir(id), "cgroup.kill");
    if (existsSync(kill)) await writeFile(kill, "1").catch(() => undefined);
    await killLoop(() => this.pids(id));
  }

  async remove(id: string): Promise<void> {
    if (!this.exists(id)) return;
    await this.killAll(id);
    await rmdirRetry(this.dir(id), () => this.killAll(id));
  }

  list(): Promise<{ id: string; createdMs: number }[]> {
    return groupsUnder([join(this.root, PARENT)]);
  }
}

/** cgroup mounts found in a mount table. */
export interface CgroupMounts {
  /** v1 hierarchies by controller name. */
  v1: Map<string, string>;
  /** The cgroup2 mount, if any. */
  v2?: string;
}

/** Parses /proc/self/mounts (fields are octal-escaped: "\040" is a space). */
export function parseCgroupMounts(text: string): CgroupMounts {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: CgroupMounts = { v1: new Map() };
  for (const line of text.split("\n")) {
    const [, mountPoint, fsType, options] = line.split(" ");
    if (mountPoint === undefined || options === undefined) continue;
    if (fsType === "cgroup2") out.v2 ??= unescape(mountPoint);
    if (fsType !== "cgroup") continue;
    for (const opt of options.split(",")) out.v1.set(opt, unescape(mountPoint));
  }
  return out;
}

/**
 * Picks the cgroup implementation for this host: v1 when v1 memory and pids hierarchies are
 * mounted (hybrid layouts keep the controllers there), else v2. Throws when neither can limit.
 * The arguments exist for tests: the mount table and a reader of a v2 cgroup.controllers file.
 */
export function detectCgroups(
  mountsText: string = readFileSync("/proc/self/mounts", "utf8"),
  controllersOf: (dir: string) => string = (dir) => readFileSync(join(dir, "cgroup.controllers"), "utf8"),
): Cgroups {
  const mounts = parseCgroupMounts(mountsText);
  const memory = mounts.v1.get("memory");
  const pids = mounts.v1.get("pids");
  if (memory !== undefined && pids !== undefined) {
    return new CgroupsV1({ memory, pids, cpu: mounts.v1.get("cpu"), cpuacct: mounts.v1.get("cpuacct") });
  }
  if (mounts.v2 !== undefined) {
    const controllers = controllersOf(mounts.v2).split(/\s+/);
    if (controllers.includes("memory") && controllers.includes("pids")) return new CgroupsV2(mounts.v2);
  }
  throw new Error("no usable cgroup hierarchy: the local runtime needs cgroup v1 memory and pids controllers, or cgroup v2 with them");
}
