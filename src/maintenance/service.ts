// Maintenance mode at the platform level, no app code needed: a window during which the router
// answers a 503 maintenance page to everyone but allow-listed networks and team members holding
// the bypass cookie; scheduled windows start and end by themselves. And the banner step: three
// variables (QUAI_MAINTENANCE_BANNER, MAINTENANCE_BANNER_ENABLE, MAINTENANCE_BANNER_MESSAGE) the
// app shows to warn its users first, released with zero downtime.
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { getUrl } from "../core/outbound.ts";
import type { Db } from "../store/db.ts";
import type { MaintenanceWindowsTable } from "../store/schema.ts";
import type { Keyring } from "../variables/keyring.ts";
import type { Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import { recordEvent } from "../events/service.ts";
import { bulkSetVariables, deleteVariables, listVariables } from "../variables/service.ts";
import { parsePlatformTime } from "../addons/time.ts";
import type { RouteMaintenance } from "../router/types.ts";
import { isRouterNetwork } from "../router/render.ts";

export type MaintenanceWindow = Selectable<MaintenanceWindowsTable>;

/** What `maintenance on` takes. */
export interface MaintenanceInput {
  message?: string;
  /** When it ends (absent: until turned off). */
  until?: string;
  /** When it starts (absent: now). */
  at?: string;
  allowIps?: string[];
  /** A whole page instead of Quai's. */
  pageHtml?: string;
  /** A page to fetch now and serve (http or https). */
  pageUrl?: string;
}

export const BANNER_VARIABLES = ["QUAI_MAINTENANCE_BANNER", "MAINTENANCE_BANNER_ENABLE", "MAINTENANCE_BANNER_MESSAGE"] as const;
const DEFAULT_MESSAGE = "This service is under maintenance. It will be back shortly.";
const MAX_MESSAGE = 2000;
const MAX_PAGE = 256 * 1024;

/** HTML-escapes text for the page: a message is text, never markup. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

/** Quai's maintenance page: the message, and when it should end. */
export function maintenancePageHtml(message: string, endsAt: Date | null): string {
  const until = endsAt ? `<p class="until">Expected back: <time datetime="${endsAt.toISOString()}">${escapeHtml(endsAt.toLocaleString("fr-FR", { timeZone: "Europe/Paris", dateStyle: "long", timeStyle: "short" }))} (Europe/Paris)</time></p>` : "";
  return `<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Maintenance</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; color: #1e1e1e; max-width: 36rem; margin: 15vh auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
p { color: #555; white-space: pre-line; }
</style>
</head>
<body>
<h1>Maintenance</h1>
<p class="message">${escapeHtml(message)}</p>
${until}
</body>
</html>
`;
}

/** An IP address or CIDR as a network nginx reads (a bare address becomes /32 or /128). */
export function normaliseNetwork(text: string): string {
  const [addr, bits, extra] = text.trim().split("/");
  const family = isIP(addr ?? "");
  const max = family === 4 ? 32 : 128;
  if (extra !== undefined || family === 0 || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
    throw new QuaiError("maintenance_invalid", `${JSON.stringify(text)} is not an IP address or a network in CIDR form (1.2.3.4/32, 2001:db8::/32)`);
  }
  // Written the one way the router reads (no leading zeros, no zone, no IPv4 inside IPv6): a
  // network it refused would fail the routing of every app while the window is open.
  const network = `${(addr as string).toLowerCase()}/${bits === undefined ? max : Number(bits)}`;
  if (!isRouterNetwork(network)) throw new QuaiError("maintenance_invalid", `${JSON.stringify(text)} is not an IP address or a network in CIDR form (1.2.3.4/32, 2001:db8::/32); write IPv6 addresses without a zone, and IPv4 ones as such`);
  return network;
}

export class Maintenance {
  private readonly db: Db;
  private readonly keyring: Keyring;
  private readonly log: (line: string) => void;
  /** Applies the router state (absent without the runtime). */
  private readonly syncRouter: (() => Promise<void>) | undefined;
  private readonly configRelease: ((actor: Actor, app: AppRecord) => Promise<unknown>) | undefined;
  /** The windows active at the last tick: a change applies the router and is an event. */
  private active = new Set<string>();
  /** The tick running now: ticks run one after the other (see `tick`). */
  private ticking: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: { db: Db; keyring: Keyring; log: (line: string) => void; syncRouter?: () => Promise<void>; configRelease?: (actor: Actor, app: AppRecord) => Promise<unknown> }) {
    this.db = opts.db;
    this.keyring = opts.keyring;
    this.log = opts.log;
    this.syncRouter = opts.syncRouter;
    this.configRelease = opts.configRelease;
  }

  /** Turns maintenance on now, or schedules it (`at`); resolves with the window. */
  async turnOn(actor: Actor, appRef: string, input: MaintenanceInput, now = new Date()): Promise<MaintenanceWindow> {
    const app = await findApp(this.db, actor, appRef);
    const message = (input.message ?? DEFAULT_MESSAGE).trim() || DEFAULT_MESSAGE;
    if (message.length > MAX_MESSAGE) throw new QuaiError("maintenance_invalid", `the message has ${message.length} characters; at most ${MAX_MESSAGE}`);
    const allow = [...new Set((input.allowIps ?? []).map(normaliseNetwork))];
    const startsAt = input.at ? parsePlatformTime(input.at, "maintenance_time_invalid", "a start time", now) : now;
    if (input.at && startsAt.getTime() < now.getTime() - 60_000) throw new QuaiError("maintenance_time_invalid", `the start ${startsAt.toISOString()} is in the past`);
    const endsAt = input.until ? parsePlatformTime(input.until, "maintenance_time_invalid", "an end time", startsAt) : null;
    if (endsAt && endsAt.getTime() <= now.getTime()) throw new QuaiError("maintenance_time_invalid", `the end ${endsAt.toISOString()} is in the past`);
    if (endsAt && endsAt.getTime() <= startsAt.getTime()) throw new QuaiError("maintenance_time_invalid", `the end ${endsAt.toISOString()} is not after the start ${startsAt.toISOString()}`);
    let page = input.pageHtml ?? null;
    if (input.pageUrl) page = await fetchPage(input.pageUrl);
    if (page !== null && Buffer.byteLength(page) > MAX_PAGE) throw new QuaiError("maintenance_invalid", `the page is larger than ${MAX_PAGE} bytes`);
    const immediate = !input.at;
    const row = await this.db.transaction().execute(async (trx) => {
      // One window at a time is active: turning on again replaces the current one.
      if (immediate) await trx.updateTable("maintenance_windows").set({ ended_at: now }).where("app_id", "=", app.id).where("ended_at", "is", null).where("starts_at", "<=", now).execute();
      const inserted = await trx
        .insertInto("maintenance_windows")
        .values({ app_id: app.id, message, page_html: page, allow_ips: allow, bypass_token: randomBytes(16).toString("hex"), starts_at: startsAt, ends_at: endsAt, created_by: actor.id })
        .returningAll()
        .executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app, type: immediate ? "maintenance_on" : "maintenance_scheduled", data: { window_id: inserted.id, message, starts_at: startsAt.toISOString(), ends_at: endsAt?.toISOString() ?? null, allow_ips: allow } });
      return inserted;
    });
    await this.tick();
    return row;
  }

  /** Ends the active window (and, with `all`, cancels the scheduled ones). */
  async turnOff(actor: Actor, appRef: string, opts: { all?: boolean } = {}, now = new Date()): Promise<number> {
    const app = await findApp(this.db, actor, appRef);
    let q = this.db.updateTable("maintenance_windows").set({ ended_at: now }).where("app_id", "=", app.id).where("ended_at", "is", null);
    if (!opts.all) q = q.where("starts_at", "<=", now);
    const ended = await q.returning("id").execute();
    if (ended.length === 0) throw new QuaiError("maintenance_not_found", `app ${app.name} is not in maintenance${opts.all ? " and has none scheduled" : ""}`);
    await recordEvent(this.db, { actor, app, type: "maintenance_off", data: { window_ids: ended.map((e) => e.id) } });
    await this.tick();
    return ended.length;
  }

  /** The active window and the scheduled ones. */
  async status(actor: Actor, appRef: string, now = new Date()): Promise<{ app: AppRecord; active: MaintenanceWindow | undefined; scheduled: MaintenanceWindow[] }> {
    const app = await findApp(this.db, actor, appRef);
    const rows = await this.db.selectFrom("maintenance_windows").selectAll().where("app_id", "=", app.id).where("ended_at", "is", null).orderBy("starts_at").execute();
    const live = rows.filter((r) => r.starts_at <= now && (!r.ends_at || r.ends_at > now));
    return { app, active: live[live.length - 1], scheduled: rows.filter((r) => r.starts_at > now) };
  }

  /** The bypass token of the active (or next) window, for the link that sets the cookie. */
  async bypassToken(actor: Actor, appRef: string): Promise<{ app: AppRecord; token: string }> {
    const { app, active, scheduled } = await this.status(actor, appRef);
    const w = active ?? scheduled[0];
    if (!w) throw new QuaiError("maintenance_not_found", `app ${app.name} is not in maintenance and has none scheduled`);
    return { app, token: w.bypass_token };
  }

  /** Sets (message) or removes (null) the banner variables, with a release. */
  async banner(actor: Actor, appRef: string, message: string | null): Promise<void> {
    const app = await findApp(this.db, actor, appRef);
    if (message !== null) {
      const text = message.trim();
      if (text.length === 0 || text.length > MAX_MESSAGE) throw new QuaiError("maintenance_invalid", `a banner message has 1 to ${MAX_MESSAGE} characters`);
      await bulkSetVariables(this.db, this.keyring, actor, app.id, [
        { name: "QUAI_MAINTENANCE_BANNER", value: text },
        { name: "MAINTENANCE_BANNER_ENABLE", value: "true" },
        { name: "MAINTENANCE_BANNER_MESSAGE", value: text },
      ]);
    } else {
      const present = (await listVariables(this.db, this.keyring, app)).filter((v) => (BANNER_VARIABLES as readonly string[]).includes(v.name)).map((v) => v.name);
      if (present.length === 0) throw new QuaiError("maintenance_not_found", `app ${app.name} shows no maintenance banner`);
      await deleteVariables(this.db, this.keyring, actor, app.id, present);
    }
    await recordEvent(this.db, { actor, app, type: "maintenance_banner", data: { enabled: message !== null, message } });
    await this.configRelease?.(actor, app);
  }

  /** The router's view of every app in maintenance now. */
  async routes(now = new Date()): Promise<Map<string, RouteMaintenance>> {
    const rows = await this.db.selectFrom("maintenance_windows").selectAll().where("ended_at", "is", null).where("starts_at", "<=", now).orderBy("starts_at").execute();
    const out = new Map<string, RouteMaintenance>();
    for (const r of rows) {
      if (r.ends_at && r.ends_at <= now) continue;
      const retryAfter = r.ends_at ? Math.min(7 * 86400, Math.max(60, Math.round((r.ends_at.getTime() - now.getTime()) / 1000))) : 3600;
      out.set(r.app_id, { html: r.page_html ?? maintenancePageHtml(r.message, r.ends_at), allow: r.allow_ips, bypassToken: r.bypass_token, retryAfter });
    }
    return out;
  }

  /**
   * Starts and ends windows on time: windows past their end are closed, and when the set of
   * active windows changes the router is applied and each change is an event. Ticks run one at a
   * time: a turn on or off that finds the change already seen by the periodic tick returns only
   * once that tick has applied the router.
   */
  tick(now = new Date()): Promise<void> {
    const next = this.ticking.then(() => this.tickNow(now));
    this.ticking = next.catch(() => undefined);
    return next;
  }

  private async tickNow(now: Date): Promise<void> {
    const ended = await this.db.updateTable("maintenance_windows").set({ ended_at: now }).where("ended_at", "is", null).where("ends_at", "<=", now).returning(["id", "app_id"]).execute();
    const rows = await this.db.selectFrom("maintenance_windows as w").innerJoin("apps as a", "a.id", "w.app_id").select(["w.id", "w.app_id", "a.name"]).where("w.ended_at", "is", null).where("w.starts_at", "<=", now).execute();
    const next = new Set(rows.map((r) => r.id));
    const started = rows.filter((r) => !this.active.has(r.id));
    const changed = started.length > 0 || [...this.active].some((id) => !next.has(id)) || ended.length > 0;
    this.active = next;
    if (!changed) return;
    await this.syncRouter?.().catch((err: unknown) => this.log(`maintenance: applying the router failed: ${String(err)}`));
    for (const e of ended) {
      const app = await this.db.selectFrom("apps").select(["id", "name"]).where("id", "=", e.app_id).executeTakeFirst();
      if (app) await recordEvent(this.db, { actor: null, app, type: "maintenance_off", data: { window_ids: [e.id], reason: "scheduled end" } });
    }
  }

  /** Checks windows every `ms` (scheduled starts and ends). */
  start(ms = 2000): void {
    this.timer = setInterval(() => void this.tick().catch((err: unknown) => this.log(`maintenance: ${String(err)}`)), ms);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * Fetches a maintenance page from an http(s) URL: at most 256 KiB, read within 10 s. The page is
 * then served to anyone, so it never comes from a link-local or metadata address (ADR 0033).
 */
async function fetchPage(url: string): Promise<string> {
  const body = await getUrl(url, { what: "the page URL", invalid: "maintenance_invalid", unreachable: "maintenance_invalid", idleTimeoutMs: 10_000 });
  const timer = setTimeout(() => body.destroy(new Error("it took more than 10 s")), 10_000);
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > MAX_PAGE) throw new Error(`it is larger than ${MAX_PAGE} bytes`);
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks).toString("utf8");
  } catch (err) {
    throw new QuaiError("maintenance_invalid", `the page at ${url} could not be used: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
    body.destroy();
  }
}
