// The Redis add-on engine: one redis-server per instance, durable through its append-only file.
// The app authenticates as Redis' `default` user, denied the administrative commands; the
// engine's own work (backups, restores, key counts) goes through an admin ACL user.
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { Redis } from "ioredis";
import { ensurePrivateDir, writeFileAtomic } from "../../core/files.ts";
import { run } from "../../core/run.ts";
import type { AddonEngine, Credentials, DataSummary, EngineContext, Instance, PlanSpec, ServerProcess } from "../engine.ts";
import { dirBytes, startDetached, stopDetached, tailFile, waitUntil } from "../process.ts";
import { findBin, MiB, quotedPath, scalingoProvider, urlVariables } from "./common.ts";

const PROVIDER = scalingoProvider(
  { id: "redis", name: "Redis", shortDescription: "Redis: a dedicated server per add-on, persisted to disk, with backups.", envPrefix: "REDIS" },
  { maxConnections: [10, 100, 200, 400, 800], unit: "clients" },
);

/** The engine's own ACL user. */
const ADMIN_USER = "quai-admin";

/**
 * What the app's user may run. Everything but Redis' `admin` and `dangerous` categories: CONFIG
 * (which could point `dir` anywhere on the host), REPLICAOF/SLAVEOF, DEBUG, SHUTDOWN, MODULE,
 * SAVE/BGSAVE/BGREWRITEAOF, MONITOR, ACL changes, CLIENT KILL/PAUSE, MIGRATE and RESTORE (which
 * loads raw serialized values). Given back: commands Redis calls dangerous only because they
 * are slow on big data sets or wipe the app's own data (KEYS, SORT, FLUSHDB, FLUSHALL, SWAPDB),
 * and read-only ones that client libraries and dashboards use (INFO for ready checks, CLIENT
 * LIST, ROLE, LASTSAVE, SLOWLOG GET/LEN).
 */
const APP_RULES = "+@all -@admin -@dangerous +keys +sort +sort_ro +flushdb +flushall +swapdb +info +client|list +role +lastsave +slowlog|get +slowlog|len";

/** Connections beyond the plan's, so backups and health checks get through a saturated server. */
const RESERVED_CLIENTS = 2;

/** maxmemory: the plan's memory less a quarter, for copy-on-write of the forks that write the AOF and backups, buffers and fragmentation. */
export function maxMemoryBytes(plan: PlanSpec): number {
  return Math.floor((plan.memoryBytes * 3) / 4 / MiB) * MiB;
}

function pathsOf(inst: Instance) {
  const data = join(inst.dir, "data");
  return {
    data,
    config: join(inst.dir, "redis.conf"),
    log: join(inst.dir, "redis.log"),
    rdb: join(data, "dump.rdb"),
    aofDir: join(data, "appendonlydir"),
  };
}

const SECRET = /^[A-Za-z0-9_-]{16,128}$/;

/** The two passwords, checked before they reach the config file (a tampered record must not become syntax). */
function checkedSecrets(inst: Instance): { password: string; adminPassword: string } {
  const password = inst.credentials.password;
  const adminPassword = inst.credentials.admin.adminPassword ?? "";
  if (!SECRET.test(password) || !SECRET.test(adminPassword)) throw new Error(`invalid Redis password for instance ${inst.id}`);
  return { password, adminPassword };
}

/** The server's config file: the only one it reads. */
export function serverConfig(inst: Instance): string {
  const p = pathsOf(inst);
  const { password, adminPassword } = checkedSecrets(inst);
  return [
    `# Written by Quai for add-on instance ${inst.id} (plan ${inst.plan.name}) at each start.`,
    `port ${inst.port}`,
    "bind 127.0.0.1",
    "protected-mode yes",
    // No unix socket: apps and the engine alike use TCP on the instance's port.
    "unixsocket \"\"",
    "daemonize no",
    "supervised no",
    // stdout, which startDetached appends to the instance's log file.
    "logfile \"\"",
    `dir ${quotedPath(p.data)}`,
    "dbfilename dump.rdb",
    // The append-only file is the durable copy; periodic RDB snapshots would only double the disk use.
    "save \"\"",
    "appendonly yes",
    "appenddirname appendonlydir",
    "appendfsync everysec",
    "aof-use-rdb-preamble yes",
    `maxmemory ${maxMemoryBytes(inst.plan)}`,
    "maxmemory-policy noeviction",
    `maxclients ${inst.plan.maxConnections + RESERVED_CLIENTS}`,
    // Backups are replication syncs: start them at once rather than waiting for more replicas.
    "repl-diskless-sync-delay 0",
    // Redis' defaults, stated so they stay: no changing `dir` and the like at run time, no DEBUG, no MODULE, even for the admin user.
    "enable-protected-configs no",
    "enable-debug-command no",
    "enable-module-command no",
    `user default reset on >${password} ~* &* ${APP_RULES}`,
    `user ${ADMIN_USER} reset on >${adminPassword} ~* &* +@all`,
  ].join("\n") + "\n";
}

/** Runs `fn` with a connection as the app (`default`) or the admin user; no retries, no queueing. */
async function withRedis<T>(inst: Instance, as: "app" | "admin", fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({
    host: "127.0.0.1",
    port: inst.port,
    ...(as === "admin" ? { username: ADMIN_USER, password: inst.credentials.admin.adminPassword } : { password: inst.credentials.password }),
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
  // Failures surface through the rejected promises; the event would only be reported as unhandled.
  r.on("error", () => {});
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** `key:value` lines of an INFO section. */
function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  return fields;
}

/** Runs Redis servers for `redis` add-ons. */
export class RedisEngine implements AddonEngine {
  readonly provider = PROVIDER;
  readonly backupFormat = "rdb.gz";
  private readonly ctx: EngineContext;

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
  }

  newCredentials(): Credentials {
    // Apps authenticate as `default` with the password alone (`redis://:password@host:port`).
    return { user: "default", password: randomBytes(24).toString("base64url"), database: "0", admin: { adminPassword: randomBytes(24).toString("base64url") } };
  }

  async provision(inst: Instance): Promise<void> {
    checkedSecrets(inst);
    await ensurePrivateDir(inst.dir);
    await ensurePrivateDir(pathsOf(inst).data);
    await writeFileAtomic(pathsOf(inst).config, serverConfig(inst));
  }

  start(inst: Instance): Promise<ServerProcess> {
    return this.launch(inst, []);
  }

  /** Starts the server with `overrides` (config directives as arguments) and waits for an authenticated PING. */
  private async launch(inst: Instance, overrides: string[]): Promise<ServerProcess> {
    const p = pathsOf(inst);
    // Rewritten at each start so that a plan change takes effect at the next restart.
    await writeFileAtomic(p.config, serverConfig(inst));
    await ensurePrivateDir(p.data);
    const proc = await startDetached(inst, findBin("redis-server"), [p.config, ...overrides], p.log);
    try {
      // Loading a big append-only file takes a while; PING answers LOADING until it is done.
      await waitUntil(() => this.ping(inst), proc, `redis-server of add-on instance ${inst.id}`, 120_000, () => this.logs(inst, 20));
    } catch (err) {
      await stopDetached(inst, proc, "SIGTERM", 5_000);
      throw err;
    }
    return proc;
  }

  async ping(inst: Instance): Promise<boolean> {
    try {
      return (await withRedis(inst, "app", (r) => r.ping())) === "PONG";
    } catch {
      return false;
    }
  }

  async stop(inst: Instance, proc: ServerProcess | undefined): Promise<void> {
    // SIGTERM: Redis flushes and fsyncs the append-only file, then exits.
    await stopDetached(inst, proc, "SIGTERM", 30_000);
  }

  env(inst: Instance): Record<string, string> {
    const url = `redis://:${encodeURIComponent(inst.credentials.password)}@127.0.0.1:${inst.port}`;
    return urlVariables(PROVIDER.envPrefix, url);
  }

  dataBytes(inst: Instance): Promise<number> {
    return dirBytes(pathsOf(inst).data);
  }

  /**
   * A snapshot through the replication protocol (`redis-cli --rdb`), so the server forks and
   * streams it without touching its own files. It goes through a file: on stdout redis-cli 7.0
   * leaves the 40-byte end-of-transfer marker after the RDB.
   */
  async backup(inst: Instance, out: Writable): Promise<void> {
    const { adminPassword } = checkedSecrets(inst);
    const file = join(inst.dir, `backup-${randomBytes(6).toString("hex")}.rdb`);
    try {
      const args = ["-h", "127.0.0.1", "-p", String(inst.port), "--user", ADMIN_USER, "--no-auth-warning", "--rdb", file];
      // The password through the environment: argv is visible to every user in ps.
      const res = await run(findBin("redis-cli"), args, { env: { ...process.env, REDISCLI_AUTH: adminPassword } });
      if (res.code !== 0 || !/Transfer finished with success/.test(res.stderr + res.stdout)) {
        throw new Error(`redis-cli --rdb of add-on instance ${inst.id} failed (${res.code ?? res.signal}): ${(res.stderr || res.stdout).trim()}`);
      }
      await pipeline(createReadStream(file), createGzip(), out, { end: false });
    } finally {
      await rm(file, { force: true });
    }
  }

  /**
   * Redis loads an RDB only at start, and only when the append-only file is off. So: check the
   * dump, stop the server, put the dump in place of the (empty) data, start with the
   * append-only file off, then turn it on, which rewrites it from the loaded data; once that
   * rewrite is done the RDB is no longer needed and restarts load the restored data.
   */
  async restore(inst: Instance, proc: ServerProcess, dump: Readable): Promise<ServerProcess> {
    const p = pathsOf(inst);
    const incoming = join(inst.dir, `restore-${randomBytes(6).toString("hex")}.rdb`);
    try {
      try {
        await pipeline(dump, createGunzip(), createWriteStream(incoming, { mode: 0o600 }));
      } catch (err) {
        throw new Error(`restore failed: ${(err as Error).message}`, { cause: err });
      }
      const check = await run(findBin("redis-check-rdb"), [incoming]);
      if (check.code !== 0) throw new Error(`restore failed: not a valid RDB file: ${(check.stdout + check.stderr).trim().split("\n").slice(-4).join(" | ")}`);

      await this.stop(inst, proc);
      await rm(p.aofDir, { recursive: true, force: true });
      await rename(incoming, p.rdb);
      const started = await this.launch(inst, ["--appendonly", "no"]);
      await withRedis(inst, "admin", (r) => r.config("SET", "appendonly", "yes"));
      let status = "";
      const rewritten = async () => {
        const info = infoFields(await withRedis(inst, "admin", (r) => r.info("persistence")));
        status = info.get("aof_last_bgrewrite_status") ?? "";
        const idle = info.get("aof_rewrite_in_progress") === "0" && info.get("aof_rewrite_scheduled") === "0";
        return idle && (status === "err" || Number(info.get("aof_rewrites")) > 0);
      };
      await waitUntil(rewritten, started, `redis-server of add-on instance ${inst.id} (append-only file rewrite)`, 600_000, () => this.logs(inst, 20));
      if (status !== "ok") throw new Error(`restore failed: the append-only file rewrite failed:\n${(await this.logs(inst, 10)).join("\n")}`);
      await rm(p.rdb, { force: true });
      this.ctx.log(`redis: restored add-on instance ${inst.id}`);
      return started;
    } finally {
      await rm(incoming, { force: true });
    }
  }

  async summarize(inst: Instance): Promise<DataSummary> {
    const info = infoFields(await withRedis(inst, "admin", (r) => r.info("keyspace")));
    let keys = 0;
    for (const [name, value] of info) {
      const m = /^keys=(\d+)/.exec(value);
      if (/^db\d+$/.test(name) && m) keys += Number(m[1]);
    }
    return { keys };
  }

  logs(inst: Instance, lines: number): Promise<string[]> {
    return tailFile(pathsOf(inst).log, lines);
  }

  async destroy(inst: Instance, proc: ServerProcess | undefined): Promise<void> {
    await stopDetached(inst, proc, "SIGTERM", 10_000);
    await rm(inst.dir, { recursive: true, force: true });
  }
}
