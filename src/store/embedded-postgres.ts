// Runs and supervises a PostgreSQL cluster owned by Quai: initdb on first start, a port chosen at
// run time, restarted if it dies, stopped cleanly. Used for Quai's own state and, later, add-ons.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { ensurePrivateDir, writeFileAtomic } from "../core/files.ts";
import { freePort } from "../core/net.ts";
import { runChecked } from "../core/run.ts";

/** Options of an embedded cluster. */
export interface EmbeddedPostgresOptions {
  /** Directory owned by this cluster: `data/`, `password`, `connection.json`. */
  dir: string;
  /** Database created on first start and named in `url`. */
  database?: string;
  /** false turns off fsync: for throwaway test clusters only. */
  durable?: boolean;
  /** Where supervision messages go. */
  log?: (line: string) => void;
}

const USER = "quai";
/** Unprivileged uid PostgreSQL runs as when Quai runs as root (PostgreSQL refuses root). */
const NOBODY = 65534;

/** Finds the PostgreSQL server binaries: `QUAI_PG_BIN`, else the newest under /usr/lib/postgresql. */
export function postgresBinDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.QUAI_PG_BIN) return env.QUAI_PG_BIN;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "postgres"))).sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) {
    throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: run `npm run setup` (installs the postgresql package) or set QUAI_PG_BIN");
  }
  return join(root, versions[0] as string, "bin");
}

/**
 * Argv prefix that runs a PostgreSQL binary as an unprivileged uid when we are root. A user
 * namespace maps that uid back to root outside, so the files stay ours and any QUAI_HOME works
 * (PostgreSQL refuses to run as uid 0, and a `postgres` user could not read /root/.quai).
 */
function asUnprivileged(bin: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [bin, args];
  return ["unshare", ["--user", `--map-user=${NOBODY}`, `--map-group=${NOBODY}`, bin, ...args]];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A supervised PostgreSQL server process. */
export class EmbeddedPostgres {
  readonly dir: string;
  readonly dataDir: string;
  readonly database: string;
  private readonly durable: boolean;
  private readonly log: (line: string) => void;
  private child: ChildProcess | undefined;
  private stopping = false;
  private port = 0;
  private password = "";
  private restarts = 0;
  private readonly stderrTail: string[] = [];

  constructor(opts: EmbeddedPostgresOptions) {
    this.dir = opts.dir;
    this.dataDir = join(opts.dir, "data");
    this.database = opts.database ?? "quai";
    this.durable = opts.durable ?? true;
    this.log = opts.log ?? (() => {});
  }

  /** Connection URL of the cluster's database (valid once `start` resolved). */
  get url(): string {
    return this.urlFor(this.database);
  }

  /** Connection URL of another database on the same cluster. */
  urlFor(database: string): string {
    // The Unix socket when there is one: each query costs less CPU than over loopback TCP.
    const host = this.socketDir ? encodeURIComponent(this.socketDir) : "127.0.0.1";
    return `postgres://${USER}:${this.password}@${host}:${this.port}/${encodeURIComponent(database)}`;
  }

  /**
   * Where the server's Unix socket is, unless its path would be too long for one (108 bytes) or
   * hold characters the setting's list syntax gives a meaning to.
   */
  private get socketDir(): string | undefined {
    const dir = join(this.dir, "run");
    return Buffer.byteLength(join(dir, ".s.PGSQL.65535")) < 108 && /^[A-Za-z0-9_./@+-]+$/.test(dir) ? dir : undefined;
  }

  /** PID of the running postmaster, if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Initialises the cluster if needed, starts it and waits until it accepts connections. */
  async start(): Promise<string> {
    this.stopping = false;
    await ensurePrivateDir(this.dir);
    await this.initIfNeeded();
    this.password = (await readFile(join(this.dir, "password"), "utf8")).trim();
    await this.stopOrphan();
    if (this.socketDir) await ensurePrivateDir(this.socketDir);
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      try {
        await this.spawnAndWait();
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
        this.log(`postgres: start on port ${this.port} failed (${(err as Error).message}); retrying on another port`);
      }
    }
    await this.ensureDatabase();
    await writeFileAtomic(join(this.dir, "connection.json"), JSON.stringify({ url: this.url, pid: this.pid }) + "\n");
    return this.url;
  }

  /** Stops the server (fast shutdown: open transactions roll back, data is safe). */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGINT");
    const timer = setTimeout(() => child.kill("SIGQUIT"), 20_000);
    await exited;
    clearTimeout(timer);
    await rm(join(this.dir, "connection.json"), { force: true });
  }

  private async initIfNeeded(): Promise<void> {
    if (existsSync(join(this.dataDir, "PG_VERSION"))) return;
    const bin = postgresBinDir();
    const password = randomBytes(24).toString("hex");
    await writeFile(join(this.dir, "password"), password + "\n", { mode: 0o600 });
    // initdb into a scratch directory and rename: a crash mid-initdb never leaves a half cluster.
    const scratch = `${this.dataDir}.init`;
    await rm(scratch, { recursive: true, force: true });
    const args = [`--pgdata=${scratch}`, `--username=${USER}`, "--auth=scram-sha-256", `--pwfile=${join(this.dir, "password")}`, "--encoding=UTF8", "--locale=C"];
    if (!this.durable) args.push("--no-sync");
    const [cmd, argv] = asUnprivileged(join(bin, "initdb"), args);
    await runChecked(cmd, argv);
    await rename(scratch, this.dataDir);
    this.log(`postgres: initialised a new cluster in ${this.dataDir}`);
  }

  /** A postmaster left running by a control plane that was killed: stop it, it is ours. */
  private async stopOrphan(): Promise<void> {
    const pidFile = join(this.dataDir, "postmaster.pid");
    if (!existsSync(pidFile)) return;
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return;
    }
    if (!cmdline.includes("postgres") || !cmdline.includes(this.dataDir)) return;
    this.log(`postgres: stopping the server left running from a previous start (pid ${pid})`);
    process.kill(pid, "SIGINT");
    for (let i = 0; i < 300 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid, "SIGQUIT");
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
  }

  private spawnAndWait(): Promise<void> {
    const bin = postgresBinDir();
    const args = [
      "-D", this.dataDir,
      "-c", "listen_addresses=127.0.0.1",
      "-p", String(this.port),
      "-c", `unix_socket_directories=${this.socketDir ?? ""}`,
      "-c", "unix_socket_permissions=0700",
      "-c", "max_connections=200",
      "-c", "shared_buffers=64MB",
      "-c", "log_min_messages=warning",
    ];
    if (!this.durable) args.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
    const [cmd, argv] = asUnprivileged(join(bin, "postgres"), args);
    const child = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    this.stderrTail.length = 0;
    let ready = false;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) {
        if (!line) continue;
        this.stderrTail.push(line);
        if (this.stderrTail.length > 40) this.stderrTail.shift();
        // Before it is ready, "starting up" refusals of our own probes are expected noise.
        if (ready && !this.stopping && /FATAL|PANIC/.test(line)) this.log(`postgres: ${line}`);
      }
    });
    return new Promise((resolvePromise, reject) => {
      child.once("exit", (code, signal) => {
        if (!ready) {
          reject(new Error(`postgres exited during start (${code ?? signal}): ${this.stderrTail.slice(-5).join(" | ")}`));
          return;
        }
        if (!this.stopping) void this.restartAfterCrash(code, signal);
      });
      const deadline = Date.now() + 30_000;
      const probe = async () => {
        while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
          const client = new pg.Client({ connectionString: this.urlFor("postgres"), connectionTimeoutMillis: 1000 });
          try {
            await client.connect();
            await client.end();
            ready = true;
            resolvePromise();
            return;
          } catch {
            await client.end().catch(() => {});
            await sleep(50);
          }
        }
        if (!ready && child.exitCode === null) {
          child.kill("SIGQUIT");
          reject(new Error(`postgres did not accept connections within 30 s: ${this.stderrTail.slice(-5).join(" | ")}`));
        }
      };
      void probe();
    });
  }

  private async restartAfterCrash(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    this.restarts++;
    const delay = Math.min(30_000, 250 * 2 ** Math.min(this.restarts - 1, 7));
    this.log(`postgres: exited unexpectedly (${code ?? signal}); restarting in ${delay} ms on port ${this.port}`);
    await sleep(delay);
    while (!this.stopping) {
      try {
        await this.spawnAndWait();
        this.log(`postgres: back up (pid ${this.child?.pid})`);
        this.restarts = 0;
        return;
      } catch (err) {
        this.log(`postgres: restart failed: ${(err as Error).message}`);
        await sleep(Math.min(30_000, 1000 * ++this.restarts));
      }
    }
  }

  private async ensureDatabase(): Promise<void> {
    const client = new pg.Client({ connectionString: this.urlFor("postgres") });
    await client.connect();
    try {
      const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [this.database]);
      if (!rowCount) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(this.database)}`);
    } finally {
      await client.end();
    }
  }
}
