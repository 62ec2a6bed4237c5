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
  /** Root of what sandboxes see (slugs, containers, caches); every parent must be traversable. */
  runtimeDir: string;
  /** Router HTTP port; 0 picks a free one on first start and keeps it. */
  routerPort: number;
  /** HTTPS port of the router (0: a free one, remembered). */
  routerHttpsPort: number;
  /** Automatic certificates (QUAI_ACME=on): the directory, a contact, a CA file for the ACME server's HTTPS. */
  acme: { directoryUrl: string; email: string | undefined; caFile: string | undefined; retrySeconds: number; checkSeconds: number; publicIps: string[]; dnsServers: string[] } | undefined;
  /** Address the router listens on. */
  routerHost: string;
  /** nginx workers of the router (QUAI_ROUTER_WORKERS; unset: one per CPU). */
  routerWorkers: number | undefined;
  /** Build time limit in seconds (default 900). */
  buildTimeoutSeconds: number;
  /** Grace between SIGTERM and SIGKILL when containers retire, in seconds (default 30). */
  stopGraceSeconds: number;
  /** How long a new web container may take to listen on $PORT, in seconds (default 60). */
  startTimeoutSeconds: number;
  /** Largest source archive, in bytes (default 512 MiB). */
  sourceLimitBytes: number;
  /** Largest slug (compressed), in bytes (default 1.5 GiB, as Scalingo's image limit). */
  slugLimitBytes: number;
  /** Log stream size kept per app, in bytes (default 20 MiB). */
  logBytesPerApp: number;
  /** Whether to run the pipeline, runtime and router (off for API-only servers). */
  runtime: boolean;
  /** Whether to run add-ons (QUAI_ADDONS=off turns them off). */
  addons: boolean;
  /** Host directories apps may take buildpacks from (QUAI_BUILDPACK_DIRS, colon-separated). */
  buildpackDirs: string[];
  /** Size bound of the npm package store shared by builds, in MiB (QUAI_SHARED_NPM_MB, default 2048; 0 turns it off). */
  sharedNpmMb: number;
  /** Address of the git front over SSH; port 0 picks a free one. */
  sshListen: { host: string; port: number };
  /** GitHub/GitLab integration: how often waiting deploys and review apps are looked at, forge request settings, the review-app size cap. */
  scm: { tickSeconds: number; forgeTimeoutMs: number; forgeAttempts: number; forgeBackoffMs: number; reviewAppMaxSize: string; retrySeconds: number; publicApiUrl: string | undefined };
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

function boundedInt(name: string, raw: string, max: number): number {
  const n = positiveInt(name, raw, 0);
  if (n > max) throw new QuaiError("config_invalid", `${name} must be at most ${max}, got "${raw}"`);
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
    runtimeDir: resolve(env.QUAI_RUNTIME_DIR || join(home, "runtime")),
    routerPort: env.QUAI_ROUTER_PORT ? positiveInt("QUAI_ROUTER_PORT", env.QUAI_ROUTER_PORT, 0) : 0,
    routerHttpsPort: env.QUAI_ROUTER_HTTPS_PORT ? positiveInt("QUAI_ROUTER_HTTPS_PORT", env.QUAI_ROUTER_HTTPS_PORT, 0) : 0,
    acme:
      env.QUAI_ACME === "on"
        ? {
            directoryUrl: env.QUAI_ACME_DIRECTORY || "https://acme-v02.api.letsencrypt.org/directory",
            email: env.QUAI_ACME_EMAIL || undefined,
            caFile: env.QUAI_ACME_CA_FILE || undefined,
            retrySeconds: env.QUAI_ACME_RETRY_SECONDS ? positiveInt("QUAI_ACME_RETRY_SECONDS", env.QUAI_ACME_RETRY_SECONDS, 1) : 60,
            checkSeconds: env.QUAI_ACME_CHECK_SECONDS ? positiveInt("QUAI_ACME_CHECK_SECONDS", env.QUAI_ACME_CHECK_SECONDS, 1) : 60,
            publicIps: (env.QUAI_PUBLIC_IPS ?? "").split(",").map((v) => v.trim()).filter((v) => v !== ""),
            dnsServers: (env.QUAI_ACME_DNS_SERVERS ?? "").split(",").map((v) => v.trim()).filter((v) => v !== ""),
          }
        : undefined,
    routerHost: env.QUAI_ROUTER_HOST || "127.0.0.1",
    routerWorkers: env.QUAI_ROUTER_WORKERS ? boundedInt("QUAI_ROUTER_WORKERS", env.QUAI_ROUTER_WORKERS, 64) : undefined,
    buildTimeoutSeconds: positiveInt("QUAI_BUILD_TIMEOUT", env.QUAI_BUILD_TIMEOUT, 900),
    stopGraceSeconds: positiveInt("QUAI_STOP_GRACE", env.QUAI_STOP_GRACE, 30),
    startTimeoutSeconds: positiveInt("QUAI_START_TIMEOUT", env.QUAI_START_TIMEOUT, 60),
    sourceLimitBytes: positiveInt("QUAI_SOURCE_LIMIT", env.QUAI_SOURCE_LIMIT, 512 * 1024 * 1024),
    slugLimitBytes: positiveInt("QUAI_SLUG_LIMIT", env.QUAI_SLUG_LIMIT, 1536 * 1024 * 1024),
    logBytesPerApp: positiveInt("QUAI_LOG_BYTES_PER_APP", env.QUAI_LOG_BYTES_PER_APP, 20 * 1024 * 1024),
    runtime: env.QUAI_RUNTIME !== "off",
    addons: env.QUAI_ADDONS !== "off",
    buildpackDirs: (env.QUAI_BUILDPACK_DIRS ?? "").split(":").filter((d) => d !== "").map((d) => resolve(d)),
    sharedNpmMb: env.QUAI_SHARED_NPM_MB === "0" ? 0 : positiveInt("QUAI_SHARED_NPM_MB", env.QUAI_SHARED_NPM_MB, 2048),
    sshListen: env.QUAI_SSH_LISTEN ? parseListen(env.QUAI_SSH_LISTEN) : { host: "127.0.0.1", port: 0 },
    scm: {
      tickSeconds: positiveInt("QUAI_SCM_TICK_SECONDS", env.QUAI_SCM_TICK_SECONDS, 15),
      forgeTimeoutMs: positiveInt("QUAI_SCM_TIMEOUT_MS", env.QUAI_SCM_TIMEOUT_MS, 10_000),
      forgeAttempts: positiveInt("QUAI_SCM_ATTEMPTS", env.QUAI_SCM_ATTEMPTS, 4),
      forgeBackoffMs: positiveInt("QUAI_SCM_BACKOFF_MS", env.QUAI_SCM_BACKOFF_MS, 500),
      reviewAppMaxSize: reviewAppSize(env.QUAI_REVIEW_APP_MAX_SIZE),
      retrySeconds: positiveInt("QUAI_REVIEW_APP_RETRY_SECONDS", env.QUAI_REVIEW_APP_RETRY_SECONDS, 30),
      publicApiUrl: publicUrl(env.QUAI_PUBLIC_API_URL),
    },
  };
}

/** The API's address as forges reach it (webhooks, links in statuses), without a trailing slash. */
function publicUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new QuaiError("config_invalid", `QUAI_PUBLIC_API_URL ${JSON.stringify(raw)} is not a URL`);
  }
  if ((u.protocol !== "https:" && u.protocol !== "http:") || u.search || u.hash || u.username) throw new QuaiError("config_invalid", "QUAI_PUBLIC_API_URL must be an http(s) URL without query, fragment or credentials");
  return u.toString().replace(/\/+$/, "");
}

function reviewAppSize(raw: string | undefined): string {
  const size = (raw ?? "M").toUpperCase();
  if (!["S", "M", "L", "XL", "2XL"].includes(size)) throw new QuaiError("config_invalid", `QUAI_REVIEW_APP_MAX_SIZE must be one of S, M, L, XL, 2XL, got ${JSON.stringify(raw)}`);
  return size;
}

/** Where a running server records how to reach its store, for `quai admin` commands. */
export function storeInfoFile(home: string): string {
  return join(home, "run", "store.json");
}
