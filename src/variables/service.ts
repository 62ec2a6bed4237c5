// Environment variables of an app: validated, encrypted at rest, checked for reference cycles,
// changed atomically with the event that records the change (names only, never values).
import { sql } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { Actor } from "../auth/service.ts";
import { releaseSealContext } from "../pipeline/release.ts";
import { visibleTo, type AppRecord } from "../apps/service.ts";
import { eventRow, type EventType } from "../events/service.ts";
import type { Keyring } from "./keyring.ts";
import { assertNoCycle, resolveAll } from "./references.ts";

/** A variable in Scalingo's shape. */
export interface Variable {
  id: string;
  name: string;
  value: string;
}

/** A name and value to set. */
export interface VariableInput {
  name: string;
  value: string;
}

export const MAX_VALUE_BYTES = 64 * 1024;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_NAME = 255;

/** Throws `variable_name_invalid` unless `name` is a valid variable name. */
export function assertVariableName(name: string): void {
  if (name.length === 0 || name.length > MAX_NAME || !NAME.test(name)) {
    const why = name.length === 0 ? "it is empty" : name.length > MAX_NAME ? `it is ${name.length} characters long` : /^[0-9]/.test(name) ? "it starts with a digit" : "it has characters outside A-Z, a-z, 0-9 and _";
    throw new QuaiError("variable_name_invalid", `invalid variable name ${JSON.stringify(name.slice(0, 80))}: ${why}; names match [A-Za-z_][A-Za-z0-9_]* (at most ${MAX_NAME} characters)`, { name: name.slice(0, 80) });
  }
}

/** Throws `variable_value_too_large` when `value` exceeds 64 KiB of UTF-8. */
export function assertVariableValue(name: string, value: string): void {
  // No process environment can carry it: every release of the app would fail.
  if (value.includes("\0")) throw new QuaiError("validation_failed", `value of ${name} holds a NUL byte (\\u0000), which no environment can carry`, { name });
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > MAX_VALUE_BYTES) {
    throw new QuaiError("variable_value_too_large", `value of ${name} is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES} bytes (64 KiB)`, { name, bytes });
  }
}

const context = (appId: string, name: string) => `${appId}:${name}`;

/** A stored variable row. */
interface StoredVariable {
  id: string;
  name: string;
  value_enc: Buffer;
  key_id: string;
}

function decrypt(keyring: Keyring, appId: string, r: StoredVariable): Variable {
  return { id: r.id, name: r.name, value: keyring.open({ keyId: r.key_id, data: r.value_enc }, context(appId, r.name)) };
}

/** Lists an app's variables, values decrypted, sorted by name. */
export async function listVariables(db: Db, keyring: Keyring, app: AppRecord): Promise<Variable[]> {
  const rows = await db.selectFrom("variables").select(["id", "name", "value_enc", "key_id"]).where("app_id", "=", app.id).orderBy("name").execute();
  return rows.map((r) => decrypt(keyring, app.id, r));
}

/** `vars` with every reference resolved, as a release will see them. */
export function resolveVariables(vars: Variable[]): Variable[] {
  const resolved = resolveAll(new Map(vars.map((v) => [v.name, v.value])));
  return vars.map((v) => ({ ...v, value: resolved.get(v.name) as string }));
}

/** What one change does: set values, delete variables (by id or name), or set one by id or name. */
interface Edit {
  upserts: VariableInput[];
  deletes: string[];
  patch?: { key: string; value: string };
}

/** What a change reads: the app `actor` may write, the version of its variables, and their rows. */
interface Snapshot {
  app: { id: string; name: string };
  version: number;
  rows: StoredVariable[];
}

/** Reads the app (by name or id) and its variables in one statement, hence one snapshot. */
async function readForChange(db: Db, actor: Actor, appRef: string): Promise<Snapshot> {
  const byRef = isUuid(appRef) ? sql`id = ${appRef}` : sql`name = ${appRef}`;
  const res = await sql<{ app_id: string; app_name: string; version: number; id: string | null; name: string | null; value_enc: Buffer | null; key_id: string | null }>`
    WITH a AS (SELECT id, name FROM apps WHERE ${byRef} AND ${visibleTo(actor)})
    SELECT a.id AS app_id, a.name AS app_name, coalesce(vv.version, 0) AS version, v.id, v.name, v.value_enc, v.key_id
    FROM a LEFT JOIN variable_versions vv ON vv.app_id = a.id LEFT JOIN variables v ON v.app_id = a.id`.execute(db);
  const first = res.rows[0];
  if (!first) throw new QuaiError("app_not_found", `app ${JSON.stringify(appRef)} not found`);
  const rows = res.rows.filter((r) => r.id !== null).map((r) => ({ id: r.id as string, name: r.name as string, value_enc: r.value_enc as Buffer, key_id: r.key_id as string }));
  return { app: { id: first.app_id, name: first.app_name }, version: Number(first.version), rows };
}

/** How often a change is tried again when another one committed between its read and its write. */
const MAX_ATTEMPTS = 50;

/**
 * Applies an edit with optimistic concurrency: one statement reads the app's variables and their
 * version; the new values are checked (cycles see the final set) and sealed; one statement then
 * writes them, with the event that records the change, only if the version is still the one read
 * (and bumps it). Otherwise another change, or a master key rotation (which bumps every version
 * while it re-encrypts), came first: read again and redo. So concurrent edits of one app apply
 * one after the other, and no value is ever written under a key a rotation has already dropped.
 */
async function change(
  db: Db,
  keyring: Keyring,
  actor: Actor,
  appRef: string,
  edit: Edit,
  eventType: EventType | ((created: string[]) => EventType),
): Promise<{ changed: Variable[]; created: string[]; deleted: string[] }> {
  const seen = new Set<string>();
  for (const v of edit.upserts) {
    assertVariableName(v.name);
    assertVariableValue(v.name, v.value);
    if (seen.has(v.name)) throw new QuaiError("variable_duplicate", `variable ${v.name} appears twice in the request`, { name: v.name });
    seen.add(v.name);
  }
  for (let attempt = 1; ; attempt++) {
    const { app, version, rows } = await readForChange(db, actor, appRef);
    keyring.refresh();
    const current = rows.map((r) => decrypt(keyring, app.id, r));
    const byName = new Map(current.map((v) => [v.name, v]));
    const find = (key: string) => {
      const v = isUuid(key) ? current.find((c) => c.id === key) : byName.get(key);
      if (!v) throw new QuaiError("variable_not_found", `no variable ${JSON.stringify(key)} on app ${app.name}`);
      return v;
    };
    const upserts = edit.patch ? [{ name: find(edit.patch.key).name, value: edit.patch.value }] : edit.upserts;
    if (edit.patch) assertVariableValue(upserts[0]!.name, edit.patch.value);
    const deleted = edit.deletes.map((key) => find(key).name);
    const final = new Map(current.filter((v) => !deleted.includes(v.name)).map((v) => [v.name, v.value]));
    for (const v of upserts) final.set(v.name, v.value);
    assertNoCycle(final);

    const created = upserts.filter((v) => !byName.has(v.name)).map((v) => v.name);
    const names = upserts.map((v) => v.name);
    const type = typeof eventType === "function" ? eventType(created) : eventType;
    const event = eventRow({
      actor,
      app,
      type,
      data: type === "delete_variable" ? { names: deleted } : { names, created, updated: names.filter((n) => !created.includes(n)), deleted },
    });
    const sealed = upserts.map((v) => ({ name: v.name, ...keyring.seal(v.value, context(app.id, v.name)) }));
    const ids = await writeChange(db, app, version, event, sealed, deleted);
    if (ids) {
      const changed = upserts.map((v) => ({ id: ids.get(v.name) as string, name: v.name, value: v.value }));
      return { changed, created, deleted };
    }
    if (attempt >= MAX_ATTEMPTS) throw new QuaiError("variables_busy", `the variables of app ${app.name} kept changing while this change was applied: try again`);
  }
}

/**
 * One statement: bumps the app's variables version if it is still `version`, and only then
 * deletes, upserts and records the event. Resolves to the ids of the upserted variables by name,
 * or undefined when the version had moved on (nothing written).
 */
async function writeChange(db: Db, app: { id: string; name: string }, version: number, event: ReturnType<typeof eventRow>, sealed: { name: string; data: Buffer; keyId: string }[], deleted: string[]): Promise<Map<string, string> | undefined> {
  const values = sealed.length > 0 ? sql.join(sealed.map((v) => sql`(${v.name}::text, ${v.data}::bytea, ${v.keyId}::text)`)) : sql`(NULL::text, NULL::bytea, NULL::text)`;
  try {
    const res = await sql<{ bumped: number; put: { id: string; name: string }[] }>`
      WITH bump AS (
        INSERT INTO variable_versions AS vv (app_id, version) VALUES (${app.id}, 1)
        ON CONFLICT (app_id) DO UPDATE SET version = vv.version + 1 WHERE vv.version = ${version}
        RETURNING app_id
      ), gone AS (
        DELETE FROM variables WHERE app_id IN (SELECT app_id FROM bump) AND name = ANY(${deleted}::text[])
      ), recorded AS (
        INSERT INTO events (user_id, user_email, user_username, app_id, app_name, type, type_data)
        SELECT ${event.user_id ?? null}::uuid, ${event.user_email ?? null}::text, ${event.user_username ?? null}::text, bump.app_id, ${app.name}::text, ${event.type}::text, ${event.type_data}::jsonb FROM bump
      ), put AS (
        INSERT INTO variables (app_id, name, value_enc, key_id)
        SELECT bump.app_id, v.name, v.value_enc, v.key_id FROM bump, (VALUES ${values}) AS v (name, value_enc, key_id) WHERE v.name IS NOT NULL
        ON CONFLICT (app_id, name) DO UPDATE SET value_enc = excluded.value_enc, key_id = excluded.key_id, updated_at = now()
        RETURNING id, name
      )
      SELECT (SELECT count(*) FROM bump)::int AS bumped, (SELECT coalesce(json_agg(json_build_object('id', id, 'name', name)), '[]'::json) FROM put) AS put`.execute(db);
    const row = res.rows[0];
    if (!row || row.bumped !== 1) return undefined;
    return new Map(row.put.map((r) => [r.name, r.id]));
  } catch (err) {
    // The app was deleted between the read and the write.
    if ((err as { code?: string }).code === "23503") throw new QuaiError("app_not_found", `app ${JSON.stringify(app.name)} not found`);
    throw err;
  }
}

/** Sets one variable on the app named (or with id) `appRef`, creating or replacing it; says whether it was created. */
export async function setVariable(db: Db, keyring: Keyring, actor: Actor, appRef: string, input: VariableInput): Promise<{ variable: Variable; created: boolean }> {
  const res = await change(db, keyring, actor, appRef, { upserts: [input], deletes: [] }, (created) => (created.length > 0 ? "new_variable" : "edit_variable"));
  return { variable: res.changed[0]!, created: res.created.length === 1 };
}

/** Creates or replaces many variables at once (PUT). */
export async function bulkSetVariables(db: Db, keyring: Keyring, actor: Actor, appRef: string, inputs: VariableInput[]): Promise<Variable[]> {
  return (await change(db, keyring, actor, appRef, { upserts: inputs, deletes: [] }, "edit_variables")).changed;
}

/** Changes the value of the variable with `idOrName`. */
export async function updateVariable(db: Db, keyring: Keyring, actor: Actor, appRef: string, idOrName: string, value: string): Promise<Variable> {
  return (await change(db, keyring, actor, appRef, { upserts: [], deletes: [], patch: { key: idOrName, value } }, "edit_variable")).changed[0]!;
}

/** Deletes variables by id or name; all or none. */
export async function deleteVariables(db: Db, keyring: Keyring, actor: Actor, appRef: string, idsOrNames: string[]): Promise<string[]> {
  return (await change(db, keyring, actor, appRef, { upserts: [], deletes: idsOrNames }, "delete_variable")).deleted;
}

/**
 * Every column sealed with the keyring: its table, the sealed data and key id columns, and the
 * context it was sealed under (from the row's id and the `with` columns). A key rotation
 * re-seals them all; a new sealed column is added here.
 */
const SEALED: { table: string; data: string; key: string; with?: string[]; context: (r: Record<string, string>) => string }[] = [
  { table: "variables", data: "value_enc", key: "key_id", with: ["app_id", "name"], context: (r) => context(r.app_id as string, r.name as string) },
  // Releases keep their resolved config sealed the same way.
  { table: "releases", data: "config_enc", key: "key_id", with: ["app_id"], context: (r) => releaseSealContext(r.app_id as string) },
  { table: "addon_instances", data: "credentials_enc", key: "key_id", context: (r) => `addon-instance:${r.id}` },
  { table: "domains", data: "tls_key_enc", key: "tls_key_id", context: (r) => `domain-key:${r.id}` },
  { table: "scm_integrations", data: "token_enc", key: "token_key_id", context: (r) => `scm-token:${r.id}` },
  { table: "scm_repo_links", data: "webhook_secret_enc", key: "webhook_secret_key_id", context: (r) => `scm-webhook:${r.id}` },
];

/**
 * Re-encrypts every variable with a new master key, then drops the old keys. The new key is
 * saved first; the re-encryption holds every app row lock, so a server writing meanwhile waits,
 * then re-reads the key file and seals with the new key (see `change`).
 */
export async function rotateMasterKey(db: Db, keyring: Keyring): Promise<{ keyId: string; reencrypted: number }> {
  const keyId = keyring.addKey();
  await keyring.save();
  const reencrypted = await db.transaction().execute(async (trx) => {
    // A variables change that read before this commits must not write what it sealed under the
    // old key: every app's version moves, so its write finds it changed and it redoes the work.
    // Before the app rows are locked, as a change's write takes these two locks in that order.
    await sql`INSERT INTO variable_versions AS vv (app_id, version) SELECT id, 1 FROM apps ORDER BY id ON CONFLICT (app_id) DO UPDATE SET version = vv.version + 1`.execute(trx);
    await sql`SELECT id FROM apps ORDER BY id FOR UPDATE`.execute(trx);
    let n = 0;
    for (const c of SEALED) {
      const extra = c.with ? sql`, ${sql.join(c.with.map((col) => sql.ref(col)))}` : sql``;
      const rows = await sql<{ id: string; data: Buffer; key_id: string } & Record<string, string>>`
        SELECT id, ${sql.ref(c.data)} AS data, ${sql.ref(c.key)} AS key_id${extra} FROM ${sql.table(c.table)}
        WHERE ${sql.ref(c.key)} IS NOT NULL AND ${sql.ref(c.key)} <> ${keyId}`.execute(trx);
      for (const r of rows.rows) {
        const ctx = c.context(r);
        const sealed = keyring.seal(keyring.open({ keyId: r.key_id, data: r.data }, ctx), ctx);
        await sql`UPDATE ${sql.table(c.table)} SET ${sql.ref(c.data)} = ${sealed.data}, ${sql.ref(c.key)} = ${sealed.keyId} WHERE id = ${r.id}`.execute(trx);
      }
      n += rows.rows.length;
    }
    return n;
  });
  let left = false;
  for (const c of SEALED) {
    const res = await sql`SELECT 1 FROM ${sql.table(c.table)} WHERE ${sql.ref(c.key)} IS NOT NULL AND ${sql.ref(c.key)} <> ${keyId} LIMIT 1`.execute(db);
    if (res.rows.length > 0) left = true;
  }
  if (!left) {
    keyring.dropInactive();
    await keyring.save();
  }
  return { keyId, reencrypted };
}
