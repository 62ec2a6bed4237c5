// Test helper: the API in-process on a fresh database, with an owner and helpers to call it.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildApi } from "../server/api.ts";
import { Keyring } from "../variables/keyring.ts";
import { createApiToken, ensureUser, exchangeToken } from "../auth/service.ts";
import { testDb, type TestDb } from "./db.ts";

/** An in-process API with an owner already logged in. */
export interface TestApi {
  api: FastifyInstance;
  store: TestDb;
  keyring: Keyring;
  /** API token and bearer token of the owner. */
  owner: { apiToken: string; bearer: string };
  /** Makes a user (member unless told) and returns its tokens. */
  user(email: string, role?: "owner" | "member"): Promise<{ apiToken: string; bearer: string }>;
  /** Calls the API as `bearer` (the owner by default). */
  call(method: string, url: string, body?: unknown, bearer?: string | null): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** `authCacheMs` defaults to 0 here: tests that edit sessions in the database see it at once. */
export async function testApi(opts: { bodyLimitBytes?: number; bearerTtlSeconds?: number; authCacheMs?: number } = {}): Promise<TestApi> {
  const store = await testDb();
  const dir = await mkdtemp(join(tmpdir(), "quai-testkeys-"));
  const keyring = await Keyring.open(join(dir, "master.json"));
  const logs: string[] = [];
  const api = await buildApi({
    db: store.db,
    keyring,
    domain: "quai.test",
    bearerTtlSeconds: opts.bearerTtlSeconds ?? 3600,
    bodyLimitBytes: opts.bodyLimitBytes ?? 4 * 1024 * 1024,
    platform: () => ({ version: "test", domain: "quai.test", api_url: "http://api.quai.test", router: { http: null, https: null }, git: { http: null, ssh: null } }),
    log: (l) => logs.push(l),
    authCacheMs: opts.authCacheMs ?? 0,
  });
  const user = async (email: string, role: "owner" | "member" = "member") => {
    const { user: u } = await ensureUser(store.db, email, role);
    const { token } = await createApiToken(store.db, u, "test");
    const { token: bearer } = await exchangeToken(store.db, token, opts.bearerTtlSeconds ?? 3600);
    return { apiToken: token, bearer };
  };
  const owner = await user("owner@quai.test", "owner");
  return {
    api,
    store,
    keyring,
    owner,
    user,
    call: (method, url, body, bearer) =>
      api.inject({
        method: method as "GET",
        url,
        headers: bearer === null ? {} : { authorization: `Bearer ${bearer ?? owner.bearer}` },
        ...(body !== undefined ? { payload: body as object } : {}),
      }),
    async close() {
      await api.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
