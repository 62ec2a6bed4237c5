// Environment variables of an app: validated, encrypted at rest, checked for reference cycles,
// changed atomically with the event that records the change (names only, never values).
import { sql, type Kysely } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { Database } from "../store/schema.ts";
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
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > MAX_VALUE_BYTES) {
    throw new QuaiError("variable_value_too_large", `value of ${name} is ${bytes} bytes; the limit is ${MAX_VALUE_BYTES} bytes (64 KiB)`, { name, bytes });
  }
}

const context = (appId: string, name: string) => `${appId}:${name}`;

type Trx = Kysely<Database>;

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

/**
 * Locks the app row `actor` may write (by name or id), then loads its variables. Two statements on
 * purpose: under READ COMMITTED a statement that waited for the lock still reads other tables as
 * they were when it started, so a load joined to the lock could see values a key rotation had
 * just re-encrypted, under a key it had already dropped.
 */
async function lockApp(trx: Trx, actor: Actor, appRef: string): Promise<{ app: { id: string; name: string }; rows: StoredVariable[] }> {
  const byRef = isUuid(appRef) ? sql`id = ${appRef}` : sql`name = ${appRef}`;
  const locked = await sql<{ id: string; name: string }>`SELECT id, name FROM apps WHERE ${byRef} AND ${visibleTo(actor)} FOR UPDATE`.execute(trx);
  const app = locked.rows[0];
  if (!app) throw new QuaiError("app_not_found", `app ${JSON.stringify(appRef)} not found`);
  const rows = await trx.selectFrom("variables").select(["id", "name", "value_enc", "key_id"]).where("app_id", "=", app.id).execute();
  return { app, rows };
}

/**
 * Applies an edit in one transaction. The first statement checks that `actor` may write the app
 * and locks its row, so concurrent edits of one app serialise and the cycle check sees the
 * final set. Values are sealed only after the lock is held: a key rotation locks every app row,
 * so it either waits for this change (and re-encrypts it) or this change waits for it (and then
 * seals with the new key).
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
  return db.transaction().execute(async (trx) => {
    const { app, rows } = await lockApp(trx, actor, appRef);
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

    if (deleted.length > 0) await trx.deleteFrom("variables").where("app_id", "=", app.id).where("name", "in", deleted).execute();
    const created = upserts.filter((v) => !byName.has(v.name)).map((v) => v.name);
    const names = upserts.map((v) => v.name);
    const type = typeof eventType === "function" ? eventType(created) : eventType;
    const event = eventRow({
      actor,
      app,
      type,
      data: type === "delete_variable" ? { names: deleted } : { names, created, updated: names.filter((n) => !created.includes(n)), deleted },
    });
    let changed: Variable[] = [];
    if (upserts.length > 0) {
      const sealedRows = upserts.map((v) => {
        const sealed = keyring.seal(v.value, context(app.id, v.name));
        return { app_id: app.id, name: v.name, value_enc: sealed.data, key_id: sealed.keyId };
      });
      // The event is written by the same statement (a data-modifying CTE): one round trip less.
      const ids = await trx
        .with("recorded", (qc) => qc.insertInto("events").values(event).returning("id"))
        .insertInto("variables")
        .values(sealedRows)
        .onConflict((oc) => oc.columns(["app_id", "name"]).doUpdateSet((eb) => ({ value_enc: eb.ref("excluded.value_enc"), key_id: eb.ref("excluded.key_id"), updated_at: new Date() })))
        .returning(["id", "name"])
        .execute();
      const idOf = new Map(ids.map((r) => [r.name, r.id]));
      changed = upserts.map((v) => ({ id: idOf.get(v.name) as string, name: v.name, value: v.value }));
    } else {
      await trx.insertInto("events").values(event).execute();
    }
    return { changed, created, deleted };
  });
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
