// Maintenance endpoints: /v1/apps/:app/maintenance (status, on, off), its bypass link, and the
// banner variables.
import type { FastifyPluginAsync } from "fastify";
import type { ApiDeps } from "../server/api.ts";
import { envelope } from "../core/http.ts";
import { BYPASS_PATH } from "../router/render.ts";
import type { MaintenanceWindow } from "./service.ts";

const appParams = { type: "object", required: ["app"], properties: { app: { type: "string" } } } as const;

export function windowJson(w: MaintenanceWindow): Record<string, unknown> {
  return {
    id: w.id,
    message: w.message,
    custom_page: w.page_html !== null,
    allow_ips: w.allow_ips,
    starts_at: w.starts_at.toISOString(),
    ends_at: w.ends_at?.toISOString() ?? null,
    created_at: w.created_at.toISOString(),
  };
}

export function maintenanceRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    const m = deps.maintenance;
    if (!m) return;

    app.get<{ Params: { app: string } }>("/v1/apps/:app/maintenance", { schema: { summary: "Whether the app is in maintenance, and the windows scheduled", tags: ["maintenance"], params: appParams } }, async (req) => {
      const { active, scheduled } = await m.status(req.actor, req.params.app);
      return { maintenance: { enabled: active !== undefined, active: active ? windowJson(active) : null, scheduled: scheduled.map(windowJson) } };
    });

    app.post<{ Params: { app: string }; Body: { maintenance: { message?: string; until?: string; at?: string; allow_ips?: string[]; page_html?: string; page_url?: string } } }>("/v1/apps/:app/maintenance", {
      schema: {
        summary: "Turn maintenance on now, or schedule it (at); the router answers a 503 page to all but allowed networks and the team",
        tags: ["maintenance"],
        params: appParams,
        body: envelope("maintenance", {
          message: { type: "string", maxLength: 100000 },
          until: { type: "string", maxLength: 64 },
          at: { type: "string", maxLength: 64 },
          allow_ips: { type: "array", maxItems: 100, items: { type: "string", maxLength: 64 } },
          page_html: { type: "string", maxLength: 1048576 },
          page_url: { type: "string", maxLength: 2048 },
        }, []),
      },
    }, async (req, reply) => {
      const b = req.body.maintenance;
      const w = await m.turnOn(req.actor, req.params.app, {
        ...(b.message !== undefined ? { message: b.message } : {}),
        ...(b.until !== undefined ? { until: b.until } : {}),
        ...(b.at !== undefined ? { at: b.at } : {}),
        ...(b.allow_ips !== undefined ? { allowIps: b.allow_ips } : {}),
        ...(b.page_html !== undefined ? { pageHtml: b.page_html } : {}),
        ...(b.page_url !== undefined ? { pageUrl: b.page_url } : {}),
      });
      return reply.code(201).send({ maintenance: windowJson(w) });
    });

    app.delete<{ Params: { app: string }; Querystring: { all?: string } }>("/v1/apps/:app/maintenance", {
      schema: { summary: "End maintenance (all=true also cancels scheduled windows)", tags: ["maintenance"], params: appParams, querystring: { type: "object", additionalProperties: false, properties: { all: { type: "string", enum: ["true", "false"] } } } },
    }, async (req) => ({ ended: await m.turnOff(req.actor, req.params.app, { all: req.query.all === "true" }) }));

    app.post<{ Params: { app: string } }>("/v1/apps/:app/maintenance/bypass", { schema: { summary: "A link that gives its holder the bypass cookie (team members)", tags: ["maintenance"], params: appParams } }, async (req) => {
      const { app: found, token } = await m.bypassToken(req.actor, req.params.app);
      const router = deps.platform().router.http;
      const base = router ? `http://${found.name}.${deps.domain}:${new URL(router).port}` : `http://${found.name}.${deps.domain}`;
      return { bypass: { url: `${base}${BYPASS_PATH}?token=${token}`, cookie: `quai_maintenance=${token}` } };
    });

    app.put<{ Params: { app: string }; Body: { banner: { message: string } } }>("/v1/apps/:app/maintenance/banner", {
      schema: { summary: "Show a maintenance banner: sets QUAI_MAINTENANCE_BANNER, MAINTENANCE_BANNER_ENABLE, MAINTENANCE_BANNER_MESSAGE (a release)", tags: ["maintenance"], params: appParams, body: envelope("banner", { message: { type: "string", maxLength: 100000 } }, ["message"]) },
    }, async (req) => {
      await m.banner(req.actor, req.params.app, req.body.banner.message);
      return { banner: { enabled: true, message: req.body.banner.message.trim() } };
    });

    app.delete<{ Params: { app: string } }>("/v1/apps/:app/maintenance/banner", { schema: { summary: "Remove the maintenance banner variables (a release)", tags: ["maintenance"], params: appParams } }, async (req) => {
      await m.banner(req.actor, req.params.app, null);
      return { banner: { enabled: false, message: null } };
    });
  };
}
