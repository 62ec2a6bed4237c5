// The audit trail: every change is recorded, in the same transaction, with who made it.
import type { Kysely } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Database, EventsTable } from "../store/schema.ts";
import type { Db } from "../store/db.ts";
import type { Actor } from "../auth/service.ts";
import type { Insertable, Selectable } from "kysely";

/** Event types, in Scalingo's vocabulary so that existing tooling reads them. */
export type EventType =
  | "new_app"
  | "edit_app"
  | "rename_app"
  | "delete_app"
  | "new_variable"
  | "edit_variable"
  | "edit_variables"
  | "delete_variable"
  | "new_user"
  | "new_token"
  | "new_key"
  | "deployment"
  | "scale"
  | "restart"
  | "run"
  | "crash"
  | "new_addon"
  | "upgrade_addon"
  | "delete_addon"
  | "addon_crash"
  | "addon_backup"
  | "addon_backup_failed"
  | "addon_restore"
  | "addon_restore_failed"
  | "addon_archive_failed"
  | "addon_quota_exceeded"
  | "maintenance_on"
  | "maintenance_off"
  | "maintenance_scheduled"
  | "maintenance_banner"
  | "new_domain"
  | "edit_domain"
  | "delete_domain"
  | "certificate_issued"
  | "certificate_renewed"
  | "certificate_failed"
  | "new_integration"
  | "delete_integration"
  | "link_scm"
  | "update_scm_link"
  | "unlink_scm"
  | "scm_webhook_refused"
  | "scm_deploy_waiting"
  | "scm_deploy_superseded"
  | "scm_deploy_blocked"
  | "scm_deploy_timeout"
  | "scm_deploy_failed"
  | "new_review_app"
  | "review_app_queued"
  | "review_app_refused"
  | "review_app_failed"
  | "review_app_seeded"
  | "delete_review_app";

/** What to record. */
export interface NewEvent {
  actor: Actor | null;
  app?: { id: string; name: string } | null;
  type: EventType;
  data?: Record<string, unknown>;
}

/** The row an event is stored as. */
export function eventRow(e: NewEvent): Insertable<EventsTable> {
  return {
    user_id: e.actor?.id ?? null,
    user_email: e.actor?.email ?? null,
    user_username: e.actor?.username ?? null,
    app_id: e.app?.id ?? null,
    app_name: e.app?.name ?? null,
    type: e.type,
    type_data: JSON.stringify(e.data ?? {}),
  };
}

/** Records an event; pass the transaction of the change so both commit or neither does. */
export async function recordEvent(db: Kysely<Database>, e: NewEvent): Promise<void> {
  await db.insertInto("events").values(eventRow(e)).execute();
}

/** An event in Scalingo's JSON shape. */
export interface EventJson {
  id: string;
  created_at: string;
  type: string;
  app_id: string | null;
  app_name: string | null;
  user: { id: string | null; email: string | null; username: string | null };
  type_data: Record<string, unknown>;
}

/** Pagination facts in Scalingo's `meta`. */
export interface PageMeta {
  current_page: number;
  prev_page: number | null;
  next_page: number | null;
  total_pages: number;
  total_count: number;
}

export function eventJson(row: Selectable<EventsTable>): EventJson {
  return {
    id: row.id,
    created_at: row.created_at.toISOString(),
    type: row.type,
    app_id: row.app_id,
    app_name: row.app_name,
    user: { id: row.user_id, email: row.user_email, username: row.user_username },
    type_data: row.type_data,
  };
}

/** Lists events, newest first. `appIds` limits to those apps (undefined: every event). */
export async function listEvents(
  db: Db,
  filter: { appId?: string; visibleAppIds?: string[] | undefined; userId?: string },
  page: number,
  perPage: number,
): Promise<{ events: EventJson[]; meta: PageMeta }> {
  let q = db.selectFrom("events");
  if (filter.appId) q = q.where("app_id", "=", filter.appId);
  else if (filter.visibleAppIds) {
    const ids = filter.visibleAppIds;
    const userId = filter.userId;
    q = q.where((eb) => {
      const ors = [];
      if (ids.length > 0) ors.push(eb("app_id", "in", ids));
      if (userId) ors.push(eb("user_id", "=", userId));
      return ors.length > 0 ? eb.or(ors) : eb.val(false);
    });
  }
  const [{ count }] = (await q.select((eb) => eb.fn.countAll<number>().as("count")).execute()) as [{ count: number }];
  const rows = await q.selectAll().orderBy("created_at", "desc").orderBy("id").limit(perPage).offset((page - 1) * perPage).execute();
  const totalPages = Math.max(1, Math.ceil(count / perPage));
  return {
    events: rows.map(eventJson),
    meta: {
      current_page: page,
      prev_page: page > 1 ? page - 1 : null,
      next_page: page < totalPages ? page + 1 : null,
      total_pages: totalPages,
      total_count: count,
    },
  };
}

/** One event of an app. */
export async function findEvent(db: Db, appId: string, id: string): Promise<EventJson> {
  const row = isUuid(id) ? await db.selectFrom("events").selectAll().where("app_id", "=", appId).where("id", "=", id).executeTakeFirst() : undefined;
  if (!row) throw new QuaiError("event_not_found", `no event ${id} on this app`);
  return eventJson(row);
}
