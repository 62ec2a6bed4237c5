// Health and platform facts: `GET /v1/health` for supervisors, `GET /v1/platform` for scripts.
import type { FastifyPluginAsync } from "fastify";
import { sql } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { VERSION } from "../core/version.ts";
import type { ApiDeps } from "../server/api.ts";

/** Addresses of the platform's fronts; null until the capability serving it runs. */
export interface PlatformInfo {
  version: string;
  domain: string;
  api_url: string;
  router: { http: string | null; https: string | null };
  git: { http: string | null; ssh: string | null };
}

export function platformRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    app.get("/v1/health", {
      config: { public: true },
      schema: { summary: "200 once the platform is up and its store answers", tags: ["platform"], security: [] },
    }, async () => {
      try {
        await sql`SELECT 1`.execute(deps.db);
      } catch {
        throw new QuaiError("store_unavailable", "the state database is not reachable");
      }
      return { status: "ok", version: VERSION };
    });

    app.get("/v1/platform", {
      schema: { summary: "The platform's domain and the addresses of its fronts", tags: ["platform"] },
    }, async () => ({ platform: deps.platform() }));
  };
}
