// The add-on capability in-process, with a real Redis engine (the fastest to provision): the
// daily schedule and retention, plan downgrades and restores that do not fit the disk, a blob
// store that cannot be written, and two restores at once.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { sql } from "kysely";
import { randomBytes } from "node:crypto";
import { testDb, type TestDb } from "../testing/db.ts";
import { stopServersUnder } from "../testing/platform.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp } from "../apps/service.ts";
import { Keyring } from "../variables/keyring.ts";
import { listVariables } from "../variables/service.ts";
import { LocalBlobStore } from "../blobs/store.ts";
import { QuaiError } from "../core/errors.ts";
import { RedisEngine } from "./engines/redis.ts";
import type { AddonEngine, EngineContext, ProviderSpec } from "./engine.ts";
import { Addons } from "./service.ts";
import { platformClock } from "./time.ts";

/** Redis with a tiny second plan, so quota checks can be crossed with a few keys. */
class TinyPlanRedis extends RedisEngine {
  override readonly provider: ProviderSpec;
  constructor(ctx: EngineContext) {
    super(ctx);
    const base = new RedisEngine(ctx).provider;
    this.provider = { ...base, plans: [...base.plans, { ...(base.plans[0] as ProviderSpec["plans"][number]), name: "redis-tiny", displayName: "Tiny", diskBytes: 64 * 1024, position: 99 }] };
  }
}

describe("add-on capability", () => {
  let store: TestDb;
  let dir: string;
  let actor: Actor;
  let addons: Addons;
  let blobs: LocalBlobStore;
  let engine: AddonEngine;

  const urlOf = async (app: string) => {
    const found = await store.db.selectFrom("apps").selectAll().where("name", "=", app).executeTakeFirstOrThrow();
    return (await listVariables(store.db, keyringRef, found)).find((v) => v.name === "SCALINGO_REDIS_URL")?.value as string;
  };
  let keyringRef: Keyring;
  const redis = async (url: string) => {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    return r;
  };

  before(async () => {
    store = await testDb();
    dir = await mkdtemp(join(tmpdir(), "quai-addon-svc-"));
    actor = (await ensureUser(store.db, "addons@quai.test", "owner")).user;
    keyringRef = await Keyring.open(join(dir, "master.json"));
    blobs = new LocalBlobStore(join(dir, "blobs"));
    const ctx = { blobs, log: () => {} };
    engine = new TinyPlanRedis(ctx);
    addons = new Addons({ db: store.db, keyring: keyringRef, blobs, engines: [engine], dir: join(dir, "instances"), log: () => {} });
  });
  after(async () => {
    await addons?.close();
    // The servers outlive the capability by design: end those this file started.
    await stopServersUnder(join(dir, "instances"));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("takes the daily backup at the add-on's hour (Europe/Paris), once", async () => {
    await createApp(store.db, actor, "sched-app", { domain: "quai.test" });
    const addon = await addons.provision(actor, "sched-app", "redis", "redis-sandbox");
    const now = new Date();
    await addons.setBackupHour(actor, "sched-app", addon.id, platformClock(now).hour);
    assert.deepEqual((await addons.runSchedule(new Date(now.getTime() - 2 * 3600_000))).backups, 0, "not its hour");
    assert.equal((await addons.runSchedule(now)).backups, 1);
    assert.equal((await addons.runSchedule(new Date(now.getTime() + 1000))).backups, 0, "once a day");
    const { backups } = await addons.listBackups(actor, "sched-app", addon.id);
    assert.equal(backups.length, 1);
    assert.equal(backups[0]?.status, "done");
    assert.equal(backups[0]?.kind, "scheduled");
    const health = await addons.backupHealth(addon);
    assert.equal(health.stale, false);
  });

  it("flags an add-on whose last good backup is older than 26 hours", async () => {
    const { addon } = await addons.find(actor, "sched-app", "redis");
    await store.db.updateTable("addon_backups").set({ finished_at: new Date(Date.now() - 27 * 3600_000) }).where("addon_id", "=", addon.id).execute();
    assert.equal((await addons.backupHealth(addon)).stale, true);
  });

  it("expires backups retention no longer keeps, and deletes their files", async () => {
    const { addon } = await addons.find(actor, "sched-app", "redis");
    const [kept] = (await addons.listBackups(actor, "sched-app", addon.id)).backups;
    // A backup of 400 days ago: outside every window.
    await sql`UPDATE addon_backups SET created_at = now() - interval '400 days' WHERE id = ${kept!.id}`.execute(store.db);
    assert.equal(await addons.expire(), 1);
    assert.equal(await blobs.has(kept!.blob_key as string), false);
  });

  it("refuses a plan downgrade below the data's size, and a restore that would not fit", async () => {
    const { addon } = await addons.find(actor, "sched-app", "redis");
    const r = await redis(await urlOf("sched-app"));
    // Random bytes: snapshots compress, so repeated characters would shrink below the quota.
    await r.set("big", randomBytes(150 * 1024).toString("base64"));
    r.disconnect();
    const { inst } = await addons.current(addon);
    for (let i = 0; i < 50 && (await engine.dataBytes(inst)) < 200 * 1024; i++) await new Promise((res) => setTimeout(res, 100));
    assert.ok((await engine.dataBytes(inst)) >= 200 * 1024, `data on disk: ${await engine.dataBytes(inst)} bytes`);
    await assert.rejects(addons.upgrade(actor, "sched-app", addon.id, "redis-tiny"), (err: unknown) => err instanceof QuaiError && err.code === "addon_plan_too_small");
    assert.deepEqual(await addons.checkQuotas(), [], "within its own plan");
    const b = await addons.waitBackup((await addons.createBackup(actor, "sched-app", addon.id)).id);
    assert.equal(b.status, "done", b.error ?? "");
    // A second app on the tiny plan cannot take this backup in.
    await createApp(store.db, actor, "tiny-app", { domain: "quai.test" });
    const tiny = await addons.provision(actor, "tiny-app", "redis", "redis-tiny");
    const before = await urlOf("tiny-app");
    await assert.rejects(addons.restoreBackup(actor, "tiny-app", tiny.id, b.id), (err: unknown) => err instanceof QuaiError && err.code === "addon_plan_too_small");
    assert.equal(await urlOf("tiny-app"), before, "nothing changed");
    const r2 = await redis(before);
    assert.equal(await r2.dbsize(), 0);
    // The app itself writes past its disk: flagged, and recorded once.
    await r2.set("big", randomBytes(150 * 1024).toString("base64"));
    r2.disconnect();
    const tinyInst = (await addons.current(tiny)).inst;
    for (let i = 0; i < 50 && (await engine.dataBytes(tinyInst)) < 100 * 1024; i++) await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(await addons.checkQuotas(), [tiny.id]);
    await addons.checkQuotas();
    const events = await store.db.selectFrom("events").select("type").where("type", "=", "addon_quota_exceeded").execute();
    assert.equal(events.length, 1);
  });

  it("records a backup as error when the blob store cannot be written, and works again after", async () => {
    const { addon } = await addons.find(actor, "sched-app", "redis");
    // Root ignores file modes: make the store's temp dir a file, so writes fail for anyone.
    await rm(join(dir, "blobs", "tmp"), { recursive: true, force: true });
    await writeFile(join(dir, "blobs", "tmp"), "not a directory");
    const failed = await addons.waitBackup((await addons.createBackup(actor, "sched-app", addon.id)).id);
    assert.equal(failed.status, "error");
    assert.ok(failed.error);
    await rm(join(dir, "blobs", "tmp"), { force: true });
    const ok = await addons.waitBackup((await addons.createBackup(actor, "sched-app", addon.id)).id);
    assert.equal(ok.status, "done", ok.error ?? "");
  });

  it("runs two restores of one add-on one after the other, ending on exactly one instance", async () => {
    const { addon } = await addons.find(actor, "sched-app", "redis");
    const b = await addons.waitBackup((await addons.createBackup(actor, "sched-app", addon.id)).id);
    const [a1, a2] = await Promise.all([addons.restoreBackup(actor, "sched-app", addon.id, b.id), addons.restoreBackup(actor, "sched-app", addon.id, b.id)]);
    assert.notEqual(a1.current_instance_id, a2.current_instance_id);
    await addons.settle();
    const rows = await store.db.selectFrom("addon_instances").selectAll().where("addon_id", "=", addon.id).where("state", "=", "running").execute();
    const now = await store.db.selectFrom("addons").select("current_instance_id").where("id", "=", addon.id).executeTakeFirstOrThrow();
    assert.ok([a1.current_instance_id, a2.current_instance_id].includes(now.current_instance_id), "the add-on is on the last restore's instance");
    assert.deepEqual(rows.map((r) => r.id), [now.current_instance_id]);
    const r = await redis(await urlOf("sched-app"));
    assert.equal((await r.get("big"))?.length, 204800);
    r.disconnect();
  });
});
