// Custom domains: each belongs to one app at a time; an app may name one as canonical (the
// others redirect to it).
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE domains (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      name text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX domains_app ON domains (app_id)`.execute(db);
  await sql`ALTER TABLE apps ADD COLUMN canonical_domain text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE apps DROP COLUMN canonical_domain`.execute(db);
  await sql`DROP TABLE domains`.execute(db);
}
