// The audit trail: who changed what, when. No foreign keys, so it outlives apps and users.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("events")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`clock_timestamp()`))
    .addColumn("user_id", "uuid")
    .addColumn("user_email", "text")
    .addColumn("user_username", "text")
    .addColumn("app_id", "uuid")
    .addColumn("app_name", "text")
    .addColumn("type", "text", (c) => c.notNull())
    .addColumn("type_data", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .execute();
  await db.schema.createIndex("events_app_id_created_at").on("events").columns(["app_id", "created_at desc"]).execute();
  await db.schema.createIndex("events_created_at").on("events").column("created_at desc").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("events").execute();
}
