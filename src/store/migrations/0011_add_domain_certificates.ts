// A domain's certificate: the chain in PEM, the key sealed with the keyring, where it came from
// (an upload, later ACME), its expiry and status.
import { sql, type Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    ALTER TABLE domains
      ADD COLUMN tls_cert text,
      ADD COLUMN tls_key_enc bytea,
      ADD COLUMN tls_key_id text,
      ADD COLUMN tls_source text,
      ADD COLUMN tls_not_after timestamptz,
      ADD COLUMN tls_status text NOT NULL DEFAULT 'none',
      ADD COLUMN tls_error text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE domains DROP COLUMN tls_cert, DROP COLUMN tls_key_enc, DROP COLUMN tls_key_id, DROP COLUMN tls_source, DROP COLUMN tls_not_after, DROP COLUMN tls_status, DROP COLUMN tls_error`.execute(db);
}
