// The shape of a CLI command and the context it runs in.
import { readFile } from "node:fs/promises";
import { QuaiError } from "../core/errors.ts";
import type { ApiClient } from "./client.ts";

/** What every command receives. */
export interface CliContext {
  /** `--app`/`-a`, when given. */
  app: string | undefined;
  /** `--json`: machine-readable output. */
  json: boolean;
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  err: (text: string) => void;
  /** The API client (logs in lazily from QUAI_URL/QUAI_TOKEN or the credentials file). */
  api: () => Promise<ApiClient>;
  /** Reads a line from the terminal (undefined without one). */
  prompt: (question: string, opts?: { secret?: boolean }) => Promise<string | undefined>;
}

/** A CLI command. */
export interface Command {
  name: string;
  summary: string;
  /** Arguments after the name, e.g. `<name>` or `K=V [K=V ...]`. */
  usage: string;
  /** One line a user can copy. */
  example: string;
  run(ctx: CliContext, args: string[]): Promise<void>;
}

/** Reads a file a command line names; an unreadable one is a usage error saying `label` and why. */
export async function readArgFile(path: string, label = `cannot read ${path}`): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory, not a file" : (code ?? String(err));
    throw new QuaiError("cli_usage", `${label}: ${why}`);
  }
}

/** The app of the command (`--app`), or a usage error. */
export function requireApp(ctx: CliContext): string {
  if (!ctx.app) throw new QuaiError("cli_usage", "this command needs an app: pass --app <name> (or -a <name>)");
  return ctx.app;
}

/**
 * Splits `args` into flags (`--name value`, `--flag`) and positionals; `booleans` take no value.
 * Past `maxPositionals`, an argument is refused rather than ignored (`events -n 5` must not list
 * every event as if it had worked).
 */
export function parseFlags(args: string[], booleans: readonly string[] = [], valued: readonly string[] = [], maxPositionals = Infinity): { flags: Record<string, string | true>; positionals: string[] } {
  const flags: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (booleans.includes(name)) flags[name] = true;
      else if (valued.includes(name)) {
        const value = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (value === undefined) throw new QuaiError("cli_usage", `--${name} needs a value`);
        flags[name] = value;
      } else throw new QuaiError("cli_usage", `unknown flag --${name}`);
    } else positionals.push(a);
  }
  if (positionals.length > maxPositionals) {
    const extra = positionals[maxPositionals] as string;
    throw new QuaiError("cli_usage", `unexpected argument ${JSON.stringify(extra)}${extra.startsWith("-") ? ": flags start with two dashes" : ""} (the command's --help shows what it takes)`);
  }
  return { flags, positionals };
}
