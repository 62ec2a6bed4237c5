// Settings of a Quai installation, read once from the environment and flags.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { QuaiError } from "./errors.ts";

/** Settings of `quai server`. */
export interface ServerConfig {
  /** Directory holding all state of this installation. */
  home: string;
  /** API listen address; port 0 means a free port chosen at start. */
  listen: { host: string; port: number };
  /** External PostgreSQL; when absent Quai runs its own cluster under `home`. */
  databaseUrl: string | undefined;
  /** Domain under which apps get `<app>.<domain>`. */
  domain: string;
  /** Lifetime of bearer tokens from `/v1/tokens/exchange`, in seconds. */
  bearerTtlSeconds: number;
  /** Largest request body accepted, in bytes. */
  bodyLimitBytes: number;
  /** File holding the master keys that encrypt variables. */
  keyFile: string;
}

/** Parses `host:port` (IPv4 or bracketed IPv6). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new QuaiError("config_invalid", `listen address "${value}" is not HOST:PORT (for example 127.0.0.1:8080)`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new QuaiError("config_invalid", `${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** Reads the server settings from `env`, with `flags` (from the command line) taking precedence. */
export function loadServerConfig(env: NodeJS.ProcessEnv, flags: { listen?: string } = {}): ServerConfig {
  const home = resolve(env.QUAI_HOME || join(homedir(), ".quai"));
  const listenRaw = flags.listen ?? env.QUAI_LISTEN;
  return {
    home,
    listen: listenRaw ? parseListen(listenRaw) : { host: "127.0.0.1", port: 0 },
    databaseUrl: env.QUAI_DATABASE_URL || undefined,
    domain: env.QUAI_DOMAIN || "localhost",
    bearerTtlSeconds: positiveInt("QUAI_BEARER_TTL", env.QUAI_BEARER_TTL, 3600),
    bodyLimitBytes: positiveInt("QUAI_BODY_LIMIT", env.QUAI_BODY_LIMIT, 4 * 1024 * 1024),
    keyFile: resolve(env.QUAI_MASTER_KEY_FILE || join(home, "keys", "master.json")),
  };
}

/** Where a running server records how to reach its store, for `quai admin` commands. */
export function storeInfoFile(home: string): string {
  return join(home, "run", "store.json");
}
