import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { sql } from "kysely";
import { testDb, type TestDb } from "../testing/db.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp, findApp } from "./service.ts";

describe("app uids", () => {
  let store: TestDb;
  let actor: Actor;
  before(async () => {
    store = await testDb();
    actor = (await ensureUser(store.db, "uids@quai.test", "owner")).user;
  });
  after(async () => {
    await store.close();
  });

  const uidOf = async (name: string) => (await findApp(store.db, actor, name)).uid;

  it("dry runs use none for good, and past the end of the range an app takes the next uid no app holds", async () => {
    const urls = { domain: "quai.test" };
    await createApp(store.db, actor, "first-app", urls);
    const first = await uidOf("first-app");
    // Dry runs take a value of the sequence each, and the range goes round.
    for (let i = 0; i < 5; i++) await createApp(store.db, actor, "dry-app", urls, { dryRun: true });
    await sql`SELECT setval('app_uids', 99998)`.execute(store.db);
    await createApp(store.db, actor, "last-app", urls);
    assert.equal(await uidOf("last-app"), 99999);
    // Round again: 61000 and on, skipping what apps hold (first-app's).
    const wrapped: number[] = [];
    for (let i = 0; i <= first - 61000; i++) {
      await createApp(store.db, actor, `wrapped-${i}`, urls);
      wrapped.push(await uidOf(`wrapped-${i}`));
    }
    assert.ok(!wrapped.includes(first), `${first} is first-app's`);
    assert.equal(new Set([...wrapped, first, 99999]).size, wrapped.length + 2, "no uid twice");
    assert.ok(wrapped.every((u) => u >= 61000 && u <= 99999));
  });
});
