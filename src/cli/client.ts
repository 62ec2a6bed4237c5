// The CLI's API client: finds the server and the token (QUAI_URL/QUAI_TOKEN or the credentials
// file), exchanges the API token for a bearer token, and turns API errors into QuaiErrors.
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { isErrorCode, QuaiError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/files.ts";

/** What `quai login` stores (mode 0600). */
export interface Credentials {
  url: string;
  token: string;
  bearer?: string;
  bearer_expires_at?: string;
}

/** Path of the credentials file. */
export function credentialsFile(env: NodeJS.ProcessEnv): string {
  const dir = env.QUAI_CONFIG_DIR || join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "quai");
  return join(dir, "credentials.json");
}

export async function readCredentials(env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const file = credentialsFile(env);
  if (!existsSync(file)) return undefined;
  return JSON.parse(await readFile(file, "utf8")) as Credentials;
}

export async function saveCredentials(env: NodeJS.ProcessEnv, creds: Credentials): Promise<void> {
  await writeFileAtomic(credentialsFile(env), JSON.stringify(creds, null, 2) + "\n");
}

export async function deleteCredentials(env: NodeJS.ProcessEnv): Promise<boolean> {
  const file = credentialsFile(env);
  const had = existsSync(file);
  await rm(file, { force: true });
  return had;
}

/** Talks to one Quai API as one user. */
export class ApiClient {
  readonly url: string;
  private readonly token: string;
  private bearer: string | undefined;
  private readonly persist: ((c: Credentials) => Promise<void>) | undefined;

  constructor(url: string, token: string, opts: { bearer?: string | undefined; persist?: (c: Credentials) => Promise<void> } = {}) {
    this.url = url.replace(/\/+$/, "");
    this.token = token;
    this.bearer = opts.bearer;
    this.persist = opts.persist;
  }

  /** The client for the current environment: QUAI_URL/QUAI_TOKEN win over the credentials file. */
  static async fromEnv(env: NodeJS.ProcessEnv): Promise<ApiClient> {
    const creds = await readCredentials(env);
    const url = env.QUAI_URL || creds?.url;
    const token = env.QUAI_TOKEN || creds?.token;
    if (!url || !token) throw new QuaiError("cli_not_logged_in", "not logged in: run `quai login --url <api url>` or set QUAI_URL and QUAI_TOKEN");
    const fromFile = creds !== undefined && !env.QUAI_TOKEN && (!env.QUAI_URL || env.QUAI_URL === creds.url);
    const fresh = creds?.bearer && creds.bearer_expires_at && Date.parse(creds.bearer_expires_at) > Date.now() + 30_000;
    return new ApiClient(url, token, fromFile ? { bearer: fresh ? creds.bearer : undefined, persist: (c) => saveCredentials(env, c) } : {});
  }

  /** Exchanges the API token for a bearer token. */
  async exchange(): Promise<string> {
    const res = await this.fetch("POST", "/v1/tokens/exchange", {}, `Basic ${Buffer.from(":" + this.token).toString("base64")}`);
    const body = (await res.json()) as { token: string; expires_at: string };
    this.bearer = body.token;
    await this.persist?.({ url: this.url, token: this.token, bearer: body.token, bearer_expires_at: body.expires_at });
    return body.token;
  }

  /** Calls the API; re-exchanges once if the bearer token expired. Returns the parsed body. */
  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    if (!this.bearer) await this.exchange();
    let res: Response;
    try {
      res = await this.fetch(method, path, body, `Bearer ${this.bearer}`);
    } catch (err) {
      if (err instanceof QuaiError && (err.code === "token_expired" || err.code === "token_invalid")) {
        await this.exchange();
        res = await this.fetch(method, path, body, `Bearer ${this.bearer}`);
      } else throw err;
    }
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  /** The current bearer token (exchanging the API token if needed), for WebSocket auth. */
  async bearerToken(): Promise<string> {
    return this.bearer ?? (await this.exchange());
  }

  /** Calls the API with a raw body (an upload) or for a streamed answer; errors as in `request`. */
  async stream(method: string, path: string, body?: { data: Buffer; contentType: string }, headers: Record<string, string> = {}): Promise<Response> {
    if (!this.bearer) await this.exchange();
    return this.fetch(method, path, body ? { raw: body.data, contentType: body.contentType } : undefined, `Bearer ${this.bearer}`, headers);
  }

  private async fetch(method: string, path: string, body: unknown, authorization: string, extra: Record<string, string> = {}): Promise<Response> {
    let res: Response;
    const raw = body && typeof body === "object" && "raw" in body ? (body as { raw: Buffer; contentType: string }) : undefined;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: { ...extra, authorization, ...(raw ? { "content-type": raw.contentType } : body !== undefined ? { "content-type": "application/json" } : {}) },
        body: raw ? new Uint8Array(raw.raw) : body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new QuaiError("cli_server_unreachable", `cannot reach the Quai API at ${this.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    if (res.ok) return res;
    const text = await res.text();
    let parsed: { error?: unknown; message?: unknown; details?: Record<string, unknown> } = {};
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      // not JSON: reported below with the status
    }
    if (isErrorCode(parsed.error)) throw new QuaiError(parsed.error, String(parsed.message ?? parsed.error), parsed.details);
    throw new QuaiError(res.status >= 500 ? "internal_error" : "route_not_found", `the API answered ${res.status}: ${text.slice(0, 200)}`);
  }
}
