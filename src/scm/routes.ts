// SCM endpoints in Scalingo's shapes: /v1/scm_integrations, /v1/apps/:app/scm_repo_link (with
// manual_deploy, manual_review_app, branches, pulls, review_apps), and the public webhook
// receivers /v1/scm/github/webhook and /v1/scm/gitlab/webhook (signature-checked, raw body).
import type { FastifyPluginAsync } from "fastify";
import type { Readable } from "node:stream";
import { appParams, envelope } from "../core/http.ts";
import { QuaiError } from "../core/errors.ts";
import type { ApiDeps } from "../server/api.ts";
import type { ForgeKind } from "./forge.ts";
import { branchDeployJson } from "./deploys.ts";
import { integrationJson, type LinkSettings } from "./service.ts";
import { deploymentJson } from "../deployments/service.ts";

/** Webhook bodies above this are refused: GitHub's own cap is 25 MB, real pushes are far smaller. */
export const WEBHOOK_BODY_LIMIT = 5 * 1024 * 1024;

const linkFields = {
  branch: { type: "string", minLength: 1, maxLength: 255 },
  auto_deploy_enabled: { type: "boolean" },
  deploy_review_apps_enabled: { type: "boolean" },
  delete_on_close_enabled: { type: "boolean" },
  hours_before_delete_on_close: { type: "integer" },
  delete_stale_enabled: { type: "boolean" },
  hours_before_delete_stale: { type: "integer" },
  automatic_creation_from_forks_allowed: { type: "boolean" },
  required_checks: { type: ["array", "null"], items: { type: "string" }, maxItems: 50 },
  ci_timeout_minutes: { type: "integer" },
  review_apps_limit: { type: "integer" },
  review_apps_seed: { type: ["string", "null"], maxLength: 100 },
} as const;

/**
 * Reads a request body of at most `limit` bytes. A larger one is read on and dropped (up to
 * `drainLimit`, past which the connection is cut), so the sender gets the answer.
 */
export async function readLimited(stream: Readable | undefined, limit: number, drainLimit = 64 * 1024 * 1024): Promise<Buffer | "too large"> {
  if (!stream || typeof stream.on !== "function") return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > drainLimit) {
      stream.destroy();
      break;
    }
    if (size <= limit) chunks.push(b);
  }
  return size > limit ? "too large" : Buffer.concat(chunks, size);
}

export function scmRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    const scm = deps.scm;
    if (!scm) return;

    // ---- integrations
    app.get("/v1/scm_integrations", { schema: { summary: "Your SCM integrations (never their tokens)", tags: ["scm"] } }, async (req) => {
      return { scm_integrations: (await scm.listIntegrations(req.actor)).map(integrationJson) };
    });
    app.post<{ Body: { scm_integration: { scm_type: string; url?: string; access_token: string } } }>("/v1/scm_integrations", {
      schema: {
        summary: "Add a GitHub or GitLab integration (the token is checked with the forge, then stored encrypted)",
        tags: ["scm"],
        body: envelope("scm_integration", { scm_type: { type: "string", maxLength: 40 }, url: { type: "string", maxLength: 2048 }, access_token: { type: "string", maxLength: 1024 } }, ["scm_type", "access_token"]),
      },
    }, async (req, reply) => {
      const b = req.body.scm_integration;
      return reply.code(201).send({ scm_integration: integrationJson(await scm.addIntegration(req.actor, { scm_type: b.scm_type, access_token: b.access_token, ...(b.url ? { url: b.url } : {}) })) });
    });
    const idParams = { type: "object", required: ["id"], additionalProperties: false, properties: { id: { type: "string" } } } as const;
    app.get<{ Params: { id: string } }>("/v1/scm_integrations/:id", { schema: { summary: "One integration", tags: ["scm"], params: idParams } }, async (req) => {
      return { scm_integration: integrationJson(await scm.findIntegration(req.actor, req.params.id)) };
    });
    app.delete<{ Params: { id: string } }>("/v1/scm_integrations/:id", { schema: { summary: "Delete an integration no link uses", tags: ["scm"], params: idParams } }, async (req, reply) => {
      await scm.removeIntegration(req.actor, req.params.id);
      return reply.code(204).send();
    });

    // ---- the repo link
    app.get<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link", { schema: { summary: "The app's repo link", tags: ["scm"], params: appParams } }, async (req) => {
      const { link } = await scm.findLink(req.actor, req.params.app);
      return { scm_repo_link: scm.linkJson(link, await scm.actorOf(link)) };
    });
    app.post<{ Params: { app: string }; Body: { scm_repo_link: LinkSettings & { source: string; auth_integration_uuid?: string; scm_type?: string } } }>("/v1/apps/:app/scm_repo_link", {
      schema: {
        summary: "Link the app to a repository (registers Quai's webhook on it)",
        tags: ["scm"],
        params: appParams,
        body: envelope("scm_repo_link", { source: { type: "string", minLength: 1, maxLength: 2048 }, auth_integration_uuid: { type: "string", maxLength: 64 }, scm_type: { type: "string", maxLength: 40 }, ...linkFields }, ["source"]),
      },
    }, async (req, reply) => {
      const link = await scm.createLink(req.actor, req.params.app, req.body.scm_repo_link);
      return reply.code(201).send({ scm_repo_link: scm.linkJson(link, req.actor) });
    });
    app.patch<{ Params: { app: string }; Body: { scm_repo_link: LinkSettings } }>("/v1/apps/:app/scm_repo_link", {
      schema: { summary: "Change the link's settings", tags: ["scm"], params: appParams, body: envelope("scm_repo_link", linkFields) },
    }, async (req) => {
      const link = await scm.updateLink(req.actor, req.params.app, req.body.scm_repo_link);
      return { scm_repo_link: scm.linkJson(link, await scm.actorOf(link)) };
    });
    app.delete<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link", { schema: { summary: "Unlink the app (its webhook is removed from the repository)", tags: ["scm"], params: appParams } }, async (req, reply) => {
      await scm.deleteLink(req.actor, req.params.app);
      return reply.code(204).send();
    });
    app.get<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link/branches", { schema: { summary: "The repository's branches", tags: ["scm"], params: appParams } }, async (req) => {
      const { link } = await scm.findLink(req.actor, req.params.app);
      return { branches: (await (await scm.forgeOf(link)).branches(scm.repoOf(link))).map((b) => ({ name: b.name, sha: b.sha })) };
    });
    app.get<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link/pulls", { schema: { summary: "The repository's open pull requests", tags: ["scm"], params: appParams } }, async (req) => {
      const { link } = await scm.findLink(req.actor, req.params.app);
      const pulls = await (await scm.forgeOf(link)).pulls(scm.repoOf(link));
      return { pulls: pulls.map((p) => ({ id: p.number, number: p.number, title: p.title, html_url: p.htmlUrl, head_sha: p.headSha, head_ref: p.headRef, from_fork: p.fromFork, author: p.author })) };
    });
    app.get<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link/deploys", { schema: { summary: "Pushes of the linked branch and where they stand (waiting for CI, deployed, blocked...)", tags: ["scm"], params: appParams } }, async (req) => {
      const { app: found } = await scm.findLink(req.actor, req.params.app);
      return { deploys: deps.scm?.deploys ? (await deps.scm.deploys.list(found.id)).map(branchDeployJson) : [] };
    });
    app.post<{ Params: { app: string }; Body: { branch: string } }>("/v1/apps/:app/scm_repo_link/manual_deploy", {
      schema: { summary: "Deploy the head of a branch now, without waiting for CI", tags: ["scm"], params: appParams, body: { type: "object", required: ["branch"], additionalProperties: false, properties: { branch: { type: "string", minLength: 1, maxLength: 255 } } } },
    }, async (req, reply) => {
      if (!scm.deploys) throw new QuaiError("no_release", "this server runs no deploy pipeline");
      const { app: found } = await scm.findLink(req.actor, req.params.app);
      const row = await scm.deploys.manual(req.actor, req.params.app, req.body.branch);
      const d = row.deployment_id && deps.pipeline ? await deps.pipeline.deployments.find(found.id, row.deployment_id) : undefined;
      return reply.code(201).send({ deploy: branchDeployJson(row), deployment: d ? deploymentJson(d, deps.platform().api_url, found.name) : null });
    });
    app.post<{ Params: { app: string }; Body: { pull_request_id: number } }>("/v1/apps/:app/scm_repo_link/manual_review_app", {
      schema: { summary: "Create (or redeploy) the review app of a pull request", tags: ["scm"], params: appParams, body: { type: "object", required: ["pull_request_id"], additionalProperties: false, properties: { pull_request_id: { type: "integer", minimum: 1 } } } },
    }, async (req, reply) => {
      if (!scm.reviewApps) throw new QuaiError("no_release", "this server runs no deploy pipeline");
      const row = await scm.reviewApps.manual(req.actor, req.params.app, req.body.pull_request_id);
      return reply.code(201).send({ review_app: scm.reviewApps.json(row) });
    });
    app.get<{ Params: { app: string } }>("/v1/apps/:app/scm_repo_link/review_apps", { schema: { summary: "The app's review apps, newest first (deleted ones stay as history)", tags: ["scm"], params: appParams } }, async (req) => {
      if (!scm.reviewApps) return { review_apps: [] };
      const ra = scm.reviewApps;
      return { review_apps: (await ra.listFor(req.actor, req.params.app)).map((r) => ra.json(r)) };
    });
    app.get<{ Params: { app: string } }>("/v1/apps/:app/review_apps", { schema: { summary: "The app's review apps (Scalingo's path)", tags: ["scm"], params: appParams } }, async (req) => {
      if (!scm.reviewApps) return { review_apps: [] };
      const ra = scm.reviewApps;
      return { review_apps: (await ra.listFor(req.actor, req.params.app)).map((r) => ra.json(r)) };
    });

    // ---- webhooks: public, raw body (the signature is over the exact bytes)
    await app.register(async (hooks) => {
      hooks.removeAllContentTypeParsers();
      // The body is read here rather than by a parser with a limit: a parser refuses before
      // reading and closes the connection, and a sender still writing then sees a reset instead
      // of the 413. An oversized body is read to its end (up to a bound) and dropped.
      hooks.addContentTypeParser("*", (_req, payload, done) => done(null, payload));
      for (const forge of ["github", "gitlab"] as ForgeKind[]) {
        hooks.post(`/v1/scm/${forge}/webhook`, { config: { public: true }, schema: { summary: `Webhook receiver for ${forge} (signed deliveries only)`, tags: ["scm"] } }, async (req, reply) => {
          const body = await readLimited(req.body as Readable | undefined, WEBHOOK_BODY_LIMIT);
          if (body === "too large") throw new QuaiError("body_too_large", `webhook payloads are limited to ${WEBHOOK_BODY_LIMIT} bytes`);
          const result = await scm.receive(forge, req.headers, body);
          return reply.code(202).send(result);
        });
      }
    });
  };
}
