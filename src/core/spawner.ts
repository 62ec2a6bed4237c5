// Starting programs through a small helper process (libexec/spawn-helper). A fork copies the
// parent's page tables and write-protects all its memory: from the control plane (~200 MB), a
// spawn blocked the event loop ~4 ms, and the page faults as the control plane wrote to its own
// memory again cost it tens of milliseconds of CPU more, on the 2 cores an app's boot and the
// router's reload share during a deploy. The helper, a few MB, forks instead. The server turns
// it on (`useSpawner`); `run` and the local runtime go through it then, and spawn directly
// otherwise (the CLI, tests) or once it has died. Programs whose input or output the control
// plane streams (`spawnStreaming`: git http-backend, tar, the build sandbox) get connections to
// the helper's stream socket as their fds, so their bytes never pass through the helper.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";

const helperScript = fileURLToPath(new URL("../../libexec/spawn-helper", import.meta.url));

type Reply = { id: number; streams?: boolean; pid?: number; code?: number | null; signal?: NodeJS.Signals | null; stdout?: string; stderr?: string; error?: string; errno?: number };

/**
 * A program the helper started: its pid, and its exit once the helper reports it ("exit"), or
 * "lost" if the helper dies first.
 */
export class HelperChild extends EventEmitter {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Set when the helper died first: the program's end will not be reported. */
  lost = false;

  /** Resolves when the program has ended or is lost, even if that happened before the call. */
  ended(): Promise<void> {
    if (this.exitCode !== null || this.signalCode !== null || this.lost) return Promise.resolve();
    return new Promise((resolve) => {
      this.once("exit", () => resolve());
      this.once("lost", () => resolve());
    });
  }
}

/** A program whose fds the control plane streams: a ChildProcess, or one the helper started. */
export interface StreamChild extends EventEmitter {
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: readonly (Readable | Writable | null | undefined)[];
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals): boolean;
}

/**
 * A program the helper started with connections as its fds (`Spawner.pipe`). Events as a
 * ChildProcess has them: "spawn", "error" (it could not start), "exit" (code, signal), and
 * "close" (code, signal) once it has exited and its streams have closed.
 */
export class PipedChild extends EventEmitter implements StreamChild {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stdio: (Socket | null)[];
  private pendingKill: NodeJS.Signals | undefined;
  private open: number;
  private exited = false;

  constructor(stdio: (Socket | null)[]) {
    super();
    this.stdio = stdio;
    const sockets = stdio.filter((x): x is Socket => x !== null);
    this.open = sockets.length;
    for (const sock of sockets) {
      // As a ChildProcess's pipes: an error (the program went away first) ends the stream, and
      // the caller sees the program's exit; an unheard socket error must not end the server.
      sock.on("error", () => undefined);
      sock.once("close", () => {
        this.open--;
        this.maybeClose();
      });
    }
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }

  get stdout(): Socket | null {
    return this.stdio[1] ?? null;
  }

  get stderr(): Socket | null {
    return this.stdio[2] ?? null;
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    if (this.exited) return false;
    if (this.pid === undefined) {
      this.pendingKill = signal;
      return true;
    }
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** @internal The helper's replies. */
  started(pid: number): void {
    this.pid = pid;
    this.emit("spawn");
    if (this.pendingKill) this.kill(this.pendingKill);
  }

  /**
   * @internal It exited (`lost`: the helper died, so its status is unknown; it may still run,
   * reading and writing its connections, and "close" waits for them to end).
   */
  ended(code: number | null, signal: NodeJS.Signals | null, lost = false): void {
    this.exited = true;
    this.exitCode = code;
    this.signalCode = signal;
    // As spawn does: its stdin is closed (a program it started, such as tar's gzip, then sees
    // the end of its input and ends too), and output nobody reads is let go, so they close.
    if (!lost) this.stdin?.destroy();
    this.emit("exit", code, signal);
    for (const sock of this.stdio) if (sock && sock.readableFlowing === null) sock.resume();
    this.maybeClose();
  }

  /**
   * @internal It never started: its streams are closed, "error" then "close" as spawn does. An
   * "error" nobody listens to is not thrown (spawn's would end the server): "close" still says
   * the program did not run (exit code null).
   */
  failed(err: Error): void {
    this.exited = true;
    for (const sock of this.stdio) sock?.destroy();
    if (this.listenerCount("error") > 0) this.emit("error", err);
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.exited && this.open === 0) {
      this.open = -1;
      this.emit("close", this.exitCode, this.signalCode);
    }
  }
}

/** What `run` gets back. */
export interface HelperRunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** The helper died before it answered: a `run` it was asked for never started. */
export class HelperGone extends Error {}

/** The errno names a failed start may carry, as `spawn` reports them. */
const ERRNO_CODES: Record<number, string> = { 2: "ENOENT", 8: "ENOEXEC", 13: "EACCES", 20: "ENOTDIR", 40: "ELOOP" };

/** Errors as `spawn` raises them (`code` ENOENT, EACCES...). */
function spawnError(reply: Reply, file: string): NodeJS.ErrnoException {
  const code = ERRNO_CODES[reply.errno ?? 0];
  const err: NodeJS.ErrnoException = new Error(`spawn ${file}${code ? ` ${code}` : ""}: ${reply.error ?? "failed"}`);
  err.code = code;
  err.errno = reply.errno;
  err.path = file;
  return err;
}

/** The helper process and the requests in flight. */
export class Spawner {
  private readonly child: ChildProcess;
  private readonly handlers = new Map<number, (r: Reply) => void>();
  private nextId = 1;
  private dead = false;
  private closing = false;
  private readonly log: (line: string) => void;
  /** The helper's stream socket (abstract namespace): see `pipe`. */
  private readonly streams = `quai-spawn-${process.pid}-${randomBytes(8).toString("hex")}`;
  /** Whether the helper listens on its stream socket yet (it says so once it does). */
  streamsReady = false;

  constructor(log: (line: string) => void = () => {}, python = "python3") {
    this.log = log;
    this.child = spawn(python, ["-u", "-I", helperScript, "--streams", this.streams], { stdio: ["pipe", "pipe", "inherit"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
    this.child.on("error", (err) => this.die(`the spawn helper failed: ${err.message}`));
    this.child.on("exit", (code, signal) => this.die(`the spawn helper exited (${code ?? signal})`));
    this.child.stdin?.on("error", () => undefined);
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        return this.log(`spawner: the spawn helper said something unexpected: ${line.slice(0, 200)}`);
      }
      if (reply.id === 0 && reply.streams) this.streamsReady = true;
      else this.handlers.get(reply.id)?.(reply);
    });
  }

  /** Whether requests can go to the helper (false once it has died). */
  get alive(): boolean {
    return !this.dead && !this.closing;
  }

  /** Ends the helper (programs it started with `start` keep running, reported "lost"). */
  close(): void {
    this.closing = true;
    this.child.stdin?.end();
  }

  private die(why: string): void {
    if (this.dead) return;
    this.dead = true;
    if (!this.closing) this.log(`spawner: ${why}; programs are started directly from now on`);
    for (const [id, h] of this.handlers) {
      h({ id, error: why, errno: -1 });
    }
    this.handlers.clear();
  }

  private send(req: Record<string, unknown>, onReply: (r: Reply) => void): number {
    const id = this.nextId++;
    this.handlers.set(id, onReply);
    this.child.stdin!.write(`${JSON.stringify({ ...req, id })}\n`);
    return id;
  }

  /** Runs a program to its end, collecting its output (see `run` in run.ts). */
  run(cmd: string, args: readonly string[], opts: { cwd?: string; env: NodeJS.ProcessEnv; input?: string; uid?: number; gid?: number; signal?: AbortSignal }): Promise<HelperRunResult> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(abortError(opts.signal));
      let pid: number | undefined;
      let done = false;
      const onAbort = () => {
        if (done) return;
        done = true;
        if (pid !== undefined) signalProcess(pid);
        reject(abortError(opts.signal as AbortSignal));
      };
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      const id = this.send(
        {
          op: "run",
          argv: [cmd, ...args],
          env: opts.env,
          ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
          ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
          ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
          ...(opts.input ? { input: Buffer.from(opts.input).toString("base64") } : {}),
        },
        (r) => {
          if (r.pid !== undefined && r.code === undefined && r.signal === undefined) {
            pid = r.pid;
            if (done) signalProcess(pid); // Aborted before the helper said which.
            return;
          }
          this.handlers.delete(id);
          opts.signal?.removeEventListener("abort", onAbort);
          if (done) return;
          done = true;
          if (r.error !== undefined) return reject(r.errno === -1 && pid === undefined ? new HelperGone(r.error) : spawnError(r, cmd));
          resolve({ code: r.code ?? null, signal: r.signal ?? null, stdout: Buffer.from(r.stdout ?? "", "base64"), stderr: Buffer.from(r.stderr ?? "", "base64") });
        },
      );
    });
  }

  /**
   * Starts a long-running program in a session of its own: stdin /dev/null, stdout and stderr
   * appended to `log`, fd 3 the `status` file, fd 4 a pipe holding `args`. Resolves once it
   * runs; the child reports its exit ("exit" event, exitCode/signalCode).
   */
  start(argv: readonly string[], opts: { env: NodeJS.ProcessEnv; log: string; status: string; args: Buffer }): Promise<HelperChild> {
    return new Promise((resolve, reject) => {
      const child = new HelperChild();
      const id = this.send({ op: "start", argv, env: opts.env, log: opts.log, status: opts.status, args: opts.args.toString("base64") }, (r) => {
        if (r.error !== undefined) {
          this.handlers.delete(id);
          if (child.pid === undefined) return reject(spawnError(r, argv[0] as string));
          // The helper died: the program runs on, to be watched by its pid from now on.
          child.lost = true;
          child.emit("lost");
          return;
        }
        if (r.pid !== undefined && r.code === undefined && r.signal === undefined) {
          child.pid = r.pid;
          return resolve(child);
        }
        this.handlers.delete(id);
        child.exitCode = r.code ?? null;
        child.signalCode = r.signal ?? null;
        child.emit("exit", child.exitCode, child.signalCode);
      });
    });
  }

  /**
   * Starts `cmd` (searched on the helper's PATH) with each "pipe" of `stdio` a connection to the
   * helper's stream socket, which the program gets as that fd, and each "ignore" /dev/null. The
   * child is returned at once, as spawn returns one: its streams take writes before it runs.
   */
  pipe(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; stdio: readonly ("pipe" | "ignore")[] }): PipedChild {
    const token = randomBytes(16).toString("hex");
    const sockets = opts.stdio.map((kind, fd) => {
      if (kind !== "pipe") return null;
      const sock = connect({ path: `\0${this.streams}` });
      sock.write(`${token}${String(fd).padStart(2, "0")}`);
      return sock;
    });
    const child = new PipedChild(sockets);
    const fds = (kind: "pipe" | "ignore") => opts.stdio.flatMap((k, fd) => (k === kind ? [fd] : []));
    const id = this.send({ op: "pipe", argv: [cmd, ...args], env: opts.env, token, sockets: fds("pipe"), null: fds("ignore") }, (r) => {
      if (r.error !== undefined) {
        this.handlers.delete(id);
        if (child.pid === undefined) return child.failed(r.errno === -1 ? new HelperGone(r.error) : spawnError(r, cmd));
        // The helper died: the program runs on (its fds are the control plane's connections), but
        // its exit status is lost.
        return child.ended(null, null, true);
      }
      if (r.pid !== undefined && r.code === undefined && r.signal === undefined) return child.started(r.pid);
      this.handlers.delete(id);
      child.ended(r.code ?? null, r.signal ?? null);
    });
    return child;
  }
}

/**
 * Spawns `cmd` with its stdio streamed by the control plane: through the helper when there is
 * one (see `Spawner.pipe`), else with child_process.spawn. `uid` runs it as that uid and gid
 * without supplementary groups (setpriv, as spawn's uid and gid options do).
 */
export function spawnStreaming(cmd: string, args: readonly string[], opts: { env: NodeJS.ProcessEnv; stdio: readonly ("pipe" | "ignore")[]; uid?: number }): StreamChild {
  const helper = spawner();
  if (!helper?.streamsReady) return spawn(cmd, args, { env: opts.env, stdio: [...opts.stdio], ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}) }) as ChildProcess & StreamChild;
  if (opts.uid === undefined) return helper.pipe(cmd, args, opts);
  return helper.pipe("setpriv", [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, "--clear-groups", "--", cmd, ...args], opts);
}

/** SIGTERM, as spawn's abort sends; a program that has ended meanwhile is no error. */
function signalProcess(pid: number): void {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // Already gone.
  }
}

function abortError(signal: AbortSignal): Error {
  const err = new Error("The operation was aborted", { cause: signal.reason });
  err.name = "AbortError";
  return err;
}

let current: Spawner | undefined;

/** Starts the helper for this process (the server does, once); `run` and the runtime use it. */
export function useSpawner(log?: (line: string) => void): Spawner {
  if (!current?.alive) current = new Spawner(log);
  return current;
}

/** The helper, if this process started one and it is alive. */
export function spawner(): Spawner | undefined {
  return current?.alive ? current : undefined;
}

/** Stops using the helper (the server's stop). */
export function closeSpawner(): void {
  current?.close();
  current = undefined;
}
