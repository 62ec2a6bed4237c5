import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { sql } from "kysely";
import { testApi, type TestApi } from "../testing/api.ts";
import { buildApi } from "./api.ts";

describe("API", () => {
  let t: TestApi;
  before(async () => {
    t = await testApi({ bodyLimitBytes: 256 * 1024 });
  });
  after(async () => {
    await t.close();
  });

  describe("auth", () => {
    it("exchanges an API token for a bearer token that works on /v1/users/self", async () => {
      const ex = await t.api.inject({ method: "POST", url: "/v1/tokens/exchange", headers: { authorization: `Basic ${Buffer.from(":" + t.owner.apiToken).toString("base64")}` }, payload: {} });
      assert.equal(ex.statusCode, 200);
      const { token, expires_at } = ex.json();
      assert.match(token, /^qb_/);
      assert.ok(Date.parse(expires_at) > Date.now() + 3500_000);
      const self = await t.call("GET", "/v1/users/self", undefined, token);
      assert.equal(self.statusCode, 200);
      assert.equal(self.json().user.email, "owner@quai.test");
    });

    it("answers 401 with a clear message for a missing, wrong, malformed or API token as bearer", async () => {
      const cases: [Record<string, string>, string, RegExp][] = [
        [{}, "auth_required", /Authorization: Bearer/],
        [{ authorization: "Bearer qb_nope" }, "token_invalid", /not valid/],
        [{ authorization: "Token abc" }, "auth_required", /must be `Bearer <token>`/],
        [{ authorization: `Bearer ${t.owner.apiToken}` }, "token_invalid", /exchange it at POST \/v1\/tokens\/exchange/],
      ];
      for (const [headers, code, message] of cases) {
        const res = await t.api.inject({ method: "GET", url: "/v1/apps", headers });
        assert.equal(res.statusCode, 401, JSON.stringify(headers));
        assert.equal(res.json().error, code);
        assert.match(res.json().message, message);
      }
    });

    it("refuses a wrong API token at exchange, and says an expired bearer expired", async () => {
      const bad = await t.api.inject({ method: "POST", url: "/v1/tokens/exchange", headers: { authorization: `Basic ${Buffer.from(":qt_wrong").toString("base64")}` } });
      assert.equal(bad.statusCode, 401);
      assert.equal(bad.json().error, "token_invalid");
      const none = await t.api.inject({ method: "POST", url: "/v1/tokens/exchange" });
      assert.equal(none.statusCode, 401);
      assert.equal(none.json().error, "auth_required");
      await t.store.db.updateTable("sessions").set({ expires_at: new Date(Date.now() - 1000) }).execute();
      const expired = await t.call("GET", "/v1/apps");
      assert.equal(expired.statusCode, 401);
      assert.equal(expired.json().error, "token_expired");
      t.owner.bearer = (await t.user("owner@quai.test", "owner")).bearer;
    });

    it("stores tokens hashed, never in clear", async () => {
      const rows = await sql<{ h: string }>`SELECT encode(token_hash, 'escape') AS h FROM api_tokens UNION ALL SELECT encode(token_hash, 'escape') FROM sessions`.execute(t.store.db);
      assert.ok(rows.rows.length >= 2);
      for (const r of rows.rows) assert.ok(!r.h.includes("qt_") && !r.h.includes("qb_"));
    });
  });

  describe("apps", () => {
    it("creates, shows, lists, updates, renames and deletes an app in Scalingo's shapes", async () => {
      const created = await t.call("POST", "/v1/apps", { app: { name: "histologe" } });
      assert.equal(created.statusCode, 201);
      const app = created.json().app;
      for (const field of ["id", "name", "created_at", "status", "git_url", "url", "owner", "force_https", "last_deployed_at", "links", "region"]) {
        assert.ok(field in app, `app JSON has ${field}`);
      }
      assert.equal(app.url, "http://histologe.quai.test");
      assert.equal(app.status, "new");
      assert.equal(app.owner.email, "owner@quai.test");

      assert.equal((await t.call("GET", `/v1/apps/${app.id}`)).json().app.name, "histologe", "found by id");
      assert.ok((await t.call("GET", "/v1/apps")).json().apps.some((a: { name: string }) => a.name === "histologe"));

      const patched = await t.call("PATCH", "/v1/apps/histologe", { app: { force_https: true } });
      assert.equal(patched.statusCode, 200);
      assert.equal(patched.json().app.force_https, true);

      const renamed = await t.call("POST", "/v1/apps/histologe/rename", { current_name: "histologe", new_name: "histologe-prod" });
      assert.equal(renamed.statusCode, 200);
      assert.equal(renamed.json().app.id, app.id);
      assert.equal((await t.call("GET", "/v1/apps/histologe")).statusCode, 404);

      const wrongConfirm = await t.call("DELETE", "/v1/apps/histologe-prod?current_name=histologe");
      assert.equal(wrongConfirm.statusCode, 422);
      assert.equal(wrongConfirm.json().error, "confirmation_mismatch");
      const noConfirm = await t.call("DELETE", "/v1/apps/histologe-prod");
      assert.equal(noConfirm.json().error, "confirmation_mismatch");
      assert.equal((await t.call("GET", "/v1/apps/histologe-prod")).statusCode, 200, "still there after refused deletes");

      assert.equal((await t.call("DELETE", "/v1/apps/histologe-prod?current_name=histologe-prod")).statusCode, 204);
      assert.equal((await t.call("GET", "/v1/apps/histologe-prod")).json().error, "app_not_found");
    });

    it("refuses bad names with 422 naming the rule", async () => {
      for (const name of ["../etc", "my app", "histologе", "a;rm -rf", "$(id)", "ab", "x".repeat(49), "Upper"]) {
        const res = await t.call("POST", "/v1/apps", { app: { name } });
        assert.equal(res.statusCode, 422, name);
        assert.equal(res.json().error, "app_name_invalid");
        assert.match(res.json().message, /3 to 48 characters/);
      }
      const count = await t.store.db.selectFrom("apps").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
      assert.equal(Number(count.n), 0, "nothing was created");
    });

    it("gives one of two racing creates the app and the other 409, with one event", async () => {
      const results = await Promise.all(Array.from({ length: 6 }, () => t.call("POST", "/v1/apps", { app: { name: "race-app" } })));
      const codes = results.map((r) => r.statusCode).sort();
      assert.deepEqual(codes, [201, 409, 409, 409, 409, 409]);
      assert.equal(results.find((r) => r.statusCode === 409)?.json().error, "app_name_taken");
      const events = await t.store.db.selectFrom("events").select("id").where("type", "=", "new_app").where("app_name", "=", "race-app").execute();
      assert.equal(events.length, 1);
    });

    it("never serves a stale app list, even when another server made the change", async () => {
      const other = await buildApi({
        db: t.store.db, keyring: t.keyring, domain: "quai.test", bearerTtlSeconds: 3600, bodyLimitBytes: 1024 * 1024, log: () => {},
        platform: () => ({ version: "test", domain: "quai.test", api_url: "", router: { http: null, https: null }, git: { http: null, ssh: null } }),
      });
      const names = async () => ((await t.call("GET", "/v1/apps")).json().apps as { name: string; owner: { email: string } }[]);
      try {
        await names(); // fills the cache
        const asOther = (method: string, url: string, payload?: object) =>
          other.inject({ method: method as "POST", url, headers: { authorization: `Bearer ${t.owner.bearer}` }, ...(payload ? { payload } : {}) });
        assert.equal((await asOther("POST", "/v1/apps", { app: { name: "cache-probe" } })).statusCode, 201);
        assert.ok((await names()).some((a) => a.name === "cache-probe"), "a create elsewhere shows");
        await asOther("POST", "/v1/apps/cache-probe/rename", { current_name: "cache-probe", new_name: "cache-probe2" });
        assert.ok((await names()).some((a) => a.name === "cache-probe2"), "a rename elsewhere shows");
        await t.store.db.updateTable("users").set({ email: "owner2@quai.test" }).where("email", "=", "owner@quai.test").execute();
        assert.equal((await names()).find((a) => a.name === "cache-probe2")?.owner.email, "owner2@quai.test", "an owner change shows");
        await t.store.db.updateTable("users").set({ email: "owner@quai.test" }).where("email", "=", "owner2@quai.test").execute();
        await asOther("DELETE", "/v1/apps/cache-probe2?current_name=cache-probe2");
        assert.ok(!(await names()).some((a) => a.name === "cache-probe2"), "a delete elsewhere shows");
      } finally {
        await other.close();
      }
    });

    it("validates without creating on X-Dry-Run", async () => {
      const res = await t.api.inject({ method: "POST", url: "/v1/apps", headers: { authorization: `Bearer ${t.owner.bearer}`, "x-dry-run": "true" }, payload: { app: { name: "dry-one" } } });
      assert.equal(res.statusCode, 200);
      assert.equal((await t.call("GET", "/v1/apps/dry-one")).statusCode, 404);
    });

    it("hides other members' apps behind 404", async () => {
      const alice = await t.user("alice@quai.test");
      const bob = await t.user("bob@quai.test");
      assert.equal((await t.call("POST", "/v1/apps", { app: { name: "alice-app" } }, alice.bearer)).statusCode, 201);
      assert.equal((await t.call("GET", "/v1/apps/alice-app", undefined, bob.bearer)).statusCode, 404);
      assert.equal((await t.call("PUT", "/v1/apps/alice-app/variables", { variables: [{ name: "X", value: "1" }] }, bob.bearer)).statusCode, 404);
      assert.deepEqual((await t.call("GET", "/v1/apps", undefined, bob.bearer)).json().apps, []);
      assert.equal((await t.call("GET", "/v1/apps/alice-app")).statusCode, 200, "the platform owner sees it");
      const bobEvents = (await t.call("GET", "/v1/events", undefined, bob.bearer)).json().events as { app_name: string | null }[];
      assert.ok(!bobEvents.some((e) => e.app_name === "alice-app"), "nor its events");
    });
  });

  describe("bad requests", () => {
    it("answers malformed JSON with 400 bad_json", async () => {
      const res = await t.api.inject({ method: "POST", url: "/v1/apps", headers: { authorization: `Bearer ${t.owner.bearer}`, "content-type": "application/json" }, payload: '{"app": {"name": "x"' });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().error, "bad_json");
    });

    it("refuses unknown fields with 422 naming the field", async () => {
      const res = await t.call("POST", "/v1/apps", { app: { name: "fine-name", admin: true } });
      assert.equal(res.statusCode, 422);
      assert.equal(res.json().error, "unknown_field");
      assert.match(res.json().message, /"admin"/);
      const top = await t.call("POST", "/v1/apps", { app: { name: "fine-name" }, extra: 1 });
      assert.equal(top.json().error, "unknown_field");
    });

    it("refuses wrong types and missing fields with 422", async () => {
      const res = await t.call("POST", "/v1/apps", { app: { name: 42 } });
      assert.equal(res.statusCode, 422);
      assert.equal(res.json().error, "validation_failed");
      assert.match(res.json().message, /body\.app\.name must be string/);
      assert.equal((await t.call("POST", "/v1/apps", {})).json().error, "validation_failed");
    });

    it("refuses oversized bodies with 413 and other media types with 415", async () => {
      const big = await t.call("PUT", "/v1/apps/whatever/variables", { variables: [{ name: "A", value: "x".repeat(300 * 1024) }] });
      assert.equal(big.statusCode, 413);
      assert.equal(big.json().error, "body_too_large");
      const text = await t.api.inject({ method: "POST", url: "/v1/apps", headers: { authorization: `Bearer ${t.owner.bearer}`, "content-type": "text/plain" }, payload: "name=x" });
      assert.equal(text.statusCode, 415);
      assert.equal(text.json().error, "unsupported_media_type");
    });

    it("answers unknown routes with a JSON 404", async () => {
      const res = await t.call("GET", "/v1/nothing-here");
      assert.equal(res.statusCode, 404);
      assert.equal(res.json().error, "route_not_found");
    });

    it("answers a URL it cannot read, and a NUL byte anywhere, with the catalogue's errors", async () => {
      for (const url of ["/v1/apps/%FF", `/v1/apps/${"a".repeat(5000)}`]) {
        const res = await t.call("GET", url);
        assert.equal(res.statusCode, 422, url.slice(0, 40));
        assert.equal(res.json().error, "validation_failed");
      }
      // PostgreSQL refuses NUL in text: found before any handler runs, never a 500 after a change.
      const cases: [string, string, unknown, RegExp][] = [
        ["GET", "/v1/apps/a%00b", undefined, /^path\.app holds a NUL byte/],
        ["GET", "/v1/apps?x=%00", undefined, /^query\.x holds a NUL byte/],
        ["POST", "/v1/apps", { app: { name: "nul\u0000app" } }, /^body\.app\.name holds a NUL byte/],
        ["PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "OK", value: "x" }, { name: "B", value: "\u0000" }] }, /^body\.variables\[1\]\.value holds a NUL byte/],
      ];
      for (const [method, url, body, message] of cases) {
        const res = await t.call(method, url, body);
        assert.equal(res.statusCode, 422, url);
        assert.equal(res.json().error, "validation_failed", url);
        assert.match(res.json().message, message, url);
      }
      // Unauthenticated and public (the logs link): the same answer, not a 500.
      const logs = await t.call("GET", "/v1/apps/%00/logs/stream?token=1.a", undefined, null);
      assert.notEqual(logs.statusCode, 500);
    });

    it("sets X-Request-ID, keeping a well-formed one from the client", async () => {
      const res = await t.api.inject({ method: "GET", url: "/v1/health", headers: { "x-request-id": "abc-123" } });
      assert.equal(res.headers["x-request-id"], "abc-123");
      const evil = await t.api.inject({ method: "GET", url: "/v1/health", headers: { "x-request-id": "a b\"<script>" } });
      assert.match(String(evil.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    });
  });

  describe("variables", () => {
    before(async () => {
      assert.equal((await t.call("POST", "/v1/apps", { app: { name: "vars-app" } })).statusCode, 201);
    });

    it("creates, lists, bulk-updates, patches and deletes variables", async () => {
      const created = await t.call("POST", "/v1/apps/vars-app/variables", { variable: { name: "APP_ENV", value: "staging" } });
      assert.equal(created.statusCode, 201);
      const id = created.json().variable.id;
      const replaced = await t.call("POST", "/v1/apps/vars-app/variables", { variable: { name: "APP_ENV", value: "production" } });
      assert.equal(replaced.statusCode, 200);
      assert.equal(replaced.json().variable.id, id);

      const bulk = await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "A", value: "1" }, { name: "B", value: "2" }] });
      assert.equal(bulk.statusCode, 200);
      assert.deepEqual(bulk.json().variables.map((v: { name: string }) => v.name), ["A", "B"]);

      const patched = await t.call("PATCH", `/v1/apps/vars-app/variables/${id}`, { variable: { value: "prod" } });
      assert.equal(patched.json().variable.value, "prod");

      const list = (await t.call("GET", "/v1/apps/vars-app/variables")).json().variables as { name: string; value: string }[];
      assert.deepEqual(list.map((v) => `${v.name}=${v.value}`), ["A=1", "APP_ENV=prod", "B=2"]);

      assert.equal((await t.call("DELETE", `/v1/apps/vars-app/variables/${id}`)).statusCode, 204);
      const bulkDel = await t.call("DELETE", "/v1/apps/vars-app/variables", { variable_ids: ["A", "B"] });
      assert.equal(bulkDel.statusCode, 200);
      assert.deepEqual((await t.call("GET", "/v1/apps/vars-app/variables")).json().variables, []);
    });

    it("never stores a value in clear", async () => {
      const secret = "s3cret-" + Math.random().toString(36).slice(2);
      await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "SECRET_KEY", value: secret }] });
      const dump = await sql<{ row: string }>`SELECT row_to_json(v)::text AS row FROM variables v`.execute(t.store.db);
      assert.ok(dump.rows.length > 0);
      for (const r of dump.rows) assert.ok(!r.row.includes(secret) && !r.row.includes(Buffer.from(secret).toString("hex")));
      const events = await sql<{ d: string }>`SELECT type_data::text AS d FROM events`.execute(t.store.db);
      for (const e of events.rows) assert.ok(!e.d.includes(secret), "nor in an event");
    });

    it("refuses bad names, 65 KiB values and duplicates, changing nothing", async () => {
      const before = (await t.call("GET", "/v1/apps/vars-app/variables")).json().variables;
      const cases: [unknown[], string][] = [
        [[{ name: "1ABC", value: "x" }], "variable_name_invalid"],
        [[{ name: "MY-VAR", value: "x" }], "variable_name_invalid"],
        [[{ name: "", value: "x" }], "variable_name_invalid"],
        [[{ name: "GOOD", value: "x" }, { name: "$(id)", value: "x" }], "variable_name_invalid"],
        [[{ name: "BIG", value: "x".repeat(65 * 1024) }], "variable_value_too_large"],
        [[{ name: "D", value: "1" }, { name: "D", value: "2" }], "variable_duplicate"],
        // No environment can carry it: every release of the app would fail.
        [[{ name: "NUL", value: "a\u0000b" }], "validation_failed"],
      ];
      for (const [variables, code] of cases) {
        const res = await t.call("PUT", "/v1/apps/vars-app/variables", { variables });
        assert.equal(res.statusCode, 422, code);
        assert.equal(res.json().error, code);
      }
      const exactly64k = await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "MAX", value: "é".repeat(32 * 1024) }] });
      assert.equal(exactly64k.statusCode, 200, "64 KiB exactly is allowed");
      await t.call("DELETE", "/v1/apps/vars-app/variables/MAX");
      assert.deepEqual((await t.call("GET", "/v1/apps/vars-app/variables")).json().variables, before);
    });

    it("stores references as written, refuses cycles and reports missing references when resolved", async () => {
      const cycle = await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "CA", value: "$CB" }, { name: "CB", value: "${CA}" }] });
      assert.equal(cycle.statusCode, 422);
      assert.equal(cycle.json().error, "variable_reference_cycle");
      assert.deepEqual(cycle.json().details.cycle, ["CA", "CB", "CA"]);

      await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "DATABASE_URL", value: "$SCALINGO_POSTGRESQL_URL" }] });
      const raw = (await t.call("GET", "/v1/apps/vars-app/variables")).json().variables as { name: string; value: string }[];
      assert.equal(raw.find((v) => v.name === "DATABASE_URL")?.value, "$SCALINGO_POSTGRESQL_URL", "stored as written");
      const missing = await t.call("GET", "/v1/apps/vars-app/variables?resolved=true");
      assert.equal(missing.statusCode, 422);
      assert.equal(missing.json().error, "variable_reference_missing");
      assert.match(missing.json().message, /DATABASE_URL refers to \$SCALINGO_POSTGRESQL_URL/);

      await t.call("PUT", "/v1/apps/vars-app/variables", { variables: [{ name: "SCALINGO_POSTGRESQL_URL", value: "postgres://db/x" }] });
      const resolved = (await t.call("GET", "/v1/apps/vars-app/variables?resolved=true")).json().variables as { name: string; value: string }[];
      assert.equal(resolved.find((v) => v.name === "DATABASE_URL")?.value, "postgres://db/x");

      const closing = await t.call("PATCH", "/v1/apps/vars-app/variables/SCALINGO_POSTGRESQL_URL", { variable: { value: "$DATABASE_URL" } });
      assert.equal(closing.json().error, "variable_reference_cycle", "a PATCH cannot close a cycle either");
    });

    it("answers 404 for variables of unknown apps and unknown variables", async () => {
      assert.equal((await t.call("GET", "/v1/apps/no-such-app/variables")).json().error, "app_not_found");
      assert.equal((await t.call("DELETE", "/v1/apps/vars-app/variables/00000000-0000-0000-0000-000000000000")).json().error, "variable_not_found");
    });
  });

  describe("events", () => {
    it("records every change with who made it, newest first, paginated", async () => {
      await t.call("POST", "/v1/apps", { app: { name: "evt-app" } });
      await t.call("PUT", "/v1/apps/evt-app/variables", { variables: [{ name: "K", value: "v" }] });
      await t.call("POST", "/v1/apps/evt-app/rename", { current_name: "evt-app", new_name: "evt-app2" });
      const res = await t.call("GET", "/v1/apps/evt-app2/events?per_page=2");
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.deepEqual(body.events.map((e: { type: string }) => e.type), ["rename_app", "edit_variables"]);
      assert.equal(body.events[0].user.email, "owner@quai.test");
      assert.deepEqual(body.events[0].type_data, { old_name: "evt-app", new_name: "evt-app2" });
      assert.equal(body.meta.total_count, 3);
      assert.equal(body.meta.next_page, 2);
      const page2 = (await t.call("GET", "/v1/apps/evt-app2/events?per_page=2&page=2")).json();
      assert.deepEqual(page2.events.map((e: { type: string }) => e.type), ["new_app"]);
      const one = await t.call("GET", `/v1/apps/evt-app2/events/${body.events[0].id}`);
      assert.equal(one.json().event.type, "rename_app");
      assert.equal((await t.call("GET", "/v1/apps/evt-app2/events/not-a-uuid")).json().error, "event_not_found");
      assert.equal((await t.call("GET", "/v1/apps/evt-app2/events?page=0")).statusCode, 422);
    });

    it("keeps an app's events after it is deleted, visible in /v1/events", async () => {
      await t.call("POST", "/v1/apps", { app: { name: "short-lived" } });
      await t.call("DELETE", "/v1/apps/short-lived?current_name=short-lived");
      const all = (await t.call("GET", "/v1/events?per_page=100")).json().events as { type: string; app_name: string }[];
      assert.ok(all.some((e) => e.type === "delete_app" && e.app_name === "short-lived"));
      assert.ok(all.some((e) => e.type === "new_app" && e.app_name === "short-lived"));
    });
  });

  describe("platform", () => {
    it("reports health without auth and the platform with auth", async () => {
      assert.equal((await t.call("GET", "/v1/health", undefined, null)).json().status, "ok");
      assert.equal((await t.call("GET", "/v1/platform", undefined, null)).statusCode, 401);
      assert.equal((await t.call("GET", "/v1/platform")).json().platform.domain, "quai.test");
    });

    it("publishes an OpenAPI document describing every endpoint with its request schema", async () => {
      const doc = (await t.call("GET", "/v1/openapi.json", undefined, null)).json();
      assert.equal(doc.openapi, "3.1.0");
      const routes = t.api.printRoutes({ commonPrefix: false });
      for (const [path, method] of [
        ["/v1/apps", "post"], ["/v1/apps", "get"], ["/v1/apps/{app}", "patch"], ["/v1/apps/{app}", "delete"], ["/v1/apps/{app}/rename", "post"],
        ["/v1/apps/{app}/variables", "put"], ["/v1/apps/{app}/variables/{id}", "patch"], ["/v1/apps/{app}/events", "get"], ["/v1/events", "get"],
        ["/v1/tokens/exchange", "post"], ["/v1/users/self", "get"], ["/v1/health", "get"], ["/v1/platform", "get"],
      ] as const) {
        assert.ok(doc.paths[path]?.[method], `${method} ${path} is documented`);
      }
      assert.ok(routes.length > 0);
      const createSchema = doc.paths["/v1/apps"].post.requestBody.content["application/json"].schema;
      assert.equal(createSchema.properties.app.additionalProperties, false, "the same schema that validates");
    });
  });
});
