// JSON over fetch for the forge clients: one timeout per request, retries with exponential
// backoff on what is likely transient, and QuaiErrors that name the request but never the token.
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { QuaiError } from "../../core/errors.ts";
import { guardedFetch } from "../../core/outbound.ts";

/** How `ForgeHttp` reaches one forge. */
export interface ForgeHttpOptions {
  /** Human name used in error messages ("GitHub", "GitLab"). */
  forge: string;
  /** Every request path is appended to this URL (no trailing slash needed). */
  baseUrl: string;
  /** Sent with every request, credentials included: they are never put in messages. */
  headers: Record<string, string>;
  /** Per-request timeout (default 10 s). For archives it bounds the wait for the headers only. */
  timeoutMs?: number;
  /** Attempts for retryable failures (default 4). */
  attempts?: number;
  /** First backoff delay, doubled after each failed attempt (default 500 ms). */
  backoffMs?: number;
}

/** Options of one request. */
export interface ForgeRequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  /** Sent as JSON. */
  body?: unknown;
}

/** An answer of the forge, its JSON body parsed (undefined when empty, as for 204). */
export interface ForgeResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

/** What `scm_forge_refused` errors carry in `details`. */
export interface RefusedDetails {
  forge: string;
  method: string;
  path: string;
  status: number;
  /** The forge's own `message`, when its error body had one. */
  forgeMessage?: string;
}

/** A path segment, percent-encoded: owner, repository, branch names (with `/`), ids. */
export function seg(value: string | number): string {
  return encodeURIComponent(String(value));
}

/** `text` cut to `max` characters (code points, so no emoji is split), ending with `…` if cut. */
export function clip(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join("")}…`;
}

/** True when `err` is the forge refusing with this HTTP status (e.g. 404 for a deleted comment). */
export function refusedWith(err: unknown, status: number): err is QuaiError {
  return err instanceof QuaiError && err.code === "scm_forge_refused" && err.details?.status === status;
}

/** The URL of `rel="next"` in an RFC 8288 Link header (GitHub and GitLab both paginate this way). */
export function nextLink(header: string | null): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(",")) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /\brel="?next"?/.test(m[2] ?? "")) return m[1];
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Headers that carry credentials: dropped when a redirect leaves the forge's origin. */
const credentialHeaders = new Set(["authorization", "private-token", "cookie"]);

/** Why one attempt failed, and whether another could succeed. */
type Attempt = { ok: true; res: Response } | { ok: false; cause: string; retryAfterMs?: number };

/** The client side of one forge for one token. */
export class ForgeHttp {
  readonly #opts: ForgeHttpOptions;
  readonly #base: URL;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #backoffMs: number;

  constructor(opts: ForgeHttpOptions) {
    this.#opts = opts;
    this.#base = new URL(opts.baseUrl.endsWith("/") ? opts.baseUrl : `${opts.baseUrl}/`);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#attempts = Math.max(1, opts.attempts ?? 4);
    this.#backoffMs = opts.backoffMs ?? 500;
  }

  /** `path` (already encoded, starting with `/`) under the base URL, with `query`. */
  url(path: string, query?: ForgeRequestOptions["query"]): URL {
    const url = new URL(`${this.#base.pathname.replace(/\/$/, "")}${path}`, this.#base);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  /** Sends one JSON request, with retries; answers the parsed body. */
  async request<T>(method: string, path: string, opts: ForgeRequestOptions = {}): Promise<ForgeResponse<T>> {
    return this.#send(method, path, this.url(path, opts.query), opts.body);
  }

  /** Every item of a paginated list: follows `rel="next"` links while they stay on the forge. */
  async all<T>(path: string, query: ForgeRequestOptions["query"], items: (body: unknown) => T[]): Promise<T[]> {
    const out: T[] = [];
    let url: URL | undefined = this.url(path, query);
    // A forge that keeps answering "next" must not keep us here forever.
    for (let page = 0; url && page < 100; page++) {
      const res: ForgeResponse<unknown> = await this.#send("GET", path, url, undefined);
      out.push(...items(res.body));
      const next = nextLink(res.headers.get("link"));
      // The token goes with the request: never to another origin than the forge's.
      url = next && new URL(next, url).origin === this.#base.origin ? new URL(next, url) : undefined;
    }
    return out;
  }

  /** Streams a download (an archive); retries like `request` until the headers arrive. */
  async stream(path: string, opts: { query?: ForgeRequestOptions["query"]; signal?: AbortSignal } = {}): Promise<Readable> {
    const res = await this.#retry("GET", path, async () => {
      // The timeout bounds the wait for headers only: a large archive may take longer to arrive.
      const timer = new AbortController();
      const t = setTimeout(() => timer.abort(new DOMException(`timed out after ${this.#timeoutMs} ms`, "TimeoutError")), this.#timeoutMs);
      try {
        return await this.#fetch("GET", this.url(path, opts.query), undefined, opts.signal ? AbortSignal.any([timer.signal, opts.signal]) : timer.signal);
      } finally {
        clearTimeout(t);
      }
    }, opts.signal);
    if (!res.body) return Readable.from([]);
    return Readable.fromWeb(res.body as unknown as NodeReadableStream<Uint8Array>);
  }

  /**
   * One attempt, redirects followed by hand (at most 5): credentials go to the forge's origin
   * only, never to the host a redirect names (GitHub sends archives from another host, whose URL
   * carries its own short-lived token). 303, and 301/302 after a POST, continue as a GET.
   */
  async #fetch(method: string, first: URL, body: string | undefined, signal: AbortSignal): Promise<Response | Attempt> {
    let url = first;
    let headers: Record<string, string> = { ...this.#opts.headers };
    if (body !== undefined) headers["content-type"] = "application/json";
    for (let hop = 0; hop <= 5; hop++) {
      // The forge's url is a user's: never a cloud metadata address, nor a redirect to one (ADR 0033).
      const res = await guardedFetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal }, { what: "the forge's url", invalid: "scm_integration_invalid" });
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || !location) return res;
      await res.body?.cancel();
      const next = new URL(location, url);
      if (next.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !credentialHeaders.has(k.toLowerCase())));
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method !== "GET" && method !== "HEAD")) {
        method = "GET";
        body = undefined;
        delete headers["content-type"];
      }
      url = next;
    }
    return { ok: false, cause: "too many redirects" };
  }

  async #send<T>(method: string, path: string, url: URL, body: unknown): Promise<ForgeResponse<T>> {
    let parsed: unknown;
    const res = await this.#retry(method, path, async () => {
      const r = await this.#fetch(method, url, body === undefined ? undefined : JSON.stringify(body), AbortSignal.timeout(this.#timeoutMs));
      if (!(r instanceof Response) || !r.ok) return r;
      // The body is read under the same timeout, so a forge that stalls mid-answer is retried too.
      const text = await r.text();
      try {
        parsed = text === "" ? undefined : JSON.parse(text);
      } catch {
        return { ok: false, cause: `answered ${r.status} with a body that is not JSON` };
      }
      return r;
    });
    return { status: res.status, headers: res.headers, body: parsed as T };
  }

  /**
   * Runs `attempt` until it answers a success, a refusal (thrown at once) or `attempts` retryable
   * failures (network errors, timeouts, 429, 5xx). `attempt` answers a Response, or an Attempt
   * when it failed in a way of its own.
   */
  async #retry(method: string, path: string, attempt: () => Promise<Response | Attempt>, callerSignal?: AbortSignal): Promise<Response> {
    let lastCause = "no attempt made";
    let waitAtLeast = 0;
    for (let i = 0; i < this.#attempts; i++) {
      if (i > 0) await sleep(Math.max(this.#backoffMs * 2 ** (i - 1), waitAtLeast));
      let outcome: Attempt;
      try {
        const r = await attempt();
        outcome = r instanceof Response ? await this.#judge(method, path, r) : r;
      } catch (err) {
        if (err instanceof QuaiError) throw err;
        // The caller gave up: that is not the forge's fault and not worth another attempt.
        if (callerSignal?.aborted) throw err;
        outcome = { ok: false, cause: describe(err, this.#timeoutMs) };
      }
      if (outcome.ok) return outcome.res;
      lastCause = outcome.cause;
      waitAtLeast = outcome.retryAfterMs ?? 0;
    }
    throw new QuaiError(
      "scm_forge_unreachable",
      `${this.#opts.forge} at ${this.#base.host} did not answer ${method} ${path} after ${this.#attempts} attempt${this.#attempts === 1 ? "" : "s"}: ${lastCause}`,
      { forge: this.#opts.forge, host: this.#base.host, method, path, attempts: this.#attempts, cause: lastCause },
    );
  }

  /** Success, retryable failure, or a refusal thrown at once. */
  async #judge(method: string, path: string, res: Response): Promise<Attempt> {
    if (res.ok) return { ok: true, res };
    const text = await res.text().catch(() => "");
    const retryAfterMs = retryAfter(res.headers.get("retry-after"));
    // GitHub answers an exhausted rate limit with 403 (or 429) and says when to come back: that
    // is a wait, not a refusal of the token.
    const rateLimited = res.status === 403 && (res.headers.get("x-ratelimit-remaining") === "0" || retryAfterMs !== undefined);
    if (res.status === 429 || res.status >= 500 || res.status === 408 || rateLimited) {
      return { ok: false, cause: `${res.status} ${res.statusText}`.trim(), retryAfterMs };
    }
    const forgeMessage = errorMessage(text);
    const details: RefusedDetails = { forge: this.#opts.forge, method, path, status: res.status };
    if (forgeMessage) details.forgeMessage = forgeMessage;
    throw new QuaiError(
      "scm_forge_refused",
      `${this.#opts.forge} refused ${method} ${path}: ${res.status} ${res.statusText}${forgeMessage ? ` (${forgeMessage})` : ""}`.trim(),
      { ...details },
    );
  }
}

/** A Retry-After header (seconds) in ms, capped: a long wait belongs to a later job, not this call. */
function retryAfter(header: string | null): number | undefined {
  if (!header) return undefined;
  const s = Number(header);
  return Number.isFinite(s) && s >= 0 ? Math.min(s * 1000, 30_000) : undefined;
}

/** The `message` (GitHub, GitLab) or `error` (GitLab) of an error body, kept short. */
function errorMessage(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown };
    const m = body.message ?? body.error;
    if (m === undefined || m === null) return undefined;
    return clip(typeof m === "string" ? m : JSON.stringify(m), 300);
  } catch {
    return undefined;
  }
}

/** A network error or timeout as a short cause. */
function describe(err: unknown, timeoutMs: number): string {
  if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) return `timed out after ${timeoutMs} ms`;
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (cause && typeof cause.code === "string") return cause.code;
    if (cause && typeof cause.message === "string") return cause.message;
    return err.message;
  }
  return String(err);
}
