// The store: a Kysely handle on PostgreSQL and the migrations that shape it.
import { Kysely, PostgresDialect } from "kysely";
import { Migrator, type Migration } from "kysely/migration";
import pg from "pg";
import type { Database } from "./schema.ts";
import * as m0001 from "./migrations/0001_create_users_tokens_and_sessions.ts";
import * as m0002 from "./migrations/0002_create_apps.ts";
import * as m0003 from "./migrations/0003_create_encrypted_variables.ts";
import * as m0004 from "./migrations/0004_create_events.ts";
import * as m0005 from "./migrations/0005_count_app_list_changes.ts";
import * as m0006 from "./migrations/0006_create_deployments_releases_and_containers.ts";
import * as m0007 from "./migrations/0007_create_ssh_keys.ts";
import * as m0008 from "./migrations/0008_create_addons_instances_and_backups.ts";
import * as m0009 from "./migrations/0009_create_maintenance_windows.ts";
import * as m0010 from "./migrations/0010_create_domains.ts";
import * as m0011 from "./migrations/0011_add_domain_certificates.ts";
import * as m0012 from "./migrations/0012_create_scm_links_and_review_apps.ts";
import * as m0013 from "./migrations/0013_count_variable_changes_per_app.ts";
import * as m0014 from "./migrations/0014_app_uids_cycle.ts";

/** Typed database handle used by every capability. */
export type Db = Kysely<Database>;

/** Migrations in order; names say what each does. Never edit one that has shipped: add the next. */
export const migrations: Record<string, Migration> = {
  "0001_create_users_tokens_and_sessions": m0001,
  "0002_create_apps": m0002,
  "0003_create_encrypted_variables": m0003,
  "0004_create_events": m0004,
  "0005_count_app_list_changes": m0005,
  "0006_create_deployments_releases_and_containers": m0006,
  "0007_create_ssh_keys": m0007,
  "0008_create_addons_instances_and_backups": m0008,
  "0009_create_maintenance_windows": m0009,
  "0010_create_domains": m0010,
  "0011_add_domain_certificates": m0011,
  "0012_create_scm_links_and_review_apps": m0012,
  "0013_count_variable_changes_per_app": m0013,
  "0014_app_uids_cycle": m0014,
};

// timestamptz comes back as Date (pg's default); bigint counts as numbers, they stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** Opens a pool on `url`. */
export function openDb(url: string, max = 20): Db {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000 });
  // A server restart or a dead connection must not crash the process; queries report it instead.
  pool.on("error", () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Brings the schema up to date. Safe with several servers: Kysely takes an advisory lock. */
export async function migrate(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}
