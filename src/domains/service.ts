// Custom domains of apps: add, list, remove, each change an event and a router update; the
// canonical domain is an app setting (apps/service.ts) that must name one of them.
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { DomainsTable } from "../store/schema.ts";
import type { Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import { recordEvent } from "../events/service.ts";
import { normaliseDomain } from "./names.ts";

export type DomainRow = Selectable<DomainsTable>;

/** A domain in Scalingo's JSON shape (TLS fields honest until certificates land). */
export function domainJson(d: DomainRow, app: AppRecord): Record<string, unknown> {
  const unicode = normaliseDomain(d.name, "invalid.invalid").unicode;
  return {
    id: d.id,
    app_id: d.app_id,
    name: d.name,
    name_unicode: unicode,
    canonical: app.canonical_domain === d.name,
    ssl: false,
    ssl_status: "none",
    validity: null,
    letsencrypt: false,
    letsencrypt_status: "pending_dns",
    acme_dns_fqdn: null,
    created_at: d.created_at.toISOString(),
  };
}

export async function listDomains(db: Db, actor: Actor, appRef: string): Promise<{ app: AppRecord; domains: DomainRow[] }> {
  const app = await findApp(db, actor, appRef);
  return { app, domains: await db.selectFrom("domains").selectAll().where("app_id", "=", app.id).orderBy("name").execute() };
}

export async function addDomain(db: Db, actor: Actor, appRef: string, name: unknown, platformDomain: string): Promise<{ app: AppRecord; domain: DomainRow }> {
  const app = await findApp(db, actor, appRef);
  const { ascii, unicode } = normaliseDomain(name, platformDomain);
  try {
    return await db.transaction().execute(async (trx) => {
      const domain = await trx.insertInto("domains").values({ app_id: app.id, name: ascii }).returningAll().executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app, type: "new_domain", data: { domain_id: domain.id, name: ascii, name_unicode: unicode } });
      return { app, domain };
    });
  } catch (err) {
    if ((err as { code?: string }).code === "23505") throw new QuaiError("domain_taken", `${ascii}${unicode !== ascii ? ` (${unicode})` : ""} already belongs to an app`);
    throw err;
  }
}

export async function findDomain(db: Db, app: AppRecord, ref: string, platformDomain: string): Promise<DomainRow> {
  let q = db.selectFrom("domains").selectAll().where("app_id", "=", app.id);
  if (isUuid(ref)) q = q.where("id", "=", ref);
  else {
    let ascii: string;
    try {
      ascii = normaliseDomain(ref, platformDomain).ascii;
    } catch {
      throw new QuaiError("domain_not_found", `app ${app.name} has no domain ${JSON.stringify(ref)}`);
    }
    q = q.where("name", "=", ascii);
  }
  const row = await q.executeTakeFirst();
  if (!row) throw new QuaiError("domain_not_found", `app ${app.name} has no domain ${JSON.stringify(ref)}`);
  return row;
}

/** Removes a domain (and the canonical setting if it named it). */
export async function removeDomain(db: Db, actor: Actor, appRef: string, ref: string, platformDomain: string): Promise<void> {
  const app = await findApp(db, actor, appRef);
  const domain = await findDomain(db, app, ref, platformDomain);
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom("domains").where("id", "=", domain.id).execute();
    if (app.canonical_domain === domain.name) await trx.updateTable("apps").set({ canonical_domain: null }).where("id", "=", app.id).execute();
    await recordEvent(trx, { actor, app, type: "delete_domain", data: { domain_id: domain.id, name: domain.name } });
  });
}
