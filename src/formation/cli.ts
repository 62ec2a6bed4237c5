// CLI: ps, scale, restart, releases, rollback, logs, run.
import WebSocket from "ws";
import { basename } from "node:path";
import { QuaiError } from "../core/errors.ts";
import { parseFlags, readArgFile, requireApp, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import { followDeployment } from "../deployments/cli.ts";

const ps: Command = {
  name: "ps",
  summary: "List the app's containers and their state",
  usage: "",
  example: "quai --app histologe ps",
  async run(ctx) {
    const app = requireApp(ctx);
    const api = await ctx.api();
    const [{ containers: formation }, { containers }] = await Promise.all([
      api.request<{ containers: { name: string; amount: number; size: string; command: string | null }[] }>("GET", `/v1/apps/${encodeURIComponent(app)}/containers`),
      api.request<{ containers: { label: string; state: string; size: string; release: string; restarts: number; last_exit: string | null; created_at: string }[] }>("GET", `/v1/apps/${encodeURIComponent(app)}/ps`),
    ]);
    if (ctx.json) return ctx.out(JSON.stringify({ formation, containers }));
    // A type scaled before the first deployment, or gone from the Procfile, keeps its row but runs nothing.
    ctx.out(table(["TYPE", "AMOUNT", "SIZE", "COMMAND"], formation.map((f) => [f.name, f.amount, f.size, f.command ?? "(not in the current release: none run)"])));
    ctx.out("");
    ctx.out(table(["CONTAINER", "STATE", "SIZE", "RELEASE", "RESTARTS", "LAST EXIT", "STARTED"], containers.map((c) => [c.label, c.state, c.size, c.release, c.restarts, c.last_exit, c.created_at])));
  },
};

/** Parses `web:2:M`, `worker:1`, `web:L` style arguments. */
export function parseScaleArgs(args: string[]): { name: string; amount?: number; size?: string }[] {
  return args.map((a) => {
    const m = /^([A-Za-z0-9_-]+):([^:]+)(?::([^:]+))?$/.exec(a);
    if (!m) throw new QuaiError("cli_usage", `"${a}" is not TYPE:AMOUNT[:SIZE] (for example web:2:M)`);
    const [, name, x, y] = m as unknown as [string, string, string, string | undefined];
    const out: { name: string; amount?: number; size?: string } = { name };
    if (/^-?\d+$/.test(x)) out.amount = Number(x);
    else if (y === undefined && !/^[-+]?\d*[.,]\d*$/.test(x)) out.size = x;
    else throw new QuaiError("cli_usage", `"${a}": the amount "${x}" is not a whole number`);
    if (y !== undefined) out.size = y;
    return out;
  });
}

const scaleCmd: Command = {
  name: "scale",
  summary: "Set amount and size of process types (sizes S, M, L, XL, 2XL)",
  usage: "TYPE:AMOUNT[:SIZE] ...",
  example: "quai --app histologe scale web:2:M worker:1",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length === 0) throw new QuaiError("cli_usage", "usage: quai scale web:2:M [worker:1 ...]");
    const res = await (await ctx.api()).request<{ containers: { name: string; amount: number; size: string }[] }>("POST", `/v1/apps/${encodeURIComponent(app)}/scale`, { containers: parseScaleArgs(positionals) });
    if (ctx.json) return ctx.out(JSON.stringify(res.containers));
    ctx.out(`Scaled ${app}: ${res.containers.map((c) => `${c.name}:${c.amount}:${c.size}`).join(" ")}`);
  },
};

const restartCmd: Command = {
  name: "restart",
  summary: "Restart all containers, or those of some process types, with no downtime",
  usage: "[TYPE ...]",
  example: "quai --app histologe restart web",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const types = [...new Set(parseFlags(args).positionals)];
    await (await ctx.api()).request("POST", `/v1/apps/${encodeURIComponent(app)}/restart`, { scope: types });
    ctx.out(`Restarted ${types.length ? types.join(", ") : "every process type"} of ${app}`);
  },
};

const releases: Command = {
  name: "releases",
  summary: "List the app's releases (newest first)",
  usage: "",
  example: "quai --app histologe releases",
  async run(ctx) {
    const app = requireApp(ctx);
    const res = await (await ctx.api()).request<{ releases: { version: number; git_ref: string | null; description: string; created_by: string | null; created_at: string; current: boolean }[] }>("GET", `/v1/apps/${encodeURIComponent(app)}/releases`);
    if (ctx.json) return ctx.out(JSON.stringify(res.releases));
    ctx.out(table(["VERSION", "", "DATE", "GIT REF", "BY", "DESCRIPTION"], res.releases.map((r) => [`v${r.version}`, r.current ? "current" : "", r.created_at, r.git_ref?.slice(0, 12), r.created_by, r.description])));
  },
};

const rollback: Command = {
  name: "rollback",
  summary: "Redeploy an earlier release (default: the newest earlier one that went live). Databases are not rolled back",
  usage: "[vN]",
  example: "quai --app histologe rollback v12",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    const v = positionals[0];
    if (v !== undefined && !/^v?\d+$/.test(v)) throw new QuaiError("cli_usage", `"${v}" is not a release version (v12 or 12)`);
    const api = await ctx.api();
    const res = await api.request<{ deployment: { id: string }; release: { version: number } }>("POST", `/v1/apps/${encodeURIComponent(app)}/rollback`, v ? { version: Number(v.replace(/^v/, "")) } : {});
    ctx.err(`Rolling back ${app} to v${res.release.version} (code and config; databases are not rolled back)`);
    const status = await followDeployment(api, app, res.deployment.id);
    if (status !== "success") throw new QuaiError("cli_deployment_failed", `rollback ended ${status}: the current release keeps serving`);
  },
};

const logs: Command = {
  name: "logs",
  summary: "Show the app's logs: its containers' output and the router's access lines (-f follows)",
  usage: "[-n LINES] [-f] [--filter TYPE]",
  example: "quai --app histologe logs -n 500 --filter web",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags } = parseFlags(args.map((a) => (a === "-f" ? "--follow" : a === "-n" ? "--lines" : a)), ["follow"], ["lines", "filter"], 0);
    const n = flags.lines === undefined ? 100 : Number(flags.lines);
    if (!Number.isInteger(n) || n < 1) throw new QuaiError("cli_usage", "-n takes a positive number of lines");
    const api = await ctx.api();
    const { logs_url } = await api.request<{ logs_url: string }>("GET", `/v1/apps/${encodeURIComponent(app)}/logs`);
    const url = new URL(logs_url);
    url.searchParams.set("n", String(n));
    if (flags.follow) url.searchParams.set("stream", "true");
    if (typeof flags.filter === "string") url.searchParams.set("filter", flags.filter);
    const res = await fetch(url);
    if (!res.ok) throw new QuaiError("token_invalid", `the log stream answered ${res.status}`);
    let printed = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      printed += chunk.length;
      process.stdout.write(chunk);
    }
    // Following ends only when the server ends the stream: say so, or it looks like a clean exit.
    if (flags.follow) ctx.err(`the log stream of ${app} ended: the app was deleted, or the server stopped`);
    // Silence would look like an app that logs nothing: say the filter matched nothing.
    else if (printed === 0 && typeof flags.filter === "string") {
      ctx.err(`no log lines from "${flags.filter}": --filter takes a process type (web), a container (web-2, one-off-3) or router`);
    }
  },
};

export const runCmd: Command = {
  name: "run",
  summary: "Run a one-off command in a new container of the current release (exit code kept)",
  usage: "[--detached] [--size S] [--env K=V ...] [--file PATH ...] [--tty] <command> [args...]",
  example: "quai --app histologe run php bin/console app:cmd",
  async run(ctx, args) {
    const app = requireApp(ctx);
    // Flags only before the command: everything from the first non-flag on is the command's argv.
    const flags: { detached?: boolean; size?: string; env: Record<string, string>; tty?: boolean; files: { name: string; data: string }[] } = { env: {}, files: [] };
    let i = 0;
    for (; i < args.length; i++) {
      const a = args[i] as string;
      if (a === "--") {
        i++;
        break;
      }
      if (a === "--detached" || a === "-d") flags.detached = true;
      else if (a === "--tty" || a === "-t") flags.tty = true;
      else if (a === "--size" || a === "-s") flags.size = args[++i];
      else if (a === "--file" || a === "-f") {
        const path = args[++i] ?? "";
        flags.files.push({ name: basename(path), data: (await readArgFile(path, `--file ${path}`)).toString("base64") });
      }
      else if (a === "--env" || a === "-e") {
        const kv = args[++i] ?? "";
        const eq = kv.indexOf("=");
        if (eq < 1) throw new QuaiError("cli_usage", `--env takes NAME=value, got ${JSON.stringify(kv)}`);
        flags.env[kv.slice(0, eq)] = kv.slice(eq + 1);
      } else break;
    }
    const command = args.slice(i);
    if (command.length === 0) throw new QuaiError("cli_usage", "usage: quai run [flags] <command> [args...]");
    const api = await ctx.api();
    if (flags.detached) {
      const res = await api.request<{ container: { label: string } }>("POST", `/v1/apps/${encodeURIComponent(app)}/run`, { command, env: flags.env, ...(flags.size ? { size: flags.size } : {}), ...(flags.files.length ? { files: flags.files } : {}), detached: true });
      ctx.out(`Started ${res.container.label}: follow it with quai --app ${app} logs -f --filter ${res.container.label}`);
      return;
    }
    const token = await api.bearerToken();
    const ws = new WebSocket(`${api.url.replace(/^http/, "ws")}/v1/apps/${encodeURIComponent(app)}/run/attach`);
    const tty = flags.tty ?? (process.stdin.isTTY === true && process.stdout.isTTY === true);
    const code = await new Promise<number>((resolve, reject) => {
      let exitCode: number | undefined;
      // The terminal's size follows the user's window during the session.
      const onResize = () => ws.send(JSON.stringify({ type: "resize", cols: process.stdout.columns, rows: process.stdout.rows }));
      ws.on("open", () => ws.send(JSON.stringify({ type: "auth", data: { token } })));
      ws.on("message", (data) => {
        const msg = JSON.parse(String(data)) as { type: string; data?: string; code?: number | null; signal?: string | null; error?: string; message?: string };
        if (msg.type === "ready") {
          ws.send(JSON.stringify({ type: "start", command, env: flags.env, size: flags.size, tty, cols: process.stdout.columns, rows: process.stdout.rows, ...(flags.files.length ? { files: flags.files } : {}) }));
          if (tty && process.stdin.isTTY) process.stdin.setRawMode(true);
          if (tty && process.stdout.isTTY) process.stdout.on("resize", onResize);
          process.stdin.on("data", (b: Buffer) => ws.send(JSON.stringify({ type: "stdin", data: b.toString("base64") })));
          process.stdin.on("end", () => ws.send(JSON.stringify({ type: "eof" })));
        } else if (msg.type === "stdout") process.stdout.write(Buffer.from(msg.data ?? "", "base64"));
        else if (msg.type === "stderr") process.stderr.write(Buffer.from(msg.data ?? "", "base64"));
        else if (msg.type === "exit") exitCode = msg.code ?? (msg.signal ? 137 : 1);
        else if (msg.type === "error") reject(new QuaiError((msg.error as never) ?? "cli_run_failed", msg.message ?? "the run failed"));
      });
      ws.on("close", () => {
        process.stdout.off("resize", onResize);
        if (tty && process.stdin.isTTY) process.stdin.setRawMode(false);
        process.stdin.pause();
        if (exitCode === undefined) reject(new QuaiError("cli_run_failed", "the connection to the one-off container closed before it ended"));
        else resolve(exitCode);
      });
      ws.on("error", (err) => reject(new QuaiError("cli_run_failed", `cannot attach: ${err.message}`)));
    });
    process.exitCode = code;
  },
};

export const formationCommands: Command[] = [ps, scaleCmd, restartCmd, releases, rollback, logs, runCmd];
