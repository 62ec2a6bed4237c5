// What the add-on engines share: Scalingo's plan sizes, where server programs are installed,
// paths in config files, the variables an app gets, and gzipped streams to and from a program.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { Transform, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import type { Instance, PlanSpec, ProviderSpec } from "../engine.ts";

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;

/** One value for each of the five plans, smallest first. */
export type PerPlan<T> = readonly [T, T, T, T, T];

/**
 * Scalingo's plans have the same memory and disk in every provider; only the connection
 * limits differ. Each row: plan name suffix, display name, memory, disk.
 */
const PLAN_SIZES: PerPlan<[suffix: string, displayName: string, memoryBytes: number, diskBytes: number]> = [
  ["sandbox", "Sandbox", 256 * MiB, 1 * GiB],
  ["starter-512", "Starter 512M", 512 * MiB, 10 * GiB],
  ["starter-1024", "Starter 1G", 1 * GiB, 20 * GiB],
  ["starter-2048", "Starter 2G", 2 * GiB, 40 * GiB],
  ["starter-4096", "Starter 4G", 4 * GiB, 80 * GiB],
];

/** How a plan's size reads in its description: 512 MiB, 1 GiB. */
function sizeText(bytes: number): string {
  return bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}

/** What a provider's plans differ in: see `scalingoProvider`. */
export interface PlanLimits {
  maxConnections: PerPlan<number>;
  /** What `maxConnections` counts, in plan descriptions. Default: connections. */
  unit?: string;
  /** How each plan's description opens: what the plan is for. Default: "For development and tests" on the sandbox, nothing on the others. */
  uses?: readonly string[];
}

/**
 * A provider with Scalingo's plans, positioned smallest first and named `<id>-sandbox`,
 * `<id>-starter-512`, and so on.
 */
export function scalingoProvider(provider: Omit<ProviderSpec, "plans">, limits: PlanLimits): ProviderSpec {
  const { maxConnections, unit = "connections", uses = ["For development and tests"] } = limits;
  const plans = PLAN_SIZES.map(([suffix, displayName, memoryBytes, diskBytes], position): PlanSpec => {
    const use = uses[position];
    const connections = maxConnections[position] as number;
    return {
      name: `${provider.id}-${suffix}`,
      displayName,
      description: `${use ? `${use}: ` : ""}${sizeText(memoryBytes)} of memory, ${connections} ${unit}, ${sizeText(diskBytes)} of disk.`,
      memoryBytes,
      maxConnections: connections,
      diskBytes,
      position,
    };
  });
  return { ...provider, plans };
}

const BIN_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** Absolute path of a server program (mariadbd lives in sbin, which a user's PATH may lack). */
export function findBin(name: string): string {
  for (const dir of BIN_DIRS) {
    const file = join(dir, name);
    if (existsSync(file)) return file;
  }
  throw new Error(`${name} not found in ${BIN_DIRS.join(", ")}: install the server package (see scripts/setup.sh)`);
}

/**
 * A path as a config-file value (MariaDB's option files, redis.conf): quoted so that spaces are
 * fine, refused if it holds a character that either format could read as syntax.
 */
export function quotedPath(path: string): string {
  if (/["'\\#;\p{Cc}]/u.test(path)) throw new Error(`unsupported character in path ${JSON.stringify(path)}`);
  return `"${path}"`;
}

/** `scheme://user:password@127.0.0.1:port/database` for the instance's app credentials. */
export function databaseUrl(scheme: string, inst: Instance): string {
  const { user, password, database } = inst.credentials;
  return `${scheme}://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${inst.port}/${encodeURIComponent(database)}`;
}

/** The variables an app gets: `SCALINGO_<envPrefix>_URL` (Scalingo's name) and `QUAI_<envPrefix>_URL`, both `url`. */
export function urlVariables(envPrefix: string, url: string): Record<string, string> {
  return { [`SCALINGO_${envPrefix}_URL`]: url, [`QUAI_${envPrefix}_URL`]: url };
}

/** Collects the last `max` characters of a stream (a program's stderr, for error messages). */
export function lastText(stream: Readable | null, max = 4000): () => string {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (s: string) => {
    text = (text + s).slice(-max);
  });
  return () => text.trim();
}

/** Waits for a child to exit; never rejects unobserved (a spawn error is returned as the result). */
function exitOf(child: ReturnType<typeof spawn>): Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }> {
  return new Promise((resolvePromise) => {
    child.once("error", (error) => resolvePromise({ code: null, signal: null, error }));
    child.once("close", (code, signal) => resolvePromise({ code, signal }));
  });
}

/**
 * Runs `cmd args` and streams its stdout, gzipped, into `out` (left open for the caller). Rejects
 * when the program fails or `out` does. Resolves with the last bytes of the uncompressed output.
 */
export async function compressOutput(cmd: string, args: string[], out: Writable): Promise<string> {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  const exited = exitOf(child);
  const stderr = lastText(child.stderr);
  let tail = Buffer.alloc(0);
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      tail = Buffer.concat([tail, chunk.subarray(-512)]).subarray(-512);
      done(null, chunk);
    },
  });
  try {
    await pipeline(child.stdout as Readable, tap, createGzip(), out, { end: false });
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    throw err;
  }
  const { code, signal, error } = await exited;
  if (error) throw error;
  if (code !== 0) throw new Error(`${basename(cmd)} exited with ${code ?? signal}: ${stderr()}`);
  return tail.toString("latin1");
}

/**
 * Gunzips `source` into the stdin of `cmd args` (through `transform`). Rejects if the data is
 * not gzip, ends early, or the program fails; the program is killed at the first error so that
 * nothing more of a broken dump is applied.
 */
export async function feedDecompressed(cmd: string, args: string[], source: Readable, transform: Transform): Promise<void> {
  const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
  const exited = exitOf(child);
  const stderr = lastText(child.stderr);
  const gunzip = createGunzip();
  // Registered before pipeline's own listeners: the program dies before its stdin is closed.
  gunzip.once("error", () => child.kill("SIGKILL"));
  let failure: Error | undefined;
  try {
    await pipeline(source, gunzip, transform, child.stdin as Writable);
  } catch (err) {
    failure = err as Error;
    child.kill("SIGKILL");
  }
  const { code, signal, error } = await exited;
  if (error) throw error;
  if (failure) throw new Error(`restore failed: ${failure.message}${stderr() ? `; ${basename(cmd)}: ${stderr()}` : ""}`);
  if (code !== 0) throw new Error(`restore failed: ${basename(cmd)} exited with ${code ?? signal}: ${stderr()}`);
}
