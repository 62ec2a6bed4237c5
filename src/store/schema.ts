// Types of Quai's tables, as Kysely sees them. Migrations in ./migrations create them.
import type { ColumnType, Generated } from "kysely";

type CreatedAt = ColumnType<Date, Date | undefined, never>;
type UpdatedAt = ColumnType<Date, Date | undefined, Date>;

export interface UsersTable {
  id: Generated<string>;
  email: string;
  username: string;
  /** `owner` manages the platform and sees every app; `member` sees the apps it owns. */
  role: "owner" | "member";
  created_at: CreatedAt;
}

export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  /** SHA-256 of the token; the token itself is shown once and never stored. */
  token_hash: Buffer;
  created_at: CreatedAt;
  last_used_at: Date | null;
}

export interface SessionsTable {
  id: Generated<string>;
  user_id: string;
  api_token_id: string;
  token_hash: Buffer;
  created_at: CreatedAt;
  expires_at: Date;
}

export interface AppsTable {
  id: Generated<string>;
  name: string;
  owner_id: string;
  status: string;
  force_https: Generated<boolean>;
  sticky_session: Generated<boolean>;
  router_logs: Generated<boolean>;
  last_deployed_at: Date | null;
  last_deployed_by: string | null;
  last_deployment_id: string | null;
  parent_app_name: string | null;
  /** Unprivileged host uid (and gid) the app's builds and containers run as. */
  uid: Generated<number>;
  current_release_id: string | null;
  health_check_path: string | null;
  /** One of the app's custom domains: every other hostname of the app redirects there (301). */
  canonical_domain: Generated<string | null>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface VariablesTable {
  id: Generated<string>;
  app_id: string;
  name: string;
  /** AES-256-GCM: 12-byte IV, 16-byte tag, ciphertext. */
  value_enc: Buffer;
  /** Id of the master key that encrypted `value_enc`. */
  key_id: string;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

/** The version of an app's set of variables (absent: 0), bumped by each change of it. */
export interface VariableVersionsTable {
  app_id: string;
  version: number;
}

export interface EventsTable {
  id: Generated<string>;
  created_at: CreatedAt;
  user_id: string | null;
  user_email: string | null;
  user_username: string | null;
  /** Kept after the app is deleted: the audit trail outlives the app. */
  app_id: string | null;
  app_name: string | null;
  type: string;
  type_data: ColumnType<Record<string, unknown>, string, string>;
}

/** Counters bumped by triggers (see migration 0005), for caches that must notice any change. */
export interface ChangeCountersTable {
  name: string;
  version: number;
}

/** Every table of the store. */
export interface Database {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  sessions: SessionsTable;
  apps: AppsTable;
  variables: VariablesTable;
  variable_versions: VariableVersionsTable;
  events: EventsTable;
  change_counters: ChangeCountersTable;
  deployments: DeploymentsTable;
  releases: ReleasesTable;
  formation: FormationTable;
  containers: ContainersTable;
  ssh_keys: SshKeysTable;
  addons: AddonsTable;
  addon_instances: AddonInstancesTable;
  addon_backups: AddonBackupsTable;
  addon_base_backups: AddonBaseBackupsTable;
  addon_wal_segments: AddonWalSegmentsTable;
  maintenance_windows: MaintenanceWindowsTable;
  domains: DomainsTable;
  scm_integrations: ScmIntegrationsTable;
  scm_repo_links: ScmRepoLinksTable;
  scm_deliveries: ScmDeliveriesTable;
  scm_branch_deploys: ScmBranchDeploysTable;
  review_apps: ReviewAppsTable;
}

/** A custom domain of an app, stored in ASCII (punycode for internationalised names). */
export interface DomainsTable {
  id: Generated<string>;
  app_id: string;
  name: string;
  created_at: CreatedAt;
  /** The certificate chain (PEM), leaf first. */
  tls_cert: string | null;
  /** The private key (PEM), sealed with the keyring. */
  tls_key_enc: Buffer | null;
  tls_key_id: string | null;
  /** upload (later: acme). */
  tls_source: string | null;
  tls_not_after: Date | null;
  /** none, active, expired, error. */
  tls_status: Generated<string>;
  tls_error: string | null;
}

/** A maintenance window of an app (active while started, not ended, and before `ends_at`). */
export interface MaintenanceWindowsTable {
  id: Generated<string>;
  app_id: string;
  message: string;
  /** A whole page given by the user (HTML, or fetched from a URL when turned on). */
  page_html: string | null;
  allow_ips: string[];
  bypass_token: string;
  starts_at: Date;
  ends_at: Date | null;
  ended_at: Date | null;
  created_by: string | null;
  created_at: CreatedAt;
}

/** An app's add-on: one per provider per app. */
export interface AddonsTable {
  id: Generated<string>;
  app_id: string;
  /** `postgresql`, `mysql`, `redis`. */
  provider: string;
  plan: string;
  /** provisioning, running, upgrading, restoring, error, deleted. */
  status: string;
  current_instance_id: string | null;
  /** Hour of the daily backup, Europe/Paris. */
  backup_hour: Generated<number>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
  deleted_at: Date | null;
}

/** A server instance of an add-on. */
export interface AddonInstancesTable {
  id: string;
  addon_id: string;
  /** current, restore (being filled by a restore), verify (throwaway), detached (replaced by a restore). */
  role: string;
  /** provisioning, running, stopped, destroyed. */
  state: string;
  plan: string;
  port: number;
  dir: string;
  /** The engine's Credentials as JSON, sealed with the keyring. */
  credentials_enc: Buffer;
  key_id: string;
  pid: number | null;
  start_ticks: string | number | null;
  /** Where its data came from: {backup_id} or {pitr_to, from_instance}. */
  origin: ColumnType<Record<string, unknown>, string | undefined, string>;
  created_at: CreatedAt;
  detached_at: Date | null;
}

/** A logical backup of an add-on. */
export interface AddonBackupsTable {
  id: Generated<string>;
  addon_id: string;
  instance_id: string | null;
  /** scheduled, manual, final (before removal). */
  kind: string;
  /** scheduled, running, done, error (Scalingo's words). */
  status: string;
  format: string;
  /** Blob key: the SHA-256 of the file, so it doubles as the checksum. */
  blob_key: string | null;
  size: string | number | null;
  error: string | null;
  created_by: string | null;
  created_at: CreatedAt;
  started_at: Date | null;
  finished_at: Date | null;
  verification: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  verified_at: Date | null;
}

/** A physical base backup of a PostgreSQL instance, for point-in-time recovery. */
export interface AddonBaseBackupsTable {
  id: Generated<string>;
  instance_id: string;
  blob_key: string;
  size: string | number;
  restorable_from: Date;
  start_wal: string;
  created_at: CreatedAt;
}

/** A WAL segment of a PostgreSQL instance, archived to the blob store. */
export interface AddonWalSegmentsTable {
  instance_id: string;
  name: string;
  blob_key: string;
  size: string | number;
  archived_at: Date;
}

/** A user's SSH public key (the git front over SSH). */
export interface SshKeysTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  /** ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ... */
  key_type: string;
  /** The public key blob (what follows the type in an authorized_keys line, decoded). */
  key_data: Buffer;
  /** SHA256:... as `ssh-keygen -l` prints it. */
  fingerprint: string;
  created_at: CreatedAt;
}

/** One build-and-release attempt. Statuses and outcomes use Scalingo's words. */
export interface DeploymentsTable {
  id: Generated<string>;
  app_id: string;
  status: string;
  git_ref: string | null;
  previous_git_ref: string | null;
  /** "git" (a push), "archive" (an uploaded or fetched tarball), "rollback". */
  source: string;
  /** Blob key of the source tarball. */
  source_blob: string | null;
  pusher_id: string | null;
  pusher_email: string | null;
  pusher_username: string | null;
  slug_blob: string | null;
  image_size: number | null;
  release_id: string | null;
  /** For rollbacks: the release whose slug and config are redeployed. */
  rollback_release_id: string | null;
  /** A postdeploy command given with the deployment, overriding the Procfile's. */
  postdeploy_hook: string | null;
  error: string | null;
  cancel_requested: Generated<boolean>;
  created_at: CreatedAt;
  started_at: Date | null;
  finished_at: Date | null;
}

/** A numbered, immutable release: slug + resolved config + process types. */
export interface ReleasesTable {
  id: Generated<string>;
  app_id: string;
  version: number;
  deployment_id: string | null;
  git_ref: string | null;
  slug_blob: string;
  slug_size: number;
  process_types: ColumnType<Record<string, string>, string, string>;
  /** Resolved variables as JSON, AES-256-GCM under `key_id` (same format as variables). */
  config_enc: Buffer;
  key_id: string;
  description: string;
  created_by: string | null;
  created_at: CreatedAt;
}

/** Desired amount and size per process type. */
export interface FormationTable {
  app_id: string;
  type: string;
  amount: number;
  size: string;
}

/** A container the platform started (the runtime driver holds its live state). */
export interface ContainersTable {
  id: string;
  app_id: string;
  release_id: string;
  type: string;
  index: number;
  size: string;
  port: number | null;
  /** starting, running, crashed, stopping, stopped. */
  state: string;
  restarts: Generated<number>;
  last_exit: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

/** A forge account of a user: the forge's API URL and a token, sealed with the keyring. */
export interface ScmIntegrationsTable {
  id: Generated<string>;
  owner_id: string;
  /** github, gitlab, github-enterprise, gitlab-self-hosted. */
  scm_type: string;
  url: string;
  token_enc: Buffer;
  token_key_id: string;
  uid: string;
  username: string;
  email: string | null;
  avatar_url: string | null;
  created_at: CreatedAt;
}

/** An app's link to a repository, in Scalingo's shape plus Quai's CI gate and review-app settings. */
export interface ScmRepoLinksTable {
  id: Generated<string>;
  app_id: string;
  integration_id: string;
  linker_id: string;
  scm_type: string;
  owner: string;
  repo: string;
  branch: string;
  auto_deploy_enabled: Generated<boolean>;
  deploy_review_apps_enabled: Generated<boolean>;
  delete_on_close_enabled: Generated<boolean>;
  hours_before_delete_on_close: Generated<number>;
  delete_stale_enabled: Generated<boolean>;
  hours_before_delete_stale: Generated<number>;
  automatic_creation_from_forks_allowed: Generated<boolean>;
  /** Check names that must pass before an auto-deploy; null: every check but Quai's own. */
  required_checks: string[] | null;
  ci_timeout_minutes: Generated<number>;
  review_apps_limit: Generated<number>;
  /** null, `parent-latest` or `backup:<id>`: what a review app's fresh database starts with. */
  review_apps_seed: string | null;
  webhook_secret_enc: Buffer;
  webhook_secret_key_id: string;
  hook_id: string | null;
  created_at: CreatedAt;
  updated_at: Generated<Date>;
}

/** A webhook delivery: accepted ones make replays detectable, refused ones are the audit trail. */
export interface ScmDeliveriesTable {
  id: Generated<number>;
  provider: string;
  delivery_id: string;
  event: string;
  repo: string | null;
  link_id: string | null;
  /** accepted, refused, ignored. */
  outcome: string;
  reason: string | null;
  received_at: CreatedAt;
}

/** A push to a linked branch on its way to a deployment: waiting for CI, then deployed or not. */
export interface ScmBranchDeploysTable {
  id: Generated<string>;
  link_id: string;
  app_id: string;
  branch: string;
  sha: string;
  manual: Generated<boolean>;
  /** waiting, deploying, success, failed, blocked, superseded, timeout, error. */
  status: string;
  reason: string | null;
  deployment_id: string | null;
  forge_deployment_id: string | null;
  deadline: Date;
  created_at: CreatedAt;
  updated_at: Generated<Date>;
}

/** A review app of a pull request, from creation to deletion (the row stays as history). */
export interface ReviewAppsTable {
  id: Generated<string>;
  parent_app_id: string;
  link_id: string;
  app_id: string | null;
  app_name: string;
  pr_number: number;
  pr_title: string;
  pr_url: string;
  head_ref: string;
  head_sha: string;
  /** queued, creating, deploying, deployed, failed, closed, deleting, deleted. */
  status: string;
  error: string | null;
  attempts: Generated<number>;
  retry_at: Date | null;
  deployment_id: string | null;
  deployed_sha: string | null;
  comment_id: string | null;
  forge_deployment_id: string | null;
  first_deploy_done: Generated<boolean>;
  /** The manifest's scripts as of the last deploy (postdeploy, pr-predestroy). */
  scripts: Generated<{ firstDeploy?: string; postdeploy?: string; prPredestroy?: string }>;
  delete_after: Date | null;
  last_activity_at: Generated<Date>;
  created_at: CreatedAt;
  updated_at: Generated<Date>;
  deleted_at: Date | null;
}
