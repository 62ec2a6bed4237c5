// A change counter bumped by triggers on every write to apps or users, so that a rendered app
// list can be cached and reused until the next change, by any server sharing the database.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE change_counters (name text PRIMARY KEY, version bigint NOT NULL DEFAULT 0)`.execute(db);
  await sql`INSERT INTO change_counters (name) VALUES ('apps')`.execute(db);
  await sql`
    CREATE FUNCTION bump_apps_counter() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE change_counters SET version = version + 1 WHERE name = 'apps';
      RETURN NULL;
    END $$`.execute(db);
  await sql`CREATE TRIGGER apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON apps FOR EACH STATEMENT EXECUTE FUNCTION bump_apps_counter()`.execute(db);
  await sql`CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users FOR EACH STATEMENT EXECUTE FUNCTION bump_apps_counter()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TRIGGER users_changed ON users`.execute(db);
  await sql`DROP TRIGGER apps_changed ON apps`.execute(db);
  await sql`DROP FUNCTION bump_apps_counter()`.execute(db);
  await sql`DROP TABLE change_counters`.execute(db);
}
