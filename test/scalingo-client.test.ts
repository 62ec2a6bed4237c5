// Contract tests: Scalingo's own npm client (`scalingo`) against a real, listening Quai. If the
// client sends something Quai refuses, or cannot read what Quai answers, a test here fails.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { clientFromToken, type Client } from "scalingo";
import { buildApi } from "../src/server/api.ts";
import { Keyring } from "../src/variables/keyring.ts";
import { createApiToken, ensureUser } from "../src/auth/service.ts";
import { testDb, type TestDb } from "../src/testing/db.ts";
import { stopServersUnder } from "../src/testing/platform.ts";
import { Addons } from "../src/addons/service.ts";
import { RedisEngine } from "../src/addons/engines/redis.ts";
import { LocalBlobStore } from "../src/blobs/store.ts";
import { Scm } from "../src/scm/service.ts";
import { FakeForge } from "../src/testing/forge.ts";

const OWNER = "owner@quai.test";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A check for `assert.rejects`: the client's APIError with this HTTP status (and error code). */
function apiError(status: number, code?: string) {
  return (err: unknown): true => {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    // The client's bundle does not export APIError; its class is named `_APIError` there.
    assert.match(err.constructor.name, /APIError$/, `expected an APIError, got ${err.constructor.name}: ${err.message}`);
    const e = err as Error & { status: number; data: { error?: string } };
    assert.equal(e.status, status, `status (body: ${JSON.stringify(e.data)})`);
    if (code !== undefined) assert.equal(e.data.error, code);
    return true;
  };
}

describe("scalingo npm client against a listening Quai", () => {
  let store: TestDb;
  let keyDir: string;
  const servers: FastifyInstance[] = [];
  let apiToken: string;
  let url: string;
  let shortUrl: string;
  let client: Client;
  /** Every variable value sent in this file: none may show up in an event. */
  const secrets: string[] = [];
  const secret = (label: string) => {
    const v = `${label}-${randomBytes(9).toString("hex")}`;
    secrets.push(v);
    return v;
  };

  let addons: Addons | undefined;
  let scm: Scm | undefined;
  const forge = new FakeForge({ token: "forge-token" });

  async function serve(keyring: Keyring, bearerTtlSeconds: number): Promise<string> {
    let apiUrl = "";
    // Add-ons with the Redis engine alone: the fastest server to provision.
    const blobs = new LocalBlobStore(join(keyDir, "blobs"));
    addons ??= new Addons({ db: store.db, keyring, blobs, engines: [new RedisEngine({ blobs, log: () => {} })], dir: join(keyDir, "addons"), log: () => {} });
    scm ??= new Scm({ db: store.db, keyring, log: () => {}, apiUrl: () => apiUrl, forgeBackoffMs: 10 });
    const api = await buildApi({
      db: store.db,
      keyring,
      addons,
      scm,
      domain: "quai.test",
      bearerTtlSeconds,
      bodyLimitBytes: 4 * 1024 * 1024,
      platform: () => ({ version: "test", domain: "quai.test", api_url: apiUrl, router: { http: null, https: null }, git: { http: null, ssh: null } }),
      log: () => {},
    });
    servers.push(api);
    apiUrl = await api.listen({ host: "127.0.0.1", port: 0 });
    return apiUrl;
  }

  before(async () => {
    await forge.start();
    store = await testDb();
    keyDir = await mkdtemp(join(tmpdir(), "quai-scalingo-keys-"));
    const keyring = await Keyring.open(join(keyDir, "master.json"));
    url = await serve(keyring, 3600);
    // Same store, bearer tokens that live one second: for the expiry test.
    shortUrl = await serve(keyring, 1);
    const { user } = await ensureUser(store.db, OWNER, "owner");
    ({ token: apiToken } = await createApiToken(store.db, user, "scalingo-client"));
    client = await clientFromToken(apiToken, { apiUrl: url, authApiUrl: url });
  });

  after(async () => {
    for (const api of servers) await api.close();
    await addons?.close();
    await scm?.close();
    await forge.close();
    if (keyDir) await stopServersUnder(join(keyDir, "addons"));
    await store?.close();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  it("exchanges the API token for a bearer token (clientFromToken)", () => {
    assert.match(client._token, /^qb_/);
  });

  it("Users.self returns the owner", async () => {
    const me = await client.Users.self();
    assert.equal(me.email, OWNER);
    assert.equal(me.username, "owner");
    assert.equal(typeof me.id, "string");
  });

  describe("apps, variables and events", () => {
    let appId: string;
    const name = "sc-contract";
    const renamed = "sc-contract-renamed";

    it("Apps.create creates an app", async () => {
      const app = await client.Apps.create({ name });
      assert.equal(app.name, name);
      assert.equal(app.status, "new");
      assert.equal(app.owner.email, OWNER);
      assert.equal(app.force_https, false);
      appId = app.id;
    });

    it("Apps.create with dry_run: true validates and creates nothing", async () => {
      const app = await client.Apps.create({ name: "sc-dry-run", dry_run: true });
      assert.equal(app.name, "sc-dry-run");
      await assert.rejects(client.Apps.find("sc-dry-run"), apiError(404, "app_not_found"));
      assert.ok(!(await client.Apps.all()).some((a) => a.name === "sc-dry-run"));
      // A dry run still validates: a taken name and an invalid name are refused.
      await assert.rejects(client.Apps.create({ name, dry_run: true }), apiError(409, "app_name_taken"));
      await assert.rejects(client.Apps.create({ name: "Not_Valid", dry_run: true }), apiError(422, "app_name_invalid"));
    });

    it("Apps.find finds the app by name and by id", async () => {
      assert.equal((await client.Apps.find(name)).id, appId);
      assert.equal((await client.Apps.find(appId)).name, name);
    });

    it("Apps.all lists the app", async () => {
      const apps = await client.Apps.all();
      assert.deepEqual(apps.map((a) => a.name), [name]);
    });

    it("Apps.update changes settings", async () => {
      const app = await client.Apps.update(appId, { force_https: true, router_logs: true });
      assert.equal(app.force_https, true);
      assert.equal(app.router_logs, true);
      assert.equal(app.sticky_session, false);
      assert.equal((await client.Apps.find(appId)).force_https, true);
    });

    it("Apps.rename renames the app (current name confirms)", async () => {
      const app = await client.Apps.rename(name, name, renamed);
      assert.equal(app.name, renamed);
      assert.equal(app.id, appId);
      await assert.rejects(client.Apps.find(name), apiError(404, "app_not_found"));
      assert.equal((await client.Apps.find(renamed)).id, appId);
    });

    let dbUrlId: string;
    let bulkIds: Map<string, string>;

    it("Environment.create creates a variable", async () => {
      const value = secret("postgres://u:pw@db:5432/app");
      const v = await client.Environment.create(appId, { name: "DATABASE_URL", value });
      assert.equal(v.name, "DATABASE_URL");
      assert.equal(v.value, value);
      assert.equal(typeof v.id, "string");
      dbUrlId = v.id;
    });

    it("Environment.bulkUpdate creates and replaces many variables", async () => {
      const input = [
        { name: "DATABASE_URL", value: secret("postgres://u:pw2@db:5432/app") },
        { name: "SECRET_KEY_BASE", value: secret("skb") },
        { name: "API_KEY", value: secret("key") },
        { name: "LOG_LEVEL", value: secret("debug") },
      ];
      const vars = await client.Environment.bulkUpdate(appId, input);
      assert.deepEqual(vars.map((v) => [v.name, v.value]), input.map((v) => [v.name, v.value]));
      bulkIds = new Map(vars.map((v) => [v.name, v.id]));
      assert.equal(bulkIds.get("DATABASE_URL"), dbUrlId, "replacing a variable keeps its id");
    });

    it("Environment.for lists the variables with their values", async () => {
      const vars = await client.Environment.for(appId);
      assert.deepEqual(vars.map((v) => v.name), ["API_KEY", "DATABASE_URL", "LOG_LEVEL", "SECRET_KEY_BASE"]);
      assert.equal(vars.find((v) => v.name === "DATABASE_URL")?.value, secrets[1]);
    });

    it("Environment.update changes a value by variable id", async () => {
      const value = secret("info");
      const v = await client.Environment.update(appId, bulkIds.get("LOG_LEVEL")!, value);
      assert.equal(v.name, "LOG_LEVEL");
      assert.equal(v.value, value);
      assert.equal(v.id, bulkIds.get("LOG_LEVEL"));
    });

    it("Environment.destroy deletes a variable by id", async () => {
      await client.Environment.destroy(appId, bulkIds.get("API_KEY")!);
      const names = (await client.Environment.for(appId)).map((v) => v.name);
      assert.deepEqual(names, ["DATABASE_URL", "LOG_LEVEL", "SECRET_KEY_BASE"]);
    });

    it("Environment.bulkDestroy deletes many variables by id", async () => {
      const ids = [bulkIds.get("LOG_LEVEL")!, bulkIds.get("SECRET_KEY_BASE")!];
      assert.deepEqual(await client.Environment.bulkDestroy(appId, ids), ids);
      assert.deepEqual((await client.Environment.for(appId)).map((v) => v.name), ["DATABASE_URL"]);
    });

    it("Events.for lists the app's events, newest first, by the owner, without values", async () => {
      const { events, meta } = await client.Events.for(appId, { page: 1, per_page: 50 });
      assert.deepEqual(events.map((e) => e.type), [
        "delete_variable", // bulkDestroy
        "delete_variable", // destroy
        "edit_variable", // update
        "edit_variables", // bulkUpdate
        "new_variable", // create
        "rename_app",
        "edit_app",
        "new_app",
      ]);
      assert.equal(meta.total_count, events.length);
      for (const e of events) {
        assert.equal(e.user.email, OWNER);
        assert.equal(e.app_id, appId);
      }
      const times = events.map((e) => Date.parse(e.created_at));
      assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
      assert.equal(events.at(-1)?.app_name, name);
      assert.equal(events[0]?.app_name, renamed);
      assert.deepEqual(events.find((e) => e.type === "rename_app")?.type_data, { old_name: name, new_name: renamed });
      const json = JSON.stringify(events);
      for (const s of secrets) assert.ok(!json.includes(s), `an event carries the value ${s}`);
      assert.ok(json.includes("SECRET_KEY_BASE"), "events name the variables");
      assert.deepEqual(await client.Events.find(appId, events[0]!.id), events[0]);
    });

    it("Apps.destroy with a wrong name is refused with 422 and deletes nothing", async () => {
      await assert.rejects(client.Apps.destroy(appId, name), apiError(422, "confirmation_mismatch"));
      await assert.rejects(client.Apps.destroy(appId, "something-else"), apiError(422, "confirmation_mismatch"));
      assert.equal((await client.Apps.find(appId)).name, renamed);
    });

    it("Apps.destroy with the current name deletes the app", async () => {
      await client.Apps.destroy(appId, renamed);
      await assert.rejects(client.Apps.find(appId), apiError(404, "app_not_found"));
      assert.deepEqual(await client.Apps.all(), []);
    });

    it("Events.all lists the user's events, newest first, and keeps the deleted app's", async () => {
      const { events, meta } = await client.Events.all({ page: 1, per_page: 100 });
      assert.deepEqual(events.map((e) => e.type), [
        "delete_app",
        "delete_variable",
        "delete_variable",
        "edit_variable",
        "edit_variables",
        "new_variable",
        "rename_app",
        "edit_app",
        "new_app",
        "new_token",
        "new_user",
      ]);
      assert.equal(meta.total_count, events.length);
      assert.equal(meta.current_page, 1);
      for (const e of events) assert.equal(e.user.email, OWNER);
      const times = events.map((e) => Date.parse(e.created_at));
      assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
      assert.equal(events[0]?.app_name, renamed);
      assert.ok(!events.some((e) => e.app_name === "sc-dry-run"), "a dry run records no event");
      const json = JSON.stringify(events);
      for (const s of secrets) assert.ok(!json.includes(s), `an event carries the value ${s}`);
    });
  });

  describe("add-ons", () => {
    const name = "sc-addons";
    it("lists providers, provisions, lists, finds, upgrades and removes an add-on", async () => {
      await client.Apps.create({ name });
      const providers = await client.Addons.listProviders();
      const redis = providers.find((p) => p.id === "redis") as unknown as { plans: { id: string }[] } | undefined;
      assert.ok(redis?.plans.some((pl) => pl.id === "redis-sandbox"));
      const created = await client.Addons.create(name, { addon_provider_id: "redis", plan_id: "redis-sandbox" });
      assert.equal(created.plan.id, "redis-sandbox");
      assert.equal(created.addon_provider.id, "redis");
      assert.equal(created.status, "running");
      const list = await client.Addons.for(name);
      assert.deepEqual(list.map((a) => a.id), [created.id]);
      assert.equal((await client.Addons.getAddon(name, created.id)).id, created.id);
      const vars = await client.Environment.for(name);
      assert.ok(vars.some((v) => v.name === "SCALINGO_REDIS_URL" && v.value.startsWith("redis://")));
      // The client unpacks the answer's `addon` (its type says otherwise).
      const upgraded = (await client.Addons.update(name, created.id, { plan_id: "redis-starter-512" } as never)) as unknown as { plan: { id: string } };
      assert.equal(upgraded.plan.id, "redis-starter-512");
      await client.Addons.destroy(name, created.id);
      assert.deepEqual(await client.Addons.for(name), []);
    });

    it("refuses an unknown provider with 422 addon_provider_unknown", async () => {
      await assert.rejects(client.Addons.create(name, { addon_provider_id: "couchdb", plan_id: "x" }), apiError(422, "addon_provider_unknown"));
    });
  });

  describe("SCM integrations and repo links", () => {
    it("adds, lists, finds and deletes an integration, links an app and reads its repository", async () => {
      const sha = forge.addRepo("github", "acme/shop", { "index.js": "1" });
      forge.openPull("github", "acme/shop", { number: 3, title: "A change", headRef: "main", headSha: sha });
      const created = await client.SCMIntegrations.create({ scm_type: "github-enterprise", url: forge.githubUrl, access_token: "forge-token" } as never);
      const id = (created as unknown as { id: string }).id;
      assert.equal((created as unknown as { username: string }).username.length > 0, true);
      assert.equal(JSON.stringify(created).includes("forge-token"), false, "the token is never shown");
      assert.deepEqual((await client.SCMIntegrations.all()).map((i) => (i as unknown as { id: string }).id), [id]);
      assert.equal(((await client.SCMIntegrations.find(id)) as unknown as { scm_type: string }).scm_type, "github-enterprise");
      await assert.rejects(client.SCMIntegrations.create({ scm_type: "github-enterprise", url: forge.githubUrl, access_token: "wrong" } as never), apiError(502, "scm_forge_refused"));

      await client.Apps.create({ name: "linked-app" });
      const link = await client.SCMRepoLinks.create("linked-app", { source: "https://github.example/acme/shop", branch: "main", auth_integration_uuid: id, auto_deploy_enabled: true } as never);
      assert.equal((link as unknown as { repo: string }).repo, "shop");
      assert.equal(forge.hooks.filter((h) => h.repo === "acme/shop" && !h.deleted).length, 1);
      const found = (await client.SCMRepoLinks.find("linked-app")) as unknown as { owner: string; auto_deploy_enabled: boolean };
      assert.equal(found.owner, "acme");
      assert.equal(found.auto_deploy_enabled, true);
      const updated = (await client.SCMRepoLinks.update("linked-app", { deploy_review_apps_enabled: true, hours_before_delete_on_close: 4 } as never)) as unknown as { deploy_review_apps_enabled: boolean; hours_before_delete_on_close: number };
      assert.equal(updated.deploy_review_apps_enabled, true);
      assert.equal(updated.hours_before_delete_on_close, 4);
      assert.deepEqual(((await client.SCMRepoLinks.branches("linked-app")) as unknown as { name: string }[]).map((b) => b.name), ["main"]);
      assert.deepEqual(((await client.SCMRepoLinks.pulls("linked-app")) as unknown as { number: number }[]).map((p) => p.number), [3]);
      assert.deepEqual(await client.SCMRepoLinks.reviewApps("linked-app"), []);
      await assert.rejects(client.SCMRepoLinks.create("linked-app", { source: "acme/shop", auth_integration_uuid: id } as never), apiError(409, "scm_repo_link_exists"));
      await assert.rejects(client.SCMIntegrations.destroy(id), apiError(409, "scm_integration_in_use"));
      await client.SCMRepoLinks.destroy("linked-app");
      assert.equal(forge.hooks.filter((h) => h.repo === "acme/shop" && !h.deleted).length, 0, "the webhook is removed with the link");
      await assert.rejects(client.SCMRepoLinks.find("linked-app"), apiError(404, "scm_repo_link_not_found"));
      await client.SCMIntegrations.destroy(id);
      assert.deepEqual(await client.SCMIntegrations.all(), []);
    });
  });

  describe("authentication failures", () => {
    it("a wrong API token makes clientFromToken reject with 401", async () => {
      const wrong = `qt_${randomBytes(32).toString("base64url")}`;
      await assert.rejects(clientFromToken(wrong, { apiUrl: url, authApiUrl: url }), apiError(401, "token_invalid"));
      await assert.rejects(clientFromToken("not-a-quai-token", { apiUrl: url, authApiUrl: url }), apiError(401, "token_invalid"));
    });

    it("an expired bearer token gives 401 token_expired", async () => {
      const shortLived = await clientFromToken(apiToken, { apiUrl: shortUrl, authApiUrl: shortUrl });
      await sleep(1200);
      await assert.rejects(shortLived.Users.self(), apiError(401, "token_expired"));
      await assert.rejects(shortLived.Apps.all(), apiError(401, "token_expired"));
    });
  });
});
