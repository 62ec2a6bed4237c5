// App endpoints in Scalingo's shapes: /v1/apps and /v1/apps/:app (+ rename).
import type { FastifyPluginAsync } from "fastify";
import { appParams } from "../core/http.ts";
import type { ApiDeps } from "../server/api.ts";
import { appJson, createApp, destroyApp, findApp, listApps, renameApp, updateApp, type AppSettings, type AppUrls } from "./service.ts";

const nameField = { type: "string", description: "3-48 of a-z, 0-9, '-'; starts and ends with a letter or digit" } as const;

export function appRoutes(deps: ApiDeps): FastifyPluginAsync {
  const urls = (): AppUrls => {
    const p = deps.platform();
    return { domain: deps.domain, routerPort: p.router.http ? Number(new URL(p.router.http).port) || undefined : undefined, gitBase: p.git.http ?? undefined };
  };
  return async (app) => {
    app.get("/v1/apps", { schema: { summary: "List the apps the user can see", tags: ["apps"] } }, async (req) => {
      const apps = await listApps(deps.db, req.actor);
      const u = urls();
      return { apps: apps.map((a) => appJson(a, u)) };
    });

    app.post<{ Body: { app: { name: string } } }>("/v1/apps", {
      schema: {
        summary: "Create an app (header X-Dry-Run: true only validates)",
        tags: ["apps"],
        body: {
          type: "object",
          required: ["app"],
          additionalProperties: false,
          properties: {
            app: {
              type: "object",
              required: ["name"],
              additionalProperties: false,
              properties: {
                name: nameField,
                stack_id: { type: ["string", "null"], description: "Accepted for compatibility; Quai has one stack." },
                project_id: { type: ["string", "null"], description: "Accepted for compatibility; ignored." },
              },
            },
          },
        },
      },
    }, async (req, reply) => {
      const dryRun = req.headers["x-dry-run"] === "true";
      const created = await createApp(deps.db, req.actor, req.body.app.name, { dryRun });
      return reply.code(dryRun ? 200 : 201).send({ app: appJson(created, urls()) });
    });

    app.get<{ Params: { app: string } }>("/v1/apps/:app", { schema: { summary: "Show an app", tags: ["apps"], params: appParams } }, async (req) => {
      return { app: appJson(await findApp(deps.db, req.actor, req.params.app), urls()) };
    });

    app.patch<{ Params: { app: string }; Body: { app: AppSettings } }>("/v1/apps/:app", {
      schema: {
        summary: "Change an app's settings",
        tags: ["apps"],
        params: appParams,
        body: {
          type: "object",
          required: ["app"],
          additionalProperties: false,
          properties: {
            app: {
              type: "object",
              additionalProperties: false,
              properties: {
                force_https: { type: "boolean" },
                sticky_session: { type: "boolean" },
                router_logs: { type: "boolean" },
                stack_id: { type: ["string", "null"], description: "Accepted for compatibility; Quai has one stack." },
                project_id: { type: ["string", "null"], description: "Accepted for compatibility; ignored." },
              },
            },
          },
        },
      },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { app: appJson(await updateApp(deps.db, req.actor, found, req.body.app), urls()) };
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
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { app: appJson(await renameApp(deps.db, req.actor, found, req.body.current_name, req.body.new_name), urls()) };
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
      await destroyApp(deps.db, req.actor, found, req.query.current_name);
      return reply.code(204).send();
    });
  };
}
