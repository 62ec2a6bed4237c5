// SSH key endpoints in Scalingo's shapes: /v1/account/keys.
import type { FastifyPluginAsync } from "fastify";
import type { ApiDeps } from "../server/api.ts";
import { envelope } from "../core/http.ts";
import { addKey, listKeys, removeKey } from "./service.ts";

export function keyRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    app.get("/v1/account/keys", { schema: { summary: "The user's SSH public keys", tags: ["keys"] } }, async (req) => ({ keys: await listKeys(deps.db, req.actor) }));

    app.post<{ Body: { key: { name: string; content: string } } }>("/v1/account/keys", {
      schema: { summary: "Add an SSH public key (for git push over SSH)", tags: ["keys"], body: envelope("key", { name: { type: "string" }, content: { type: "string", maxLength: 16384 } }, ["name", "content"]) },
    }, async (req, reply) => reply.code(201).send({ key: await addKey(deps.db, req.actor, req.body.key.name, req.body.key.content) }));

    app.delete<{ Params: { id: string } }>("/v1/account/keys/:id", {
      schema: { summary: "Remove an SSH public key", tags: ["keys"], params: { type: "object", required: ["id"], properties: { id: { type: "string" } } } },
    }, async (req, reply) => {
      await removeKey(deps.db, req.actor, req.params.id);
      return reply.code(204).send();
    });
  };
}
