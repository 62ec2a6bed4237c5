// The `local` runtime driver: each container is a bubblewrap sandbox in its own cgroups, started
// detached so it outlives the control plane, and found again from files under `stateDir`.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readSync, statSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { ensurePrivateDir, writeFileAtomic } from "../core/files.ts";
import { spawner, spawnStreaming, type HelperChild, type Spawner } from "../core/spawner.ts";
import { detectCgroups, type CgroupLimits, type Cgroups } from "./cgroups.ts";
import { bootId, isAlive, procStat } from "./proc.ts";
import { assertContainerId, encodeArgs, probeHost, sandboxCommand, validateSpec, type SandboxHost } from "./sandbox.ts";
import { containerSizes, type ContainerSize, type ContainerSpec, type ContainerState, type ContainerStats, type ExecIo, type ExecResult, type RuntimeDriver } from "./types.ts";

/** Options of the local driver. */
export interface LocalRuntimeOptions {
  /** One directory per container: spec.json (env values left out), state.json, status.json (bwrap's). */
  stateDir: string;
  /** Default: `detectCgroups()`. */
  cgroups?: Cgroups;
  /** Directory of sandbox-exec. Default: the repository's libexec/. */
  libexecDir?: string;
  bwrap?: string;
  /** Python run inside the sandbox to give a tty exec its pseudo-terminal. */
  python?: string;
  /** Limits per size; default `containerSizes`. Tests shrink them. */
  limits?: (size: ContainerSize) => CgroupLimits;
  /** How often containers this process did not start are checked for exit. */
  pollMs?: number;
}

/** What state.json holds. */
interface StateRecord {
  id: string;
  status: ContainerState["status"];
  /** The outer bwrap (the process spawned, after sandbox-exec exec'd into it). */
  pid: number;
  pidStartTicks: number;
  bootId: string;
  startedAt: string;
  finishedAt?: string;
  exitCode?: number | null;
  signal?: string | null;
  oomKilled?: boolean;
  /** stop() sent SIGKILL: an exit without a recorded code was ours. */
  killed?: boolean;
}

interface Entry {
  rec: StateRecord;
  /** Set when this process spawned the container (its exitCode / signalCode say when it ended). */
  child?: ChildProcess | HelperChild;
  /** Resolves when `child` exits. */
  exited?: Promise<void>;
  stopping?: Promise<ContainerState>;
  finalizing?: Promise<void>;
}

/** What bwrap wrote to --json-status-fd. */
export interface BwrapStatus {
  /** Host pid of the sandbox's init (pid 1 inside), which forks the app. */
  childPid?: number;
  exitCode?: number;
}

/** Only what sandbox-exec and bwrap need; bwrap clears it before the app starts anyway. */
const HOST_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
/** Fds of the spawned chain: 0-2 stdio, then bwrap's status and options. */
const STATUS_FD = 3;
const ARGS_FD = 4;
/** Lines the sandbox's tools print when they cannot start the app (as opposed to the app's output). */
const SETUP_ERROR = /^(bwrap|sandbox-exec): /;
/** An exec's cgroup: its container's id, `.exec-` and 8 hex digits (what `sweep` looks for). */
const execGroup = (id: string) => `${id}.exec-${randomBytes(4).toString("hex")}`;
const EXEC_GROUP = /\.exec-[0-9a-f]{8}$/;

/**
 * Runs argv[1:] on a new pseudo-terminal and copies it to stdout, stdin to it (EOF becomes ^D),
 * then exits with the program's status. A fixed program: the user's argv arrives as arguments,
 * never as code or a shell string. Its stdin is framed (`ttyFrame`): input for the terminal, or
 * the terminal's new size, which the kernel signals to the program (SIGWINCH).
 */
const PTY_WRAPPER = `
import fcntl, os, pty, select, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as e:
        sys.stderr.write("%s: %s\\n" % (sys.argv[1], e.strerror))
        os._exit(127)
def put(f, data):
    while data:
        data = data[os.write(f, data):]
def dim(name, default):
    try:
        v = int(os.environ.get(name, default))
    except ValueError:
        return default
    return v if 1 <= v <= 65535 else default
def size(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
size(dim("LINES", 24), dim("COLUMNS", 80))
fds = [fd, 0]
framed = b""
while fd in fds:
    for r in select.select(fds, [], [])[0]:
        try:
            data = os.read(r, 65536)
        except OSError:
            data = b""
        if r == fd and data:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif r == fd:
            fds.remove(fd)
        elif data:
            framed += data
            while len(framed) >= 5:
                n = struct.unpack(">I", framed[1:5])[0]
                if len(framed) < 5 + n:
                    break
                kind, body, framed = framed[:1], framed[5:5 + n], framed[5 + n:]
                if kind == b"d":
                    put(fd, body)
                elif kind == b"w" and n == 4:
                    size(*struct.unpack(">HH", body))
        else:
            fds.remove(0)
            put(fd, b"\\x04\\x04")
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
sys.exit(128 - code if code < 0 else code)
`;

/** Largest input frame for the pty wrapper: it holds one whole frame in memory before writing it. */
const TTY_FRAME_BYTES = 64 * 1024;

/** One frame of a tty exec's stdin: `d` input for the terminal, `w` its new size (rows, cols). */
function ttyFrame(kind: "d" | "w", body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(kind, 0, "latin1");
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/**
 * The framed stdin of a tty exec: `stdin` cut into input frames, and a size frame at each of
 * `resizes`' events (sizes outside 1–65535 are dropped). Waits while the program does not read.
 */
function framedTtyInput(stdin: NodeJS.ReadableStream | undefined, resizes: ExecIo["resizes"]): { input: PassThrough; detach: () => void } {
  const input = new PassThrough();
  const fits = (v: number) => Number.isInteger(v) && v >= 1 && v <= 65535;
  const onResize = (cols: number, rows: number) => {
    if (!fits(cols) || !fits(rows) || input.writableEnded) return;
    const body = Buffer.alloc(4);
    body.writeUInt16BE(rows, 0);
    body.writeUInt16BE(cols, 2);
    input.write(ttyFrame("w", body));
  };
  resizes?.on("resize", onResize);
  const onData = (chunk: Buffer | string) => {
    const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    let full = false;
    for (let at = 0; at < b.length; at += TTY_FRAME_BYTES) full = !input.write(ttyFrame("d", b.subarray(at, at + TTY_FRAME_BYTES))) || full;
    if (full && stdin) {
      stdin.pause();
      input.once("drain", () => stdin.resume());
    }
  };
  const onEnd = () => input.end();
  if (stdin) {
    stdin.on("data", onData);
    stdin.once("end", onEnd);
  }
  return {
    input,
    detach() {
      resizes?.off("resize", onResize);
      stdin?.off("data", onData);
      stdin?.off("end", onEnd);
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `p`, or a rejection with the abort reason if `signal` aborts first. */
function abortable(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    void p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

function defaultLimits(size: ContainerSize): CgroupLimits {
  const s = containerSizes[size];
  return { memoryBytes: s.memoryMb * 1024 * 1024, pids: s.pids, cpuShares: s.cpuShares };
}

/** Parses bwrap's status documents, one JSON object per line. */
export function parseBwrapStatus(text: string): BwrapStatus {
  const out: BwrapStatus = {};
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const doc = JSON.parse(line) as { "child-pid"?: unknown; "exit-code"?: unknown };
      if (typeof doc["child-pid"] === "number") out.childPid = doc["child-pid"];
      if (typeof doc["exit-code"] === "number") out.exitCode = doc["exit-code"];
    } catch {
      // A line still being written: the next read sees it whole.
    }
  }
  return out;
}

function toState(rec: StateRecord): ContainerState {
  const st: ContainerState = { id: rec.id, status: rec.status, startedAt: rec.startedAt };
  if (rec.status === "running") st.pid = rec.pid;
  if (rec.status === "exited") {
    st.exitCode = rec.exitCode ?? null;
    st.signal = rec.signal ?? null;
    st.oomKilled = rec.oomKilled ?? false;
  }
  if (rec.finishedAt !== undefined) st.finishedAt = rec.finishedAt;
  return st;
}

/** The bytes a file gained after `from` (what bwrap printed when setup failed), at most 4 KiB. */
function readSince(file: string, from: number): string {
  try {
    const fd = openSync(file, "r");
    try {
      const len = Math.min(4096, Math.max(0, fstatSync(fd).size - from));
      const buf = Buffer.alloc(len);
      return buf.subarray(0, readSync(fd, buf, 0, len, from)).toString("utf8").trim();
    } finally {
      closeSync(fd);
    }
  } catch {
    return "";
  }
}

/** Containers as bubblewrap sandboxes on this host (see docs/architecture.md, Runtime). */
export class LocalRuntime implements RuntimeDriver {
  readonly name = "local";
  readonly stateDir: string;
  readonly cgroups: Cgroups;
  private readonly host: SandboxHost;
  private readonly python: string;
  private readonly limits: (size: ContainerSize) => CgroupLimits;
  private readonly pollMs: number;
  private readonly bootId = bootId();
  private readonly entries = new Map<string, Entry>();

  constructor(opts: LocalRuntimeOptions) {
    this.stateDir = opts.stateDir;
    this.cgroups = opts.cgroups ?? detectCgroups();
    const libexec = opts.libexecDir ?? fileURLToPath(new URL("../../libexec", import.meta.url));
    this.host = probeHost(join(libexec, "sandbox-exec"), opts.bwrap);
    this.python = opts.python ?? "/usr/bin/python3";
    this.limits = opts.limits ?? defaultLimits;
    this.pollMs = opts.pollMs ?? 200;
  }

  private dir(id: string): string {
    return join(this.stateDir, id);
  }

  private async persist(rec: StateRecord): Promise<void> {
    await writeFileAtomic(join(this.dir(rec.id), "state.json"), `${JSON.stringify(rec, null, 2)}\n`);
  }

  private async readStatus(id: string): Promise<BwrapStatus> {
    try {
      return parseBwrapStatus(await readFile(join(this.dir(id), "status.json"), "utf8"));
    } catch {
      return {};
    }
  }

  /** The entry of `id`: in memory, or read back from the state directory (an earlier process's). */
  private async entry(id: string): Promise<Entry | undefined> {
    const known = this.entries.get(id);
    if (known) return known;
    assertContainerId(id);
    let rec: StateRecord;
    try {
      rec = JSON.parse(await readFile(join(this.dir(id), "state.json"), "utf8")) as StateRecord;
    } catch {
      return undefined;
    }
    const e = this.entries.get(id) ?? { rec };
    this.entries.set(id, e);
    return e;
  }

  private async mustEntry(id: string): Promise<Entry> {
    const e = await this.entry(id);
    if (!e) throw new Error(`unknown container ${id}`);
    return e;
  }

  private ended(child: ChildProcess | HelperChild): boolean {
    return child.exitCode !== null || child.signalCode !== null;
  }

  private running(e: Entry): boolean {
    if (e.child) return !this.ended(e.child);
    return isAlive(e.rec.pid, e.rec.pidStartTicks);
  }

  /** Brings the record up to date: notices an exit (or a reboot) and records the final state. */
  private async refresh(e: Entry): Promise<ContainerState> {
    if (e.rec.status === "running") {
      if (e.rec.bootId !== this.bootId) {
        e.rec.status = "unknown";
        await this.persist(e.rec);
      } else if (!this.running(e)) {
        e.finalizing ??= this.finalize(e);
        await e.finalizing;
      }
    }
    return toState(e.rec);
  }

  private async finalize(e: Entry): Promise<void> {
    const status = await this.readStatus(e.rec.id);
    const rec = e.rec;
    if (status.exitCode !== undefined) {
      rec.exitCode = status.exitCode;
      rec.signal = null;
    } else {
      // bwrap itself was killed before it could record the app's status.
      rec.exitCode = e.child?.exitCode ?? null;
      rec.signal = e.child?.signalCode ?? (rec.killed ? "SIGKILL" : null);
    }
    rec.oomKilled = (await this.cgroups.oomKills(rec.id)) > 0;
    rec.finishedAt = new Date().toISOString();
    rec.status = "exited";
    await this.persist(rec);
  }

  /** Sleeps `ms`, less if our own child exits first; rejects when `signal` aborts. */
  private nap(e: Entry, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(done, ms);
      void e.exited?.then(done);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  async sweep(minAgeMs = 60_000): Promise<string[]> {
    // An exec's group holds its process from its first milliseconds until `exec` removes it: one
    // that is empty and a minute old belongs to an exec whose control plane died.
    const removed: string[] = [];
    const now = Date.now();
    for (const g of await this.cgroups.list()) {
      if (!EXEC_GROUP.test(g.id) || now - g.createdMs < minAgeMs) continue;
      if ((await this.cgroups.pids(g.id)).length > 0) continue;
      await this.cgroups.remove(g.id);
      removed.push(g.id);
    }
    return removed;
  }

  warm(): void {
    void this.cgroups.warm();
  }

  async start(spec: ContainerSpec): Promise<ContainerState> {
    validateSpec(spec);
    const previous = await this.entry(spec.id);
    if (previous && (await this.refresh(previous)).status === "running") throw new Error(`container ${spec.id} is already running`);
    if (!statSync(spec.appDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`container ${spec.id}: appDir ${spec.appDir} is not a directory`);
    const dir = this.dir(spec.id);
    const { env, ...rest } = spec;
    // Independent steps, in parallel: start() latency is the sandbox's start cost.
    await Promise.all([
      (async () => {
        await ensurePrivateDir(dir);
        await writeFileAtomic(join(dir, "spec.json"), `${JSON.stringify({ ...rest, envNames: Object.keys(env) }, null, 2)}\n`);
      })(),
      (async () => {
        // A group left by an earlier run of this id holds its OOM count: start from a fresh one.
        await this.cgroups.remove(spec.id);
        await this.cgroups.create(spec.id, this.limits(spec.size));
      })(),
    ]);

    const { argv, bwrapArgs } = sandboxCommand(spec, this.host, { procsFiles: this.cgroups.procsFiles(spec.id), argsFd: ARGS_FD, statusFd: STATUS_FD });
    const statusFile = join(dir, "status.json");
    const helper = spawner();
    // O_NOFOLLOW: the control plane (root) must not be led by a symlink to append elsewhere.
    const logFd = helper ? undefined : openSync(spec.logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o640);
    try {
      const logStart = logFd !== undefined ? fstatSync(logFd).size : (lstatSync(spec.logFile, { throwIfNoEntry: false })?.size ?? 0);
      const { child, exited } = helper ? await this.spawnByHelper(helper, argv, spec.logFile, statusFile, encodeArgs(bwrapArgs)) : await this.spawnDirect(argv, logFd as number, statusFile, encodeArgs(bwrapArgs));
      const pid = child.pid as number;
      const startTicks = procStat(pid)?.startTicks ?? 0;
      const e: Entry = { rec: { id: spec.id, status: "running", pid, pidStartTicks: startTicks, bootId: this.bootId, startedAt: new Date().toISOString() }, child, exited };
      // The helper died: the container runs on, watched by its pid as one an earlier process started.
      const forget = () => {
        e.child = undefined;
        e.exited = undefined;
      };
      if ("lost" in child && child.lost) forget();
      else child.once("lost", forget);
      this.entries.set(spec.id, e);
      const persisted = this.persist(e.rec);

      // Resolve once the app's process exists: bwrap's init forks it only after every mount
      // and the chdir succeeded, so a broken sandbox is an error here, not a crash seen later.
      for (let i = 0; ; i++) {
        const { childPid } = await this.readStatus(spec.id);
        if (childPid !== undefined && (await this.cgroups.pids(spec.id)).some((p) => p !== pid && p !== childPid)) break;
        if (this.ended(child) || i > 5000) {
          if (!this.ended(child)) await this.cgroups.killAll(spec.id);
          await exited;
          await persisted;
          await this.refresh(e);
          // An app may also end before we see it: only the sandbox tools' own messages mean failure.
          const failure = readSince(spec.logFile, logStart).split("\n").filter((l) => SETUP_ERROR.test(l));
          if (failure.length > 0 || i > 5000) throw new Error(`container ${spec.id} failed to start: ${failure.join("; ") || "the sandbox did not start"}`);
          return toState(e.rec);
        }
        // A sandbox takes 10 to 30 ms to start: look every 2 ms at first, without spinning on
        // it (a deployment's other work and the app's own boot share the CPU meanwhile).
        await sleep(i < 10 ? 2 : 5);
      }
      await persisted;
      return toState(e.rec);
    } finally {
      if (logFd !== undefined) closeSync(logFd);
    }
  }

  /** Starts the sandbox as the control plane's own child (no spawn helper). */
  private async spawnDirect(argv: string[], logFd: number, statusFile: string, args: Buffer): Promise<{ child: ChildProcess; exited: Promise<void> }> {
    const statusFd = openSync(statusFile, "w", 0o600);
    let child: ChildProcess;
    try {
      // detached: its own session, so neither a terminal's ^C nor the control plane's death reaches it.
      child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ["ignore", logFd, logFd, statusFd, "pipe"], env: HOST_ENV });
    } finally {
      closeSync(statusFd);
    }
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    const pipe = child.stdio[ARGS_FD] as Writable;
    pipe.on("error", () => undefined); // bwrap died before reading: reported by the caller.
    pipe.end(args);
    child.unref();
    return { child, exited };
  }

  /** Starts the sandbox through the spawn helper (see src/core/spawner.ts): same fds, same session. */
  private async spawnByHelper(helper: Spawner, argv: string[], logFile: string, statusFile: string, args: Buffer): Promise<{ child: HelperChild; exited: Promise<void> }> {
    const child = await helper.start(argv, { env: HOST_ENV, log: logFile, status: statusFile, args });
    return { child, exited: child.ended() };
  }

  async wait(id: string, signal?: AbortSignal): Promise<ContainerState> {
    const e = await this.mustEntry(id);
    for (;;) {
      signal?.throwIfAborted();
      const st = await this.refresh(e);
      if (st.status !== "running") return st;
      // Our own child tells us when it exits; one started by an earlier process is polled.
      if (e.exited) await abortable(e.exited, signal);
      else await this.nap(e, this.pollMs, signal);
    }
  }

  async stop(id: string, graceMs: number): Promise<ContainerState> {
    const e = await this.mustEntry(id);
    e.stopping ??= this.doStop(e, graceMs).finally(() => {
      e.stopping = undefined;
    });
    return e.stopping;
  }

  /**
   * Signals the app's processes: all in the cgroup but bwrap's two (outer bwrap, which records
   * the exit code, and the sandbox's init, which would ignore SIGTERM anyway). Returns how many.
   */
  private async signalApp(e: Entry, sig: NodeJS.Signals, includeInit: boolean): Promise<number> {
    const { childPid } = await this.readStatus(e.rec.id);
    let n = 0;
    for (const pid of await this.cgroups.pids(e.rec.id)) {
      if (pid === e.rec.pid || (!includeInit && pid === childPid)) continue;
      try {
        process.kill(pid, sig);
        n++;
      } catch {
        // Exited meanwhile.
      }
    }
    return n;
  }

  private async doStop(e: Entry, graceMs: number): Promise<ContainerState> {
    if ((await this.refresh(e)).status !== "running") return toState(e.rec);
    const deadline = Date.now() + graceMs;
    let termed = false;
    while (Date.now() < deadline) {
      // Repeated until it reaches someone: right after start() the app may not be forked yet.
      if (!termed) termed = (await this.signalApp(e, "SIGTERM", false)) > 0;
      if ((await this.refresh(e)).status !== "running") return toState(e.rec);
      await this.nap(e, Math.min(20, Math.max(1, deadline - Date.now())));
    }
    e.rec.killed = true;
    await this.persist(e.rec);
    // SIGKILL to the sandbox's init ends its whole pid namespace; bwrap outside then records 137.
    await this.signalApp(e, "SIGKILL", true);
    for (let i = 0; i < 50 && this.running(e); i++) await this.nap(e, 20);
    if (this.running(e)) await this.cgroups.killAll(e.rec.id);
    for (let i = 0; i < 250 && this.running(e); i++) await this.nap(e, 20);
    return this.refresh(e);
  }

  async inspect(id: string): Promise<ContainerState | undefined> {
    const e = await this.entry(id);
    return e ? this.refresh(e) : undefined;
  }

  async recover(spec: ContainerSpec): Promise<ContainerState> {
    validateSpec(spec);
    const e = await this.entry(spec.id);
    if (!e) return { id: spec.id, status: "unknown", startedAt: "" };
    return this.refresh(e);
  }

  async stats(id: string): Promise<ContainerStats | undefined> {
    const e = await this.entry(id);
    if (!e) return undefined;
    return this.cgroups.usage(id);
  }

  async remove(id: string): Promise<void> {
    const e = await this.entry(id);
    if (e && (await this.refresh(e)).status === "running") throw new Error(`container ${id} is running: stop it before removing it`);
    await this.cgroups.remove(id);
    await rm(this.dir(id), { recursive: true, force: true });
    this.entries.delete(id);
  }

  async exec(spec: ContainerSpec, io: ExecIo): Promise<ExecResult> {
    validateSpec(spec);
    io.signal?.throwIfAborted();
    if (io.tty && !existsSync(this.python)) throw new Error(`a tty needs ${this.python} on the host (bound into the sandbox with /usr)`);
    // A terminal's input is framed, with its size changes, from the call on: none is missed.
    const tty = io.tty && (io.stdin || io.resizes) ? framedTtyInput(io.stdin, io.resizes) : undefined;
    const stdin = tty?.input ?? io.stdin;
    // Its own group: its OOM count and its kill are its own, even beside a running container.
    const group = execGroup(spec.id);
    await this.cgroups.create(group, this.limits(spec.size)).catch((err: unknown) => {
      tty?.detach();
      throw err;
    });
    const command = io.tty ? [this.python, "-c", PTY_WRAPPER, ...spec.command] : spec.command;
    const { argv, bwrapArgs } = sandboxCommand(spec, this.host, { procsFiles: this.cgroups.procsFiles(group), argsFd: 3, dieWithParent: true, command });
    let timedOut = false;
    let aborted = false;
    let timer: NodeJS.Timeout | undefined;
    let child: ReturnType<typeof spawnStreaming> | undefined;
    const onAbort = () => {
      aborted = true;
      // The sandbox too, in case it has not joined its group yet (it dies with it).
      child?.kill("SIGKILL");
      void this.cgroups.killAll(group);
    };
    try {
      const proc = spawnStreaming(argv[0] as string, argv.slice(1), { stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe", "pipe"], env: HOST_ENV });
      child = proc;
      // An abort while the group was made, or from now on.
      io.signal?.addEventListener("abort", onAbort, { once: true });
      if (io.signal?.aborted) onAbort();
      const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        proc.once("error", reject);
        proc.once("close", (code, signal) => resolve({ code, signal }));
      });
      const args = proc.stdio[3] as Writable | null;
      args?.on("error", () => undefined);
      args?.end(encodeArgs(bwrapArgs));
      proc.stdout?.on("data", (b: Buffer) => io.onStdout(b));
      proc.stderr?.on("data", (b: Buffer) => io.onStderr(b));
      if (stdin && proc.stdin) {
        proc.stdin.on("error", () => undefined); // The program may exit without reading it all.
        (stdin as Readable).pipe(proc.stdin);
      }
      if (io.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          timedOut = true;
          void this.cgroups.killAll(group);
        }, io.timeoutMs);
      }
      const { code, signal } = await closed;
      if (stdin && proc.stdin) (stdin as Readable).unpipe(proc.stdin);
      const oomKilled = (await this.cgroups.oomKills(group)) > 0;
      if (aborted) throw io.signal?.reason ?? new Error("aborted");
      return { exitCode: code, signal, oomKilled, timedOut };
    } finally {
      clearTimeout(timer);
      tty?.detach();
      io.signal?.removeEventListener("abort", onAbort);
      await this.cgroups.remove(group);
    }
  }
}
