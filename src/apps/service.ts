// Apps: create, find, update, rename, destroy; every change recorded as an event with it.
import { sql, type Kysely, type RawBuilder, type Selectable } from "kysely";
import { domainToASCII } from "node:url";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { AppsTable, Database } from "../store/schema.ts";
import type { Actor } from "../auth/service.ts";
import { recordEvent } from "../events/service.ts";
import { assertAppName } from "./names.ts";

/** An app row with its owner. */
export type AppRecord = Selectable<AppsTable>;

/** Settings a user may change with PATCH. */
export interface AppSettings {
  /** Path new web containers must answer with 2xx/3xx before they get traffic; "" clears it. */
  health_check_path?: string | null;
  /** One of the app's domains, or null/"" for none. */
  canonical_domain?: string | null;
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

/**
 * The visibility rule as an SQL condition on `apps`: an owner sees every app, a member its own.
 * Every query that reads or locks apps for a user filters with it.
 */
export function visibleTo(actor: Actor): RawBuilder<boolean> {
  return actor.role === "owner" ? sql<boolean>`true` : sql<boolean>`owner_id = ${actor.id}`;
}

/** Ids of the apps `actor` can see, or undefined when it sees them all. */
export async function visibleAppIds(db: Db, actor: Actor): Promise<string[] | undefined> {
  if (actor.role === "owner") return undefined;
  const rows = await db.selectFrom("apps").select("id").where(visibleTo(actor)).execute();
  return rows.map((r) => r.id);
}

/** Finds an app by name or id; 404 when it does not exist or `actor` may not see it. */
export async function findApp(db: Db, actor: Actor, nameOrId: string): Promise<AppRecord> {
  let q = db.selectFrom("apps").selectAll();
  q = isUuid(nameOrId) ? q.where("id", "=", nameOrId) : q.where("name", "=", nameOrId);
  const app = await q.where(visibleTo(actor)).executeTakeFirst();
  if (!app) throw new QuaiError("app_not_found", `app ${JSON.stringify(nameOrId)} not found`);
  return app;
}

/** Thrown to roll a dry run's transaction back after rendering. */
class DryRunDone extends Error {
  readonly json: string;
  constructor(json: string) {
    super("dry run");
    this.json = json;
  }
}

/**
 * Creates an app and returns its JSON. A name already taken (even by a concurrent request) gets
 * 409 and creates nothing. A dry run goes through the very same insert, then rolls it back.
 */
export async function createApp(db: Db, actor: Actor, name: unknown, urls: AppUrls, opts: { dryRun?: boolean } = {}): Promise<string> {
  assertAppName(name);
  try {
    return await db.transaction().execute(async (trx) => {
      const row = await trx.insertInto("apps").values({ name, owner_id: actor.id, status: "new" }).returning(["id", "name"]).executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app: row, type: "new_app", data: { app_name: name } });
      const json = await renderApp(trx, row.id, urls);
      if (opts.dryRun) throw new DryRunDone(json);
      return json;
    });
  } catch (err) {
    if (err instanceof DryRunDone) return err.json;
    if (isUniqueViolation(err)) throw new QuaiError("app_name_taken", `an app named "${name}" already exists`);
    throw err;
  }
}

/** Changes app settings; records which ones changed. */
export async function updateApp(db: Db, actor: Actor, app: AppRecord, settings: AppSettings): Promise<void> {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const key of ["force_https", "sticky_session", "router_logs"] as const) {
    const to = settings[key];
    if (to !== undefined && to !== app[key]) changes[key] = { from: app[key], to };
  }
  if (settings.health_check_path !== undefined) {
    const to = settings.health_check_path === "" ? null : settings.health_check_path;
    if (to !== null && !/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,254}(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,255})?$/.test(to)) {
      throw new QuaiError("health_check_path_invalid", `health_check_path ${JSON.stringify(to)} must be a URL path starting with "/", without spaces or control characters`);
    }
    if (to !== app.health_check_path) changes.health_check_path = { from: app.health_check_path, to };
  }
  if (settings.canonical_domain !== undefined) {
    let to: string | null = null;
    if (settings.canonical_domain) {
      const ascii = domainToASCII(settings.canonical_domain.trim().toLowerCase().replace(/\.$/, ""));
      const owned = ascii ? await db.selectFrom("domains").select("name").where("app_id", "=", app.id).where("name", "=", ascii).executeTakeFirst() : undefined;
      if (!owned) throw new QuaiError("domain_not_found", `app ${app.name} has no domain ${JSON.stringify(settings.canonical_domain)}: add it first (quai domains-add)`);
      to = owned.name;
    }
    if (to !== app.canonical_domain) changes.canonical_domain = { from: app.canonical_domain, to };
  }
  if (Object.keys(changes).length === 0) return;
  await db.transaction().execute(async (trx) => {
    await trx
      .updateTable("apps")
      .set({ ...Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.to])), updated_at: new Date() })
      .where("id", "=", app.id)
      .execute();
    await recordEvent(trx, { actor, app, type: "edit_app", data: { changes } });
  });
}

/** Throws `confirmation_mismatch` unless `currentName` repeats the app's name. */
export function confirm(app: AppRecord, currentName: unknown): void {
  if (currentName !== app.name) {
    throw new QuaiError("confirmation_mismatch", `confirmation failed: current_name must be the app's name "${app.name}", got ${JSON.stringify(currentName ?? null)}`);
  }
}

/** Renames an app; `currentName` must repeat its name, as on Scalingo. */
export async function renameApp(db: Db, actor: Actor, app: AppRecord, currentName: unknown, newName: unknown): Promise<void> {
  confirm(app, currentName);
  assertAppName(newName);
  try {
    await db.transaction().execute(async (trx) => {
      await trx.updateTable("apps").set({ name: newName, updated_at: new Date() }).where("id", "=", app.id).execute();
      await recordEvent(trx, { actor, app: { id: app.id, name: newName }, type: "rename_app", data: { old_name: app.name, new_name: newName } });
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

const iso = (column: RawBuilder<unknown>) => sql<string>`to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The app JSON in Scalingo's shape, built by PostgreSQL over `apps a JOIN users u`: a list of a
 * thousand apps then costs Node one string, not a thousand row objects. Fields Quai does not
 * support yet carry honest defaults.
 */
function appObject(urls: AppUrls): RawBuilder<unknown> {
  const port = urls.routerPort && urls.routerPort !== 80 ? `:${urls.routerPort}` : "";
  const url = sql`'http://' || a.name || ${`.${urls.domain}${port}`}::text`;
  const git = urls.gitBase ? sql`${urls.gitBase + "/"}::text || a.name || '.git'` : sql`NULL::text`;
  // Scalingo's deployment listener connects here (the git front and the API share one address).
  const stream = urls.gitBase ? sql`${urls.gitBase.replace(/^http/, "ws") + "/v1/apps/"}::text || a.name || '/deployments/stream'` : sql`''::text`;
  return sql`json_build_object(
    'id', a.id, 'uuid', a.id, 'name', a.name, 'region', 'local',
    'created_at', ${iso(sql`a.created_at`)}, 'updated_at', ${iso(sql`a.updated_at`)}, 'status', a.status,
    'owner', json_build_object('id', u.id, 'email', u.email, 'username', u.username, 'flags', '{}'::json),
    'git_url', ${git}, 'url', ${url}, 'base_url', ${url},
    'force_https', a.force_https, 'sticky_session', a.sticky_session, 'router_logs', a.router_logs, 'health_check_path', a.health_check_path, 'canonical_domain', a.canonical_domain,
    'last_deployed_at', ${iso(sql`a.last_deployed_at`)}, 'last_deployed_by', a.last_deployed_by,
    'last_deployment_id', a.last_deployment_id, 'parent_app_name', a.parent_app_name,
    'links', json_build_object('deployments_stream', ${stream}), 'limits', '{}'::json, 'flags', '{}'::json,
    'project', NULL, 'stack_id', NULL, 'hds_resource', false, 'private_networks_ids', '[]'::json)`;
}

/** JSON text of one app. */
export async function renderApp(db: Kysely<Database>, id: string, urls: AppUrls): Promise<string> {
  const res = await sql<{ json: string }>`SELECT ${appObject(urls)}::text AS json FROM apps a JOIN users u ON u.id = a.owner_id WHERE a.id = ${id}`.execute(db);
  const row = res.rows[0];
  if (!row) throw new QuaiError("app_not_found", `app ${id} not found`);
  return row.json;
}

/**
 * Renders app lists and keeps the last renders, keyed by who may see what. A cached list is
 * served while the `apps` change counter (bumped by triggers on apps and users) is unchanged, so
 * a write through any server sharing the database invalidates it.
 */
export class AppListRenderer {
  private readonly cache = new Map<string, { version: number; body: Buffer }>();
  private readonly maxEntries: number;

  constructor(maxEntries = 32) {
    this.maxEntries = maxEntries;
  }

  /** The response body `{"apps": [...]}` with the apps `actor` can see, sorted by name. */
  async render(db: Db, actor: Actor, urls: AppUrls): Promise<Buffer> {
    const key = `${actor.role === "owner" ? "*" : actor.id}|${urls.domain}|${urls.routerPort ?? ""}|${urls.gitBase ?? ""}`;
    const cached = this.cache.get(key);
    if (cached) {
      const now = await db.selectFrom("change_counters").select("version").where("name", "=", "apps").executeTakeFirstOrThrow();
      if (now.version === cached.version) return cached.body;
    }
    // The counter and the list are read by one statement, hence from one snapshot.
    const res = await sql<{ version: number; json: string }>`
      SELECT (SELECT version FROM change_counters WHERE name = 'apps') AS version,
             coalesce(json_agg(${appObject(urls)} ORDER BY a.name), '[]')::text AS json
      FROM apps a JOIN users u ON u.id = a.owner_id WHERE ${visibleTo(actor)}`.execute(db);
    const row = res.rows[0] as { version: number; json: string };
    // Kept encoded: a cache hit then costs no UTF-8 encoding of a large string.
    const body = Buffer.from(`{"apps":${row.json}}`, "utf8");
    this.cache.delete(key);
    this.cache.set(key, { version: Number(row.version), body });
    if (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    return body;
  }
}
