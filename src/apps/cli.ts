// CLI: apps, create, destroy, rename, app-info.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, requireApp, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";

interface AppJson {
  id: string;
  name: string;
  status: string;
  url: string;
  owner: { email: string };
  created_at: string;
}

const apps: Command = {
  name: "apps",
  summary: "List your apps",
  usage: "",
  example: "quai apps --json",
  async run(ctx) {
    const { apps } = await (await ctx.api()).request<{ apps: AppJson[] }>("GET", "/v1/apps");
    if (ctx.json) return ctx.out(JSON.stringify(apps));
    if (apps.length === 0) return ctx.out("No apps yet: create one with `quai create <name>`.");
    ctx.out(table(["NAME", "STATUS", "URL", "OWNER"], apps.map((a) => [a.name, a.status, a.url, a.owner.email])));
  },
};

const create: Command = {
  name: "create",
  summary: "Create an app",
  usage: "<name>",
  example: "quai create histologe-staging",
  async run(ctx, args) {
    const { positionals } = parseFlags(args);
    const name = positionals[0] ?? ctx.app;
    if (!name || positionals.length > 1) throw new QuaiError("cli_usage", "usage: quai create <name>");
    const { app } = await (await ctx.api()).request<{ app: AppJson }>("POST", "/v1/apps", { app: { name } });
    ctx.out(ctx.json ? JSON.stringify(app) : `App ${app.name} created: ${app.url}`);
  },
};

const info: Command = {
  name: "app-info",
  summary: "Show an app",
  usage: "",
  example: "quai --app histologe app-info --json",
  async run(ctx) {
    const name = requireApp(ctx);
    const { app } = await (await ctx.api()).request<{ app: AppJson & Record<string, unknown> }>("GET", `/v1/apps/${encodeURIComponent(name)}`);
    if (ctx.json) return ctx.out(JSON.stringify(app));
    ctx.out(table(["FIELD", "VALUE"], Object.entries(app).filter(([, v]) => typeof v !== "object" || v === null).map(([k, v]) => [k, v as string])));
  },
};

const destroy: Command = {
  name: "destroy",
  summary: "Delete an app and its variables (asks to type the name, or --force)",
  usage: "[--force]",
  example: "quai --app old-review-app destroy --force",
  async run(ctx, args) {
    const { flags, positionals } = parseFlags(args, ["force"]);
    // `quai destroy old-review-app --force` with QUAI_APP set to another app must not delete that one.
    if (positionals.length > 0) throw new QuaiError("cli_usage", `quai destroy takes the app with --app (or QUAI_APP), not as an argument: "${positionals.join(" ")}"${ctx.app && ctx.app !== positionals[0] ? `, while the app given is ${ctx.app}` : ""}; nothing deleted`);
    const name = requireApp(ctx);
    if (!flags.force) {
      const typed = await ctx.prompt(`This deletes app ${name} and its variables. Type its name to confirm: `);
      if (typed === undefined) throw new QuaiError("cli_confirmation_required", `not a terminal: pass --force to delete ${name}`);
      if (typed.trim() !== name) throw new QuaiError("confirmation_mismatch", `you typed "${typed.trim()}", not "${name}": nothing deleted`);
    }
    await (await ctx.api()).request("DELETE", `/v1/apps/${encodeURIComponent(name)}?current_name=${encodeURIComponent(name)}`);
    ctx.out(ctx.json ? JSON.stringify({ deleted: name }) : `App ${name} deleted.`);
  },
};

const rename: Command = {
  name: "rename",
  summary: "Rename an app",
  usage: "--new-name NAME",
  example: "quai --app dialog-stagging rename --new-name dialog-staging",
  async run(ctx, args) {
    const name = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["new-name"]);
    const newName = (flags["new-name"] as string | undefined) ?? positionals[0];
    if (!newName) throw new QuaiError("cli_usage", "usage: quai --app <name> rename --new-name <new name>");
    const { app } = await (await ctx.api()).request<{ app: AppJson }>("POST", `/v1/apps/${encodeURIComponent(name)}/rename`, { current_name: name, new_name: newName });
    ctx.out(ctx.json ? JSON.stringify(app) : `App ${name} renamed to ${app.name}: ${app.url}`);
  },
};

const update: Command = {
  name: "app-update",
  summary: "Change an app's settings (health-check path of new web containers, force HTTPS)",
  usage: "[--health-check-path /PATH | --health-check-path ''] [--force-https true|false]",
  example: "quai --app histologe app-update --health-check-path /health",
  async run(ctx, args) {
    const name = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["health-check-path", "force-https"]);
    if (positionals.length > 0 || Object.keys(flags).length === 0) throw new QuaiError("cli_usage", "usage: quai app-update [--health-check-path /PATH] [--force-https true|false]");
    const settings: Record<string, unknown> = {};
    if (flags["health-check-path"] !== undefined) settings.health_check_path = flags["health-check-path"] === true ? "" : flags["health-check-path"];
    if (flags["force-https"] !== undefined) {
      if (flags["force-https"] !== "true" && flags["force-https"] !== "false") throw new QuaiError("cli_usage", "--force-https takes true or false");
      settings.force_https = flags["force-https"] === "true";
    }
    const { app } = await (await ctx.api()).request<{ app: AppJson & Record<string, unknown> }>("PATCH", `/v1/apps/${encodeURIComponent(name)}`, { app: settings });
    ctx.out(ctx.json ? JSON.stringify(app) : `App ${app.name} updated`);
  },
};

export const appCommands: Command[] = [apps, create, info, destroy, rename, update];
