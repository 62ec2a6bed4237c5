// App endpoints in Scalingo's shapes: /v1/apps and /v1/apps/:app (+ rename).
import { ensureRepo } from "../git/front.ts";
import type { FastifyPluginAsync } from "fastify";
import { appParams, envelope } from "../core/http.ts";
import type { ApiDeps } from "../server/api.ts";
import type { FastifyReply } from "fastify";
import { deleteApp } from "./delete.ts";
import { AppListRenderer, createApp, findApp, renameApp, renderApp, updateApp, type AppSettings, type AppUrls } from "./service.ts";

/** Sends `{"<key>": <json text>}` without parsing the JSON PostgreSQL rendered. */
function sendJson(reply: FastifyReply, key: string, json: string, status = 200): FastifyReply {
  return reply.code(status).type("application/json; charset=utf-8").send(`{"${key}":${json}}`);
}

const nameField = { type: "string", description: "3-48 of a-z, 0-9, '-'; starts and ends with a letter or digit" } as const;

/** Fields of Scalingo's app shapes that Quai accepts and ignores (it has one stack, no projects). */
const compatFields = {
  stack_id: { type: ["string", "null"], description: "Accepted for compatibility; Quai has one stack." },
  project_id: { type: ["string", "null"], description: "Accepted for compatibility; ignored." },
} as const;

export function appRoutes(deps: ApiDeps): FastifyPluginAsync {
  const urls = (): AppUrls => {
    const p = deps.platform();
    return { domain: deps.domain, routerPort: p.router.http ? Number(new URL(p.router.http).port) || undefined : undefined, gitBase: p.git.http ?? undefined };
  };
  const lists = new AppListRenderer();
  return async (app) => {
    app.get("/v1/apps", { schema: { summary: "List the apps the user can see", tags: ["apps"] } }, async (req, reply) => {
      return reply.type("application/json; charset=utf-8").send(await lists.render(deps.db, req.actor, urls()));
    });

    app.post<{ Body: { app: { name: string } } }>("/v1/apps", {
      schema: {
        summary: "Create an app (header X-Dry-Run: true only validates)",
        tags: ["apps"],
        body: envelope("app", { name: nameField, ...compatFields }, ["name"]),
      },
    }, async (req, reply) => {
      const dryRun = req.headers["x-dry-run"] === "true";
      const json = await createApp(deps.db, req.actor, req.body.app.name, urls(), { dryRun });
      const git = deps.pipeline?.git;
      if (!dryRun && git) {
        // Its git repository now, not on the first push (which it would make slower).
        const { id } = JSON.parse(json) as { id: string };
        await ensureRepo(git.reposDir, id).catch((err: unknown) => req.log.warn(`creating the git repository of ${req.body.app.name}: ${String(err)}`));
      }
      return sendJson(reply, "app", json, dryRun ? 200 : 201);
    });

    app.get<{ Params: { app: string } }>("/v1/apps/:app", { schema: { summary: "Show an app", tags: ["apps"], params: appParams } }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return sendJson(reply, "app", await renderApp(deps.db, found.id, urls()));
    });

    app.patch<{ Params: { app: string }; Body: { app: AppSettings } }>("/v1/apps/:app", {
      schema: {
        summary: "Change an app's settings",
        tags: ["apps"],
        params: appParams,
        body: envelope("app", { health_check_path: { type: ["string", "null"], maxLength: 512 }, canonical_domain: { type: ["string", "null"], maxLength: 300 }, force_https: { type: "boolean" }, sticky_session: { type: "boolean" }, router_logs: { type: "boolean" }, ...compatFields }),
      },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      await updateApp(deps.db, req.actor, found, req.body.app);
      if (req.body.app.canonical_domain !== undefined || req.body.app.force_https !== undefined) await deps.pipeline?.supervisor.syncRouter();
      return sendJson(reply, "app", await renderApp(deps.db, found.id, urls()));
    });

    app.post<{ Params: { app: string }; Body: { current_name: string; new_name: string } }>("/v1/apps/:app/rename", {
      schema: {
        summary: "Rename an app (current_name confirms)",
        tags: ["apps"],
        params: appParams,
        body: {
          type: "object",
          required: ["current_name", "new_name"],
          additionalProperties: false,
          properties: { current_name: { type: "string" }, new_name: nameField },
        },
      },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      await renameApp(deps.db, req.actor, found, req.body.current_name, req.body.new_name);
      await deps.pipeline?.supervisor.syncRouter();
      return sendJson(reply, "app", await renderApp(deps.db, found.id, urls()));
    });

    app.delete<{ Params: { app: string }; Querystring: { current_name?: string } }>("/v1/apps/:app", {
      schema: {
        summary: "Delete an app (?current_name= must repeat its name)",
        tags: ["apps"],
        params: appParams,
        querystring: { type: "object", properties: { current_name: { type: "string" } }, additionalProperties: false },
      },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      await deleteApp(deps, req.actor, found, req.query.current_name);
      return reply.code(204).send();
    });
  };
}
