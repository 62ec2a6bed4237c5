import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import type { PgBoss } from "pg-boss";
import { testDb, type TestDb } from "../testing/db.ts";
import { ensureUser, createApiToken, exchangeToken } from "../auth/service.ts";
import { Queues, startJobs } from "./jobs.ts";

describe("durable jobs (pg-boss)", () => {
  let store: TestDb;
  let boss: PgBoss;
  before(async () => {
    store = await testDb();
    boss = await startJobs(store.url, store.db, () => {});
  });
  after(async () => {
    await boss.stop({ graceful: false });
    await store.close();
  });

  it("keeps its schedule in the database", async () => {
    const schedules = await boss.getSchedules();
    assert.ok(schedules.some((s) => s.name === Queues.purgeExpiredSessions && s.cron === "17 * * * *"));
  });

  it("runs a queued purge job: sessions expired for over a day go, others stay", async () => {
    const { user } = await ensureUser(store.db, "jobs@quai.test", "owner");
    const { token } = await createApiToken(store.db, user, "t");
    await exchangeToken(store.db, token, 3600);
    await exchangeToken(store.db, token, 3600);
    const [old] = await store.db.selectFrom("sessions").select("id").execute();
    await store.db.updateTable("sessions").set({ expires_at: new Date(Date.now() - 2 * 86400_000) }).where("id", "=", old!.id).execute();

    const jobId = await boss.send(Queues.purgeExpiredSessions, {});
    assert.ok(jobId);
    const deadline = Date.now() + 20_000;
    let state = "";
    while (Date.now() < deadline) {
      state = (await boss.getJobById(Queues.purgeExpiredSessions, jobId))?.state ?? "";
      if (state === "completed" || state === "failed") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(state, "completed");
    const left = await store.db.selectFrom("sessions").select("id").execute();
    assert.equal(left.length, 1);
    assert.notEqual(left[0]?.id, old!.id);
  });
});
