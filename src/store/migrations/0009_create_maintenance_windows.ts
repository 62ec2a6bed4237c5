// Maintenance windows: an app answers a maintenance page (503) to everyone but allow-listed
// networks and holders of the bypass cookie, from `starts_at` until `ends_at` or until ended.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE maintenance_windows (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      message text NOT NULL,
      page_html text,
      allow_ips text[] NOT NULL DEFAULT '{}',
      bypass_token text NOT NULL,
      starts_at timestamptz NOT NULL,
      ends_at timestamptz,
      ended_at timestamptz,
      created_by uuid,
      created_at timestamptz NOT NULL DEFAULT now(),
      CHECK (ends_at IS NULL OR ends_at > starts_at)
    )`.execute(db);
  await sql`CREATE INDEX maintenance_windows_app ON maintenance_windows (app_id) WHERE ended_at IS NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE maintenance_windows`.execute(db);
}
