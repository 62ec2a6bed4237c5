// A version per app's set of variables, bumped by every change of it (and by a master key
// rotation): a variables change reads without locking and writes only if the version it read is
// still the current one (variables/service.ts), in two round trips instead of a transaction's five.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE variable_versions (
      app_id uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
      version bigint NOT NULL
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE variable_versions`.execute(db);
}
