// App uids (61000–99999) come from a sequence, and values it hands out are never given back: a
// dry-run create and a failed one use one each, and so does every review app, created and deleted
// all day. Once 39,000 were used no app could be created. The sequence now cycles, and an app takes
// the next uid no app holds: a deleted app's uid comes back only after the whole range went round.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER SEQUENCE app_uids MINVALUE 61000 MAXVALUE 99999 CYCLE`.execute(db);
  await sql`
    CREATE FUNCTION quai_free_app_uid() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      tries integer := 0;
    BEGIN
      WHILE EXISTS (SELECT 1 FROM apps WHERE uid = NEW.uid AND id IS DISTINCT FROM NEW.id) LOOP
        tries := tries + 1;
        IF tries > 39000 THEN
          RAISE EXCEPTION 'every app uid from 61000 to 99999 is taken';
        END IF;
        NEW.uid := nextval('app_uids');
      END LOOP;
      RETURN NEW;
    END $$`.execute(db);
  await sql`CREATE TRIGGER apps_free_uid BEFORE INSERT ON apps FOR EACH ROW EXECUTE FUNCTION quai_free_app_uid()`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TRIGGER apps_free_uid ON apps`.execute(db);
  await sql`DROP FUNCTION quai_free_app_uid()`.execute(db);
  await sql`ALTER SEQUENCE app_uids NO CYCLE`.execute(db);
}
