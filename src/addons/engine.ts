// The add-on engine contract: one engine per database kind (PostgreSQL, MariaDB, Redis), each
// running a dedicated server process per add-on instance. The generic add-on capability
// (service.ts: API, CLI, scheduling, storage, supervision, restores) drives every engine
// through this interface only; test/conformance/addons.suite.ts is the suite every engine passes.
import type { Readable, Writable } from "node:stream";
import type { BlobStore } from "../blobs/store.ts";

/** A plan: what an add-on instance may use. */
export interface PlanSpec {
  /** Plan id and name, as Scalingo names them: `postgresql-starter-512`. */
  name: string;
  displayName: string;
  description: string;
  /** Memory the server is tuned for and limited to. */
  memoryBytes: number;
  maxConnections: number;
  /** Disk quota of the data directory. */
  diskBytes: number;
  /** Order in listings. */
  position: number;
}

/** A provider: one engine's public face (`GET /v1/addon_providers`). */
export interface ProviderSpec {
  /** `postgresql`, `mysql`, `redis` (Scalingo's provider ids). */
  id: string;
  name: string;
  shortDescription: string;
  /** Variables are `SCALINGO_<envPrefix>_URL` and `QUAI_<envPrefix>_URL`. */
  envPrefix: string;
  plans: PlanSpec[];
}

/** Credentials an engine generates at provision; stored encrypted by the capability. */
export interface Credentials {
  user: string;
  password: string;
  /** Database name (for Redis: "0"). */
  database: string;
  /** Engine-private secrets (a superuser password, ...). */
  admin: Record<string, string>;
}

/** One server instance of an add-on. An add-on has one current instance; restores make new ones. */
export interface Instance {
  /** Unique id (uuid); also names cgroups and log lines. */
  id: string;
  /** Directory owned by this instance: the engine keeps data, config, sockets and logs under it. */
  dir: string;
  /** 127.0.0.1 port, chosen by the capability before provision and kept for the instance's life. */
  port: number;
  plan: PlanSpec;
  credentials: Credentials;
}

/** A running server process: pid and its start time (guards against pid reuse). */
export interface ServerProcess {
  pid: number;
  /** From /proc/<pid>/stat (field 22). */
  startTicks: number;
}

/** Result of checking a restored instance: table → row count for SQL, `keys` → count for Redis. */
export type DataSummary = Record<string, number>;

/** A WAL segment moved into the blob store (PostgreSQL continuous archiving). */
export interface WalSegment {
  /** WAL file name, e.g. 000000010000000000000003 (also .history and .backup files). */
  name: string;
  /** Blob key. */
  key: string;
  size: number;
  archivedAt: Date;
}

/** A physical base backup for point-in-time recovery. */
export interface BaseBackupInfo {
  /** Any target time at or after this can be recovered with this base backup and later WAL. */
  restorableFrom: Date;
  /** The first WAL segment the backup needs. */
  startWal: string;
}

/** What engines get from the platform. */
export interface EngineContext {
  blobs: BlobStore;
  log: (line: string) => void;
}

/** Point-in-time recovery, for engines that support it (PostgreSQL). */
export interface PitrSupport {
  /**
   * Moves WAL files the server has archived (archive_command writes them under the instance's
   * dir) into the blob store and returns them, oldest first. Files are removed from the dir
   * only once stored. Safe to call at any time, also while the server is stopped.
   */
  shipWal(inst: Instance): Promise<WalSegment[]>;
  /** Asks the server to close its current WAL segment so recent writes get archived. */
  switchWal(inst: Instance): Promise<void>;
  /** Streams a physical base backup (a tar, compressed) to `out`. */
  baseBackup(inst: Instance, out: Writable): Promise<BaseBackupInfo>;
  /**
   * Fills `target` (provisioned, never started) from a base backup and WAL segments, recovers
   * to `time` (inclusive) and promotes; the server is left running, like `start`.
   */
  restoreToTime(target: Instance, base: Readable, segments: WalSegment[], time: Date): Promise<ServerProcess>;
}

/** An add-on engine. */
export interface AddonEngine {
  readonly provider: ProviderSpec;
  /** Backup file format, recorded on backups: `pg_dump-custom`, `sql.gz`, `rdb.gz`. */
  readonly backupFormat: string;
  readonly pitr?: PitrSupport;

  /** Generates credentials for a new instance (no side effects). */
  newCredentials(): Credentials;
  /** Creates the data directory, config and users of `inst`; leaves the server stopped. */
  provision(inst: Instance): Promise<void>;
  /**
   * Starts the server detached (it outlives the control plane, see process.ts) with settings
   * from the plan, and resolves once it accepts authenticated connections on `inst.port`.
   */
  start(inst: Instance): Promise<ServerProcess>;
  /** Whether the server accepts connections now. */
  ping(inst: Instance): Promise<boolean>;
  /** Stops the server cleanly (SIGKILL after a grace); no error if it is not running. */
  stop(inst: Instance, proc: ServerProcess | undefined): Promise<void>;
  /** The app's variables: `SCALINGO_<P>_URL` and `QUAI_<P>_URL` (same value). */
  env(inst: Instance): Record<string, string>;
  /** Bytes the data uses on disk (for the quota and plan downgrades). */
  dataBytes(inst: Instance): Promise<number>;
  /** Streams a logical dump, compressed, to `out`; rejects if the server dies mid-dump. */
  backup(inst: Instance, out: Writable): Promise<void>;
  /**
   * Loads a dump made by `backup` into a running, freshly provisioned instance; resolves with
   * the server running it (engines that load a file at start restart the server: a new pid).
   */
  restore(inst: Instance, proc: ServerProcess, dump: Readable): Promise<ServerProcess>;
  /** Tables and row counts (SQL) or key count (Redis) of the instance's data. */
  summarize(inst: Instance): Promise<DataSummary>;
  /** Last lines of the server's log. */
  logs(inst: Instance, lines: number): Promise<string[]>;
  /** Stops the server and removes the instance's directory: nothing left behind. */
  destroy(inst: Instance, proc: ServerProcess | undefined): Promise<void>;
}
