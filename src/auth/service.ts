// Users, API tokens and bearer sessions. Tokens are random, shown once, stored as SHA-256 hashes;
// `/v1/tokens/exchange` trades an API token for a short-lived bearer token (Scalingo's flow).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { sql } from "kysely";
import { QuaiError } from "../core/errors.ts";
import type { Db } from "../store/db.ts";
import { recordEvent } from "../events/service.ts";

/** The user behind a request. */
export interface Actor {
  id: string;
  email: string;
  username: string;
  role: "owner" | "member";
}

const API_PREFIX = "qt_";
const BEARER_PREFIX = "qb_";
const EMAIL = /^[^\s@<>()"',;:\\]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$|^[^\s@<>()"',;:\\]+@localhost$/;

function newSecret(prefix: string): string {
  return prefix + randomBytes(32).toString("base64url");
}

/** SHA-256 of a token: tokens carry 256 bits of entropy, so a fast hash is the right one. */
export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** Compares two secrets in constant time. */
export function sameSecret(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

function usernameFor(email: string): string {
  return email.split("@")[0]!.toLowerCase().replace(/[^a-z0-9_-]/g, "-").slice(0, 40) || "user";
}

/** Finds the user with `email`, or creates it with `role`. */
export async function ensureUser(db: Db, email: string, role: "owner" | "member"): Promise<{ user: Actor; created: boolean }> {
  const normalized = email.trim().toLowerCase();
  if (normalized.length > 254 || !EMAIL.test(normalized)) {
    throw new QuaiError("user_email_invalid", `"${email}" is not a valid email address`);
  }
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom("users").select(["id", "email", "username", "role"]).where("email", "=", normalized).executeTakeFirst();
    if (existing) return { user: existing, created: false };
    let username = usernameFor(normalized);
    const clash = await trx.selectFrom("users").select("id").where("username", "=", username).executeTakeFirst();
    if (clash) username = `${username}-${randomBytes(3).toString("hex")}`;
    const user = await trx
      .insertInto("users")
      .values({ email: normalized, username, role })
      .returning(["id", "email", "username", "role"])
      .executeTakeFirstOrThrow();
    await recordEvent(trx, { actor: user, type: "new_user", data: { email: normalized, role } });
    return { user, created: true };
  });
}

/** Creates an API token for `userId`; the returned token is the only copy. */
export async function createApiToken(db: Db, user: Actor, name: string): Promise<{ id: string; token: string }> {
  const token = newSecret(API_PREFIX);
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .insertInto("api_tokens")
      .values({ user_id: user.id, name, token_hash: hashToken(token) })
      .returning("id")
      .executeTakeFirstOrThrow();
    await recordEvent(trx, { actor: user, type: "new_token", data: { token_name: name } });
    return { id: row.id, token };
  });
}

/** Trades an API token for a bearer token valid `ttlSeconds`. */
export async function exchangeToken(db: Db, apiToken: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
  if (!apiToken.startsWith(API_PREFIX)) throw new QuaiError("token_invalid", "the API token is malformed (Quai API tokens start with qt_)");
  const row = await db
    .selectFrom("api_tokens")
    .select(["id", "user_id"])
    .where("token_hash", "=", hashToken(apiToken))
    .executeTakeFirst();
  if (!row) throw new QuaiError("token_invalid", "the API token is not valid: it was revoked or never existed");
  const token = newSecret(BEARER_PREFIX);
  const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
  await db.insertInto("sessions").values({ user_id: row.user_id, api_token_id: row.id, token_hash: hashToken(token), expires_at: expiresAt }).execute();
  await db.updateTable("api_tokens").set({ last_used_at: sql`now()` }).where("id", "=", row.id).execute();
  return { token, expiresAt };
}

/** The session behind a bearer token; 401 when it is malformed or unknown. */
async function lookupSession(db: Db, bearer: string): Promise<{ actor: Actor; expiresAt: Date }> {
  if (!bearer.startsWith(BEARER_PREFIX)) {
    const hint = bearer.startsWith(API_PREFIX) ? ": this is an API token, exchange it at POST /v1/tokens/exchange first" : "";
    throw new QuaiError("token_invalid", `the bearer token is not valid${hint}`);
  }
  const row = await db
    .selectFrom("sessions")
    .innerJoin("users", "users.id", "sessions.user_id")
    .select(["users.id", "users.email", "users.username", "users.role", "sessions.expires_at"])
    .where("sessions.token_hash", "=", hashToken(bearer))
    .executeTakeFirst();
  if (!row) throw new QuaiError("token_invalid", "the bearer token is not valid");
  return { actor: { id: row.id, email: row.email, username: row.username, role: row.role }, expiresAt: row.expires_at };
}

const expired = () => new QuaiError("token_expired", "the bearer token has expired: exchange the API token again (POST /v1/tokens/exchange)");

/**
 * Authenticates bearer tokens, remembering recent answers for `ttlMs` so that a busy client costs
 * one query per few seconds instead of one per request. Expiry is still checked on every use; a
 * session deleted in the database stays usable at most `ttlMs` more (see ADR 0004).
 */
export class Authenticator {
  private readonly db: Db;
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly cache = new Map<string, { actor: Actor; expiresAt: number; cachedAt: number }>();

  constructor(db: Db, opts: { ttlMs?: number; max?: number } = {}) {
    this.db = db;
    this.ttlMs = opts.ttlMs ?? 5000;
    this.max = opts.max ?? 10_000;
  }

  async authenticate(bearer: string): Promise<Actor> {
    const key = hashToken(bearer).toString("base64");
    const hit = this.cache.get(key);
    const now = Date.now();
    if (hit && now - hit.cachedAt < this.ttlMs) {
      if (hit.expiresAt <= now) throw expired();
      return hit.actor;
    }
    const { actor, expiresAt } = await lookupSession(this.db, bearer);
    this.cache.delete(key);
    this.cache.set(key, { actor, expiresAt: expiresAt.getTime(), cachedAt: now });
    if (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value as string);
    if (expiresAt.getTime() <= now) throw expired();
    return actor;
  }
}

/** Creates the first owner if the platform has no user yet; returns its token only then. */
export async function bootstrapOwner(db: Db, email: string): Promise<{ email: string; token: string } | undefined> {
  const any = await db.selectFrom("users").select("id").limit(1).executeTakeFirst();
  if (any) return undefined;
  const { user, created } = await ensureUser(db, email, "owner");
  if (!created) return undefined;
  const { token } = await createApiToken(db, user, "bootstrap");
  return { email: user.email, token };
}

/** Scalingo's user JSON, with the fields Quai has and honest defaults for the rest. */
export function userJson(user: Actor & { created_at?: Date }): Record<string, unknown> {
  return {
    id: user.id,
    uuid: user.id,
    email: user.email,
    username: user.username,
    fullname: user.username,
    role: user.role,
    company: null,
    location: null,
    confirmed: true,
    unconfirmed_email: null,
    created_at: user.created_at?.toISOString() ?? null,
    flags: {},
    limits: {},
    suspended_at: null,
    suspension_reason: null,
  };
}

/** The user owning an API token (for HTTP Basic on the git front); 401 when unknown. */
export async function actorForApiToken(db: Db, apiToken: string): Promise<Actor> {
  if (!apiToken.startsWith(API_PREFIX)) throw new QuaiError("token_invalid", "git over HTTP takes an API token (qt_...) as the password");
  const row = await db
    .selectFrom("api_tokens")
    .innerJoin("users", "users.id", "api_tokens.user_id")
    .select(["users.id", "users.email", "users.username", "users.role"])
    .where("api_tokens.token_hash", "=", hashToken(apiToken))
    .executeTakeFirst();
  if (!row) throw new QuaiError("token_invalid", "the API token is not valid: it was revoked or never existed");
  return row;
}
