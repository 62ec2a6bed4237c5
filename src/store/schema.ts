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
  events: EventsTable;
  change_counters: ChangeCountersTable;
}
