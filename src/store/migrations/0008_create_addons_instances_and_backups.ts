// Add-ons (one database per provider per app), the server instances behind them (restores make
// new ones; the previous one is kept, detached), their backups, and PostgreSQL's continuous
// archive (base backups and WAL segments, kept in the blob store).
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE addons (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      provider text NOT NULL,
      plan text NOT NULL,
      status text NOT NULL,
      current_instance_id uuid,
      backup_hour integer NOT NULL DEFAULT 3 CHECK (backup_hour BETWEEN 0 AND 23),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      deleted_at timestamptz
    )`.execute(db);
  // A removed add-on stays (status deleted) so its final backup can still be listed and restored.
  await sql`CREATE UNIQUE INDEX addons_app_provider ON addons (app_id, provider) WHERE status <> 'deleted'`.execute(db);
  await sql`
    CREATE TABLE addon_instances (
      id uuid PRIMARY KEY,
      addon_id uuid NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
      role text NOT NULL,
      state text NOT NULL,
      plan text NOT NULL,
      port integer NOT NULL,
      dir text NOT NULL,
      credentials_enc bytea NOT NULL,
      key_id text NOT NULL,
      pid integer,
      start_ticks bigint,
      origin jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      detached_at timestamptz
    )`.execute(db);
  await sql`CREATE UNIQUE INDEX addon_instances_port ON addon_instances (port) WHERE state <> 'destroyed'`.execute(db);
  await sql`CREATE INDEX addon_instances_addon ON addon_instances (addon_id)`.execute(db);
  await sql`
    CREATE TABLE addon_backups (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      addon_id uuid NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
      instance_id uuid,
      kind text NOT NULL,
      status text NOT NULL,
      format text NOT NULL,
      blob_key text,
      size bigint,
      error text,
      created_by uuid,
      created_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz,
      verification jsonb,
      verified_at timestamptz
    )`.execute(db);
  await sql`CREATE INDEX addon_backups_addon ON addon_backups (addon_id, created_at DESC)`.execute(db);
  await sql`
    CREATE TABLE addon_base_backups (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      instance_id uuid NOT NULL REFERENCES addon_instances(id) ON DELETE CASCADE,
      blob_key text NOT NULL,
      size bigint NOT NULL,
      restorable_from timestamptz NOT NULL,
      start_wal text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`
    CREATE TABLE addon_wal_segments (
      instance_id uuid NOT NULL REFERENCES addon_instances(id) ON DELETE CASCADE,
      name text NOT NULL,
      blob_key text NOT NULL,
      size bigint NOT NULL,
      archived_at timestamptz NOT NULL,
      PRIMARY KEY (instance_id, name)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE addon_wal_segments, addon_base_backups, addon_backups, addon_instances, addons`.execute(db);
}
