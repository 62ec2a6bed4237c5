// Auth endpoints in Scalingo's shapes: token exchange and the current user.
import type { FastifyPluginAsync } from "fastify";
import { QuaiError } from "../core/errors.ts";
import type { ApiDeps } from "../server/api.ts";
import { exchangeToken, userJson } from "./service.ts";

function basicPassword(header: string | undefined): string {
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header) : null;
  if (!m) throw new QuaiError("auth_required", "send the API token as the password of HTTP Basic auth (any user name)");
  const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon >= 0 ? decoded.slice(colon + 1) : decoded;
}

export function authRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    app.post("/v1/tokens/exchange", {
      config: { public: true },
      schema: {
        summary: "Exchange an API token (HTTP Basic password) for a short-lived bearer token",
        tags: ["auth"],
        security: [{ apiToken: [] }],
        body: { type: ["object", "null"], additionalProperties: false },
      },
    }, async (req) => {
      const { token, expiresAt } = await exchangeToken(deps.db, basicPassword(req.headers.authorization), deps.bearerTtlSeconds);
      return { token, expires_at: expiresAt.toISOString() };
    });

    app.get("/v1/users/self", {
      schema: { summary: "The authenticated user", tags: ["auth"] },
    }, async (req) => {
      const row = await deps.db.selectFrom("users").select("created_at").where("id", "=", req.actor.id).executeTakeFirstOrThrow();
      return { user: userJson({ ...req.actor, created_at: row.created_at }) };
    });
  };
}
