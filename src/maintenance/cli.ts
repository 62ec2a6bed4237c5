// CLI: maintenance (status), maintenance on, off, bypass, banner.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, readArgFile, requireApp, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";

interface WindowJson {
  id: string;
  message: string;
  allow_ips: string[];
  starts_at: string;
  ends_at: string | null;
}
const enc = encodeURIComponent;

const status: Command = {
  name: "maintenance",
  summary: "Show whether the app is in maintenance, and the windows scheduled",
  usage: "",
  example: "quai --app histologe maintenance",
  async run(ctx, args) {
    const app = requireApp(ctx);
    if (args.length > 0) throw new QuaiError("cli_usage", `unknown maintenance command ${JSON.stringify(args[0])}: use on, off, bypass or banner`);
    const { maintenance: m } = await (await ctx.api()).request<{ maintenance: { enabled: boolean; active: WindowJson | null; scheduled: WindowJson[] } }>("GET", `/v1/apps/${enc(app)}/maintenance`);
    if (ctx.json) return ctx.out(JSON.stringify(m));
    const lines = [m.active ? `Maintenance ON since ${m.active.starts_at}${m.active.ends_at ? ` until ${m.active.ends_at}` : ""}: ${m.active.message}${m.active.allow_ips.length ? `\nAllowed: ${m.active.allow_ips.join(", ")}` : ""}` : "Maintenance off"];
    if (m.scheduled.length > 0) lines.push("Scheduled:", table(["ID", "FROM", "UNTIL", "MESSAGE"], m.scheduled.map((w) => [w.id, w.starts_at, w.ends_at ?? "-", w.message])));
    ctx.out(lines.join("\n"));
  },
};

const on: Command = {
  name: "maintenance on",
  summary: "Put the app in maintenance now or at a time: a 503 page for all but allowed IPs and the team",
  usage: "[--message M] [--until T] [--at T] [--allow-ip CIDR ...] [--page-file F | --page-url U]",
  example: 'quai --app histologe maintenance on --message "Mise à jour en cours" --until 14:00 --allow-ip 192.0.2.10/32',
  async run(ctx, args) {
    const app = requireApp(ctx);
    const allow: string[] = [];
    const rest: string[] = [];
    for (let i = 0; i < args.length; i++) {
      if (args[i] === "--allow-ip") {
        const v = args[++i];
        if (v === undefined) throw new QuaiError("cli_usage", "--allow-ip needs a value");
        allow.push(v);
      } else rest.push(args[i] as string);
    }
    const { flags, positionals } = parseFlags(rest, [], ["message", "until", "at", "page-file", "page-url"]);
    if (positionals.length > 0) throw new QuaiError("cli_usage", "usage: quai maintenance on [--message M] [--until T] [--at T] [--allow-ip CIDR ...] [--page-file F | --page-url U]");
    let pageHtml: string | undefined;
    if (typeof flags["page-file"] === "string") pageHtml = (await readArgFile(flags["page-file"], `--page-file ${flags["page-file"]}`)).toString("utf8");
    const body = {
      ...(typeof flags.message === "string" ? { message: flags.message } : {}),
      ...(typeof flags.until === "string" ? { until: flags.until } : {}),
      ...(typeof flags.at === "string" ? { at: flags.at } : {}),
      ...(allow.length ? { allow_ips: allow } : {}),
      ...(pageHtml !== undefined ? { page_html: pageHtml } : {}),
      ...(typeof flags["page-url"] === "string" ? { page_url: flags["page-url"] } : {}),
    };
    const { maintenance: w } = await (await ctx.api()).request<{ maintenance: WindowJson }>("POST", `/v1/apps/${enc(app)}/maintenance`, { maintenance: body });
    if (ctx.json) return ctx.out(JSON.stringify(w));
    const scheduled = new Date(w.starts_at).getTime() > Date.now() + 1000;
    ctx.out(`${scheduled ? `Maintenance of ${app} scheduled from ${w.starts_at}` : `Maintenance of ${app} is on`}${w.ends_at ? ` until ${w.ends_at}` : ""}. Team members get through with: quai --app ${app} maintenance bypass`);
  },
};

const off: Command = {
  name: "maintenance off",
  summary: "End maintenance (--all also cancels scheduled windows)",
  usage: "[--all]",
  example: "quai --app histologe maintenance off",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["all"]);
    if (positionals.length > 0) throw new QuaiError("cli_usage", "usage: quai maintenance off [--all]");
    const res = await (await ctx.api()).request<{ ended: number }>("DELETE", `/v1/apps/${enc(app)}/maintenance${flags.all === true ? "?all=true" : ""}`);
    ctx.out(ctx.json ? JSON.stringify(res) : `Maintenance of ${app} is off`);
  },
};

const bypass: Command = {
  name: "maintenance bypass",
  summary: "Print the link that lets you (and whoever you give it to) through maintenance",
  usage: "",
  example: "quai --app histologe maintenance bypass",
  async run(ctx, args) {
    const app = requireApp(ctx);
    if (args.length > 0) throw new QuaiError("cli_usage", "usage: quai maintenance bypass");
    const { bypass: b } = await (await ctx.api()).request<{ bypass: { url: string; cookie: string } }>("POST", `/v1/apps/${enc(app)}/maintenance/bypass`);
    ctx.out(ctx.json ? JSON.stringify(b) : `Open this link once in your browser (it sets a cookie for a day):\n${b.url}\nOr send the cookie: ${b.cookie}`);
  },
};

const banner: Command = {
  name: "maintenance banner",
  summary: "Show a banner in the app before maintenance (sets MAINTENANCE_BANNER_* variables), or --off",
  usage: "--message M | --off",
  example: 'quai --app histologe maintenance banner --message "Maintenance ce soir de 20h à 21h"',
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["off"], ["message"]);
    if (positionals.length > 0 || (flags.off === true) === (typeof flags.message === "string")) throw new QuaiError("cli_usage", "usage: quai maintenance banner --message M | --off");
    const api = await ctx.api();
    if (flags.off === true) await api.request("DELETE", `/v1/apps/${enc(app)}/maintenance/banner`);
    else await api.request("PUT", `/v1/apps/${enc(app)}/maintenance/banner`, { banner: { message: flags.message } });
    ctx.out(flags.off === true ? `Banner removed from ${app} (the app restarts with its variables)` : `Banner set on ${app}: the app sees MAINTENANCE_BANNER_ENABLE=true and MAINTENANCE_BANNER_MESSAGE (it restarts with zero downtime)`);
  },
};

export const maintenanceCommands: Command[] = [status, on, off, bypass, banner];
