// `quai`: the command line. Parses global flags, dispatches to the capabilities' commands, and
// exits with the catalogue's exit code for any error.
import { createInterface } from "node:readline/promises";
import { catalogue, QuaiError } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";
import type { CliContext, Command } from "./command.ts";
import { ApiClient } from "./client.ts";
import { authCommands } from "../auth/cli.ts";
import { appCommands } from "../apps/cli.ts";
import { variableCommands } from "../variables/cli.ts";
import { eventCommands } from "../events/cli.ts";
import { serverCommands } from "../server/cli.ts";
import { deploymentCommands } from "../deployments/cli.ts";
import { formationCommands } from "../formation/cli.ts";
import { keyCommands } from "../keys/cli.ts";
import { addonCommands } from "../addons/cli.ts";
import { maintenanceCommands } from "../maintenance/cli.ts";
import { domainCommands } from "../domains/cli.ts";
import { scmCommands } from "../scm/cli.ts";

const all = [...authCommands, ...appCommands, ...variableCommands, ...eventCommands, ...deploymentCommands, ...formationCommands, ...addonCommands, ...domainCommands, ...maintenanceCommands, ...scmCommands, ...keyCommands, ...serverCommands];
const isAdmin = (c: Command) => c.name.startsWith("admin ");

/** Every command, in the order `quai help` shows them: the host-side `admin` ones last. */
export const commands: Command[] = [...all.filter((c) => !isAdmin(c)), ...all.filter(isAdmin)];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = [
    `quai ${VERSION}: a self-hostable Platform-as-a-Service`,
    "",
    "Usage: quai [--app NAME] [--json] <command> [args]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}\n  ${"".padEnd(width)}  e.g. ${c.example}`),
    "",
    "Environment: QUAI_URL and QUAI_TOKEN override the stored login; QUAI_HOME holds a server's state.",
    "`quai <command> --help` or `quai help <command>` shows a command's usage.",
  ];
  return lines.join("\n");
}

async function prompt(question: string, opts: { secret?: boolean } = {}): Promise<string | undefined> {
  if (!process.stdin.isTTY) return undefined;
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  if (opts.secret) {
    // Echo nothing while the secret is typed.
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
      if (s.includes(question)) process.stderr.write(question);
    };
  }
  try {
    return await rl.question(question);
  } finally {
    if (opts.secret) process.stderr.write("\n");
    rl.close();
  }
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let app: string | undefined = env.QUAI_APP || undefined;
  // `run` hands everything after it to the one-off command, so global flags end there.
  const runAt = argv.indexOf("run");
  const json = argv.slice(0, runAt >= 0 ? runAt : argv.length).includes("--json");
  let wantHelp = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === "run" && rest.length === 0) {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === "--app" || a === "-a") {
      app = argv[++i];
      if (!app) return fail(new QuaiError("cli_usage", `${a} needs an app name`), json);
    } else if (a.startsWith("--app=")) app = a.slice(6);
    else if (a === "--json") continue;
    else if (a === "--help" || a === "-h") wantHelp = true;
    else if (a === "--version" || a === "-v") {
      process.stdout.write(`quai ${VERSION}\n`);
      return 0;
    } else rest.push(a);
  }
  if (rest[0] === "help" && rest.length > 1) {
    // `quai help maintenance`: that command, or the commands of that group, as `--help` shows them.
    const asked = rest.slice(1).join(" ");
    const matching = commands.filter((c) => c.name === asked || c.name.startsWith(`${asked} `));
    if (matching.length === 0) return fail(new QuaiError("cli_usage", `unknown command "${asked}": see \`quai help\``), json);
    process.stdout.write(matching.map(usageOf).join("\n"));
    return 0;
  }
  if (rest.length === 0 || rest[0] === "help") {
    process.stdout.write(help() + "\n");
    return rest.length === 0 && !wantHelp ? catalogue.cli_usage.exit : 0;
  }
  const two = `${rest[0]} ${rest[1] ?? ""}`;
  const command = commands.find((c) => c.name === two) ?? commands.find((c) => c.name === rest[0]);
  if (!command) return fail(new QuaiError("cli_usage", `unknown command "${rest[0]}${rest[0] === "admin" && rest[1] ? " " + rest[1] : ""}": see \`quai help\``), json);
  const args = rest.slice(command.name.split(" ").length);
  if (wantHelp) {
    process.stdout.write(usageOf(command));
    return 0;
  }
  if (command.usage === "" && args.length > 0) {
    return fail(new QuaiError("cli_usage", `quai ${command.name} takes no arguments, got "${args.join(" ")}"`), json);
  }
  let client: ApiClient | undefined;
  const ctx: CliContext = {
    app,
    json,
    env,
    out: (t) => process.stdout.write(t + "\n"),
    err: (t) => process.stderr.write(t + "\n"),
    api: async () => (client ??= await ApiClient.fromEnv(env)),
    prompt,
  };
  try {
    await command.run(ctx, args);
    // A command may set the exit code it passes on (`run` returns the one-off's).
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    return fail(err, json);
  }
}

function usageOf(command: Command): string {
  return `Usage: ${`quai ${command.name} ${command.usage}`.trimEnd()}\n${command.summary}\nExample: ${command.example}\n`;
}

function fail(err: unknown, json = false): number {
  if (err instanceof QuaiError) {
    if (json) process.stderr.write(JSON.stringify({ error: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) }) + "\n");
    else process.stderr.write(`error: ${err.message} [${err.code}]\n`);
    return err.exitCode;
  }
  const message = (err as Error).message ?? String(err);
  if (json) process.stderr.write(JSON.stringify({ error: "internal_error", message }) + "\n");
  else process.stderr.write(`error: ${(err as Error).stack ?? String(err)} [internal_error]\n`);
  return catalogue.internal_error.exit;
}

if (import.meta.main) {
  // `server` and `demo` resolve only once stopped; idle keep-alive sockets must not hold the exit.
  process.exit(await main(process.argv.slice(2)));
}
