// SCM integrations (a forge and a token per user), repo links (one per app), the webhook
// deliveries seen (refusals recorded, replays refused), branch deploys waiting for CI, and review
// apps (one live per parent app and pull request).
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE scm_integrations (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      owner_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      scm_type text NOT NULL,
      url text NOT NULL,
      token_enc bytea NOT NULL,
      token_key_id text NOT NULL,
      uid text NOT NULL,
      username text NOT NULL,
      email text,
      avatar_url text,
      created_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (owner_id, scm_type, url)
    )`.execute(db);
  await sql`
    CREATE TABLE scm_repo_links (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      app_id uuid NOT NULL UNIQUE REFERENCES apps(id) ON DELETE CASCADE,
      integration_id uuid NOT NULL REFERENCES scm_integrations(id),
      linker_id uuid NOT NULL REFERENCES users(id),
      scm_type text NOT NULL,
      owner text NOT NULL,
      repo text NOT NULL,
      branch text NOT NULL,
      auto_deploy_enabled boolean NOT NULL DEFAULT false,
      deploy_review_apps_enabled boolean NOT NULL DEFAULT false,
      delete_on_close_enabled boolean NOT NULL DEFAULT true,
      hours_before_delete_on_close integer NOT NULL DEFAULT 0,
      delete_stale_enabled boolean NOT NULL DEFAULT false,
      hours_before_delete_stale integer NOT NULL DEFAULT 72,
      automatic_creation_from_forks_allowed boolean NOT NULL DEFAULT false,
      required_checks text[],
      ci_timeout_minutes integer NOT NULL DEFAULT 60,
      review_apps_limit integer NOT NULL DEFAULT 5,
      review_apps_seed text,
      webhook_secret_enc bytea NOT NULL,
      webhook_secret_key_id text NOT NULL,
      hook_id text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX scm_repo_links_repo ON scm_repo_links (scm_type, lower(owner), lower(repo))`.execute(db);
  await sql`
    CREATE TABLE scm_deliveries (
      id bigserial PRIMARY KEY,
      provider text NOT NULL,
      delivery_id text NOT NULL,
      event text NOT NULL,
      repo text,
      link_id uuid,
      outcome text NOT NULL,
      reason text,
      received_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  // Only accepted deliveries count for replays: a refused forgery cannot burn a genuine id.
  await sql`CREATE UNIQUE INDEX scm_deliveries_once ON scm_deliveries (provider, delivery_id) WHERE outcome <> 'refused'`.execute(db);
  await sql`
    CREATE TABLE scm_branch_deploys (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      link_id uuid NOT NULL REFERENCES scm_repo_links(id) ON DELETE CASCADE,
      app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      branch text NOT NULL,
      sha text NOT NULL,
      manual boolean NOT NULL DEFAULT false,
      status text NOT NULL,
      reason text,
      deployment_id uuid,
      forge_deployment_id text,
      deadline timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX scm_branch_deploys_waiting ON scm_branch_deploys (link_id) WHERE status = 'waiting'`.execute(db);
  await sql`
    CREATE TABLE review_apps (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      parent_app_id uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
      link_id uuid NOT NULL REFERENCES scm_repo_links(id) ON DELETE CASCADE,
      app_id uuid REFERENCES apps(id) ON DELETE SET NULL,
      app_name text NOT NULL,
      pr_number integer NOT NULL,
      pr_title text NOT NULL,
      pr_url text NOT NULL,
      head_ref text NOT NULL,
      head_sha text NOT NULL,
      status text NOT NULL,
      error text,
      attempts integer NOT NULL DEFAULT 0,
      retry_at timestamptz,
      deployment_id uuid,
      deployed_sha text,
      comment_id text,
      forge_deployment_id text,
      first_deploy_done boolean NOT NULL DEFAULT false,
      scripts jsonb NOT NULL DEFAULT '{}',
      delete_after timestamptz,
      last_activity_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      deleted_at timestamptz
    )`.execute(db);
  await sql`CREATE UNIQUE INDEX review_apps_live ON review_apps (parent_app_id, pr_number) WHERE status <> 'deleted'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE review_apps`.execute(db);
  await sql`DROP TABLE scm_branch_deploys`.execute(db);
  await sql`DROP TABLE scm_deliveries`.execute(db);
  await sql`DROP TABLE scm_repo_links`.execute(db);
  await sql`DROP TABLE scm_integrations`.execute(db);
}
