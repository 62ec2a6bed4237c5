// CLI: addons, addons-add, addons-upgrade, addons-remove, backups, backups-create,
// backups-download, backups-verify, backups-restore, pitr-restore and the database consoles.
import { constants, createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { access, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { QuaiError } from "../core/errors.ts";
import { sha256Hex } from "../core/hash.ts";
import { parseFlags, requireApp, type CliContext, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import { runCmd } from "../formation/cli.ts";

interface PlanJson {
  id: string;
  display_name: string;
  memory_bytes: number;
  max_connections: number;
  disk_bytes: number;
}
interface AddonJson {
  id: string;
  status: string;
  plan: PlanJson;
  addon_provider: { id: string; name: string };
  env: string[];
  data_bytes: number | null;
  quota_exceeded: boolean;
  backup_hour: number;
  backups: { last_success_at: string | null; stale: boolean };
  archive: { earliest_restorable_time: string | null; archive_lag_seconds: number | null; failing: boolean } | null;
}
interface BackupJson {
  id: string;
  created_at: string;
  status: string;
  backup_type: string;
  size: number | null;
  duration_ms: number | null;
  error: string | null;
  sha256: string | null;
  verification: { ok: boolean; error?: string; summary?: Record<string, number> } | null;
}

const mib = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? "-" : bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`);
const enc = encodeURIComponent;

/** The add-on named by `--addon` (id or provider id) or the only positional, else the app's only add-on. */
async function addonFlag(ctx: CliContext, app: string, flags: Record<string, string | true>, positionals: string[], usage: string): Promise<string> {
  const ref = typeof flags.addon === "string" ? flags.addon : positionals.shift();
  if (ref) return ref;
  // Named by neither: the app's add-on, when it has exactly one.
  const { addons } = await (await ctx.api()).request<{ addons: AddonJson[] }>("GET", `/v1/apps/${enc(app)}/addons`);
  if (addons.length === 1) return (addons[0] as AddonJson).addon_provider.id;
  if (addons.length === 0) throw new QuaiError("addon_not_found", `app ${app} has no add-on`);
  throw new QuaiError("cli_usage", `app ${app} has ${addons.length} add-ons (${addons.map((a) => a.addon_provider.id).join(", ")}): say which, as in quai ${usage}`);
}

/** Refuses, before any download, a file that cannot be written: a missing directory, a directory, no permission. */
async function checkWritable(file: string): Promise<void> {
  try {
    const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (st?.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    await access(st ? file : dirname(resolve(file)), constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" || code === "ENOTDIR" ? "no such directory" : code === "EACCES" || code === "EROFS" ? "permission denied" : code === "EISDIR" ? "it is a directory" : (code ?? String(err));
    throw new QuaiError("cli_usage", `cannot write ${file}: ${why}`);
  }
}

/** Asks to type `word` unless --force; refuses without a terminal. */
async function confirm(ctx: CliContext, force: boolean, what: string, word: string): Promise<void> {
  if (force) return;
  const typed = await ctx.prompt(`${what}\nType ${word} to confirm: `);
  if (typed === undefined) throw new QuaiError("cli_confirmation_required", `not a terminal: pass --force to go ahead`);
  if (typed.trim() !== word) throw new QuaiError("confirmation_mismatch", `you typed "${typed.trim()}", not "${word}": nothing done`);
}

function describeAddon(a: AddonJson): string {
  const lines = [
    `${a.addon_provider.name} (${a.addon_provider.id}) ${a.id}`,
    `  status:   ${a.status}${a.quota_exceeded ? " — DISK QUOTA EXCEEDED" : ""}`,
    `  plan:     ${a.plan.id} (${mib(a.plan.memory_bytes)} memory, ${a.plan.max_connections} connections, ${mib(a.plan.disk_bytes)} disk)`,
    `  data:     ${mib(a.data_bytes)}`,
    `  env:      ${a.env.join(", ")}`,
    `  backups:  daily at ${String(a.backup_hour).padStart(2, "0")}:00 Europe/Paris; last good one ${a.backups.last_success_at ?? "never"}${a.backups.stale ? " — OLDER THAN 26 HOURS" : ""}`,
  ];
  if (a.archive) lines.push(`  PITR:     restorable from ${a.archive.earliest_restorable_time ?? "(first base backup pending)"}; archive lag ${a.archive.archive_lag_seconds ?? "-"} s${a.archive.failing ? " — ARCHIVING FAILING" : ""}`);
  return lines.join("\n");
}

const providers: Command = {
  name: "addons-providers",
  summary: "List add-on providers and their plans",
  usage: "",
  example: "quai addons-providers",
  async run(ctx) {
    const res = await (await ctx.api()).request<{ addon_providers: { id: string; name: string; plans: PlanJson[] }[] }>("GET", "/v1/addon_providers");
    if (ctx.json) return ctx.out(JSON.stringify(res.addon_providers));
    ctx.out(table(["PROVIDER", "PLAN", "MEMORY", "CONNECTIONS", "DISK"], res.addon_providers.flatMap((p) => p.plans.map((pl) => [p.id, pl.id, mib(pl.memory_bytes), pl.max_connections, mib(pl.disk_bytes)]))));
  },
};

const list: Command = {
  name: "addons",
  summary: "List the app's add-ons, with backup and archive health",
  usage: "",
  example: "quai --app histologe addons",
  async run(ctx) {
    const app = requireApp(ctx);
    const res = await (await ctx.api()).request<{ addons: AddonJson[] }>("GET", `/v1/apps/${enc(app)}/addons`);
    if (ctx.json) return ctx.out(JSON.stringify(res.addons));
    if (res.addons.length === 0) return ctx.out(`No add-ons: add one with \`quai --app ${app} addons-add postgresql postgresql-starter-512\`.`);
    ctx.out(res.addons.map(describeAddon).join("\n\n"));
  },
};

const add: Command = {
  name: "addons-add",
  summary: "Add a database to the app (its URL variable is set and the app restarts)",
  usage: "<provider> <plan>",
  example: "quai --app histologe addons-add postgresql postgresql-starter-512",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length !== 2) throw new QuaiError("cli_usage", "usage: quai addons-add <provider> <plan> (see quai addons-providers)");
    const [provider, plan] = positionals as [string, string];
    const res = await (await ctx.api()).request<{ addon: AddonJson }>("POST", `/v1/apps/${enc(app)}/addons`, { addon: { addon_provider_id: provider, plan_id: plan } });
    ctx.out(ctx.json ? JSON.stringify(res.addon) : `Add-on ${res.addon.addon_provider.id} added (${res.addon.id}); the app sees ${res.addon.env.join(" and ")}`);
  },
};

const upgrade: Command = {
  name: "addons-upgrade",
  summary: "Change an add-on's plan (its server restarts with the new settings)",
  usage: "<addon> <plan>",
  example: "quai --app histologe addons-upgrade postgresql postgresql-starter-1024",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length !== 2) throw new QuaiError("cli_usage", "usage: quai addons-upgrade <addon> <plan>");
    const res = await (await ctx.api()).request<{ addon: AddonJson }>("PATCH", `/v1/apps/${enc(app)}/addons/${enc(positionals[0] as string)}`, { addon: { plan_id: positionals[1] } });
    ctx.out(ctx.json ? JSON.stringify(res.addon) : `Add-on ${res.addon.addon_provider.id} now on ${res.addon.plan.id}`);
  },
};

const config: Command = {
  name: "addons-config",
  summary: "Set the hour (Europe/Paris) of an add-on's daily backup",
  usage: "<addon> --backup-hour H",
  example: "quai --app histologe addons-config postgresql --backup-hour 2",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["backup-hour"]);
    if (positionals.length !== 1 || typeof flags["backup-hour"] !== "string") throw new QuaiError("cli_usage", "usage: quai addons-config <addon> --backup-hour H");
    const hour = Number(flags["backup-hour"]);
    const res = await (await ctx.api()).request<{ addon: AddonJson }>("PATCH", `/v1/apps/${enc(app)}/addons/${enc(positionals[0] as string)}`, { addon: { backup_hour: Number.isInteger(hour) ? hour : -1 } });
    ctx.out(ctx.json ? JSON.stringify(res.addon) : `Daily backup of ${res.addon.addon_provider.id} at ${String(res.addon.backup_hour).padStart(2, "0")}:00 Europe/Paris`);
  },
};

const remove: Command = {
  name: "addons-remove",
  summary: "Remove an add-on: a final backup first (unless --no-backup), then its data",
  usage: "<addon> [--no-backup] [--force]",
  example: "quai --app old-review-app addons-remove postgresql --force",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["no-backup", "force"]);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai addons-remove <addon> [--no-backup] [--force]");
    const api = await ctx.api();
    const { addon } = await api.request<{ addon: AddonJson }>("GET", `/v1/apps/${enc(app)}/addons/${enc(positionals[0] as string)}`);
    const noBackup = flags["no-backup"] === true;
    await confirm(ctx, flags.force === true, `This deletes the ${addon.addon_provider.name} database of ${app} (${mib(addon.data_bytes)} of data) and removes ${addon.env.join(", ")}.\n${noBackup ? "NO final backup will be taken." : "A final backup is taken first and kept 30 days."}`, app);
    const res = await api.request<{ final_backup: BackupJson | null }>("DELETE", `/v1/apps/${enc(app)}/addons/${enc(addon.id)}${noBackup ? "?final_backup=false" : ""}`);
    if (ctx.json) return ctx.out(JSON.stringify(res));
    ctx.out(`Add-on ${addon.addon_provider.id} removed${res.final_backup ? `; final backup ${res.final_backup.id} (${mib(res.final_backup.size)}) kept 30 days` : ""}`);
  },
};

const logs: Command = {
  name: "addons-logs",
  summary: "Show an add-on server's recent log lines",
  usage: "<addon> [--lines N]",
  example: "quai --app histologe addons-logs postgresql --lines 50",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["lines"]);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai addons-logs <addon> [--lines N]");
    const q = typeof flags.lines === "string" ? `?lines=${enc(flags.lines)}` : "";
    const res = await (await ctx.api()).request<{ logs: string[] }>("GET", `/v1/apps/${enc(app)}/addons/${enc(positionals[0] as string)}/logs${q}`);
    ctx.out(ctx.json ? JSON.stringify(res.logs) : res.logs.join("\n"));
  },
};

function backupRow(b: BackupJson): (string | number | null)[] {
  const verified = b.verification ? (b.verification.ok ? "ok" : `FAILED: ${b.verification.error ?? ""}`) : "-";
  return [b.id, b.created_at, b.backup_type, b.status === "error" ? `error: ${b.error ?? ""}` : b.status, mib(b.size), b.duration_ms === null ? "-" : `${(b.duration_ms / 1000).toFixed(1)} s`, verified];
}

const backups: Command = {
  name: "backups",
  summary: "List an add-on's backups",
  usage: "--addon <addon>",
  example: "quai --app histologe backups --addon postgresql",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["addon"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "backups --addon <addon>");
    const res = await (await ctx.api()).request<{ backups: BackupJson[] }>("GET", `/v1/apps/${enc(app)}/addons/${enc(ref)}/backups`);
    if (ctx.json) return ctx.out(JSON.stringify(res.backups));
    if (res.backups.length === 0) return ctx.out(`No backups yet: take one with \`quai --app ${app} backups-create --addon ${ref}\`.`);
    ctx.out(table(["ID", "CREATED", "TYPE", "STATUS", "SIZE", "DURATION", "VERIFIED"], res.backups.map(backupRow)));
  },
};

const create: Command = {
  name: "backups-create",
  summary: "Back up an add-on now and wait for it (--no-wait to return at once)",
  usage: "--addon <addon> [--no-wait]",
  example: "quai --app histologe backups-create --addon postgresql",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["no-wait"], ["addon"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "backups-create --addon <addon>");
    const api = await ctx.api();
    let { backup } = await api.request<{ backup: BackupJson }>("POST", `/v1/apps/${enc(app)}/addons/${enc(ref)}/backups`);
    if (flags["no-wait"] !== true) {
      while (backup.status === "scheduled" || backup.status === "running") {
        await new Promise((r) => setTimeout(r, 500));
        backup = (await api.request<{ backup: BackupJson }>("GET", `/v1/apps/${enc(app)}/addons/${enc(ref)}/backups/${backup.id}`)).backup;
      }
    }
    if (ctx.json) return ctx.out(JSON.stringify(backup));
    if (backup.status === "error") throw new QuaiError("addon_failed", `backup ${backup.id} failed: ${backup.error ?? "unknown error"}`);
    ctx.out(backup.status === "done" ? `Backup ${backup.id} done: ${mib(backup.size)} in ${((backup.duration_ms ?? 0) / 1000).toFixed(1)} s (sha256 ${backup.sha256 ?? "-"})` : `Backup ${backup.id} started`);
  },
};

const download: Command = {
  name: "backups-download",
  summary: "Download a backup (the newest by default); an interrupted download resumes",
  usage: "--addon <addon> [--backup ID] [--output FILE]",
  example: "quai --app histologe backups-download --addon postgresql --output histologe.pgdump",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["addon", "backup", "output"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "backups-download --addon <addon> [--backup ID] [--output FILE]");
    const api = await ctx.api();
    const base = `/v1/apps/${enc(app)}/addons/${enc(ref)}/backups`;
    let backup: BackupJson | undefined;
    if (typeof flags.backup === "string") {
      backup = (await api.request<{ backup: BackupJson }>("GET", `${base}/${enc(flags.backup)}`)).backup;
      if (backup.status !== "done") throw new QuaiError("backup_not_done", `backup ${backup.id} is ${backup.status}: only a completed backup can be downloaded`);
    } else {
      backup = (await api.request<{ backups: BackupJson[] }>("GET", base)).backups.find((b) => b.status === "done");
      if (!backup) throw new QuaiError("backup_not_found", `the ${ref} add-on has no completed backup yet`);
    }
    const id = backup.id;
    const path = `${base}/${enc(id)}/archive`;
    const output = typeof flags.output === "string" ? flags.output : undefined;
    if (!output) {
      const res = await api.stream("GET", path);
      await pipeline(Readable.fromWeb(res.body as never), process.stdout);
      return;
    }
    await checkWritable(output);
    const fetchInto = async (from: number): Promise<void> => {
      const res = await api.stream("GET", path, undefined, from > 0 ? { range: `bytes=${from}-` } : {}).catch((err: unknown) => {
        // Nothing past the file's end: it is as long as the backup, or longer (checked below).
        if (from > 0 && err instanceof QuaiError && /416/.test(err.message)) return undefined;
        throw err;
      });
      if (res) await pipeline(Readable.fromWeb(res.body as never), createWriteStream(output, { flags: res.status === 206 ? "a" : "w" }));
    };
    // A file already there is taken for an interrupted download of this backup. If it was
    // something else (yesterday's backup under the same name), the checksum says so, and the
    // backup is downloaded again whole.
    const have = existsSync(output) ? statSync(output).size : 0;
    await fetchInto(have);
    let how = have === 0 ? "" : backup.size !== null && have >= backup.size ? ", already there" : ", resumed";
    let sum = backup.sha256 ? await sha256Hex(createReadStream(output)) : undefined;
    if (sum !== backup.sha256 && have > 0) {
      ctx.err(`${output} held something other than backup ${id}: downloading it whole`);
      await fetchInto(0);
      sum = await sha256Hex(createReadStream(output));
      how = "";
    }
    if (backup.sha256 && sum !== backup.sha256) throw new QuaiError("backup_corrupted", `${output} does not match backup ${id}'s checksum (sha256 ${backup.sha256}); download it again`);
    ctx.out(`Backup ${id} saved to ${output} (${mib(statSync(output).size)}${backup.sha256 ? ", sha256 checked" : ""}${how})`);
  },
};

const verify: Command = {
  name: "backups-verify",
  summary: "Restore a backup into a throwaway server and check its tables and rows (or keys)",
  usage: "--addon <addon> --backup ID",
  example: "quai --app histologe backups-verify --addon postgresql --backup 5d1c...",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, [], ["addon", "backup"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "backups-verify --addon <addon> --backup ID");
    const id = typeof flags.backup === "string" ? flags.backup : positionals[0];
    if (!id) throw new QuaiError("cli_usage", "usage: quai backups-verify --addon <addon> --backup ID");
    const { backup } = await (await ctx.api()).request<{ backup: BackupJson }>("POST", `/v1/apps/${enc(app)}/addons/${enc(ref)}/backups/${enc(id)}/verify`);
    if (ctx.json) return ctx.out(JSON.stringify(backup));
    const v = backup.verification;
    if (!v?.ok) throw new QuaiError("backup_corrupted", `backup ${backup.id} failed verification: ${v?.error ?? "unknown error"}`);
    ctx.out(`Backup ${backup.id} verified:\n${table(["TABLE", "ROWS"], Object.entries(v.summary ?? {}).map(([k, n]) => [k, n]))}`);
  },
};

const restore: Command = {
  name: "backups-restore",
  summary: "Restore a backup into a new server, then switch the app to it (the old one is kept)",
  usage: "--addon <addon> --backup ID [--force]",
  example: "quai --app histologe-staging backups-restore --addon postgresql --backup 5d1c... --force",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["force"], ["addon", "backup"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "backups-restore --addon <addon> --backup ID");
    const id = typeof flags.backup === "string" ? flags.backup : positionals[0];
    if (!id) throw new QuaiError("cli_usage", "usage: quai backups-restore --addon <addon> --backup ID [--force]");
    await confirm(ctx, flags.force === true, `This switches ${app}'s ${ref} to the data of backup ${id}. The current data is kept (stopped) and listed by \`quai addons-instances\`.`, app);
    const { addon } = await (await ctx.api()).request<{ addon: AddonJson }>("POST", `/v1/apps/${enc(app)}/addons/${enc(ref)}/restore`, { backup_id: id });
    ctx.out(ctx.json ? JSON.stringify(addon) : `Restored backup ${id} into ${app}'s ${addon.addon_provider.id}; the previous data is kept detached`);
  },
};

const pitr: Command = {
  name: "pitr-restore",
  summary: "Restore a PostgreSQL add-on to a point in time (Europe/Paris unless a zone is given)",
  usage: "--addon <addon> --to 'YYYY-MM-DD HH:MM:SS' [--force]",
  example: "quai --app histologe pitr-restore --addon postgresql --to '2026-11-22 14:03:00'",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["force"], ["addon", "to"]);
    const ref = await addonFlag(ctx, app, flags, positionals, "pitr-restore --addon <addon> --to TIME");
    if (typeof flags.to !== "string") throw new QuaiError("cli_usage", "usage: quai pitr-restore --addon <addon> --to 'YYYY-MM-DD HH:MM:SS'");
    await confirm(ctx, flags.force === true, `This switches ${app}'s ${ref} to its state at ${flags.to}. The current data is kept (stopped).`, app);
    const { addon } = await (await ctx.api()).request<{ addon: AddonJson }>("POST", `/v1/apps/${enc(app)}/addons/${enc(ref)}/pitr_restore`, { to: flags.to });
    ctx.out(ctx.json ? JSON.stringify(addon) : `Restored ${app}'s ${addon.addon_provider.id} to ${flags.to}; the previous data is kept detached`);
  },
};

const instances: Command = {
  name: "addons-instances",
  summary: "List the servers restores replaced (kept stopped for 7 days)",
  usage: "<addon>",
  example: "quai --app histologe addons-instances postgresql",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai addons-instances <addon>");
    const res = await (await ctx.api()).request<{ instances: { id: string; state: string; plan: string; created_at: string; detached_at: string }[] }>("GET", `/v1/apps/${enc(app)}/addons/${enc(positionals[0] as string)}/instances`);
    if (ctx.json) return ctx.out(JSON.stringify(res.instances));
    ctx.out(res.instances.length === 0 ? "No replaced instances." : table(["ID", "STATE", "PLAN", "CREATED", "REPLACED"], res.instances.map((i) => [i.id, i.state, i.plan, i.created_at, i.detached_at])));
  },
};

const reattach: Command = {
  name: "addons-reattach",
  summary: "Undo a restore: switch the add-on back to an instance a restore replaced",
  usage: "<addon> <instance-id> [--force]",
  example: "quai --app histologe addons-reattach postgresql 5b3cc498-...",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["force"]);
    if (positionals.length !== 2) throw new QuaiError("cli_usage", "usage: quai addons-reattach <addon> <instance-id> [--force] (see quai addons-instances)");
    const [ref, instance] = positionals as [string, string];
    await confirm(ctx, flags.force === true, `This switches ${app}'s ${ref} back to instance ${instance}. The current data is kept (stopped) in turn.`, app);
    const { addon } = await (await ctx.api()).request<{ addon: AddonJson }>("POST", `/v1/apps/${enc(app)}/addons/${enc(ref)}/instances/${enc(instance)}/reattach`);
    ctx.out(ctx.json ? JSON.stringify(addon) : `${app}'s ${addon.addon_provider.id} is back on instance ${instance}; the data it left is kept detached`);
  },
};

/** A console: the client tool in a one-off container of the app, connected with its URL variable. */
function consoleCommand(name: string, label: string, script: string): Command {
  return {
    name,
    summary: `Open a ${label} console on the app's database (in a one-off container)`,
    usage: "",
    example: `quai --app histologe ${name}`,
    async run(ctx, args) {
      if (args.length > 0) throw new QuaiError("cli_usage", `usage: quai ${name}`);
      await runCmd.run(ctx, ["--", "bash", "-c", script]);
    },
  };
}

// Passwords Quai generates are URL-safe, so the URL splits without decoding.
const mysqlScript = 'u="${SCALINGO_MYSQL_URL:?the app has no MySQL add-on}"; u="${u#mysql://}"; cred="${u%%@*}"; rest="${u#*@}"; hp="${rest%%/*}"; MYSQL_PWD="${cred#*:}" exec mariadb -h "${hp%%:*}" -P "${hp##*:}" -u "${cred%%:*}" "${rest#*/}"';

// redis-cli -u sends no AUTH for a URL with an empty user name (redis://:password@...).
const redisScript = 'u="${SCALINGO_REDIS_URL:?the app has no Redis add-on}"; u="${u#redis://}"; cred="${u%%@*}"; hp="${u#*@}"; hp="${hp%%/*}"; REDISCLI_AUTH="${cred#*:}" exec redis-cli -h "${hp%%:*}" -p "${hp##*:}"';

export const addonCommands: Command[] = [
  providers,
  list,
  add,
  upgrade,
  config,
  remove,
  logs,
  instances,
  reattach,
  backups,
  create,
  download,
  verify,
  restore,
  pitr,
  consoleCommand("pgsql-console", "PostgreSQL (psql)", 'exec psql "${SCALINGO_POSTGRESQL_URL:?the app has no PostgreSQL add-on}"'),
  consoleCommand("mysql-console", "MySQL (mariadb)", mysqlScript),
  consoleCommand("redis-console", "Redis (redis-cli)", redisScript),
];
