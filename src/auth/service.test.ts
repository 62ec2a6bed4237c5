import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { testDb, type TestDb } from "../testing/db.ts";
import { QuaiError } from "../core/errors.ts";
import { Authenticator, createApiToken, ensureUser, exchangeToken } from "./service.ts";

const code = (err: unknown) => (err instanceof QuaiError ? err.code : String(err));

describe("bearer authentication", () => {
  let store: TestDb;
  let apiToken: string;
  before(async () => {
    store = await testDb();
    const { user } = await ensureUser(store.db, "auth@quai.test", "member");
    apiToken = (await createApiToken(store.db, user, "t")).token;
  });
  after(async () => {
    await store.close();
  });

  it("remembers a session for its cache time only: a deleted session stops working after it", async () => {
    const auth = new Authenticator(store.db, { ttlMs: 300 });
    const { token } = await exchangeToken(store.db, apiToken, 3600);
    assert.equal((await auth.authenticate(token)).email, "auth@quai.test");
    await store.db.deleteFrom("sessions").execute();
    assert.equal((await auth.authenticate(token)).email, "auth@quai.test", "served from the cache");
    await new Promise((r) => setTimeout(r, 350));
    await assert.rejects(auth.authenticate(token), (err) => code(err) === "token_invalid");
  });

  it("enforces expiry on every use, cached or not", async () => {
    const auth = new Authenticator(store.db, { ttlMs: 60_000 });
    const { token } = await exchangeToken(store.db, apiToken, 1);
    await auth.authenticate(token);
    await new Promise((r) => setTimeout(r, 1100));
    await assert.rejects(auth.authenticate(token), (err) => code(err) === "token_expired");
  });

  it("refuses malformed and unknown tokens, and an API token used as bearer", async () => {
    const auth = new Authenticator(store.db);
    await assert.rejects(auth.authenticate("qb_unknown"), (err) => code(err) === "token_invalid");
    await assert.rejects(auth.authenticate("garbage"), (err) => code(err) === "token_invalid");
    await assert.rejects(auth.authenticate(apiToken), (err) => err instanceof QuaiError && /exchange it/.test(err.message));
  });
});
