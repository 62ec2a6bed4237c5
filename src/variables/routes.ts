// Variable endpoints in Scalingo's shapes: /v1/apps/:app/variables.
import type { FastifyPluginAsync } from "fastify";
import { appParams, envelope } from "../core/http.ts";
import type { ApiDeps } from "../server/api.ts";
import { findApp } from "../apps/service.ts";
import { bulkSetVariables, deleteVariables, listVariables, resolveVariables, setVariable, updateVariable, type VariableInput } from "./service.ts";

const variableInput = {
  type: "object",
  required: ["name", "value"],
  additionalProperties: false,
  properties: { name: { type: "string" }, value: { type: "string" } },
} as const;

const variableParams = {
  type: "object",
  required: ["app", "id"],
  additionalProperties: false,
  properties: { app: { type: "string" }, id: { type: "string", description: "Variable id (or name)" } },
} as const;

export function variableRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    // A config change makes a release: the running slug with the new variables, deployed through
    // the same zero-downtime path (and the same per-app queue) as a push.
    app.addHook("onResponse", async (req, reply) => {
      const pipeline = deps.pipeline;
      if (!pipeline || req.method === "GET" || reply.statusCode >= 300 || !req.actor) return;
      const ref = (req.params as { app?: string }).app;
      if (!ref) return;
      try {
        await pipeline.deployments.configRelease(req.actor, await findApp(deps.db, req.actor, ref));
      } catch (err) {
        deps.log(`variables: restarting ${ref} with its new config failed: ${String(err)}`);
      }
    });
    app.get<{ Params: { app: string }; Querystring: { resolved?: string } }>("/v1/apps/:app/variables", {
      schema: {
        summary: "List variables (?resolved=true: values with references resolved, as a release sees them)",
        tags: ["variables"],
        params: appParams,
        querystring: { type: "object", additionalProperties: false, properties: { resolved: { type: "string", enum: ["true", "false"] } } },
      },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const vars = await listVariables(deps.db, deps.keyring, found);
      return { variables: req.query.resolved === "true" ? resolveVariables(vars) : vars };
    });

    app.post<{ Params: { app: string }; Body: { variable: VariableInput } }>("/v1/apps/:app/variables", {
      schema: {
        summary: "Create a variable (or replace the value of the one with that name)",
        tags: ["variables"],
        params: appParams,
        body: envelope("variable", variableInput.properties, ["name", "value"]),
      },
    }, async (req, reply) => {
      const { variable, created } = await setVariable(deps.db, deps.keyring, req.actor, req.params.app, req.body.variable);
      return reply.code(created ? 201 : 200).send({ variable });
    });

    app.put<{ Params: { app: string }; Body: { variables: VariableInput[] } }>("/v1/apps/:app/variables", {
      schema: {
        summary: "Create or replace many variables at once; all or nothing",
        tags: ["variables"],
        params: appParams,
        body: {
          type: "object",
          required: ["variables"],
          additionalProperties: false,
          properties: { variables: { type: "array", maxItems: 1000, items: variableInput } },
        },
      },
    }, async (req) => {
      return { variables: await bulkSetVariables(deps.db, deps.keyring, req.actor, req.params.app, req.body.variables) };
    });

    app.patch<{ Params: { app: string; id: string }; Body: { variable: { value: string } } }>("/v1/apps/:app/variables/:id", {
      schema: {
        summary: "Change a variable's value",
        tags: ["variables"],
        params: variableParams,
        body: envelope("variable", { value: { type: "string" } }, ["value"]),
      },
    }, async (req) => {
      return { variable: await updateVariable(deps.db, deps.keyring, req.actor, req.params.app, req.params.id, req.body.variable.value) };
    });

    app.delete<{ Params: { app: string; id: string } }>("/v1/apps/:app/variables/:id", {
      schema: { summary: "Delete a variable", tags: ["variables"], params: variableParams },
    }, async (req, reply) => {
      await deleteVariables(deps.db, deps.keyring, req.actor, req.params.app, [req.params.id]);
      return reply.code(204).send();
    });

    app.delete<{ Params: { app: string }; Body: { variable_ids: string[] } }>("/v1/apps/:app/variables", {
      schema: {
        summary: "Delete many variables at once; all or nothing",
        tags: ["variables"],
        params: appParams,
        body: {
          type: "object",
          required: ["variable_ids"],
          additionalProperties: false,
          properties: { variable_ids: { type: "array", minItems: 1, maxItems: 1000, items: { type: "string" } } },
        },
      },
    }, async (req) => {
      await deleteVariables(deps.db, deps.keyring, req.actor, req.params.app, req.body.variable_ids);
      return { variable_ids: req.body.variable_ids };
    });
  };
}
