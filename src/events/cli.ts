// CLI: events of an app (--app) or of everything the user can see.
import { parseFlags, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import type { EventJson, PageMeta } from "./service.ts";

function describe(e: EventJson): string {
  const d = e.type_data;
  switch (e.type) {
    case "rename_app":
      return `${String(d.old_name)} → ${String(d.new_name)}`;
    case "new_variable":
    case "edit_variable":
    case "edit_variables":
    case "delete_variable":
      return (d.names as string[] | undefined)?.join(", ") ?? "";
    case "edit_app":
      return Object.keys((d.changes as Record<string, unknown>) ?? {}).join(", ");
    case "new_review_app":
    case "review_app_queued":
    case "review_app_refused":
    case "review_app_failed":
    case "delete_review_app":
      return [`#${String(d.pr)}`, d.app_name, d.reason ?? d.error].filter((x) => typeof x === "string" && x !== "").join(" ").slice(0, 120);
    case "scm_deploy_waiting":
    case "scm_deploy_blocked":
    case "scm_deploy_timeout":
    case "scm_deploy_superseded":
    case "scm_deploy_failed":
      return [d.branch, typeof d.sha === "string" ? d.sha.slice(0, 7) : undefined, Array.isArray(d.failed) ? `failed: ${d.failed.join(", ")}` : d.reason].filter((x) => typeof x === "string").join(" ").slice(0, 120);
    case "scm_webhook_refused":
      return `${String(d.forge)} ${String(d.event)}: ${String(d.reason)}`.slice(0, 120);
    default:
      return "";
  }
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
