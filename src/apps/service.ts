// Apps: create, find, update, rename, destroy; every change recorded as an event with it.
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { AppsTable } from "../store/schema.ts";
import type { Actor } from "../auth/service.ts";
import { recordEvent } from "../events/service.ts";
import { assertAppName } from "./names.ts";

/** An app row with its owner. */
export type AppRecord = Selectable<AppsTable> & { owner_email: string; owner_username: string };

/** Settings a user may change with PATCH. */
export interface AppSettings {
  force_https?: boolean;
  sticky_session?: boolean;
  router_logs?: boolean;
}

/** Where apps are reachable, for the JSON; fields appear as the capabilities behind them land. */
export interface AppUrls {
  domain: string;
  /** Router HTTP port when not 80 (appended to app URLs). */
  routerPort?: number | undefined;
  /** Base URL of the smart-HTTP git front, when it runs. */
  gitBase?: string | undefined;
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: string }).code === "23505";
}

function baseQuery(db: Db) {
  return db
    .selectFrom("apps")
    .innerJoin("users", "users.id", "apps.owner_id")
    .selectAll("apps")
    .select(["users.email as owner_email", "users.username as owner_username"]);
}

/** Apps `actor` can see: every app for an owner, its own for a member. */
export async function listApps(db: Db, actor: Actor): Promise<AppRecord[]> {
  let q = baseQuery(db);
  if (actor.role !== "owner") q = q.where("apps.owner_id", "=", actor.id);
  return q.orderBy("apps.name").execute();
}

/** Ids of the apps `actor` can see, or undefined when it sees them all. */
export async function visibleAppIds(db: Db, actor: Actor): Promise<string[] | undefined> {
  if (actor.role === "owner") return undefined;
  const rows = await db.selectFrom("apps").select("id").where("owner_id", "=", actor.id).execute();
  return rows.map((r) => r.id);
}

/** Finds an app by name or id; 404 when it does not exist or `actor` may not see it. */
export async function findApp(db: Db, actor: Actor, nameOrId: string): Promise<AppRecord> {
  let q = baseQuery(db);
  q = isUuid(nameOrId) ? q.where("apps.id", "=", nameOrId) : q.where("apps.name", "=", nameOrId);
  if (actor.role !== "owner") q = q.where("apps.owner_id", "=", actor.id);
  const app = await q.executeTakeFirst();
  if (!app) throw new QuaiError("app_not_found", `app ${JSON.stringify(nameOrId)} not found`);
  return app;
}

/** Creates an app. A name already taken (even by a concurrent request) gets 409 and creates nothing. */
export async function createApp(db: Db, actor: Actor, name: unknown, opts: { dryRun?: boolean } = {}): Promise<AppRecord> {
  assertAppName(name);
  if (opts.dryRun) {
    const taken = await db.selectFrom("apps").select("id").where("name", "=", name).executeTakeFirst();
    if (taken) throw new QuaiError("app_name_taken", `an app named "${name}" already exists`);
    const now = new Date();
    return {
      id: "00000000-0000-0000-0000-000000000000", name, owner_id: actor.id, status: "new", force_https: false, sticky_session: false,
      router_logs: false, last_deployed_at: null, last_deployed_by: null, last_deployment_id: null, parent_app_name: null,
      created_at: now, updated_at: now, owner_email: actor.email, owner_username: actor.username,
    };
  }
  try {
    return await db.transaction().execute(async (trx) => {
      const row = await trx.insertInto("apps").values({ name, owner_id: actor.id, status: "new" }).returningAll().executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app: row, type: "new_app", data: { app_name: name } });
      return { ...row, owner_email: actor.email, owner_username: actor.username };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new QuaiError("app_name_taken", `an app named "${name}" already exists`);
    throw err;
  }
}

/** Changes app settings; records which ones changed. */
export async function updateApp(db: Db, actor: Actor, app: AppRecord, settings: AppSettings): Promise<AppRecord> {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const key of ["force_https", "sticky_session", "router_logs"] as const) {
    const to = settings[key];
    if (to !== undefined && to !== app[key]) changes[key] = { from: app[key], to };
  }
  if (Object.keys(changes).length === 0) return app;
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable("apps")
      .set({ ...Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.to])), updated_at: new Date() })
      .where("id", "=", app.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordEvent(trx, { actor, app: row, type: "edit_app", data: { changes } });
    return { ...row, owner_email: app.owner_email, owner_username: app.owner_username };
  });
}

function confirm(app: AppRecord, currentName: unknown): void {
  if (currentName !== app.name) {
    throw new QuaiError("confirmation_mismatch", `confirmation failed: current_name must be the app's name "${app.name}", got ${JSON.stringify(currentName ?? null)}`);
  }
}

/** Renames an app; `currentName` must repeat its name, as on Scalingo. */
export async function renameApp(db: Db, actor: Actor, app: AppRecord, currentName: unknown, newName: unknown): Promise<AppRecord> {
  confirm(app, currentName);
  assertAppName(newName);
  try {
    return await db.transaction().execute(async (trx) => {
      const row = await trx.updateTable("apps").set({ name: newName, updated_at: new Date() }).where("id", "=", app.id).returningAll().executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app: row, type: "rename_app", data: { old_name: app.name, new_name: newName } });
      return { ...row, owner_email: app.owner_email, owner_username: app.owner_username };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new QuaiError("app_name_taken", `an app named "${newName}" already exists`);
    throw err;
  }
}

/** Deletes an app and its variables; `currentName` must repeat its name. The events stay. */
export async function destroyApp(db: Db, actor: Actor, app: AppRecord, currentName: unknown): Promise<void> {
  confirm(app, currentName);
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom("apps").where("id", "=", app.id).execute();
    await recordEvent(trx, { actor, app, type: "delete_app", data: { app_name: app.name } });
  });
}

/** The app JSON in Scalingo's shape. Fields Quai does not support yet carry honest defaults. */
export function appJson(app: AppRecord, urls: AppUrls): Record<string, unknown> {
  const port = urls.routerPort && urls.routerPort !== 80 ? `:${urls.routerPort}` : "";
  return {
    id: app.id,
    uuid: app.id,
    name: app.name,
    region: "local",
    created_at: app.created_at.toISOString(),
    updated_at: app.updated_at.toISOString(),
    status: app.status,
    owner: { id: app.owner_id, email: app.owner_email, username: app.owner_username, flags: {} },
    git_url: urls.gitBase ? `${urls.gitBase}/${app.name}.git` : null,
    url: `http://${app.name}.${urls.domain}${port}`,
    base_url: `http://${app.name}.${urls.domain}${port}`,
    force_https: app.force_https,
    sticky_session: app.sticky_session,
    router_logs: app.router_logs,
    last_deployed_at: app.last_deployed_at?.toISOString() ?? null,
    last_deployed_by: app.last_deployed_by,
    last_deployment_id: app.last_deployment_id,
    parent_app_name: app.parent_app_name,
    links: { deployments_stream: "" },
    limits: {},
    flags: {},
    project: null,
    stack_id: null,
    hds_resource: false,
    private_networks_ids: [],
  };
}
