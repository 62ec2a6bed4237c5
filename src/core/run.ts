// Runs programs with an argv array, never through a shell: user input can't become syntax.
import { spawn, type SpawnOptions } from "node:child_process";
import { HelperGone, spawner } from "./spawner.ts";

/** Options of `run`. */
export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** Written to the program's stdin, then closed. */
  input?: string;
  uid?: number;
  gid?: number;
}

/** What a finished program left. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd` with `args` and collects its output; resolves whatever the exit code. Through the
 * spawn helper when this process has one (the server: see spawner.ts).
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const helper = spawner();
  if (helper) {
    return helper.run(cmd, args, { ...opts, env: opts.env ?? process.env }).then(
      (r) => ({ code: r.code, signal: r.signal, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") }),
      // The helper died (or could not start) with the request in flight: the program never ran.
      (err: unknown) => (err instanceof HelperGone ? runDirect(cmd, args, opts) : Promise.reject(err)),
    );
  }
  return runDirect(cmd, args, opts);
}

/** `run` without the spawn helper: this process forks. */
function runDirect(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: opts.env ?? process.env, signal: opts.signal, stdio: ["pipe", "pipe", "pipe"] };
    if (opts.uid !== undefined) spawnOpts.uid = opts.uid;
    if (opts.gid !== undefined) spawnOpts.gid = opts.gid;
    const child = spawn(cmd, args, spawnOpts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      resolvePromise({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    // A program that exits without reading its stdin must not crash us with EPIPE.
    child.stdin?.on("error", () => {});
    child.stdin?.end(opts.input ?? "");
  });
}

/** Runs a program and throws with its stderr when it does not exit 0. */
export async function runChecked(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${res.code ?? res.signal}: ${res.stderr.trim() || res.stdout.trim()}`);
  }
  return res;
}
