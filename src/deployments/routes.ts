// Deployment endpoints in Scalingo's shapes: list, show, output, create from an archive, cancel,
// the build cache, and the per-app WebSocket stream the `scalingo` client's listener reads.
import type { FastifyPluginAsync } from "fastify";
import { Readable } from "node:stream";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { WebSocketServer, type WebSocket } from "ws";
import { appParams, pageOf, pageQuery } from "../core/http.ts";
import { QuaiError } from "../core/errors.ts";
import type { ApiDeps } from "../server/api.ts";
import { findApp } from "../apps/service.ts";
import type { Authenticator } from "../auth/service.ts";
import { deploymentJson } from "./service.ts";
import { fetchArchive } from "../core/outbound.ts";
import { onUpgrade } from "../server/upgrade.ts";

const idParams = { type: "object", required: ["app", "id"], additionalProperties: false, properties: { app: { type: "string" }, id: { type: "string" } } } as const;

export function deploymentRoutes(deps: ApiDeps, auth: Authenticator): FastifyPluginAsync {
  return async (app) => {
    const p = deps.pipeline;
    if (!p) return;
    const apiBase = () => deps.platform().api_url;

    app.get<{ Params: { app: string }; Querystring: { page?: string; per_page?: string } }>("/v1/apps/:app/deployments", {
      schema: { summary: "Deployments of an app, newest first", tags: ["deployments"], params: appParams, querystring: pageQuery },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const { page, perPage } = pageOf(req.query);
      const { rows, total } = await p.deployments.list(found.id, page, perPage);
      const totalPages = Math.max(1, Math.ceil(total / perPage));
      return {
        deployments: rows.map((d) => deploymentJson(d, apiBase(), found.name)),
        meta: { pagination: { current_page: page, prev_page: page > 1 ? page - 1 : null, next_page: page < totalPages ? page + 1 : null, total_pages: totalPages, total_count: total } },
      };
    });

    app.get<{ Params: { app: string; id: string } }>("/v1/apps/:app/deployments/:id", { schema: { summary: "One deployment", tags: ["deployments"], params: idParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { deployment: deploymentJson(await p.deployments.find(found.id, req.params.id), apiBase(), found.name) };
    });

    app.get<{ Params: { app: string; id: string }; Querystring: { follow?: string } }>("/v1/apps/:app/deployments/:id/output", {
      schema: { summary: "A deployment's output as text (?follow=true streams it until the deployment ends)", tags: ["deployments"], params: idParams },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const d = await p.deployments.find(found.id, req.params.id);
      if (req.query.follow !== "true") return reply.type("text/plain; charset=utf-8").send(await p.outputs.read(d.id));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", "x-request-id": req.id });
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      const finalNow = () => p.deployments.finalStatus(found.id, d.id);
      for await (const e of p.outputs.follow(d.id, finalNow, abort.signal)) {
        if (e.type === "log") res.write(e.text);
        else if (e.final) res.write(`\n-----> Deployment ${e.status}\n`);
      }
      res.end();
      return reply;
    });

    app.post<{ Params: { app: string }; Body: { deployment: { git_ref?: string; source_url: string; postdeploy_hook?: string } } }>("/v1/apps/:app/deployments", {
      schema: {
        summary: "Deploy a gzipped tarball with one top folder, fetched from source_url",
        tags: ["deployments"],
        params: appParams,
        body: {
          type: "object",
          required: ["deployment"],
          additionalProperties: false,
          properties: { deployment: { type: "object", required: ["source_url"], additionalProperties: false, properties: { git_ref: { type: "string" }, source_url: { type: "string", minLength: 1 }, postdeploy_hook: { type: "string", minLength: 1 } } } },
        },
      },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const archive = await fetchArchive(req.body.deployment.source_url);
      const d = await p.deployments.create(req.actor, found, { source: "archive", gitRef: req.body.deployment.git_ref ?? null, archive, postdeploy: req.body.deployment.postdeploy_hook });
      return reply.code(201).send({ deployment: deploymentJson(d, apiBase(), found.name) });
    });

    // `quai deploy ./app.tar.gz`: the archive is the request body (streamed to the blob store).
    app.addContentTypeParser(["application/gzip", "application/x-gzip", "application/octet-stream"], (_req, payload, done) => done(null, payload));
    app.post<{ Params: { app: string }; Querystring: { git_ref?: string } }>("/v1/apps/:app/deployments/upload", {
      schema: { summary: "Deploy the gzipped tarball sent as the body (Quai extension used by `quai deploy`)", tags: ["deployments"], params: appParams },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      if (!req.body || typeof (req.body as Readable).pipe !== "function") throw new QuaiError("deployment_source_invalid", "send the archive as the body with Content-Type: application/gzip");
      const d = await p.deployments.create(req.actor, found, { source: "archive", gitRef: req.query.git_ref ?? null, archive: req.body as Readable });
      return reply.code(201).send({ deployment: deploymentJson(d, apiBase(), found.name) });
    });

    app.post<{ Params: { app: string; id: string } }>("/v1/apps/:app/deployments/:id/cancel", { schema: { summary: "Cancel a queued or running deployment", tags: ["deployments"], params: idParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { deployment: deploymentJson(await p.deployments.cancel(req.actor, found, req.params.id), apiBase(), found.name) };
    });

    app.delete<{ Params: { app: string } }>("/v1/apps/:app/caches/deployment", { schema: { summary: "Delete the app's build cache", tags: ["deployments"], params: appParams } }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      await rm(join(p.cachesDir, found.id), { recursive: true, force: true });
      return reply.code(204).send();
    });

    // The WebSocket stream of an app's deployments (Scalingo's protocol: auth message first).
    const wss = new WebSocketServer({ noServer: true });
    onUpgrade(app.server, /^\/v1\/apps\/([^/?]+)\/deployments\/stream(?:\?|$)/, (req, socket, head, appRef) => wss.handleUpgrade(req, socket, head, (ws) => serveStream(ws, appRef)));
    const serveStream = (ws: WebSocket, appRef: string) => {
      let unsubscribe: (() => void) | undefined;
      const timer = setTimeout(() => ws.close(4001, "auth timeout"), 10_000);
      ws.on("close", () => unsubscribe?.());
      ws.once("message", async (data) => {
        clearTimeout(timer);
        try {
          const msg = JSON.parse(String(data)) as { type?: string; data?: { token?: string } };
          if (msg.type !== "auth" || !msg.data?.token) throw new Error("first message must be {type: auth}");
          const actor = await auth.authenticate(msg.data.token);
          const found = await findApp(deps.db, actor, appRef);
          const ours = new Set((await p.deployments.list(found.id, 1, 100)).rows.map((r) => r.id));
          unsubscribe = p.outputs.onAny((id, e) => {
            if (!ours.has(id)) return;
            if (e.type === "log") ws.send(JSON.stringify({ type: "log", id, data: { content: e.text } }));
            else ws.send(JSON.stringify({ type: "status", id, data: { status: e.status } }));
          });
          const offNew = p.onNewDeployment((appId, id) => {
            if (appId !== found.id) return;
            ours.add(id);
            ws.send(JSON.stringify({ type: "new", data: { deployment: id } }));
          });
          const off = unsubscribe;
          unsubscribe = () => {
            off();
            offNew();
          };
        } catch (err) {
          ws.close(4003, err instanceof Error ? err.message.slice(0, 100) : "auth failed");
        }
      });
    };
    // A stopping server closes these streams: it would wait on them for ever.
    app.addHook("preClose", async () => {
      for (const client of wss.clients) client.terminate();
    });
    app.addHook("onClose", async () => wss.close());
  };
}
