import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testDb, type TestDb } from "../testing/db.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp, findApp } from "../apps/service.ts";
import { Keyring } from "./keyring.ts";
import { bulkSetVariables, listVariables, rotateMasterKey } from "./service.ts";
import { createRelease, loadRelease } from "../pipeline/release.ts";

describe("variables service", () => {
  let store: TestDb;
  let dir: string;
  let actor: Actor;
  before(async () => {
    store = await testDb();
    dir = await mkdtemp(join(tmpdir(), "quai-rotate-"));
    actor = (await ensureUser(store.db, "rot@quai.test", "owner")).user;
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("rotation while a server keeps writing leaves every value readable, none under a dropped key (regression)", async () => {
    const file = join(dir, "master.json");
    const server = await Keyring.open(file);
    const urls = { domain: "quai.test" };
    await createApp(store.db, actor, "rotating", urls);
    const app = await findApp(store.db, actor, "rotating");
    await bulkSetVariables(store.db, server, actor, app.name, Array.from({ length: 50 }, (_, i) => ({ name: `V${i}`, value: `before-${i}` })));

    let writing = true;
    const writes = (async () => {
      for (let i = 0; writing || i < 5; i++) await bulkSetVariables(store.db, server, actor, app.name, [{ name: `W${i % 7}`, value: `during-${i}` }]);
    })();
    // Rotations by `quai admin rotate-key`: another process, another Keyring on the same file.
    for (let r = 0; r < 3; r++) await rotateMasterKey(store.db, await Keyring.open(file));
    writing = false;
    await writes;
    await bulkSetVariables(store.db, server, actor, app.name, [{ name: "AFTER", value: "after" }]);

    const keysInFile = (JSON.parse(await readFile(file, "utf8")) as { keys: { id: string }[] }).keys.map((k) => k.id);
    const used = await store.db.selectFrom("variables").select("key_id").distinct().execute();
    for (const u of used) assert.ok(keysInFile.includes(u.key_id), `key ${u.key_id} used by a value is still in the key file`);
    const fresh = await listVariables(store.db, await Keyring.open(file), app);
    assert.equal(fresh.find((v) => v.name === "V7")?.value, "before-7");
    assert.equal(fresh.find((v) => v.name === "AFTER")?.value, "after");
    assert.ok(fresh.filter((v) => v.name.startsWith("W")).every((v) => v.value.startsWith("during-")));
  });

  it("concurrent edits of one app all apply, one after the other, each with its event", async () => {
    const keyring = await Keyring.open(join(dir, "master.json"));
    await createApp(store.db, actor, "busy-vars", { domain: "quai.test" });
    const app = await findApp(store.db, actor, "busy-vars");
    // 20 writers at once, on a pool of 10 connections: reads interleave with writes.
    await Promise.all(Array.from({ length: 20 }, (_, i) => bulkSetVariables(store.db, keyring, actor, app.name, [{ name: `C${i}`, value: `v${i}` }, { name: "SHARED", value: `from-${i}` }])));
    const vars = await listVariables(store.db, keyring, app);
    assert.deepEqual(vars.filter((v) => v.name.startsWith("C")).map((v) => v.value).sort(), Array.from({ length: 20 }, (_, i) => `v${i}`).sort());
    assert.match(vars.find((v) => v.name === "SHARED")?.value ?? "", /^from-\d+$/);
    const events = await store.db.selectFrom("events").select("type_data").where("app_id", "=", app.id).where("type", "=", "edit_variables").execute();
    assert.equal(events.length, 20, "one event per change, none for a retried attempt");
    // Each C<i> was created by exactly one change: none saw another's write as its own creation.
    const created = events.flatMap((e) => (e.type_data as { created: string[] }).created).filter((n) => n.startsWith("C")).sort();
    assert.deepEqual(created, Array.from({ length: 20 }, (_, i) => `C${i}`).sort());
    assert.equal(events.filter((e) => (e.type_data as { created: string[] }).created.includes("SHARED")).length, 1, "SHARED was created once, then updated");
  });

  it("two concurrent edits that together would make a reference cycle: one applies, the other is refused", async () => {
    const keyring = await Keyring.open(join(dir, "master.json"));
    await createApp(store.db, actor, "cycle-vars", { domain: "quai.test" });
    const app = await findApp(store.db, actor, "cycle-vars");
    for (let round = 0; round < 5; round++) {
      await store.db.deleteFrom("variables").where("app_id", "=", app.id).execute();
      const results = await Promise.allSettled([
        bulkSetVariables(store.db, keyring, actor, app.name, [{ name: "A", value: "$B" }]),
        bulkSetVariables(store.db, keyring, actor, app.name, [{ name: "B", value: "$A" }]),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"], `round ${round}`);
      const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      assert.match(String(refused.reason), /cycle/i);
      assert.equal((await listVariables(store.db, keyring, app)).length, 1);
    }
  });

  it("key rotation re-encrypts release configs too, so old releases stay deployable (regression)", async () => {
    // The same key file as the test above: every value in the database is sealed under it.
    const file = join(dir, "master.json");
    const ring = await Keyring.open(file);
    await createApp(store.db, actor, "released", { domain: "quai.test" });
    const app = await findApp(store.db, actor, "released");
    const rel = await createRelease(store.db, ring, { appId: app.id, deploymentId: null, gitRef: null, slugKey: "0".repeat(64), slugSize: 1, processTypes: { web: "x" }, config: { SECRET: "s3cret" }, description: "v1", createdBy: null });
    await rotateMasterKey(store.db, await Keyring.open(file));
    await rotateMasterKey(store.db, await Keyring.open(file));
    const keysInFile = (JSON.parse(await readFile(file, "utf8")) as { keys: { id: string }[] }).keys.map((k) => k.id);
    assert.equal(keysInFile.length, 1, "old keys were dropped");
    const loaded = await loadRelease(store.db, await Keyring.open(file), rel.id);
    assert.deepEqual(loaded.config, { SECRET: "s3cret" });
  });
});
