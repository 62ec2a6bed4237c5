// Starting programs through a small helper process (libexec/spawn-helper). A fork copies the
// parent's page tables and write-protects all its memory: from the control plane (~200 MB), a
// spawn blocked the event loop ~4 ms, and the page faults as the control plane wrote to its own
// memory again cost it tens of milliseconds of CPU more, on the 2 cores an app's boot and the
// router's reload share during a deploy. The helper, a few MB, forks instead. The server turns
// it on (`useSpawner`); `run` and the local runtime go through it then, and spawn directly
// otherwise (the CLI, tests) or once it has died.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const helperScript = fileURLToPath(new URL("../../libexec/spawn-helper", import.meta.url));

type Reply = { id: number; pid?: number; code?: number | null; signal?: NodeJS.Signals | null; stdout?: string; stderr?: string; error?: string; errno?: number };

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

  constructor(log: (line: string) => void = () => {}, python = "python3") {
    this.log = log;
    this.child = spawn(python, ["-u", "-I", helperScript], { stdio: ["pipe", "pipe", "inherit"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
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
      this.handlers.get(reply.id)?.(reply);
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
