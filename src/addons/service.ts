// The add-on capability, one for every engine: provisioning and plans, the app's variables,
// supervision of the servers (restarted when they die, re-adopted after a control-plane
// restart), backups (scheduled, on demand, verified, expired), restores into a new instance
// with an atomic switch, and PostgreSQL's continuous archive. Engines (engine.ts) only know
// how to run one kind of server; everything an add-on is, is here.
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { sha256Hex } from "../core/hash.ts";
import { sql, type Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import { addonPortRange, freePort } from "../core/net.ts";
import type { Db } from "../store/db.ts";
import type { AddonBackupsTable, AddonInstancesTable, AddonsTable } from "../store/schema.ts";
import type { Keyring } from "../variables/keyring.ts";
import type { BlobStore } from "../blobs/store.ts";
import type { Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import { recordEvent, type EventType } from "../events/service.ts";
import { bulkSetVariables, deleteVariables, listVariables } from "../variables/service.ts";
import type { AddonEngine, Credentials, Instance, PlanSpec, ServerProcess } from "./engine.ts";
import { serverAlive } from "./process.ts";
import { expiredBackups, DEFAULT_RETENTION, type RetentionPolicy } from "./retention.ts";
import { parseRestoreTime, platformClock } from "./time.ts";

export type AddonRow = Selectable<AddonsTable>;
export type InstanceRow = Selectable<AddonInstancesTable>;
export type BackupRow = Selectable<AddonBackupsTable>;

/** What the capability needs from the platform. */
export interface AddonsOptions {
  db: Db;
  keyring: Keyring;
  blobs: BlobStore;
  engines: AddonEngine[];
  /** Instances' directories go under it. */
  dir: string;
  log: (line: string) => void;
  /**
   * Makes the app pick up changed variables (a config release, zero downtime); resolves with a
   * wait for it to be live, which tells whether it went live (a failed or cancelled release
   * leaves the app on its previous variables). Absent when Quai runs without its runtime.
   */
  configRelease?: (actor: Actor, app: AppRecord) => Promise<(() => Promise<boolean>) | undefined>;
  retention?: RetentionPolicy;
  /** How often servers are checked (ms). */
  monitorMs?: number;
  /** How often PostgreSQL's archived WAL is moved to the blob store (ms). */
  walShipMs?: number;
  /** How often data sizes are checked against the plans' disks (ms). */
  quotaMs?: number;
  /** Days a replaced instance is kept (stopped) after a restore. */
  detachedDays?: number;
}

/** A backup's age beyond which the add-on is flagged: a day and two hours. */
export const STALE_BACKUP_MS = 26 * 3600_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `SCALINGO_<P>_URL`-style names an engine's add-on sets on the app. */
const envNames = (engine: AddonEngine): string[] => [`SCALINGO_${engine.provider.envPrefix}_URL`, `QUAI_${engine.provider.envPrefix}_URL`];

export class Addons {
  readonly engines: Map<string, AddonEngine>;
  private readonly o: AddonsOptions;
  /** Running servers by instance id. */
  private readonly procs = new Map<string, ServerProcess>();
  /** Per add-on chain: backups, restores, plan changes and removal of one add-on run one at a time. */
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Instances whose restart is scheduled after a crash, with their backoff. */
  private readonly restarting = new Map<string, { attempt: number; timer: NodeJS.Timeout | undefined }>();
  /** Background work (backups started by the API, post-restore clean-ups) the tests can await. */
  private readonly background = new Set<Promise<unknown>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly archiveFailing = new Set<string>();
  private closed = false;

  constructor(opts: AddonsOptions) {
    this.o = opts;
    this.engines = new Map(opts.engines.map((e) => [e.provider.id, e]));
  }

  // ----- lookups -------------------------------------------------------------------------------

  engine(provider: string): AddonEngine {
    const engine = this.engines.get(provider);
    if (!engine) throw new QuaiError("addon_provider_unknown", `no add-on provider ${JSON.stringify(provider)}; providers: ${[...this.engines.keys()].join(", ")}`);
    return engine;
  }

  plan(engine: AddonEngine, planId: string): PlanSpec {
    const plan = engine.provider.plans.find((p) => p.name === planId);
    if (!plan) throw new QuaiError("addon_plan_unknown", `${engine.provider.id} has no plan ${JSON.stringify(planId)}; plans: ${engine.provider.plans.map((p) => p.name).join(", ")}`);
    return plan;
  }

  /** The app's add-on with this id or provider id (deleted ones only when asked). */
  async find(actor: Actor, appRef: string, ref: string, opts: { deleted?: boolean } = {}): Promise<{ app: AppRecord; addon: AddonRow }> {
    const app = await findApp(this.o.db, actor, appRef);
    let q = this.o.db.selectFrom("addons").selectAll().where("app_id", "=", app.id);
    q = isUuid(ref) ? q.where("id", "=", ref) : q.where("provider", "=", ref);
    if (!opts.deleted) q = q.where("status", "<>", "deleted");
    const addon = await q.orderBy("created_at", "desc").executeTakeFirst();
    if (!addon) throw new QuaiError("addon_not_found", `app ${app.name} has no add-on ${JSON.stringify(ref)}`);
    return { app, addon };
  }

  async list(actor: Actor, appRef: string): Promise<{ app: AppRecord; addons: AddonRow[] }> {
    const app = await findApp(this.o.db, actor, appRef);
    const addons = await this.o.db.selectFrom("addons").selectAll().where("app_id", "=", app.id).where("status", "<>", "deleted").orderBy("created_at").execute();
    return { app, addons };
  }

  private async instanceRow(id: string | null): Promise<InstanceRow | undefined> {
    if (!id) return undefined;
    return this.o.db.selectFrom("addon_instances").selectAll().where("id", "=", id).executeTakeFirst();
  }

  private instanceOf(row: InstanceRow, provider: string): Instance {
    const engine = this.engine(provider);
    const credentials = JSON.parse(this.o.keyring.open({ keyId: row.key_id, data: row.credentials_enc }, `addon-instance:${row.id}`)) as Credentials;
    return { id: row.id, dir: row.dir, port: row.port, plan: this.plan(engine, row.plan), credentials };
  }

  /** The current instance of an add-on, or addon_not_running. */
  async current(addon: AddonRow): Promise<{ row: InstanceRow; inst: Instance; engine: AddonEngine }> {
    const row = await this.instanceRow(addon.current_instance_id);
    if (!row || row.state !== "running") throw new QuaiError("addon_not_running", `the ${addon.provider} add-on is ${addon.status}, not running`);
    return { row, inst: this.instanceOf(row, addon.provider), engine: this.engine(addon.provider) };
  }

  /** The add-on's row as it is now (inside `serial`, after earlier operations changed it). */
  private async reload(addon: AddonRow): Promise<AddonRow> {
    return this.o.db.selectFrom("addons").selectAll().where("id", "=", addon.id).executeTakeFirstOrThrow();
  }

  /**
   * Bytes the add-on's data uses, for its JSON: measured at most once a minute per instance
   * (walking a data directory is not free, and listings are frequent); the quota check refreshes it.
   */
  async usage(addon: AddonRow): Promise<number | undefined> {
    try {
      const { inst, engine } = await this.current(addon);
      const known = this.measured.get(inst.id);
      if (known && Date.now() - known.at < 60_000) return known.bytes;
      return this.measure(inst, engine);
    } catch {
      return undefined;
    }
  }
  private readonly measured = new Map<string, { bytes: number; at: number }>();

  private async measure(inst: Instance, engine: AddonEngine): Promise<number> {
    const bytes = await engine.dataBytes(inst);
    this.measured.set(inst.id, { bytes, at: Date.now() });
    return bytes;
  }

  /** Runs `fn` after every earlier operation on the same add-on has ended. */
  private serial<T>(addonId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(addonId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.chains.set(addonId, tail);
    void tail.then(() => {
      if (this.chains.get(addonId) === tail) this.chains.delete(addonId);
    });
    return next;
  }

  private track<T>(work: Promise<T>): Promise<T> {
    const p = work.catch(() => undefined);
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
    return work;
  }

  /** Resolves once background work started so far has ended (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /** The id and name of an app, for events about it (undefined when it was deleted meanwhile). */
  private appRef(appId: string): Promise<{ id: string; name: string } | undefined> {
    return this.o.db.selectFrom("apps").select(["id", "name"]).where("id", "=", appId).executeTakeFirst();
  }

  private event(actor: Actor | null, app: AppRecord | { id: string; name: string }, type: EventType, data: Record<string, unknown>): Promise<void> {
    return recordEvent(this.o.db, { actor, app: { id: app.id, name: app.name }, type, data }).catch((err: unknown) => this.o.log(`addons: recording ${type} failed: ${String(err)}`));
  }

  // ----- instances ---------------------------------------------------------------------------

  /** Records and provisions a new instance of `addon` (server started). */
  private async newInstance(addon: AddonRow, role: string, plan: PlanSpec, origin: Record<string, unknown>, fill?: (inst: Instance, engine: AddonEngine) => Promise<ServerProcess>): Promise<Instance> {
    const engine = this.engine(addon.provider);
    const id = randomUUID();
    const credentials = engine.newCredentials();
    const sealed = this.o.keyring.seal(JSON.stringify(credentials), `addon-instance:${id}`);
    let port: number;
    for (let attempt = 0; ; attempt++) {
      port = await freePort("127.0.0.1", addonPortRange);
      const res = await sql`INSERT INTO addon_instances (id, addon_id, role, state, plan, port, dir, credentials_enc, key_id, origin)
        VALUES (${id}, ${addon.id}, ${role}, 'provisioning', ${plan.name}, ${port}, ${join(this.o.dir, id)}, ${sealed.data}, ${sealed.keyId}, ${JSON.stringify(origin)})
        ON CONFLICT DO NOTHING`.execute(this.o.db);
      if (Number(res.numAffectedRows ?? 0) === 1) break;
      if (attempt > 20) throw new Error("no free port for the add-on");
    }
    const inst: Instance = { id, dir: join(this.o.dir, id), port, plan, credentials };
    try {
      await mkdir(this.o.dir, { recursive: true, mode: 0o700 });
      await engine.provision(inst);
      const proc = fill ? await fill(inst, engine) : await engine.start(inst);
      this.procs.set(id, proc);
      await this.o.db.updateTable("addon_instances").set({ state: "running", pid: proc.pid, start_ticks: proc.startTicks }).where("id", "=", id).execute();
      return inst;
    } catch (err) {
      await this.destroyInstance(inst, addon.provider).catch(() => {});
      throw err;
    }
  }

  /** Stops and removes an instance's server and files; its row stays, `destroyed`. */
  private destroyInstance(inst: Instance, provider: string): Promise<void> {
    return this.takeDown(inst, provider, "destroyed");
  }

  /** Stops an instance's server; its files stay (a replaced instance, kept for an undo). */
  private stopInstance(inst: Instance, provider: string): Promise<void> {
    return this.takeDown(inst, provider, "stopped");
  }

  private async takeDown(inst: Instance, provider: string, state: "stopped" | "destroyed"): Promise<void> {
    this.cancelRestart(inst.id);
    const proc = this.procs.get(inst.id) ?? (await this.recordedProc(inst.id));
    this.procs.delete(inst.id);
    const engine = this.engine(provider);
    await (state === "destroyed" ? engine.destroy(inst, proc) : engine.stop(inst, proc));
    await this.o.db.updateTable("addon_instances").set({ state, pid: null, start_ticks: null }).where("id", "=", inst.id).execute();
  }

  private async recordedProc(id: string): Promise<ServerProcess | undefined> {
    const row = await this.instanceRow(id);
    return row?.pid ? { pid: row.pid, startTicks: Number(row.start_ticks) } : undefined;
  }

  // ----- provisioning, plans, removal ------------------------------------------------------------

  /** Adds an add-on to an app: a new server, the app's variables, a config release. */
  async provision(actor: Actor, appRef: string, providerId: string, planId: string): Promise<AddonRow> {
    const app = await findApp(this.o.db, actor, appRef);
    const engine = this.engine(providerId);
    const plan = this.plan(engine, planId);
    let addon: AddonRow;
    try {
      addon = await this.o.db.insertInto("addons").values({ app_id: app.id, provider: providerId, plan: plan.name, status: "provisioning" }).returningAll().executeTakeFirstOrThrow();
    } catch (err) {
      if ((err as { code?: string }).code === "23505") throw new QuaiError("addon_exists", `app ${app.name} already has a ${providerId} add-on`);
      throw err;
    }
    let inst: Instance;
    try {
      inst = await this.newInstance(addon, "current", plan, {});
    } catch (err) {
      await this.o.db.deleteFrom("addons").where("id", "=", addon.id).execute();
      throw new QuaiError("addon_failed", `the ${providerId} server did not start: ${(err as Error).message}`);
    }
    addon = await this.o.db.updateTable("addons").set({ status: "running", current_instance_id: inst.id, updated_at: new Date() }).where("id", "=", addon.id).returningAll().executeTakeFirstOrThrow();
    await this.event(actor, app, "new_addon", { addon_id: addon.id, addon_provider_id: providerId, plan: plan.name });
    await this.bindEnv(actor, app, engine.env(inst));
    if (engine.pitr) this.track(this.serial(addon.id, () => this.baseBackup(addon, inst)));
    return addon;
  }

  /**
   * Sets the add-on's variables on the app and releases them; resolves with a wait for that
   * release to be live (a restore stops the old server after it), if there is a release.
   */
  private async bindEnv(actor: Actor, app: AppRecord, env: Record<string, string>): Promise<(() => Promise<boolean>) | undefined> {
    await bulkSetVariables(this.o.db, this.o.keyring, actor, app.id, Object.entries(env).map(([name, value]) => ({ name, value })));
    return this.o.configRelease?.(actor, app).catch((err: unknown) => {
      this.o.log(`addons: releasing ${app.name}'s new variables failed: ${String(err)}`);
      return undefined;
    });
  }

  /** Changes the plan: the server restarts with the plan's settings. A downgrade must fit the data. */
  async upgrade(actor: Actor, appRef: string, ref: string, planId: string): Promise<AddonRow> {
    const { app, addon } = await this.find(actor, appRef, ref);
    const engine = this.engine(addon.provider);
    const plan = this.plan(engine, planId);
    return this.serial(addon.id, async () => {
      const { inst } = await this.current(await this.reload(addon));
      const used = await engine.dataBytes(inst);
      if (used > plan.diskBytes) throw new QuaiError("addon_plan_too_small", `the data uses ${used} bytes, more than the ${plan.diskBytes} bytes of ${plan.name}`, { data_bytes: used, disk_bytes: plan.diskBytes });
      const from = addon.plan;
      await this.o.db.updateTable("addons").set({ status: "upgrading", updated_at: new Date() }).where("id", "=", addon.id).execute();
      try {
        await this.stopInstance(inst, addon.provider);
        const next = { ...inst, plan };
        const proc = await engine.start(next);
        this.procs.set(inst.id, proc);
        await this.o.db.updateTable("addon_instances").set({ plan: plan.name, state: "running", pid: proc.pid, start_ticks: proc.startTicks }).where("id", "=", inst.id).execute();
      } catch (err) {
        // Back on the old plan, so the app keeps its database.
        const proc = await engine.start(inst).catch(() => undefined);
        if (proc) {
          this.procs.set(inst.id, proc);
          await this.o.db.updateTable("addon_instances").set({ state: "running", pid: proc.pid, start_ticks: proc.startTicks }).where("id", "=", inst.id).execute();
        }
        await this.o.db.updateTable("addons").set({ status: proc ? "running" : "error", updated_at: new Date() }).where("id", "=", addon.id).execute();
        throw new QuaiError("addon_failed", `the server did not start on ${plan.name}: ${(err as Error).message}`);
      }
      const updated = await this.o.db.updateTable("addons").set({ plan: plan.name, status: "running", updated_at: new Date() }).where("id", "=", addon.id).returningAll().executeTakeFirstOrThrow();
      await this.event(actor, app, "upgrade_addon", { addon_id: addon.id, addon_provider_id: addon.provider, old_plan: from, new_plan: plan.name });
      return updated;
    });
  }

  /** Sets the hour of the daily backup (Europe/Paris). */
  async setBackupHour(actor: Actor, appRef: string, ref: string, hour: number): Promise<AddonRow> {
    if (!Number.isInteger(hour) || hour < 0 || hour > 23) throw new QuaiError("backup_hour_invalid", `backup hour ${hour} is not a whole hour from 0 to 23`);
    const { app, addon } = await this.find(actor, appRef, ref);
    const updated = await this.o.db.updateTable("addons").set({ backup_hour: hour, updated_at: new Date() }).where("id", "=", addon.id).returningAll().executeTakeFirstOrThrow();
    await this.event(actor, app, "upgrade_addon", { addon_id: addon.id, addon_provider_id: addon.provider, backup_hour: hour });
    return updated;
  }

  /**
   * Removes an add-on: a final backup first (unless `finalBackup` is false; a failed one stops
   * the removal), then the variables, then the servers. The add-on row and its backups stay
   * (status deleted) so the final backup can be restored elsewhere.
   */
  async remove(actor: Actor, appRef: string, ref: string, opts: { finalBackup: boolean }): Promise<{ addon: AddonRow; finalBackup: BackupRow | undefined }> {
    const found = await this.find(actor, appRef, ref);
    const app = found.app;
    let addon = found.addon;
    const engine = this.engine(addon.provider);
    return this.serial(addon.id, async () => {
      addon = await this.reload(addon);
      let final: BackupRow | undefined;
      // A final backup asked for and impossible (the server is not running) stops the removal:
      // the data is not deleted without the backup the user expects.
      if (opts.finalBackup && addon.status !== "running" && addon.status !== "provisioning") {
        throw new QuaiError("addon_not_running", `the ${addon.provider} add-on is ${addon.status}, so its final backup cannot be taken; nothing was removed. Remove with --no-backup to delete its data without one.`);
      }
      if (opts.finalBackup && addon.status === "running") {
        final = await this.runBackup(actor, app, addon, "final");
        if (final.status !== "done") throw new QuaiError("addon_failed", `the final backup failed (${final.error ?? "unknown error"}); nothing was removed. Remove with --no-backup to skip it.`);
      }
      const names = envNames(engine);
      const existing = (await listVariables(this.o.db, this.o.keyring, app)).filter((v) => names.includes(v.name)).map((v) => v.name);
      if (existing.length > 0) await deleteVariables(this.o.db, this.o.keyring, actor, app.id, existing);
      const wait = await this.o.configRelease?.(actor, app).catch(() => undefined);
      const removed = await this.o.db.updateTable("addons").set({ status: "deleted", deleted_at: new Date(), current_instance_id: null, updated_at: new Date() }).where("id", "=", addon.id).returningAll().executeTakeFirstOrThrow();
      await this.event(actor, app, "delete_addon", { addon_id: addon.id, addon_provider_id: addon.provider, final_backup_id: final?.id ?? null });
      // The servers go once the app no longer uses them.
      const instances = await this.o.db.selectFrom("addon_instances").selectAll().where("addon_id", "=", addon.id).where("state", "<>", "destroyed").execute();
      const teardown = async () => {
        await wait?.().catch(() => {});
        for (const row of instances) await this.destroyInstance(this.instanceOf(row, addon.provider), addon.provider).catch((err: unknown) => this.o.log(`addons: removing instance ${row.id}: ${String(err)}`));
      };
      if (wait) this.track(teardown());
      else await teardown();
      return { addon: removed, finalBackup: final };
    });
  }

  /**
   * Collects the servers of an app about to be deleted, once the backups and restores under way
   * on them have ended; the returned function destroys them once the deletion is done (the rows
   * go with the app; the processes and files must too).
   */
  async appTeardown(app: AppRecord): Promise<() => Promise<void>> {
    // Work under way on its add-ons ends first: a restore finishing after the teardown would
    // leave the server it filled running for no app, a backup would fail half-way.
    const addons = await this.o.db.selectFrom("addons").select("id").where("app_id", "=", app.id).execute();
    await Promise.all(addons.map((a) => this.chains.get(a.id)));
    const rows = await this.o.db.selectFrom("addon_instances as i").innerJoin("addons as a", "a.id", "i.addon_id").selectAll("i").select("a.provider").where("a.app_id", "=", app.id).where("i.state", "<>", "destroyed").execute();
    const doomed = rows.filter((r) => this.engines.has(r.provider)).map((r) => ({ inst: this.instanceOf(r, r.provider), provider: r.provider, recorded: r.pid ? { pid: r.pid, startTicks: Number(r.start_ticks) } : undefined }));
    return async () => {
      for (const d of doomed) {
        this.cancelRestart(d.inst.id);
        const proc = this.procs.get(d.inst.id) ?? d.recorded;
        this.procs.delete(d.inst.id);
        await this.engine(d.provider).destroy(d.inst, proc).catch((err: unknown) => this.o.log(`addons: removing instance ${d.inst.id}: ${String(err)}`));
      }
    };
  }

  // ----- backups -----------------------------------------------------------------------------

  async listBackups(actor: Actor, appRef: string, ref: string): Promise<{ addon: AddonRow; backups: BackupRow[] }> {
    const { addon } = await this.find(actor, appRef, ref, { deleted: true });
    const backups = await this.o.db.selectFrom("addon_backups").selectAll().where("addon_id", "=", addon.id).orderBy("created_at", "desc").execute();
    return { addon, backups };
  }

  /** A backup any add-on of an app the user can see, by id. */
  async findBackup(actor: Actor, backupId: string, addonId?: string): Promise<{ backup: BackupRow; addon: AddonRow; app: AppRecord }> {
    const backup = isUuid(backupId) ? await this.o.db.selectFrom("addon_backups").selectAll().where("id", "=", backupId).executeTakeFirst() : undefined;
    // Addressed through an add-on (its URL names one), a backup of another is not found there.
    if (!backup || (addonId !== undefined && backup.addon_id !== addonId)) throw new QuaiError("backup_not_found", `no backup ${backupId}${addonId ? " of this add-on" : ""}`);
    const addon = await this.o.db.selectFrom("addons").selectAll().where("id", "=", backup.addon_id).executeTakeFirstOrThrow();
    try {
      const app = await findApp(this.o.db, actor, addon.app_id);
      return { backup, addon, app };
    } catch (err) {
      if (err instanceof QuaiError && err.code === "app_not_found") throw new QuaiError("backup_not_found", `no backup ${backupId} among the apps you can see`);
      throw err;
    }
  }

  /** Starts an on-demand backup; resolves with its row (status running), the work goes on. */
  async createBackup(actor: Actor, appRef: string, ref: string): Promise<BackupRow> {
    const { app, addon } = await this.find(actor, appRef, ref);
    const engine = this.engine(addon.provider);
    const row = await this.o.db.insertInto("addon_backups").values({ addon_id: addon.id, kind: "manual", status: "scheduled", format: engine.backupFormat, created_by: actor.id }).returningAll().executeTakeFirstOrThrow();
    this.track(this.serial(addon.id, () => this.runBackup(actor, app, addon, "manual", row)));
    return row;
  }

  /**
   * Dumps the add-on's current instance into the blob store. A failure (server killed mid-dump,
   * store unwritable) leaves the backup `error` with the reason, an event, and no file.
   */
  private async runBackup(actor: Actor | null, app: { id: string; name: string }, addon: AddonRow, kind: string, existing?: BackupRow): Promise<BackupRow> {
    const engine = this.engine(addon.provider);
    const row = existing ?? (await this.o.db.insertInto("addon_backups").values({ addon_id: addon.id, kind, status: "scheduled", format: engine.backupFormat, created_by: actor?.id ?? null }).returningAll().executeTakeFirstOrThrow());
    const started = new Date();
    await this.o.db.updateTable("addon_backups").set({ status: "running", started_at: started }).where("id", "=", row.id).execute();
    try {
      const fresh = await this.o.db.selectFrom("addons").selectAll().where("id", "=", addon.id).executeTakeFirstOrThrow();
      const { inst, row: instRow } = await this.current(fresh);
      const out = new PassThrough();
      const stored = this.o.blobs.put(out);
      // A store that fails stops the dump too, instead of leaving it blocked on a full pipe.
      out.on("error", () => {});
      stored.catch((err: unknown) => out.destroy(err as Error));
      try {
        await engine.backup(inst, out);
        out.end();
      } catch (err) {
        out.destroy(err as Error);
        throw err;
      }
      const blob = await stored;
      const done = await this.o.db.updateTable("addon_backups").set({ status: "done", blob_key: blob.key, size: blob.size, finished_at: new Date(), instance_id: instRow.id }).where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
      await this.event(actor, app, "addon_backup", { addon_id: addon.id, backup_id: row.id, kind, size: blob.size, duration_ms: Date.now() - started.getTime() });
      return done;
    } catch (err) {
      const reason = (err as Error).message.split("\n")[0] ?? "unknown error";
      const failed = await this.o.db.updateTable("addon_backups").set({ status: "error", error: reason, finished_at: new Date() }).where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
      await this.event(actor, app, "addon_backup_failed", { addon_id: addon.id, backup_id: row.id, kind, error: reason });
      this.o.log(`addons: backup ${row.id} of ${app.name}'s ${addon.provider} failed: ${reason}`);
      return failed;
    }
  }

  /** Waits for a backup to end (for the CLI's `backups-create --wait` and tests). */
  async waitBackup(id: string, timeoutMs = 60 * 60_000): Promise<BackupRow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await this.o.db.selectFrom("addon_backups").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
      if (row.status === "done" || row.status === "error" || Date.now() > deadline) return row;
      await sleep(200);
    }
  }

  /** The backup's file, from byte `start` (downloads resume with Range). */
  async backupFile(actor: Actor, backupId: string, start = 0, addonId?: string): Promise<{ backup: BackupRow; stream: Readable; size: number }> {
    const { backup } = await this.findBackup(actor, backupId, addonId);
    if (backup.status !== "done" || !backup.blob_key) throw new QuaiError("backup_not_done", `backup ${backup.id} is ${backup.status}`);
    return { backup, stream: await this.o.blobs.get(backup.blob_key, { start }), size: Number(backup.size) };
  }

  /** Rehashes a backup's file: true when it still matches its checksum. */
  private async intact(backup: BackupRow): Promise<boolean> {
    if (!backup.blob_key) return false;
    try {
      return (await sha256Hex(await this.o.blobs.get(backup.blob_key))) === backup.blob_key;
    } catch {
      return false;
    }
  }

  /**
   * Restores a backup into a throwaway instance and summarises it (tables and rows, or keys);
   * records the result on the backup. A corrupted file fails verification.
   */
  async verifyBackup(actor: Actor, backupId: string, addonId?: string): Promise<BackupRow> {
    const { backup, addon } = await this.findBackup(actor, backupId, addonId);
    if (backup.status !== "done") throw new QuaiError("backup_not_done", `backup ${backup.id} is ${backup.status}`);
    const engine = this.engine(addon.provider);
    const started = Date.now();
    let verification: Record<string, unknown>;
    if (!(await this.intact(backup))) {
      verification = { ok: false, error: "the file does not match its checksum (corrupted)", checked_at: new Date().toISOString() };
    } else {
      let inst: Instance | undefined;
      try {
        inst = await this.newInstance(addon, "verify", this.plan(engine, addon.plan), { verify_backup: backup.id }, async (target, eng) => {
          const proc = await eng.start(target);
          return eng.restore(target, proc, await this.o.blobs.get(backup.blob_key as string));
        });
        const summary = await engine.summarize(inst);
        verification = { ok: true, summary, duration_ms: Date.now() - started, checked_at: new Date().toISOString() };
      } catch (err) {
        verification = { ok: false, error: (err as Error).message.split("\n")[0], checked_at: new Date().toISOString() };
      } finally {
        if (inst) await this.destroyInstance(inst, addon.provider).catch(() => {});
      }
    }
    return this.o.db.updateTable("addon_backups").set({ verification: JSON.stringify(verification), verified_at: new Date() }).where("id", "=", backup.id).returningAll().executeTakeFirstOrThrow();
  }

  // ----- restores ----------------------------------------------------------------------------

  /**
   * Restores `backupId` into the add-on: a new instance is filled and checked first; only then
   * does the add-on switch to it (one transaction), the app get the new URL (zero-downtime
   * release), and the old instance stop, kept detached for `detachedDays`. Any failure before
   * the switch changes nothing.
   */
  async restoreBackup(actor: Actor, appRef: string, ref: string, backupId: string): Promise<AddonRow> {
    const { app, addon } = await this.find(actor, appRef, ref);
    const { backup, addon: source } = await this.findBackup(actor, backupId);
    if (source.provider !== addon.provider) throw new QuaiError("backup_provider_mismatch", `backup ${backup.id} is a ${source.provider} backup; this add-on is ${addon.provider}`);
    if (backup.status !== "done" || !backup.blob_key) throw new QuaiError("backup_not_done", `backup ${backup.id} is ${backup.status}`);
    return this.serial(addon.id, async () => {
      if (!(await this.intact(backup))) {
        await this.event(actor, app, "addon_restore_failed", { addon_id: addon.id, backup_id: backup.id, error: "backup corrupted" });
        throw new QuaiError("backup_corrupted", `backup ${backup.id} no longer matches its checksum; nothing was changed`);
      }
      return this.switchTo(actor, app, await this.reload(addon), { backup_id: backup.id }, async (target, engine) => {
        const proc = await engine.start(target);
        return engine.restore(target, proc, await this.o.blobs.get(backup.blob_key as string));
      });
    });
  }

  /** Point-in-time recovery of a PostgreSQL add-on to `to` (see time.ts for the accepted forms). */
  async pitrRestore(actor: Actor, appRef: string, ref: string, to: string): Promise<AddonRow> {
    const { app, addon } = await this.find(actor, appRef, ref);
    const engine = this.engine(addon.provider);
    const pitr = engine.pitr;
    if (!pitr) throw new QuaiError("pitr_unsupported", `${addon.provider} add-ons have no point-in-time recovery; restore a backup instead`);
    const time = parseRestoreTime(to);
    return this.serial(addon.id, async () => {
      const { inst, row } = await this.current(await this.reload(addon));
      if (time.getTime() > Date.now()) throw new QuaiError("pitr_out_of_range", `${time.toISOString()} is in the future`);
      // Bring the archive up to now, so any past second is covered.
      await pitr.switchWal(inst).catch(() => {});
      await this.shipWal(addon, row, inst).catch(() => {});
      const window = await this.pitrWindow(row.id);
      if (!window.earliest || time.getTime() < window.earliest.getTime()) {
        throw new QuaiError("pitr_out_of_range", `${time.toISOString()} is before the earliest restorable time (${window.earliest?.toISOString() ?? "no base backup yet"})`, { earliest: window.earliest?.toISOString() ?? null, latest: window.latest?.toISOString() ?? null });
      }
      const base = await this.o.db.selectFrom("addon_base_backups").selectAll().where("instance_id", "=", row.id).where("restorable_from", "<=", time).orderBy("restorable_from", "desc").limit(1).executeTakeFirstOrThrow();
      const segments = (await this.o.db.selectFrom("addon_wal_segments").selectAll().where("instance_id", "=", row.id).orderBy("name").execute())
        .filter((s) => s.name >= base.start_wal || s.name.endsWith(".history"))
        .map((s) => ({ name: s.name, key: s.blob_key, size: Number(s.size), archivedAt: s.archived_at }));
      const baseKey = base.blob_key;
      return this.switchTo(actor, app, await this.reload(addon), { pitr_to: time.toISOString(), from_instance: row.id }, async (target) => pitr.restoreToTime(target, await this.o.blobs.get(baseKey), segments, time));
    });
  }

  /** Earliest and latest restorable times of a PostgreSQL instance. */
  async pitrWindow(instanceId: string): Promise<{ earliest: Date | undefined; latest: Date | undefined }> {
    const base = await this.o.db.selectFrom("addon_base_backups").select(sql<Date | null>`min(restorable_from)`.as("at")).where("instance_id", "=", instanceId).executeTakeFirst();
    const wal = await this.o.db.selectFrom("addon_wal_segments").select(sql<Date | null>`max(archived_at)`.as("at")).where("instance_id", "=", instanceId).executeTakeFirst();
    return { earliest: base?.at ?? undefined, latest: wal?.at ?? undefined };
  }

  /** The shared end of restores: fill a new instance, check it, switch, release, retire the old one. */
  private async switchTo(actor: Actor, app: AppRecord, addon: AddonRow, origin: Record<string, unknown>, fill: (inst: Instance, engine: AddonEngine) => Promise<ServerProcess>): Promise<AddonRow> {
    const engine = this.engine(addon.provider);
    const old = await this.current(addon);
    await this.o.db.updateTable("addons").set({ status: "restoring", updated_at: new Date() }).where("id", "=", addon.id).execute();
    let target: Instance | undefined;
    try {
      target = await this.newInstance(addon, "restore", old.inst.plan, origin, fill);
      const summary = await engine.summarize(target);
      const used = await engine.dataBytes(target);
      if (used > target.plan.diskBytes) throw new QuaiError("addon_plan_too_small", `the restored data uses ${used} bytes, more than the plan's ${target.plan.diskBytes}`);
      origin.summary = summary;
    } catch (err) {
      // Whatever failed after the new server started, it goes: nothing of the restore stays.
      if (target) await this.destroyInstance(target, addon.provider).catch((e: unknown) => this.o.log(`addons: removing the failed restore's instance ${target?.id}: ${String(e)}`));
      await this.o.db.updateTable("addons").set({ status: "running", updated_at: new Date() }).where("id", "=", addon.id).execute();
      const message = err instanceof QuaiError ? err.message : `the restore failed and nothing was changed: ${(err as Error).message.split("\n")[0]}`;
      await this.event(actor, app, "addon_restore_failed", { addon_id: addon.id, ...origin, error: message });
      if (err instanceof QuaiError) throw err;
      throw new QuaiError("addon_failed", message);
    }
    return this.swap(actor, app, addon, old, target, origin);
  }

  /**
   * The switch shared by restores and reattachments: one transaction, so the add-on is on
   * exactly one instance whatever happens; then the app's variables and a release; the old
   * server serves until the app runs with the new URL, then stops (kept on disk).
   */
  private async swap(actor: Actor, app: AppRecord, addon: AddonRow, old: { row: InstanceRow; inst: Instance }, target: Instance, origin: Record<string, unknown>): Promise<AddonRow> {
    const engine = this.engine(addon.provider);
    const updated = await this.o.db.transaction().execute(async (trx) => {
      await trx.updateTable("addon_instances").set({ role: "detached", detached_at: new Date() }).where("id", "=", old.row.id).execute();
      await trx.updateTable("addon_instances").set({ role: "current", detached_at: null, origin: JSON.stringify(origin) }).where("id", "=", target.id).execute();
      return trx.updateTable("addons").set({ current_instance_id: target.id, status: "running", updated_at: new Date() }).where("id", "=", addon.id).returningAll().executeTakeFirstOrThrow();
    });
    await this.event(actor, app, "addon_restore", { addon_id: addon.id, old_instance_id: old.row.id, new_instance_id: target.id, ...origin });
    const wait = await this.bindEnv(actor, app, engine.env(target));
    this.track((async () => {
      const live = wait ? await wait().catch(() => false) : true;
      // In the add-on's turn: a reattachment meanwhile may have made the old instance current again.
      await this.serial(addon.id, async () => {
        const row = await this.o.db.selectFrom("addon_instances").select(["role", "state"]).where("id", "=", old.row.id).executeTakeFirst();
        if (row?.role !== "detached" || row.state !== "running") return;
        if (!live) {
          // The app still runs with the old URL: its database stays up, kept until it is
          // reattached or expires with the other replaced instances.
          this.o.log(`addons: ${app.name}'s release with the restored ${addon.provider}'s URL did not go live; the replaced instance ${old.row.id} keeps serving its running release`);
          return;
        }
        await this.stopInstance(old.inst, addon.provider).catch((err: unknown) => this.o.log(`addons: stopping replaced instance ${old.row.id}: ${String(err)}`));
      });
    })());
    if (engine.pitr && !(await this.o.db.selectFrom("addon_base_backups").select("id").where("instance_id", "=", target.id).executeTakeFirst())) {
      this.track(this.serial(addon.id, () => this.baseBackup(updated, target)));
    }
    return updated;
  }

  /**
   * Undoes a restore: the add-on goes back to an instance a restore replaced (started again,
   * switched to the same way), and the instance it leaves is kept detached in turn.
   */
  async reattach(actor: Actor, appRef: string, ref: string, instanceId: string): Promise<AddonRow> {
    const { app, addon } = await this.find(actor, appRef, ref);
    return this.serial(addon.id, async () => {
      const fresh = await this.reload(addon);
      const row = isUuid(instanceId) ? await this.o.db.selectFrom("addon_instances").selectAll().where("id", "=", instanceId).where("addon_id", "=", addon.id).where("role", "=", "detached").where("state", "<>", "destroyed").executeTakeFirst() : undefined;
      if (!row) throw new QuaiError("addon_instance_not_found", `the ${addon.provider} add-on has no replaced instance ${instanceId} (see quai addons-instances)`);
      const old = await this.current(fresh);
      const engine = this.engine(addon.provider);
      const inst = this.instanceOf(row, addon.provider);
      try {
        const proc = await engine.start(inst);
        this.procs.set(inst.id, proc);
        await this.o.db.updateTable("addon_instances").set({ state: "running", pid: proc.pid, start_ticks: proc.startTicks }).where("id", "=", inst.id).execute();
        await engine.summarize(inst);
      } catch (err) {
        await this.stopInstance(inst, addon.provider).catch(() => {});
        throw new QuaiError("addon_failed", `instance ${inst.id} did not start again: ${(err as Error).message.split("\n")[0]}; nothing was changed`);
      }
      return this.swap(actor, app, fresh, old, inst, { reattached: inst.id });
    });
  }

  /** Instances an add-on had before restores (stopped, kept `detachedDays`). */
  async detachedInstances(addonId: string): Promise<InstanceRow[]> {
    return this.o.db.selectFrom("addon_instances").selectAll().where("addon_id", "=", addonId).where("role", "=", "detached").where("state", "<>", "destroyed").orderBy("detached_at", "desc").execute();
  }

  // ----- continuous archiving (PostgreSQL) --------------------------------------------------

  /** Takes a base backup of the instance into the blob store. */
  private async baseBackup(addon: AddonRow, inst: Instance): Promise<void> {
    const pitr = this.engine(addon.provider).pitr;
    if (!pitr) return;
    const out = new PassThrough();
    const stored = this.o.blobs.put(out);
    out.on("error", () => {});
    stored.catch((err: unknown) => out.destroy(err as Error));
    try {
      const info = await pitr.baseBackup(inst, out);
      out.end();
      const blob = await stored;
      await this.o.db.insertInto("addon_base_backups").values({ instance_id: inst.id, blob_key: blob.key, size: blob.size, restorable_from: info.restorableFrom, start_wal: info.startWal }).execute();
      const row = await this.instanceRow(inst.id);
      if (row) await this.shipWal(addon, row, inst);
    } catch (err) {
      out.destroy(err as Error);
      const app = await this.appRef(addon.app_id);
      if (app) await this.event(null, app, "addon_archive_failed", { addon_id: addon.id, step: "base backup", error: (err as Error).message.split("\n")[0] });
    }
  }

  /** Moves archived WAL into the blob store and records it. */
  private async shipWal(addon: AddonRow, row: InstanceRow, inst: Instance): Promise<void> {
    const pitr = this.engine(addon.provider).pitr;
    if (!pitr) return;
    try {
      const segments = await pitr.shipWal(inst);
      if (segments.length > 0) {
        await this.o.db.insertInto("addon_wal_segments").values(segments.map((s) => ({ instance_id: row.id, name: s.name, blob_key: s.key, size: s.size, archived_at: s.archivedAt }))).onConflict((oc) => oc.columns(["instance_id", "name"]).doNothing()).execute();
      }
      this.archiveFailing.delete(row.id);
    } catch (err) {
      if (this.archiveFailing.has(row.id)) return;
      this.archiveFailing.add(row.id);
      const app = await this.appRef(addon.app_id);
      if (app) await this.event(null, app, "addon_archive_failed", { addon_id: addon.id, step: "WAL shipping", error: (err as Error).message.split("\n")[0] });
    }
  }

  /** Archive health for the add-on's JSON. */
  async archiveStatus(addon: AddonRow): Promise<{ earliest_restorable_time: string | null; last_archived_at: string | null; archive_lag_seconds: number | null; failing: boolean } | null> {
    if (!this.engines.get(addon.provider)?.pitr || !addon.current_instance_id) return null;
    const w = await this.pitrWindow(addon.current_instance_id);
    return {
      earliest_restorable_time: w.earliest?.toISOString() ?? null,
      last_archived_at: w.latest?.toISOString() ?? null,
      archive_lag_seconds: w.latest ? Math.max(0, Math.round((Date.now() - w.latest.getTime()) / 1000)) : null,
      failing: this.archiveFailing.has(addon.current_instance_id),
    };
  }

  // ----- supervision and schedules ------------------------------------------------------------

  /**
   * At start: re-adopts running servers (same pid and start time) or starts them again; cleans
   * up instances an interrupted restore or verification left; stops replaced ones.
   */
  async recover(): Promise<void> {
    const rows = await this.o.db
      .selectFrom("addon_instances as i")
      .innerJoin("addons as a", "a.id", "i.addon_id")
      .selectAll("i")
      .select(["a.provider", "a.current_instance_id", "a.status as addon_status", "a.app_id"])
      .where("i.state", "<>", "destroyed")
      .execute();
    for (const r of rows) {
      if (!this.engines.has(r.provider)) continue;
      const inst = this.instanceOf(r, r.provider);
      const recorded = r.pid ? { pid: r.pid, startTicks: Number(r.start_ticks) } : undefined;
      const isCurrent = r.current_instance_id === r.id;
      try {
        if (!isCurrent && (r.role === "restore" || r.role === "verify" || r.role === "current")) {
          // An interrupted restore or verification, or a provisioning that never finished.
          if (recorded && serverAlive(recorded)) this.procs.set(r.id, recorded);
          await this.destroyInstance(inst, r.provider);
          if (r.addon_status === "provisioning") await this.o.db.deleteFrom("addons").where("id", "=", r.addon_id).where("status", "=", "provisioning").execute();
          continue;
        }
        if (r.role === "detached") {
          if (recorded && serverAlive(recorded)) {
            this.procs.set(r.id, recorded);
            await this.stopInstance(inst, r.provider);
          }
          continue;
        }
        // The current server of an add-on whose upgrade (or failed start: `error`) the stop cut
        // short is stopped: it starts again, on the plan its row still names.
        const interrupted = isCurrent && r.state === "stopped" && (r.addon_status === "upgrading" || r.addon_status === "error");
        if (r.state !== "running" && !interrupted) continue;
        if (recorded && serverAlive(recorded) && !interrupted) {
          this.procs.set(r.id, recorded);
        } else {
          const proc = await this.engine(r.provider).start(inst);
          this.procs.set(r.id, proc);
          await this.o.db.updateTable("addon_instances").set({ state: "running", pid: proc.pid, start_ticks: proc.startTicks }).where("id", "=", r.id).execute();
          if (interrupted) await this.o.db.updateTable("addons").set({ status: "running", updated_at: new Date() }).where("id", "=", r.addon_id).execute();
          this.o.log(`addons: started ${r.provider} instance ${r.id} again`);
        }
      } catch (err) {
        this.o.log(`addons: recovering instance ${r.id}: ${String(err)}`);
      }
    }
    // A backup cut short by the stop has no file: it failed, and says why.
    await this.o.db.updateTable("addon_backups").set({ status: "error", error: "the control plane stopped during this backup", finished_at: new Date() }).where("status", "in", ["scheduled", "running"]).execute();
    // A restore interrupted mid-way left its add-on "restoring": it is on its current instance.
    await this.o.db.updateTable("addons").set({ status: "running" }).where("status", "in", ["restoring", "upgrading"]).execute();
  }

  /** Starts the monitor (crash restarts, WAL shipping). */
  startMonitor(): void {
    // A round that fails (an app deleted meanwhile, the store unreachable) is logged; the next one runs.
    const every = (ms: number, what: string, round: () => Promise<unknown>) => setInterval(() => void round().catch((err: unknown) => this.o.log(`addons: ${what}: ${err instanceof Error ? err.message : String(err)}`)), ms);
    const monitor = every(this.o.monitorMs ?? 2000, "checking servers", () => this.checkServers());
    const ship = every(this.o.walShipMs ?? 10_000, "shipping WAL", () => this.shipAll());
    const quota = every(this.o.quotaMs ?? 60_000, "measuring data", () => this.checkQuotas());
    monitor.unref();
    ship.unref();
    quota.unref();
    this.timers.push(monitor, ship, quota);
  }

  /**
   * Measures each current instance's data against its plan's disk, and records
   * `addon_quota_exceeded` when one goes over (once, until it is back under).
   */
  async checkQuotas(): Promise<string[]> {
    if (this.closed) return [];
    const over: string[] = [];
    const addons = await this.o.db.selectFrom("addons").selectAll().where("status", "=", "running").execute().catch(() => []);
    for (const addon of addons) {
      if (!this.engines.has(addon.provider)) continue;
      try {
        const { inst, engine } = await this.current(addon);
        const used = await this.measure(inst, engine);
        if (used <= inst.plan.diskBytes) {
          this.overQuota.delete(addon.id);
          continue;
        }
        over.push(addon.id);
        if (this.overQuota.has(addon.id)) continue;
        this.overQuota.add(addon.id);
        const app = await this.appRef(addon.app_id);
        if (app) await this.event(null, app, "addon_quota_exceeded", { addon_id: addon.id, data_bytes: used, disk_bytes: inst.plan.diskBytes, plan: inst.plan.name });
        this.o.log(`addons: ${app?.name ?? addon.app_id}'s ${addon.provider} uses ${used} bytes, over the ${inst.plan.diskBytes} of ${inst.plan.name}`);
      } catch {
        // Not running right now: measured again next time.
      }
    }
    return over;
  }
  private readonly overQuota = new Set<string>();

  private cancelRestart(id: string): void {
    const r = this.restarting.get(id);
    if (r?.timer) clearTimeout(r.timer);
    this.restarting.delete(id);
  }

  /** Restarts current servers that died, with exponential backoff (1 s → 60 s). */
  async checkServers(): Promise<void> {
    if (this.closed) return;
    const rows = await this.o.db
      .selectFrom("addon_instances as i")
      .innerJoin("addons as a", "a.current_instance_id", "i.id")
      .selectAll("i")
      .select(["a.provider", "a.app_id"])
      .where("i.state", "=", "running")
      .where("a.status", "=", "running")
      .execute()
      .catch(() => []);
    for (const r of rows) {
      const proc = this.procs.get(r.id);
      if (!proc || serverAlive(proc) || this.restarting.get(r.id)?.timer) continue;
      const attempt = (this.restarting.get(r.id)?.attempt ?? 0) + 1;
      const delay = Math.min(60_000, 1000 * 2 ** (attempt - 1));
      const app = await this.appRef(r.app_id);
      if (app) await this.event(null, app, "addon_crash", { addon_id: r.addon_id, instance_id: r.id, attempt, restart_in_ms: delay });
      this.o.log(`addons: ${r.provider} server of instance ${r.id} died; restarting in ${delay} ms`);
      const entry: { attempt: number; timer: NodeJS.Timeout | undefined } = { attempt, timer: undefined };
      entry.timer = setTimeout(() => {
        entry.timer = undefined;
        void this.engine(r.provider)
          .start(this.instanceOf(r, r.provider))
          .then(async (next) => {
            this.procs.set(r.id, next);
            await this.o.db.updateTable("addon_instances").set({ pid: next.pid, start_ticks: next.startTicks }).where("id", "=", r.id).execute();
            // A server that stays up a minute has its backoff reset.
            setTimeout(() => {
              if (serverAlive(next) && this.restarting.get(r.id) === entry) this.restarting.delete(r.id);
            }, 60_000).unref();
          })
          .catch((err: unknown) => this.o.log(`addons: restarting instance ${r.id}: ${String(err)}`));
      }, delay);
      entry.timer.unref();
      this.restarting.set(r.id, entry);
    }
  }

  /** Ships the WAL of every current PostgreSQL instance. */
  async shipAll(): Promise<void> {
    if (this.closed) return;
    const rows = await this.o.db
      .selectFrom("addon_instances as i")
      .innerJoin("addons as a", "a.current_instance_id", "i.id")
      .selectAll("i")
      .select(["a.provider"])
      .where("i.state", "=", "running")
      .execute()
      .catch(() => []);
    for (const r of rows) {
      if (!this.engines.get(r.provider)?.pitr) continue;
      const addon = await this.o.db.selectFrom("addons").selectAll().where("current_instance_id", "=", r.id).executeTakeFirst();
      if (addon) await this.shipWal(addon, r, this.instanceOf(r, r.provider));
    }
  }

  /**
   * The hourly job: each add-on whose backup hour it is (Europe/Paris) and that has no backup
   * today gets one (and PostgreSQL a new base backup); expired backups, old base backups and WAL,
   * and replaced instances past their keep time are deleted.
   */
  async runSchedule(now = new Date()): Promise<{ backups: number; expired: number }> {
    const clock = platformClock(now);
    const addons = await this.o.db.selectFrom("addons").selectAll().where("status", "=", "running").execute();
    let backups = 0;
    for (const addon of addons) {
      const today = await this.o.db.selectFrom("addon_backups").select("id").where("addon_id", "=", addon.id).where("kind", "=", "scheduled").where("created_at", ">", new Date(now.getTime() - 20 * 3600_000)).executeTakeFirst();
      if (addon.backup_hour !== clock.hour || today) continue;
      const app = await this.appRef(addon.app_id);
      if (!app || !this.engines.has(addon.provider)) continue;
      backups++;
      // One add-on's trouble (a server down, an engine gone) never stops the others' backups.
      await this.serial(addon.id, async () => {
        await this.runBackup(null, app, addon, "scheduled");
        if (this.engine(addon.provider).pitr) {
          const { inst } = await this.current(await this.reload(addon));
          await this.baseBackup(addon, inst);
        }
      }).catch((err: unknown) => this.o.log(`addons: scheduled backup of ${app.name}'s ${addon.provider}: ${String(err)}`));
    }
    const expired = await this.expire(now);
    return { backups, expired };
  }

  /** Deletes what retention no longer keeps; returns how many backups went. */
  async expire(now = new Date()): Promise<number> {
    const policy = this.o.retention ?? DEFAULT_RETENTION;
    const all = await this.o.db.selectFrom("addon_backups").selectAll().execute();
    const byAddon = new Map<string, BackupRow[]>();
    for (const b of all) byAddon.set(b.addon_id, [...(byAddon.get(b.addon_id) ?? []), b]);
    let removed = 0;
    for (const rows of byAddon.values()) {
      const ids = expiredBackups(rows, now, policy);
      if (ids.length === 0) continue;
      const gone = await this.o.db.deleteFrom("addon_backups").where("id", "in", ids).returning("blob_key").execute();
      for (const g of gone) if (g.blob_key) await this.deleteBlobIfUnused(g.blob_key);
      removed += gone.length;
    }
    // Base backups older than the daily window, except each instance's newest, and the WAL
    // before the oldest kept base backup.
    const cutoff = new Date(now.getTime() - policy.days * 86_400_000);
    const oldBases = await this.o.db.selectFrom("addon_base_backups as b").selectAll("b").where("b.created_at", "<", cutoff)
      .where(({ eb, selectFrom }) => eb("b.id", "not in", selectFrom("addon_base_backups as n").select("n.id").distinctOn("n.instance_id").orderBy("n.instance_id").orderBy("n.created_at", "desc"))).execute();
    for (const b of oldBases) {
      await this.o.db.deleteFrom("addon_base_backups").where("id", "=", b.id).execute();
      await this.deleteBlobIfUnused(b.blob_key);
      const oldest = await this.o.db.selectFrom("addon_base_backups").select(sql<string | null>`min(start_wal)`.as("w")).where("instance_id", "=", b.instance_id).executeTakeFirst();
      if (oldest?.w) {
        const wal = await this.o.db.deleteFrom("addon_wal_segments").where("instance_id", "=", b.instance_id).where("name", "<", oldest.w).where("name", "not like", "%.history").returning("blob_key").execute();
        for (const w of wal) await this.deleteBlobIfUnused(w.blob_key);
      }
    }
    // Replaced instances past their keep time.
    const keepUntil = new Date(now.getTime() - (this.o.detachedDays ?? 7) * 86_400_000);
    const stale = await this.o.db.selectFrom("addon_instances as i").innerJoin("addons as a", "a.id", "i.addon_id").selectAll("i").select("a.provider").where("i.role", "=", "detached").where("i.state", "<>", "destroyed").where("i.detached_at", "<", keepUntil).execute();
    for (const r of stale) await this.destroyInstance(this.instanceOf(r, r.provider), r.provider).catch(() => {});
    return removed;
  }

  /** Deletes a blob unless a backup, base backup or WAL row still names it (content addressing shares files). */
  private async deleteBlobIfUnused(key: string): Promise<void> {
    const used = await sql<{ n: number }>`SELECT (SELECT count(*) FROM addon_backups WHERE blob_key = ${key}) + (SELECT count(*) FROM addon_base_backups WHERE blob_key = ${key}) + (SELECT count(*) FROM addon_wal_segments WHERE blob_key = ${key}) + (SELECT count(*) FROM releases WHERE slug_blob = ${key}) AS n`.execute(this.o.db);
    if (Number(used.rows[0]?.n ?? 0) === 0) await this.o.blobs.delete(key).catch(() => {});
  }

  /** The newest good backup's time, and whether it is older than 26 hours. */
  async backupHealth(addon: AddonRow): Promise<{ last_success_at: string | null; stale: boolean }> {
    const last = await this.o.db.selectFrom("addon_backups").select("finished_at").where("addon_id", "=", addon.id).where("status", "=", "done").orderBy("finished_at", "desc").limit(1).executeTakeFirst();
    const at = last?.finished_at ?? null;
    const since = at ?? addon.created_at;
    return { last_success_at: at?.toISOString() ?? null, stale: Date.now() - since.getTime() > STALE_BACKUP_MS };
  }

  /** Stops the monitor; servers keep running (they outlive the control plane). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const id of [...this.restarting.keys()]) this.cancelRestart(id);
    await Promise.race([this.settle(), sleep(10_000)]);
  }
}
