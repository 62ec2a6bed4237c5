// `QUAI_DATABASE_URL`: Quai on an external PostgreSQL, no embedded cluster, admin commands included.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { testDb, type TestDb } from "../src/testing/db.ts";
import { quai, spawnServer, type ServerProcess } from "../src/testing/cli.ts";

describe("quai server on an external database (QUAI_DATABASE_URL)", () => {
  let store: TestDb;
  let home: string;
  let server: ServerProcess;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    store = await testDb();
    home = await mkdtemp(join(tmpdir(), "quai-ext-"));
    env = { QUAI_HOME: home, QUAI_DATABASE_URL: store.url, QUAI_CONFIG_DIR: join(home, "cli"), QUAI_URL: "", QUAI_TOKEN: "" };
    server = await spawnServer(env);
  });
  after(async () => {
    await server.stop();
    await store.close();
    await rm(home, { recursive: true, force: true });
  });

  it("uses that database and runs no PostgreSQL of its own", async () => {
    assert.ok(!existsSync(join(home, "postgres")), "no embedded cluster");
    const c = new pg.Client({ connectionString: store.url });
    await c.connect();
    const { rows } = await c.query("SELECT email FROM users");
    await c.end();
    assert.deepEqual(rows, [{ email: "admin@example.org" }], "the owner was created there");
  });

  it("serves the API and the admin commands", async () => {
    const token = (await quai(["admin", "token-create", "--email", "ops@example.org"], env)).stdout.trim();
    assert.match(token, /^qt_/);
    assert.equal((await quai(["login", "--url", server.url, "--api-token", token], env)).code, 0);
    assert.equal((await quai(["create", "external-app"], env)).code, 0);
    assert.match((await quai(["apps"], env)).stdout, /external-app/);
  });

  it("a second server on the same database sees the same state", async () => {
    const second = await spawnServer({ ...env, QUAI_HOME: join(home, "second") });
    try {
      const res = await quai(["apps", "--json"], { ...env, QUAI_URL: second.url });
      assert.deepEqual(JSON.parse(res.stdout).map((a: { name: string }) => a.name), ["external-app"]);
    } finally {
      await second.stop();
    }
  });
});
