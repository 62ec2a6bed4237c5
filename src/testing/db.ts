// Test helper: a fresh, migrated database on the run's shared PostgreSQL cluster (started by
// scripts/test.ts), or on a cluster of its own when a test file is run alone.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { EmbeddedPostgres } from "../store/embedded-postgres.ts";
import { migrate, openDb, type Db } from "../store/db.ts";

/** A migrated database for one test file. */
export interface TestDb {
  db: Db;
  url: string;
  close(): Promise<void>;
}

/** Creates a database with a random name, migrates it, and drops it on `close`. */
export async function testDb(): Promise<TestDb> {
  let adminUrl = process.env.QUAI_TEST_PG_URL;
  let own: EmbeddedPostgres | undefined;
  let ownDir: string | undefined;
  if (!adminUrl) {
    ownDir = await mkdtemp(join(tmpdir(), "quai-testpg-"));
    own = new EmbeddedPostgres({ dir: ownDir, durable: false, database: "postgres" });
    adminUrl = await own.start();
  }
  const name = `t_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = adminUrl.replace(/\/[^/]*$/, `/${name}`);
  const db = openDb(url, 10);
  await migrate(db);
  return {
    db,
    url,
    async close() {
      await db.destroy();
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
      if (own) await own.stop();
      if (ownDir) await rm(ownDir, { recursive: true, force: true });
    },
  };
}
