// The deploy pipeline's records: deployments (one build each), numbered releases (slug + config +
// process types), the desired formation per process type, and the containers that run it.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  // Each app runs under its own unprivileged uid, so that its containers cannot touch another's files.
  await sql`CREATE SEQUENCE app_uids START 61000 MAXVALUE 99999`.execute(db);
  await sql`ALTER TABLE apps ADD COLUMN uid integer NOT NULL UNIQUE DEFAULT nextval('app_uids')`.execute(db);
  await sql`ALTER TABLE apps ADD COLUMN current_release_id uuid`.execute(db);
  // A path the new web containers must answer (2xx or 3xx) before traffic switches to them.
  await sql`ALTER TABLE apps ADD COLUMN health_check_path text`.execute(db);

  await sql`
    CREATE TABLE deployments (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      status text NOT NULL DEFAULT 'queued',
      git_ref text,
      previous_git_ref text,
      source text NOT NULL,
      source_blob text,
      pusher_id uuid,
      pusher_email text,
      pusher_username text,
      slug_blob text,
      image_size bigint,
      release_id uuid,
      rollback_release_id uuid,
      postdeploy_hook text,
      error text,
      cancel_requested boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz
    )`.execute(db);
  await sql`CREATE INDEX deployments_app_created ON deployments (app_id, created_at DESC)`.execute(db);
  await sql`CREATE INDEX deployments_queued ON deployments (app_id, created_at) WHERE status = 'queued'`.execute(db);

  await sql`
    CREATE TABLE releases (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      version integer NOT NULL,
      deployment_id uuid,
      git_ref text,
      slug_blob text NOT NULL,
      slug_size bigint NOT NULL,
      process_types jsonb NOT NULL,
      config_enc bytea NOT NULL,
      key_id text NOT NULL,
      description text NOT NULL,
      created_by text,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (app_id, version)
    )`.execute(db);

  await sql`
    CREATE TABLE formation (
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      type text NOT NULL,
      amount integer NOT NULL CHECK (amount >= 0),
      size text NOT NULL,
      PRIMARY KEY (app_id, type)
    )`.execute(db);

  await sql`
    CREATE TABLE containers (
      id text PRIMARY KEY,
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      release_id uuid NOT NULL,
      type text NOT NULL,
      index integer NOT NULL,
      size text NOT NULL,
      port integer,
      state text NOT NULL,
      restarts integer NOT NULL DEFAULT 0,
      last_exit text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX containers_app ON containers (app_id)`.execute(db);
  await sql`CREATE UNIQUE INDEX containers_port ON containers (port) WHERE port IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE containers`.execute(db);
  await sql`DROP TABLE formation`.execute(db);
  await sql`DROP TABLE releases`.execute(db);
  await sql`DROP TABLE deployments`.execute(db);
  await sql`ALTER TABLE apps DROP COLUMN health_check_path`.execute(db);
  await sql`ALTER TABLE apps DROP COLUMN current_release_id`.execute(db);
  await sql`ALTER TABLE apps DROP COLUMN uid`.execute(db);
  await sql`DROP SEQUENCE app_uids`.execute(db);
}
