// Release: a slug, the app's resolved config and its process types, numbered v1..vN per app.
// Releases never change; a rollback makes a new release from an old one's slug and config.
import { sql } from "kysely";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import { QuaiError } from "../core/errors.ts";
import type { ProcessTypes } from "./procfile.ts";

/** A release as the pipeline uses it (config decrypted). */
export interface Release {
  id: string;
  appId: string;
  version: number;
  gitRef: string | null;
  slugKey: string;
  slugSize: number;
  processTypes: ProcessTypes;
  config: Record<string, string>;
  description: string;
  createdAt: Date;
}

/** Additional data a release config is sealed with (also used by key rotation). */
export const releaseSealContext = (appId: string) => `release:${appId}`;

/** Creates the next numbered release of an app. */
export async function createRelease(db: Db, keyring: Keyring, input: { appId: string; deploymentId: string | null; gitRef: string | null; slugKey: string; slugSize: number; processTypes: ProcessTypes; config: Record<string, string>; description: string; createdBy: string | null }): Promise<Release> {
  // Serialised per app by the row lock, so two releases never get one number. Sealed under the
  // lock, after re-reading the key file: a key rotation holds every app lock while it re-encrypts.
  return db.transaction().execute(async (trx) => {
    await sql`SELECT 1 FROM apps WHERE id = ${input.appId} FOR UPDATE`.execute(trx);
    keyring.refresh();
    const sealed = keyring.seal(JSON.stringify(input.config), releaseSealContext(input.appId));
    const last = await trx.selectFrom("releases").select(sql<number>`coalesce(max(version), 0)`.as("v")).where("app_id", "=", input.appId).executeTakeFirstOrThrow();
    const row = await trx
      .insertInto("releases")
      .values({
        app_id: input.appId,
        version: Number(last.v) + 1,
        deployment_id: input.deploymentId,
        git_ref: input.gitRef,
        slug_blob: input.slugKey,
        slug_size: input.slugSize,
        process_types: JSON.stringify(input.processTypes),
        config_enc: sealed.data,
        key_id: sealed.keyId,
        description: input.description,
        created_by: input.createdBy,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { id: row.id, appId: row.app_id, version: row.version, gitRef: row.git_ref, slugKey: row.slug_blob, slugSize: row.slug_size, processTypes: row.process_types, config: input.config, description: row.description, createdAt: row.created_at };
  });
}

/** Loads a release by id, config decrypted. */
export async function loadRelease(db: Db, keyring: Keyring, id: string): Promise<Release> {
  const row = await db.selectFrom("releases").selectAll().where("id", "=", id).executeTakeFirst();
  if (!row) throw new QuaiError("release_not_found", `release ${id} not found`);
  return toRelease(keyring, row);
}

/** Loads an app's release by version number. */
export async function findRelease(db: Db, keyring: Keyring, appId: string, version: number): Promise<Release> {
  const row = await db.selectFrom("releases").selectAll().where("app_id", "=", appId).where("version", "=", version).executeTakeFirst();
  if (!row) throw new QuaiError("release_not_found", `the app has no release v${version}`);
  return toRelease(keyring, row);
}

function toRelease(keyring: Keyring, row: { id: string; app_id: string; version: number; git_ref: string | null; slug_blob: string; slug_size: number; process_types: ProcessTypes; config_enc: Buffer; key_id: string; description: string; created_at: Date }): Release {
  const config = JSON.parse(keyring.open({ keyId: row.key_id, data: row.config_enc }, releaseSealContext(row.app_id))) as Record<string, string>;
  return { id: row.id, appId: row.app_id, version: row.version, gitRef: row.git_ref, slugKey: row.slug_blob, slugSize: row.slug_size, processTypes: row.process_types, config, description: row.description, createdAt: row.created_at };
}
