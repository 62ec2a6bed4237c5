// Domain endpoints in Scalingo's shape: /v1/apps/:app/domains[/:id].
import type { FastifyPluginAsync } from "fastify";
import type { ApiDeps } from "../server/api.ts";
import { envelope } from "../core/http.ts";
import { findApp } from "../apps/service.ts";
import { QuaiError } from "../core/errors.ts";
import { addDomain, domainJson, findDomain, listDomains, removeDomain, setCertificate } from "./service.ts";

const appParams = { type: "object", required: ["app"], properties: { app: { type: "string" } } } as const;
const domainParams = { type: "object", required: ["app", "domain"], properties: { app: { type: "string" }, domain: { type: "string" } } } as const;

export function domainRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    const sync = async () => {
      await deps.pipeline?.supervisor.syncRouter();
    };

    app.get<{ Params: { app: string } }>("/v1/apps/:app/domains", { schema: { summary: "The app's custom domains", tags: ["domains"], params: appParams } }, async (req) => {
      const { app: found, domains } = await listDomains(deps.db, req.actor, req.params.app);
      return { domains: domains.map((d) => domainJson(d, found)) };
    });

    app.post<{ Params: { app: string }; Body: { domain: { name: string } } }>("/v1/apps/:app/domains", {
      schema: { summary: "Add a custom domain (the router answers for it at once)", tags: ["domains"], params: appParams, body: envelope("domain", { name: { type: "string", maxLength: 1024 } }, ["name"]) },
    }, async (req, reply) => {
      const { app: found, domain } = await addDomain(deps.db, req.actor, req.params.app, req.body.domain.name, deps.domain);
      await sync();
      deps.certificates?.request(domain.id);
      return reply.code(201).send({ domain: domainJson(domain, found) });
    });

    app.get<{ Params: { app: string; domain: string } }>("/v1/apps/:app/domains/:domain", { schema: { summary: "One domain (by id or name)", tags: ["domains"], params: domainParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { domain: domainJson(await findDomain(deps.db, found, req.params.domain, deps.domain), found) };
    });

    app.patch<{ Params: { app: string; domain: string }; Body: { domain: { tlscert?: string; tlskey?: string; ssl?: boolean } } }>("/v1/apps/:app/domains/:domain", {
      schema: { summary: "Upload the domain's certificate and key (PEM), or remove them (ssl: false)", tags: ["domains"], params: domainParams, body: envelope("domain", { tlscert: { type: "string", maxLength: 65536 }, tlskey: { type: "string", maxLength: 65536 }, ssl: { type: "boolean" } }, []) },
    }, async (req) => {
      const b = req.body.domain;
      let pems: { certPem: string; keyPem: string } | null;
      if (b.ssl === false && b.tlscert === undefined && b.tlskey === undefined) pems = null;
      else if (b.tlscert !== undefined && b.tlskey !== undefined) pems = { certPem: b.tlscert, keyPem: b.tlskey };
      else throw new QuaiError("validation_failed", "give domain.tlscert and domain.tlskey together, or domain.ssl: false");
      const { app: found, domain } = await setCertificate(deps.db, deps.keyring, req.actor, req.params.app, req.params.domain, pems, deps.domain);
      await sync();
      // Back to automatic certificates when an upload is removed.
      if (pems === null) deps.certificates?.request(domain.id);
      return { domain: domainJson(domain, found) };
    });

    app.delete<{ Params: { app: string; domain: string } }>("/v1/apps/:app/domains/:domain", { schema: { summary: "Remove a domain (by id or name)", tags: ["domains"], params: domainParams } }, async (req, reply) => {
      await removeDomain(deps.db, req.actor, req.params.app, req.params.domain, deps.domain);
      await sync();
      return reply.code(204).send();
    });
  };
}
