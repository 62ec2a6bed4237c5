// The PostgreSQL add-on engine: one PostgreSQL cluster per add-on instance, run detached as an
// unprivileged uid (process.ts), with logical backups (pg_dump), continuous WAL archiving into
// the blob store and point-in-time recovery. The add-on capability drives it through AddonEngine.
//
// Layout of an instance's dir: `data/` (the cluster), `run/` (its Unix socket, 0700: only Quai
// reaches the superuser, which trusts local connections), `wal-archive/` (where archive_command
// puts finished WAL files until `shipWal` moves them to the blob store), `archive-wal.sh`,
// `postgresql.log`, and `restore-wal/` while a point-in-time recovery runs.
import { spawn } from "node:child_process";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import pg from "pg";
import { ensurePrivateDir } from "../../core/files.ts";
import { run, runChecked } from "../../core/run.ts";
import { procStat } from "../../runtime/proc.ts";
import { postgresBinDir } from "../../store/embedded-postgres.ts";
import type {
  AddonEngine,
  BaseBackupInfo,
  Credentials,
  DataSummary,
  EngineContext,
  Instance,
  PitrSupport,
  PlanSpec,
  ProviderSpec,
  ServerProcess,
  WalSegment,
} from "../engine.ts";
import { dirBytes, serverAlive, startDetached, stopDetached, tailFile, unprivileged, waitUntil } from "../process.ts";
import { databaseUrl, GiB, lastText, MiB, scalingoProvider, urlVariables } from "./common.ts";

/** The cluster's superuser: Quai's, reached only over the instance's private Unix socket. */
const SUPERUSER = "postgres";
/** Connections kept for the superuser (backups, summaries), on top of the plan's. */
const RESERVED_CONNECTIONS = 3;
/** Schema of `quai.create_extension`, owned by the superuser, not writable by the app. */
const ADMIN_SCHEMA = "quai";
/** Where `quai.create_extension` puts extensions: superuser-owned, so the app cannot plant objects their scripts would run as superuser. */
const EXTENSION_SCHEMA = "quai_ext";

/**
 * Extensions PostgreSQL does not mark trusted, which apps may still create through
 * `SELECT quai.create_extension('name')` (a superuser-owned SECURITY DEFINER function), where the
 * system has them. pg_stat_statements only reads statistics; postgres_fdw makes non-superusers
 * authenticate with a password, so it cannot borrow the server's own trusted socket.
 */
export const UNTRUSTED_EXTENSION_ALLOWLIST: readonly string[] = ["pg_stat_statements", "postgres_fdw"];

const PROVIDER = scalingoProvider(
  { id: "postgresql", name: "PostgreSQL", shortDescription: "PostgreSQL 15: a dedicated server per add-on, daily backups and point-in-time recovery.", envPrefix: "POSTGRESQL" },
  { maxConnections: [10, 50, 100, 150, 200], uses: ["For trying things out", "For small apps", "For apps in production", "For busier apps", "For large datasets"] },
);

/** The plans, smallest first (ids are Scalingo's). */
export const POSTGRESQL_PLANS: readonly PlanSpec[] = PROVIDER.plans;

/** Names archive_command writes and shipWal moves: segments, partial segments, backup and timeline history files. */
const WAL_FILE = /^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/;

/** Paths of an instance's files. */
function layout(inst: Instance) {
  return {
    data: join(inst.dir, "data"),
    run: join(inst.dir, "run"),
    archive: join(inst.dir, "wal-archive"),
    archiveScript: join(inst.dir, "archive-wal.sh"),
    restoreWal: join(inst.dir, "restore-wal"),
    log: join(inst.dir, "postgresql.log"),
  };
}

/**
 * The archive_command's body, a script taking its paths as arguments (quoted once, in
 * postgresqlConf): it copies a finished WAL file under a hidden temporary name, flushes it, then
 * renames it, so shipWal never sees half a file. A file already archived under that name is kept: same content is success
 * (PostgreSQL archives a file again after a crash), different content is an error.
 */
export const ARCHIVE_SCRIPT = `#!/bin/sh
# archive_command of a Quai PostgreSQL add-on: archive-wal.sh SOURCE ARCHIVE_DIR NAME
set -eu
src=$1
dir=$2
name=$3
dest="$dir/$name"
if [ -e "$dest" ]; then
  exec cmp -s -- "$src" "$dest"
fi
tmp="$dir/.$name.tmp"
cp -- "$src" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$dest"
sync -- "$dir"
`;

const HBA = `# Written by Quai. The superuser only over the instance's private socket; everyone else with a password over TCP.
local   all          ${SUPERUSER}                trust
local   replication  ${SUPERUSER}                trust
host    all          all       127.0.0.1/32  scram-sha-256
`;

/** A value of postgresql.conf: numbers bare, strings quoted. */
function confValue(value: string | number | boolean): string {
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return value ? "on" : "off";
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/** A word for /bin/sh, quoted so nothing in it is syntax. */
function shellWord(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const mb = (bytes: number) => `${Math.max(1, Math.floor(bytes / MiB))}MB`;
const clamp = (n: number, min: number, max: number) => Math.min(max, Math.max(min, n));

/** What a point-in-time recovery adds to the configuration. */
export interface RecoverySettings {
  /** Directory holding the WAL files to replay. */
  walDir: string;
  /** Stop at this time (inclusive); absent: replay all the WAL there is. */
  targetTime?: Date;
}

/**
 * postgresql.conf of an instance, complete: the instance and its plan decide everything, so a
 * data directory restored from another instance's base backup runs with the target's settings.
 */
export function postgresqlConf(inst: Instance, opts: { preload?: readonly string[]; recovery?: RecoverySettings } = {}): string {
  const p = layout(inst);
  const memory = inst.plan.memoryBytes;
  const settings: Record<string, string | number | boolean> = {
    listen_addresses: "127.0.0.1",
    port: inst.port,
    unix_socket_directories: p.run,
    unix_socket_permissions: "0700",
    // The plan's connections are the app's: the superuser's reserved slots come on top.
    max_connections: inst.plan.maxConnections + RESERVED_CONNECTIONS,
    superuser_reserved_connections: RESERVED_CONNECTIONS,
    password_encryption: "scram-sha-256",
    shared_buffers: mb(memory / 4),
    effective_cache_size: mb(memory / 2),
    // Small enough that every connection sorting at once stays within the plan's memory.
    work_mem: mb(clamp(memory / 4 / inst.plan.maxConnections, 1 * MiB, 64 * MiB)),
    maintenance_work_mem: mb(clamp(memory / 16, 16 * MiB, 512 * MiB)),
    // WAL kept between checkpoints counts against the disk quota: a tenth of it, at most 1 GB.
    max_wal_size: mb(clamp(inst.plan.diskBytes / 10, 64 * MiB, 1 * GiB)),
    min_wal_size: "32MB",
    temp_file_limit: `${Math.floor(inst.plan.diskBytes / 4 / 1024)}kB`,
    wal_level: "replica",
    archive_mode: true,
    archive_command: `/bin/sh ${shellWord(p.archiveScript)} %p ${shellWord(p.archive)} %f`,
    archive_timeout: 60,
    max_wal_senders: 3,
    dynamic_shared_memory_type: "posix",
    logging_collector: false,
    log_destination: "stderr",
    log_line_prefix: "%m [%p] %q%u@%d ",
    log_timezone: "UTC",
    timezone: "UTC",
    datestyle: "iso, mdy",
    // English messages: restoreToTime reads the log to tell why a recovery stopped.
    lc_messages: "C",
    lc_monetary: "C.UTF-8",
    lc_numeric: "C.UTF-8",
    lc_time: "C.UTF-8",
    default_text_search_config: "pg_catalog.english",
  };
  if (opts.preload && opts.preload.length > 0) settings.shared_preload_libraries = opts.preload.join(",");
  if (opts.recovery) {
    settings.restore_command = `cp -- ${shellWord(opts.recovery.walDir)}/%f %p`;
    // No connections until promoted: a hot standby would also refuse to start when the source
    // ran a larger plan (fewer max_connections here than in its WAL).
    settings.hot_standby = false;
    if (opts.recovery.targetTime) {
      settings.recovery_target_time = opts.recovery.targetTime.toISOString().replace("T", " ").replace("Z", "+00");
      settings.recovery_target_inclusive = true;
      settings.recovery_target_action = "promote";
    }
  }
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`);
  return `# Written by Quai from the add-on's plan; rewritten at every provision and restore.\n${lines.join("\n")}\n`;
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, PostgreSQL's format):
 * roles get verifiers, so plain passwords never appear in SQL, server logs or error messages.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** An extension the server's installation has. */
export interface ExtensionInfo {
  name: string;
  defaultVersion: string;
  comment: string;
  /** Creatable by the database owner with plain CREATE EXTENSION. */
  trusted: boolean;
}

/** Extensions installed on this system, from the control files of the server's share directory. */
export async function availableExtensions(binDir: string = postgresBinDir()): Promise<ExtensionInfo[]> {
  const { stdout } = await runChecked(join(binDir, "pg_config"), ["--sharedir"], { env: clientEnv() });
  const dir = join(stdout.trim(), "extension");
  const out: ExtensionInfo[] = [];
  for (const file of (await readdir(dir).catch(() => [] as string[])).sort()) {
    if (!file.endsWith(".control")) continue;
    const fields = new Map<string, string>();
    for (const line of (await readFile(join(dir, file), "utf8")).split("\n")) {
      const m = /^\s*(\w+)\s*=\s*(?:'((?:[^']|'')*)'|(\S+))/.exec(line);
      if (m) fields.set(m[1] as string, m[2] !== undefined ? m[2].replace(/''/g, "'") : (m[3] as string));
    }
    out.push({
      name: file.slice(0, -".control".length),
      defaultVersion: fields.get("default_version") ?? "",
      comment: fields.get("comment") ?? "",
      trusted: /^(true|on|yes|1)$/i.test(fields.get("trusted") ?? ""),
    });
  }
  return out;
}

/** quai.create_extension, which creates only the allow-listed extensions this system has. */
function createExtensionFunction(allowed: readonly string[]): string {
  const list = allowed.map((n) => pg.escapeLiteral(n)).join(", ");
  const hint = `quai.create_extension creates: ${allowed.join(", ") || "nothing on this server"}. Trusted extensions (pgcrypto, citext, hstore, pg_trgm, uuid-ossp, unaccent, ...) need only CREATE EXTENSION.`;
  return `CREATE FUNCTION ${ADMIN_SCHEMA}.create_extension(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF name IS NULL OR NOT name = ANY (ARRAY[${list}]::text[]) THEN
    RAISE EXCEPTION 'extension "%" cannot be created with quai.create_extension', name
      USING ERRCODE = 'insufficient_privilege', HINT = ${pg.escapeLiteral(hint)};
  END IF;
  EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I SCHEMA ${EXTENSION_SCHEMA}', name);
  IF name = 'postgres_fdw' THEN
    GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO pg_database_owner;
  END IF;
END
$fn$`;
}

/**
 * From `pg_restore -l` output: the allow-listed extensions a dump creates, and the list for
 * `pg_restore -L` without them and their comments. The app role cannot create them nor comment
 * on them, so the restore creates them first through quai.create_extension.
 */
export function planExtensionRestore(toc: string, allowed: readonly string[]): { extensions: string[]; list: string } {
  const extensions: string[] = [];
  const kept: string[] = [];
  for (const line of toc.split("\n")) {
    const ext = /^\d+; \d+ \d+ EXTENSION - (\S+)/.exec(line)?.[1] ?? /^\d+; \d+ \d+ COMMENT - EXTENSION (\S+)/.exec(line)?.[1];
    if (ext !== undefined && allowed.includes(ext)) {
      if (/ EXTENSION - /.test(line)) extensions.push(ext);
      continue;
    }
    kept.push(line);
  }
  return { extensions, list: kept.join("\n") };
}

/** Environment of the client tools: no PG* variable of ours may redirect them. */
function clientEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8", LC_MESSAGES: "C", PGCONNECT_TIMEOUT: "10" };
}

/**
 * Runs a program (argv only), streaming `input` into its stdin and its stdout into `output`,
 * which stays open for the caller. Resolves with its stderr once it exited 0 and both streams
 * held; otherwise rejects (and kills it if a stream failed first).
 */
function pipeProgram(cmd: string, args: readonly string[], io: { input?: Readable; output?: Writable; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: [io.input ? "pipe" : "ignore", io.output ? "pipe" : "ignore", "pipe"], env: { ...clientEnv(), ...io.env } });
    const stderr = lastText(child.stderr, 16_384);
    let streamError: Error | undefined;
    const onStreamError = (err: Error) => {
      streamError ??= err;
      child.kill("SIGKILL");
    };
    if (io.input && child.stdin) {
      // A program may exit before reading all its input; its exit status says why.
      child.stdin.on("error", () => {});
      io.input.on("error", onStreamError);
      io.input.pipe(child.stdin);
    }
    if (io.output && child.stdout) {
      io.output.on("error", onStreamError);
      child.stdout.pipe(io.output, { end: false });
    }
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (io.input && child.stdin) io.input.unpipe(child.stdin);
      io.input?.off("error", onStreamError);
      io.output?.off("error", onStreamError);
      if (streamError) reject(streamError);
      else if (code === 0) resolvePromise(stderr());
      else reject(new Error(`${basename(cmd)} exited with ${code ?? signal}: ${stderr()}`));
    });
  });
}

/** A dump's table of contents should fit in this; more means it is not a pg_dump archive. */
const TOC_LIMIT = 256 * MiB;

/**
 * Reads the table of contents of a custom-format dump with `pg_restore -l`, keeping every byte
 * taken from `dump` so the restore proper can replay them: the dump is read once, as a stream.
 */
function readToc(pgRestore: string, dump: Readable): Promise<{ toc: string; head: Buffer[] }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(pgRestore, ["-l"], { stdio: ["pipe", "pipe", "pipe"], env: clientEnv() });
    const head: Buffer[] = [];
    let headBytes = 0;
    let stdout = "";
    let failure: Error | undefined;
    let done = false;
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    const stderr = lastText(child.stderr, 16_384);
    child.stdin.on("error", () => {});
    const onData = (chunk: Buffer) => {
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes > TOC_LIMIT) {
        failure ??= new Error("the dump's table of contents is unreadable (over 256 MiB read)");
        child.kill("SIGKILL");
        dump.pause();
      } else if (!child.stdin.write(chunk)) {
        dump.pause();
        child.stdin.once("drain", () => {
          if (!done) dump.resume();
        });
      }
    };
    const onEnd = () => child.stdin.end();
    const onError = (err: Error) => {
      failure ??= err;
      child.kill("SIGKILL");
    };
    dump.on("data", onData);
    dump.once("end", onEnd);
    dump.on("error", onError);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      done = true;
      dump.off("data", onData);
      dump.off("end", onEnd);
      dump.off("error", onError);
      dump.pause();
      if (failure) reject(failure);
      else if (code !== 0) reject(new Error(`pg_restore exited with ${code ?? signal}: ${stderr()}`));
      else resolvePromise({ toc: stdout, head });
    });
  });
}

/** The bytes already read, then the rest of the stream. */
async function* replay(head: Buffer[], rest: Readable): AsyncGenerator<Buffer> {
  yield* head;
  if (!rest.readableEnded) for await (const chunk of rest) yield chunk as Buffer;
}

/** WAL file name of an LSN (`0/3000028`) on a timeline, as pg_walfile_name computes it. */
export function walFileName(timeline: number, lsn: string, segmentBytes: number): string {
  const [hi = "0", lo = "0"] = lsn.split("/");
  const segment = ((BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`)) / BigInt(segmentBytes);
  const perId = 0x1_0000_0000n / BigInt(segmentBytes);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return hex(timeline) + hex(segment / perId) + hex(segment % perId);
}

/** `STOP TIME` of a backup history file (written in UTC, see log_timezone), to the second. */
export function backupStopTime(history: string): Date | undefined {
  const m = /^STOP TIME: (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) (UTC|GMT)$/m.exec(history);
  return m ? new Date(`${m[1]}T${m[2]}Z`) : undefined;
}

/** Runs `fn` with a client connected with `config`, closed afterwards. */
export async function withPgClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  // A server dying under an idle client emits "error" on it; the pending query fails anyway.
  client.on("error", () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ident = (name: string) => pg.escapeIdentifier(name);

/** The PostgreSQL engine. */
export class PostgresqlEngine implements AddonEngine {
  readonly provider: ProviderSpec = { ...PROVIDER, plans: [...POSTGRESQL_PLANS] };
  readonly backupFormat = "pg_dump-custom";
  readonly pitr: PitrSupport;
  private readonly ctx: EngineContext;
  private binDir: string | undefined;
  private extensions: Promise<ExtensionInfo[]> | undefined;
  /** shipWal per instance dir, one at a time: two would ship and delete the same files. */
  private readonly shipping = new Map<string, Promise<unknown>>();

  constructor(ctx: EngineContext) {
    this.ctx = ctx;
    this.pitr = {
      shipWal: (inst) => this.shipWal(inst),
      switchWal: (inst) => this.switchWal(inst),
      baseBackup: (inst, out) => this.baseBackup(inst, out),
      restoreToTime: (target, base, segments, time) => this.restoreToTime(target, base, segments, time),
    };
  }

  /** Server binaries, looked up on first use: constructing the engine stays free of side effects. */
  private get bin(): string {
    return (this.binDir ??= postgresBinDir());
  }

  private available(): Promise<ExtensionInfo[]> {
    return (this.extensions ??= availableExtensions(this.bin).catch((err: unknown) => {
      this.extensions = undefined;
      throw err;
    }));
  }

  /** The allow-listed untrusted extensions this system has. */
  private async allowedExtensions(): Promise<string[]> {
    const names = new Set((await this.available()).map((e) => e.name));
    return UNTRUSTED_EXTENSION_ALLOWLIST.filter((n) => names.has(n));
  }

  newCredentials(): Credentials {
    return {
      user: `u_${randomBytes(6).toString("hex")}`,
      password: randomBytes(30).toString("base64url"),
      database: `db_${randomBytes(6).toString("hex")}`,
      admin: { superuser: SUPERUSER, password: randomBytes(30).toString("base64url") },
    };
  }

  async provision(inst: Instance): Promise<void> {
    const p = layout(inst);
    if ([...inst.dir].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) throw new Error(`instance directory ${JSON.stringify(inst.dir)} has control characters`);
    // The kernel limits socket paths to 107 bytes; PostgreSQL would only say so at start.
    if (Buffer.byteLength(join(p.run, `.s.PGSQL.${inst.port}`)) > 107) throw new Error(`instance directory ${inst.dir} is too long for a Unix socket path`);
    const adminPassword = inst.credentials.admin.password;
    if (!adminPassword) throw new Error("credentials without a superuser password (admin.password)");
    await ensurePrivateDir(inst.dir);
    await rm(p.data, { recursive: true, force: true });
    await ensurePrivateDir(p.run);
    await ensurePrivateDir(p.archive);
    // initdb reads the superuser's password from a file (0600, removed right after).
    const pwfile = join(inst.dir, ".superuser-password");
    await writeFile(pwfile, `${adminPassword}\n`, { mode: 0o600 });
    try {
      const [cmd, argv] = unprivileged(join(this.bin, "initdb"), [
        `--pgdata=${p.data}`,
        `--username=${SUPERUSER}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--locale=C.UTF-8",
      ]);
      await runChecked(cmd, argv, { env: clientEnv() });
    } finally {
      await rm(pwfile, { force: true });
    }
    await this.writeConfig(inst);
    await this.bootstrap(inst);
  }

  /** Writes postgresql.conf, pg_hba.conf and the archive script for `inst` (and a recovery, if any). */
  private async writeConfig(inst: Instance, recovery?: RecoverySettings): Promise<void> {
    const p = layout(inst);
    const names = new Set((await this.available()).map((e) => e.name));
    // pg_stat_statements collects only when loaded at start.
    const preload = ["pg_stat_statements"].filter((n) => names.has(n));
    await writeFile(p.archiveScript, ARCHIVE_SCRIPT, { mode: 0o700 });
    await writeFile(join(p.data, "postgresql.conf"), postgresqlConf(inst, { preload, recovery }), { mode: 0o600 });
    await writeFile(join(p.data, "pg_hba.conf"), HBA, { mode: 0o600 });
  }

  /**
   * Creates the app's role and database in single-user mode (no port, no waiting for a start).
   * The `quai` and `quai_ext` schemas go into template1 first, so the app's database has them.
   */
  private async bootstrap(inst: Instance): Promise<void> {
    const { user, password, database } = inst.credentials;
    const statements = [
      `CREATE ROLE ${ident(user)} LOGIN PASSWORD ${pg.escapeLiteral(scramVerifier(password))}`,
      `CREATE SCHEMA ${ADMIN_SCHEMA}`,
      `CREATE SCHEMA ${EXTENSION_SCHEMA}`,
      `GRANT USAGE ON SCHEMA ${ADMIN_SCHEMA}, ${EXTENSION_SCHEMA} TO PUBLIC`,
      createExtensionFunction(await this.allowedExtensions()),
      `REVOKE ALL ON FUNCTION ${ADMIN_SCHEMA}.create_extension(text) FROM PUBLIC`,
      `GRANT EXECUTE ON FUNCTION ${ADMIN_SCHEMA}.create_extension(text) TO pg_database_owner`,
      `CREATE DATABASE ${ident(database)} OWNER ${ident(user)}`,
      `ALTER DATABASE ${ident(database)} SET search_path = "$user", public, ${EXTENSION_SCHEMA}`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC`,
      `REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC`,
    ];
    // -j: a statement ends at a semicolon followed by an empty line, so function bodies may span lines.
    const [cmd, argv] = unprivileged(join(this.bin, "postgres"), ["--single", "-j", "-D", layout(inst).data, "template1"]);
    const res = await run(cmd, argv, { input: statements.map((s) => `${s};\n\n`).join(""), env: clientEnv() });
    // Single-user mode goes on after a failed statement and exits 0: its log says what failed.
    const failed = res.stderr.split("\n").filter((l) => /\b(ERROR|FATAL|PANIC):/.test(l));
    if (res.code !== 0 || failed.length > 0) {
      throw new Error(`PostgreSQL bootstrap of ${inst.id} failed (${res.code ?? res.signal}): ${(failed.join(" | ") || res.stderr).trim()}`);
    }
  }

  async start(inst: Instance): Promise<ServerProcess> {
    const p = layout(inst);
    const running = this.runningServer(inst);
    if (running) {
      await this.waitReady(inst, running);
      return running;
    }
    // Backends that outlived a killed postmaster hold its shared memory, and PostgreSQL would
    // refuse to start: clear whatever is left in the instance's cgroup.
    await stopDetached(inst, undefined);
    await this.clearReusedLock(inst);
    await ensurePrivateDir(p.run);
    // Rewritten at each start so that a plan change takes effect (a recovery keeps its own).
    if (!existsSync(join(p.data, "recovery.signal"))) await this.writeConfig(inst);
    const proc = await startDetached(inst, join(this.bin, "postgres"), ["-D", p.data], p.log);
    try {
      await this.waitReady(inst, proc);
    } catch (err) {
      await stopDetached(inst, proc, "SIGQUIT", 5_000);
      throw err;
    }
    return proc;
  }

  /** The postmaster running on this instance's data dir, from postmaster.pid, if any. */
  private runningServer(inst: Instance): ServerProcess | undefined {
    const data = layout(inst).data;
    let pid: number;
    try {
      pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const d = argv.indexOf("-D");
      if (d < 0 || argv[d + 1] !== data || !argv.some((a) => basename(a) === "postgres")) return undefined;
    } catch {
      return undefined;
    }
    const st = procStat(pid);
    return st && st.state !== "Z" ? { pid, startTicks: st.startTicks } : undefined;
  }

  /**
   * A postmaster.pid naming a live process that is not our postmaster (a pid reused after a
   * reboot or a kill) makes PostgreSQL refuse to start: that process runs as the same outside
   * uid, so PostgreSQL can signal it and takes it for a running server. The file is stale then.
   */
  private async clearReusedLock(inst: Instance): Promise<void> {
    const file = join(layout(inst).data, "postmaster.pid");
    const pid = Number((await readFile(file, "utf8").catch(() => "")).split("\n")[0]);
    if (Number.isInteger(pid) && pid > 0 && procStat(pid) && !this.runningServer(inst)) {
      this.ctx.log(`postgresql ${inst.id}: removing postmaster.pid naming pid ${pid}, which is not this instance's server`);
      await rm(file, { force: true });
    }
  }

  async ping(inst: Instance): Promise<boolean> {
    return (await this.appLogin(inst)) === "ok";
  }

  /** One login with the app's credentials: "refused" when the server is up but rejects the password. */
  private async appLogin(inst: Instance): Promise<"ok" | "refused" | "down"> {
    const { user, password, database } = inst.credentials;
    const client = new pg.Client({ host: "127.0.0.1", port: inst.port, user, password, database, connectionTimeoutMillis: 2000 });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("SELECT 1");
      return "ok";
    } catch (err) {
      return (err as { code?: string }).code === "28P01" ? "refused" : "down";
    } finally {
      await client.end().catch(() => {});
    }
  }

  /**
   * Waits until the server accepts the app's credentials. A role may change its own password
   * from inside the database; the server is up then and stays up (apps holding the new password
   * work), with a line in the platform's log instead of a start that waits and fails.
   */
  private async waitReady(inst: Instance, proc: ServerProcess): Promise<void> {
    let refused = false;
    const ready = async () => {
      const login = await this.appLogin(inst);
      refused = login === "refused";
      return login !== "down";
    };
    // Crash recovery after a kill may take a while on a large database.
    await waitUntil(ready, proc, `PostgreSQL of add-on instance ${inst.id}`, 300_000, () => this.logs(inst, 20));
    if (refused) this.ctx.log(`postgresql ${inst.id}: the server is up but refuses the password of ${inst.credentials.user}, which was changed from inside the database`);
  }

  async stop(inst: Instance, proc: ServerProcess | undefined): Promise<void> {
    // SIGINT: fast shutdown, open transactions roll back, a checkpoint makes the next start quick.
    await stopDetached(inst, serverAlive(proc) ? proc : this.runningServer(inst), "SIGINT", 60_000);
  }

  env(inst: Instance): Record<string, string> {
    return urlVariables(this.provider.envPrefix, databaseUrl("postgres", inst));
  }

  dataBytes(inst: Instance): Promise<number> {
    return dirBytes(layout(inst).data);
  }

  logs(inst: Instance, lines: number): Promise<string[]> {
    return tailFile(layout(inst).log, lines);
  }

  async destroy(inst: Instance, proc: ServerProcess | undefined): Promise<void> {
    // Immediate shutdown: the data goes next, a checkpoint would be wasted.
    await stopDetached(inst, serverAlive(proc) ? proc : this.runningServer(inst), "SIGQUIT", 10_000);
    await rm(inst.dir, { recursive: true, force: true });
  }

  /** Superuser connection over the instance's socket; search_path pins pg_catalog so objects the app made cannot stand in for built-ins. */
  private async asSuperuser<T>(inst: Instance, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return withPgClient({ host: layout(inst).run, port: inst.port, user: SUPERUSER, database, options: "-c search_path=pg_catalog", connectionTimeoutMillis: 5000 }, fn);
  }

  /** Arguments that point a client tool at the superuser on the instance's socket. */
  private superuserArgs(inst: Instance): string[] {
    return ["--host", layout(inst).run, "--port", String(inst.port), "--username", SUPERUSER, "--no-password"];
  }

  async backup(inst: Instance, out: Writable): Promise<void> {
    // As the superuser, so nothing the app owns is unreadable; our schemas stay out (the target has its own).
    await pipeProgram(join(this.bin, "pg_dump"), [
      ...this.superuserArgs(inst),
      "--format=custom",
      `--exclude-schema=${ADMIN_SCHEMA}`,
      `--exclude-schema=${EXTENSION_SCHEMA}`,
      `--dbname=${inst.credentials.database}`,
    ], { output: out });
  }

  async restore(inst: Instance, proc: ServerProcess, dump: Readable): Promise<ServerProcess> {
    const pgRestore = join(this.bin, "pg_restore");
    const { toc, head } = await readToc(pgRestore, dump);
    const plan = planExtensionRestore(toc, await this.allowedExtensions());
    await this.asSuperuser(inst, inst.credentials.database, async (c) => {
      for (const ext of plan.extensions) await c.query(`SELECT ${ADMIN_SCHEMA}.create_extension($1)`, [ext]);
    });
    const listFile = join(inst.dir, `.restore-${randomBytes(4).toString("hex")}.list`);
    await writeFile(listFile, plan.list, { mode: 0o600 });
    try {
      // Everything is created as the app's role, so the app owns what it restored; one
      // transaction, so a dump that fails half-way leaves the database as it was.
      await pipeProgram(pgRestore, [
        ...this.superuserArgs(inst),
        "--no-owner",
        "--no-privileges",
        `--role=${inst.credentials.user}`,
        "--single-transaction",
        "--exit-on-error",
        `--use-list=${listFile}`,
        `--dbname=${inst.credentials.database}`,
      ], {
        input: Readable.from(replay(head, dump)),
        // The target is new and checked before anything uses it: no need to wait for each
        // commit's flush, and index builds get a quarter of the plan's memory (up to 1 GiB).
        env: { PGOPTIONS: `-c synchronous_commit=off -c maintenance_work_mem=${Math.min(1024, Math.floor(inst.plan.memoryBytes / 4 / 1024 ** 2))}MB` },
      });
    } finally {
      await rm(listFile, { force: true });
    }
    return proc;
  }

  async summarize(inst: Instance): Promise<DataSummary> {
    return this.asSuperuser(inst, inst.credentials.database, async (c) => {
      const { rows } = await c.query<{ nspname: string; relname: string; relkind: string }>(
        `SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1, $2) AND n.nspname !~ '^pg_toast'
          ORDER BY 1, 2`,
        [ADMIN_SCHEMA, EXTENSION_SCHEMA],
      );
      const summary: DataSummary = {};
      for (const r of rows) {
        // Partitions are counted through their parent; ONLY keeps inheritance children from counting twice.
        const only = r.relkind === "r" ? "ONLY " : "";
        const res = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${only}${ident(r.nspname)}.${ident(r.relname)}`);
        summary[`${r.nspname}.${r.relname}`] = Number(res.rows[0]?.n ?? 0);
      }
      return summary;
    });
  }

  private shipWal(inst: Instance): Promise<WalSegment[]> {
    const previous = this.shipping.get(inst.dir) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.shipWalNow(inst));
    this.shipping.set(inst.dir, next);
    const forget = () => {
      if (this.shipping.get(inst.dir) === next) this.shipping.delete(inst.dir);
    };
    next.then(forget, forget);
    return next;
  }

  /** Moves archived WAL files into the blob store, gzipped (a switched segment is mostly padding). */
  private async shipWalNow(inst: Instance): Promise<WalSegment[]> {
    const dir = layout(inst).archive;
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => WAL_FILE.test(n)).sort();
    const shipped: WalSegment[] = [];
    for (const name of names) {
      const file = join(dir, name);
      try {
        const { mtime } = await stat(file);
        const source = createReadStream(file);
        const gzip = createGzip({ level: 1 });
        source.on("error", (err) => gzip.destroy(err));
        const blob = await this.ctx.blobs.put(source.pipe(gzip));
        shipped.push({ name, key: blob.key, size: blob.size, archivedAt: mtime });
        await rm(file, { force: true });
      } catch (err) {
        // Files shipped so far are gone from the dir: report them, the rest waits for next time.
        if (shipped.length === 0) throw err;
        this.ctx.log(`postgresql ${inst.id}: shipping WAL file ${name} failed (${(err as Error).message}); will retry`);
        break;
      }
    }
    return shipped;
  }

  private async switchWal(inst: Instance): Promise<void> {
    await this.asSuperuser(inst, "postgres", async (c) => {
      const { rows } = await c.query<{ wal: string }>("SELECT pg_walfile_name(pg_switch_wal()) AS wal");
      const wal = rows[0]?.wal as string;
      const deadline = Date.now() + 60_000;
      for (;;) {
        const st = (await c.query<{ last_archived_wal: string | null }>("SELECT last_archived_wal FROM pg_stat_archiver")).rows[0];
        const last = st?.last_archived_wal ?? "";
        // Archived: in pg_stat_archiver's order, or still in the archive dir when the server restarted since.
        if ((WAL_FILE.test(last) && last.slice(0, 24) >= wal) || (await stat(join(layout(inst).archive, wal)).then(() => true, () => false))) return;
        if (Date.now() > deadline) {
          throw new Error(`WAL file ${wal} was not archived within 60 s:\n${(await this.logs(inst, 10)).join("\n")}`);
        }
        await sleep(50);
      }
    });
  }

  private async baseBackup(inst: Instance, out: Writable): Promise<BaseBackupInfo> {
    const { segmentBytes, currentWal } = await this.asSuperuser(inst, "postgres", async (c) => {
      const { rows } = await c.query<{ seg: string; wal: string }>("SELECT current_setting('wal_segment_size') AS seg, pg_walfile_name(pg_current_wal_lsn()) AS wal");
      const seg = rows[0]?.seg ?? "16MB";
      return { segmentBytes: Number.parseInt(seg, 10) * (seg.endsWith("GB") ? GiB : seg.endsWith("MB") ? MiB : 1), currentWal: rows[0]?.wal as string };
    });
    // -X none: the backup needs WAL from the archive, and the server waits until the backup's
    // last segment is archived before pg_basebackup returns. Fast checkpoint: do not wait
    // for a spread one.
    const stderr = await pipeProgram(join(this.bin, "pg_basebackup"), [
      ...this.superuserArgs(inst),
      "--pgdata=-",
      "--format=tar",
      "--gzip",
      "--wal-method=none",
      "--checkpoint=fast",
      "--no-manifest",
      "--label=quai base backup",
      "--verbose",
    ], { output: out });
    const m = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/i.exec(stderr);
    const startWal = m ? walFileName(Number(m[2]), m[1] as string, segmentBytes) : currentWal;
    // The backup history file records the backup's end to the second, and restoreToTime accepts
    // times from the second after it: the next whole second, waited for so it is not in the future.
    const restorableFrom = new Date(Math.floor(Date.now() / 1000) * 1000 + 1000);
    await sleep(restorableFrom.getTime() - Date.now());
    return { restorableFrom, startWal };
  }

  private async restoreToTime(target: Instance, base: Readable, segments: WalSegment[], time: Date): Promise<ServerProcess> {
    const p = layout(target);
    for (const s of segments) if (!WAL_FILE.test(s.name)) throw new Error(`invalid WAL file name ${JSON.stringify(s.name)}`);
    if (Number.isNaN(time.getTime())) throw new Error("invalid recovery target time");
    if (segments.length === 0) throw new Error("no archived WAL to recover from: the base backup alone has no point in time");
    // WAL archived at some moment holds everything written before it; later writes may be lost.
    const latest = new Date(Math.max(...segments.map((s) => s.archivedAt.getTime())));
    if (time.getTime() > latest.getTime()) {
      throw new Error(`cannot recover to ${time.toISOString()}: the latest restorable time is ${latest.toISOString()} (when the last WAL file was archived)`);
    }

    await this.stop(target, undefined);
    await rm(p.data, { recursive: true, force: true });
    await ensurePrivateDir(p.data);
    // Owned by us, not by the uid in the tar headers: that is the server's uid inside its namespace.
    await pipeProgram("tar", ["--extract", "--gzip", "--file=-", `--directory=${p.data}`, "--no-same-owner"], { input: base });
    const label = await readFile(join(p.data, "backup_label"), "utf8").catch(() => {
      throw new Error("the base backup has no backup_label: not a pg_basebackup archive");
    });
    const startWal = /^START WAL LOCATION: .* \(file ([0-9A-F]{24})\)$/m.exec(label)?.[1];
    if (!startWal) throw new Error("the base backup's backup_label names no start WAL file");

    // Recovery must pass the backup's end before it may stop; its history file says when that was.
    const history = segments.find((s) => s.name.startsWith(`${startWal}.`) && s.name.endsWith(".backup"));
    if (history) {
      const stopped = backupStopTime(await this.readSegment(history));
      if (stopped && time.getTime() < stopped.getTime() + 1000) {
        throw new Error(`cannot recover to ${time.toISOString()}: the earliest restorable time of this base backup is ${new Date(stopped.getTime() + 1000).toISOString()}`);
      }
    }

    await rm(p.restoreWal, { recursive: true, force: true });
    await ensurePrivateDir(p.restoreWal);
    // Segments before the backup's start are never read; timeline histories always may be.
    for (const s of segments) {
      if (!s.name.endsWith(".history") && s.name.slice(8, 24) < startWal.slice(8, 24)) continue;
      await pipeline(await this.ctx.blobs.get(s.key), createGunzip(), createWriteStream(join(p.restoreWal, s.name), { mode: 0o600 }));
    }
    for (const f of ["postmaster.pid", "postmaster.opts", "backup_manifest", "standby.signal"]) await rm(join(p.data, f), { force: true });
    await ensurePrivateDir(p.run);
    await ensurePrivateDir(p.archive);
    await this.writeConfig(target, { walDir: p.restoreWal, targetTime: time });
    await writeFile(join(p.data, "recovery.signal"), "", { mode: 0o600 });

    const proc = await this.recover(target, p.restoreWal);
    try {
      await this.adoptCredentials(target);
      await this.writeConfig(target);
      await rm(p.restoreWal, { recursive: true, force: true });
      if (!(await this.ping(target))) throw new Error(`the recovered server does not accept ${target.credentials.user}'s connection`);
    } catch (err) {
      await stopDetached(target, proc, "SIGQUIT", 5_000);
      throw err;
    }
    return proc;
  }

  /** Reads a shipped WAL file (a small one: backup history) back from the blob store. */
  private async readSegment(s: WalSegment): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of (await this.ctx.blobs.get(s.key)).pipe(createGunzip())) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  /** Starts the server in recovery and waits until it has promoted itself. */
  private async recover(target: Instance, walDir: string): Promise<ServerProcess> {
    const p = layout(target);
    const what = `PostgreSQL recovery of add-on instance ${target.id}`;
    const promoted = () => this.asSuperuser(target, "postgres", async (c) => (await c.query<{ ok: boolean }>("SELECT NOT pg_is_in_recovery() AS ok")).rows[0]?.ok === true);
    const attempt = async (): Promise<ServerProcess> => {
      await this.clearReusedLock(target);
      const proc = await startDetached(target, join(this.bin, "postgres"), ["-D", p.data], p.log);
      try {
        await waitUntil(promoted, proc, what, 30 * 60_000, () => this.logs(target, 20));
      } catch (err) {
        await stopDetached(target, proc, "SIGQUIT", 5_000);
        throw err;
      }
      return proc;
    };
    const logStart = (await stat(p.log).catch(() => ({ size: 0 }))).size;
    try {
      return await attempt();
    } catch (err) {
      const log = (await readFile(p.log).catch(() => Buffer.alloc(0))).subarray(logStart).toString("utf8");
      if (/requested recovery stop point is before consistent recovery point/.test(log)) {
        throw new Error("cannot recover to a time before the end of the base backup: choose a later time or an older base backup", { cause: err });
      }
      if (!/recovery ended before configured recovery target was reached/.test(log)) throw err;
      // No commit after the target time in the archived WAL, which reaches past it: replaying
      // all of it gives the state at that time. recovery.signal is still there; go on without a target.
      this.ctx.log(`postgresql ${target.id}: no transaction after the target time in the archived WAL; recovering all of it`);
      await this.writeConfig(target, { walDir });
      return attempt();
    }
  }

  /**
   * The recovered cluster holds the source's roles and database. The target's credentials are
   * made to work by renaming the app role and database to the target's names and setting the
   * target's passwords: object ownership, grants and settings follow (they refer to role and
   * database by oid), and nothing of the source's credentials keeps working on the target.
   */
  private async adoptCredentials(target: Instance): Promise<void> {
    const { user, password, database, admin } = target.credentials;
    await this.asSuperuser(target, "postgres", async (c) => {
      const roles = (await c.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname !~ '^pg_'")).rows;
      const dbs = (await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")).rows;
      if (roles.length !== 1 || dbs.length !== 1) {
        throw new Error(`the recovered cluster should hold one app role and one database, it holds roles [${roles.map((r) => r.rolname).join(", ")}] and databases [${dbs.map((d) => d.datname).join(", ")}]`);
      }
      const role = (roles[0] as { rolname: string }).rolname;
      const db = (dbs[0] as { datname: string }).datname;
      if (role !== user) await c.query(`ALTER ROLE ${ident(role)} RENAME TO ${ident(user)}`);
      await c.query(`ALTER ROLE ${ident(user)} PASSWORD ${pg.escapeLiteral(scramVerifier(password))}`);
      if (admin.password) await c.query(`ALTER ROLE ${SUPERUSER} PASSWORD ${pg.escapeLiteral(scramVerifier(admin.password))}`);
      if (db !== database) await c.query(`ALTER DATABASE ${ident(db)} RENAME TO ${ident(database)}`);
    });
  }
}
