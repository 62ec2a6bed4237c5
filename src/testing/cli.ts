// Test helpers that run Quai as a user does: `quai server` as a child process, `quai ...` commands.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { run, type RunResult } from "../core/run.ts";

export const QUAI_BIN = fileURLToPath(new URL("../../bin/quai.js", import.meta.url));

/** A `quai server` child process. */
export interface ServerProcess {
  proc: ChildProcess;
  url: string;
  /** The owner token printed at first start (undefined on later starts). */
  token: string | undefined;
  /** Everything the server printed on stderr so far. */
  log: string[];
  /** SIGINT and wait for exit; resolves to the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `quai server` with `env` (QUAI_HOME etc.) and waits for its banner. */
export async function spawnServer(env: NodeJS.ProcessEnv, args: string[] = []): Promise<ServerProcess> {
  // Servers in tests run API-only unless they ask for the runtime (QUAI_RUNTIME=on).
  const proc = spawn(process.execPath, [QUAI_BIN, "server", ...args], { env: { ...process.env, QUAI_RUNTIME: "off", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const log: string[] = [];
  createInterface({ input: proc.stderr! }).on("line", (l) => log.push(l));
  const lines = createInterface({ input: proc.stdout! });
  let url = "";
  let token: string | undefined;
  const ready = new Promise<void>((resolvePromise, reject) => {
    lines.on("line", (line) => {
      const api = /^\s+API:\s+(\S+)/.exec(line);
      if (api) url = api[1] as string;
      const tok = /Owner API token.*: (qt_\S+)/.exec(line);
      if (tok) token = tok[1];
      if (/^\s+Home:/.test(line)) resolvePromise();
    });
    proc.once("exit", (code) => reject(new Error(`quai server exited with ${code} before it was up:\n${log.join("\n")}`)));
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  await ready.finally(() => clearTimeout(timer));
  // The token line comes after the Home line.
  await new Promise((r) => setTimeout(r, 50));
  return {
    proc,
    url,
    get token() {
      return token;
    },
    log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill("SIGINT");
      const [code] = (await once(proc, "exit")) as [number | null];
      return code;
    },
  };
}

/** Runs `quai args...` with `env`; never throws on a non-zero exit. */
export function quai(args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<RunResult> {
  return run(process.execPath, [QUAI_BIN, ...args], { env: { ...process.env, ...env }, ...(input !== undefined ? { input } : {}) });
}
