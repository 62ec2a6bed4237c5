// Event endpoints in Scalingo's shapes: /v1/events and /v1/apps/:app/events.
import type { FastifyPluginAsync } from "fastify";
import { appParams, pageOf, pageQuery } from "../core/http.ts";
import type { ApiDeps } from "../server/api.ts";
import { findApp, visibleAppIds } from "../apps/service.ts";
import { findEvent, listEvents } from "./service.ts";

export function eventRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: { page?: string; per_page?: string } }>("/v1/events", {
      schema: { summary: "Events of every app the user can see, and the user's own, newest first", tags: ["events"], querystring: pageQuery },
    }, async (req) => {
      const { page, perPage } = pageOf(req.query);
      const ids = await visibleAppIds(deps.db, req.actor);
      return listEvents(deps.db, { visibleAppIds: ids, userId: req.actor.id }, page, perPage);
    });

    app.get<{ Params: { app: string }; Querystring: { page?: string; per_page?: string } }>("/v1/apps/:app/events", {
      schema: { summary: "Events of an app, newest first", tags: ["events"], params: appParams, querystring: pageQuery },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const { page, perPage } = pageOf(req.query);
      return listEvents(deps.db, { appId: found.id }, page, perPage);
    });

    app.get<{ Params: { app: string; id: string } }>("/v1/apps/:app/events/:id", {
      schema: {
        summary: "One event of an app",
        tags: ["events"],
        params: { type: "object", required: ["app", "id"], additionalProperties: false, properties: { app: { type: "string" }, id: { type: "string" } } },
      },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { event: await findEvent(deps.db, found.id, req.params.id) };
    });
  };
}
