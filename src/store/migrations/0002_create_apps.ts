// Apps, unique by name. The name rule is enforced by the service and, as a last guard, here.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("apps")
    .addColumn("id", "uuid", (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn("name", "text", (c) => c.notNull().unique().check(sql`name ~ '^[a-z0-9]([a-z0-9-]{1,46})[a-z0-9]$'`))
    .addColumn("owner_id", "uuid", (c) => c.notNull().references("users.id"))
    .addColumn("status", "text", (c) => c.notNull().defaultTo("new"))
    .addColumn("force_https", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("sticky_session", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("router_logs", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("last_deployed_at", "timestamptz")
    .addColumn("last_deployed_by", "text")
    .addColumn("last_deployment_id", "text")
    .addColumn("parent_app_name", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("apps_owner_id").on("apps").column("owner_id").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("apps").execute();
}
