// CLI: events of an app (--app) or of everything the user can see.
import { parseFlags, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import type { EventJson, EventType, PageMeta } from "./service.ts";

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : typeof v === "number" ? String(v) : undefined);
/** Words joined by spaces, the empty ones left out, cut to a table cell's length. */
const words = (...parts: unknown[]): string => parts.map(str).filter((p) => p !== undefined).join(" ").slice(0, 120);
/** A command as a shell would read it back: arguments with spaces or quotes are quoted. */
const argv = (v: unknown): string | undefined => (Array.isArray(v) ? v.map((a) => (/^[\w@%+=:,./-]+$/.test(String(a)) ? String(a) : `'${String(a).replace(/'/g, `'\\''`)}'`)).join(" ") : undefined);
const bytes = (v: unknown): string | undefined => (typeof v === "number" ? (v >= 1 << 20 ? `${(v / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(v / 1024)} KiB`) : undefined);

/** The WHAT column: the facts of an event a reader needs without `--json`. */
export function describe(e: EventJson): string {
  const d = e.type_data;
  const type = e.type as EventType;
  switch (type) {
    case "new_app":
    case "delete_app":
      return "";
    case "rename_app":
      return `${String(d.old_name)} → ${String(d.new_name)}`;
    case "edit_app":
    case "update_scm_link":
      return Object.keys((d.changes as Record<string, unknown>) ?? {}).join(", ");
    case "new_variable":
    case "edit_variable":
    case "edit_variables":
    case "delete_variable":
      return (d.names as string[] | undefined)?.join(", ") ?? "";
    case "new_user":
      return words(d.email, str(d.role) && `(${String(d.role)})`);
    case "new_token":
      return words(d.token_name);
    case "new_key":
      return words(d.name, d.fingerprint);
    case "deployment":
      return words(d.source, typeof d.git_ref === "string" && /^[0-9a-f]{40}$/.test(d.git_ref) ? d.git_ref.slice(0, 7) : d.git_ref, str(d.deployment_id) && `deployment ${String(d.deployment_id)}`);
    case "scale":
      return Array.isArray(d.containers) ? (d.containers as { name?: unknown; amount?: unknown; size?: unknown }[]).map((c) => [c.name, c.amount, c.size].filter((x) => x !== undefined).join(":")).join(" ") : "";
    case "restart":
      return Array.isArray(d.scope) && d.scope.length ? d.scope.join(", ") : "all";
    case "run":
      return words(str(d.hook) ? `${String(d.hook)} hook:` : str(d.number) && `one-off-${String(d.number)}:`, argv(d.command), typeof d.exit_code === "number" ? `(exit ${d.exit_code})` : undefined);
    case "crash":
      return words(d.container, str(d.exit) && `exited (${String(d.exit)}),`, str(d.restarts) && `restart #${String(d.restarts)}`);
    case "new_addon":
      return words(d.addon_provider_id, d.plan);
    case "upgrade_addon":
      return str(d.new_plan) ? words(d.addon_provider_id, d.old_plan, "→", d.new_plan) : words(d.addon_provider_id, "backups at", d.backup_hour, "h");
    case "delete_addon":
      return words(d.addon_provider_id, str(d.final_backup_id) && `final backup ${String(d.final_backup_id)}`);
    case "addon_crash":
      return words(d.instance_id, str(d.attempt) && `attempt ${String(d.attempt)},`, typeof d.restart_in_ms === "number" ? `restart in ${Math.round(d.restart_in_ms / 1000)} s` : undefined);
    case "addon_backup":
      return words(d.kind, d.backup_id, bytes(d.size));
    case "addon_backup_failed":
      return words(d.kind, d.backup_id, d.error);
    case "addon_restore":
    case "addon_restore_failed":
      return words(str(d.backup_id) ? `from backup ${String(d.backup_id)}` : str(d.pitr_to) && `to ${String(d.pitr_to)}`, d.error);
    case "addon_archive_failed":
      return words(str(d.step) && `${String(d.step)}:`, d.error);
    case "addon_quota_exceeded":
      return words(bytes(d.data_bytes), "of", bytes(d.disk_bytes), str(d.plan) && `(plan ${String(d.plan)})`);
    case "maintenance_on":
    case "maintenance_scheduled":
      return words(d.starts_at, "→", str(d.ends_at) ?? "until ended", d.message);
    case "maintenance_off":
      return words(d.reason);
    case "maintenance_banner":
      return d.enabled ? words(d.message) : "banner removed";
    case "new_domain":
    case "delete_domain":
      return words(d.name);
    case "edit_domain":
      return words(d.name, d.ssl === true ? "certificate uploaded" : d.ssl === false ? "certificate removed" : undefined);
    case "certificate_issued":
    case "certificate_renewed":
      return words(d.domain, str(d.not_after) && `until ${String(d.not_after)}`);
    case "certificate_failed":
      return words(str(d.domain) && `${String(d.domain)}:`, d.error);
    case "new_integration":
      return words(d.scm_type, d.url);
    case "delete_integration":
      return words(d.scm_type);
    case "link_scm":
      return words(d.repo, d.branch);
    case "unlink_scm":
      return words(d.repo);
    case "new_review_app":
    case "review_app_queued":
    case "review_app_refused":
    case "review_app_failed":
    case "delete_review_app":
      return words(`#${String(d.pr)}`, d.app_name, d.reason ?? d.error);
    case "review_app_seeded":
      return words(d.app_name, d.seeded === true ? `seeded from backup ${String(d.backup_id)}` : d.reason);
    case "scm_deploy_waiting":
    case "scm_deploy_blocked":
    case "scm_deploy_timeout":
    case "scm_deploy_superseded":
    case "scm_deploy_failed":
      return words(d.branch, typeof d.sha === "string" ? d.sha.slice(0, 7) : undefined, Array.isArray(d.failed) ? `failed: ${d.failed.join(", ")}` : d.reason);
    case "scm_webhook_refused":
      return `${String(d.forge)} ${String(d.event)}: ${String(d.reason)}`.slice(0, 120);
      default:
      return unknown(type);
  }
}

/** A type this CLI does not know (a newer server's) has no WHAT; a type it should know fails to compile. */
function unknown(_type: never): string {
  return "";
}

const events: Command = {
  name: "events",
  summary: "Show who changed what (an app's with --app, else everything you can see)",
  usage: "[--page N] [--per-page N]",
  example: "quai --app histologe events --per-page 50",
  async run(ctx, args) {
    const { flags } = parseFlags(args, [], ["page", "per-page"], 0);
    const qs = new URLSearchParams();
    if (flags.page) qs.set("page", String(flags.page));
    if (flags["per-page"]) qs.set("per_page", String(flags["per-page"]));
    const base = ctx.app ? `/v1/apps/${encodeURIComponent(ctx.app)}/events` : "/v1/events";
    const res = await (await ctx.api()).request<{ events: EventJson[]; meta: PageMeta }>("GET", `${base}${qs.size ? "?" + qs.toString() : ""}`);
    if (ctx.json) return ctx.out(JSON.stringify(res.events));
    ctx.out(table(["WHEN", "TYPE", "APP", "USER", "WHAT"], res.events.map((e) => [e.created_at, e.type, e.app_name, e.user.email, describe(e)])));
    if (res.meta.total_pages > 1) ctx.out(`page ${res.meta.current_page} of ${res.meta.total_pages} (--page N for more)`);
  },
};

export const eventCommands: Command[] = [events];
