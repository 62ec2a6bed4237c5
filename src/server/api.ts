// Builds the HTTP API: strict JSON schemas (also the source of the OpenAPI document), bearer auth
// on every route not marked public, and one translation from catalogue errors to JSON responses.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import swagger from "@fastify/swagger";
import { randomUUID } from "node:crypto";
import { catalogue, QuaiError, type ErrorCode } from "../core/errors.ts";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import { Authenticator, type Actor } from "../auth/service.ts";
import { authRoutes } from "../auth/routes.ts";
import { appRoutes } from "../apps/routes.ts";
import { variableRoutes } from "../variables/routes.ts";
import { eventRoutes } from "../events/routes.ts";
import { platformRoutes, type PlatformInfo } from "../platform/routes.ts";
import { VERSION } from "../core/version.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The authenticated user (every route but the public ones). */
    actor: Actor;
  }
  interface FastifyContextConfig {
    /** Reachable without a bearer token. */
    public?: boolean;
  }
}

/** What the API needs from the server around it. */
import type { PipelineContext } from "../pipeline/context.ts";
import type { Deployments } from "../deployments/service.ts";
import type { DeploymentOutputs } from "../pipeline/output.ts";
import type { Supervisor } from "../formation/supervisor.ts";
import { deploymentRoutes } from "../deployments/routes.ts";
import { formationRoutes } from "../formation/routes.ts";
import { gitFront, type GitFrontDeps } from "../git/front.ts";
import { keyRoutes } from "../keys/routes.ts";
import { addonRoutes } from "../addons/routes.ts";
import type { Addons } from "../addons/service.ts";
import { maintenanceRoutes } from "../maintenance/routes.ts";
import { domainRoutes } from "../domains/routes.ts";
import type { Maintenance } from "../maintenance/service.ts";
import type { CertificateIssuer } from "../tls/issuer.ts";
import type { Scm } from "../scm/service.ts";
import { scmRoutes } from "../scm/routes.ts";

export interface ApiDeps {
  db: Db;
  keyring: Keyring;
  domain: string;
  bearerTtlSeconds: number;
  bodyLimitBytes: number;
  /** Addresses of the platform's fronts, as they are known. */
  platform: () => PlatformInfo;
  /** Where unexpected errors are reported. */
  log: (line: string) => void;
  /** How long an authenticated bearer token is remembered (default 5 s; 0 disables). */
  authCacheMs?: number;
  /** The deploy pipeline and runtime (absent in API-only tests). */
  pipeline?: PipelineApi;
  /** Add-ons (absent when QUAI_ADDONS=off). */
  addons?: Addons;
  /** Maintenance windows and banners. */
  maintenance?: Maintenance;
  /** Automatic certificates (QUAI_ACME=on). */
  certificates?: CertificateIssuer;
  /** GitHub/GitLab integrations, repo links, review apps. */
  scm?: Scm;
}

/** What the deployment, formation, logs and git endpoints use. */
export interface PipelineApi {
  ctx: PipelineContext;
  deployments: Deployments;
  outputs: DeploymentOutputs;
  supervisor: Supervisor;
  cachesDir: string;
  onNewDeployment(fn: (appId: string, id: string) => void): () => void;
  git?: GitFrontDeps;
}

/** The error body every failing endpoint answers with. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/** Where in `value` (a parsed JSON body, params or query) a string holds a NUL byte, if one does. */
function nulIn(value: unknown, at: string, depth = 0): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? at : undefined;
  if (value === null || typeof value !== "object" || depth > 32 || Buffer.isBuffer(value) || typeof (value as { pipe?: unknown }).pipe === "function") return undefined;
  for (const [k, v] of Object.entries(value)) {
    const name = Array.isArray(value) ? `${at}[${k}]` : `${at}.${k}`;
    if (k.includes("\0")) return name;
    const found = nulIn(v, name, depth + 1);
    if (found) return found;
  }
  return undefined;
}

function sendError(reply: FastifyReply, code: ErrorCode, message: string, details?: Record<string, unknown>): FastifyReply {
  const body: ErrorBody = { error: code, message };
  if (details) body.details = details;
  return reply.code(catalogue[code].status).type("application/json").send(body);
}

const STORE_DOWN = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "57P01", "57P02", "57P03", "08000", "08003", "08006"]);

function isStoreDown(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return (e.code !== undefined && STORE_DOWN.has(e.code)) || /Connection terminated|timeout exceeded when trying to connect/i.test(e.message ?? "");
}

/** Turns an ajv error into a catalogue error naming the field. */
function validationError(err: FastifyError): { code: ErrorCode; message: string; details: Record<string, unknown> } {
  const first = err.validation?.[0];
  const where = `${err.validationContext ?? "body"}${first?.instancePath?.replaceAll("/", ".") ?? ""}`;
  if (first?.keyword === "additionalProperties") {
    const field = String((first.params as { additionalProperty?: string }).additionalProperty);
    return { code: "unknown_field", message: `unknown field "${field}" in ${where}`, details: { field: `${where}.${field}` } };
  }
  return { code: "validation_failed", message: `${where} ${first?.message ?? "is invalid"}`, details: { field: where } };
}

/** Creates the API (not listening: call `listen`, or `inject` in tests). */
export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: deps.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && /^[A-Za-z0-9._-]{1,128}$/.test(given) ? given : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    routerOptions: { ignoreTrailingSlash: true },
    // A URL the router cannot read (a bad escape, a path parameter over its length) gets the
    // catalogue's error too, not the framework's own shape.
    frameworkErrors: (err, _req, reply) => sendError(reply, "validation_failed", `the URL cannot be read: ${err.message}`),
    // A request that is not HTTP at all (a Content-Length that lies, a malformed header line).
    clientErrorHandler: (_err, socket) => {
      const body = JSON.stringify({ error: "bad_request", message: "the request is not valid HTTP (a Content-Length that does not match the body, a malformed header line)" });
      if (socket.writable) socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      else socket.destroy();
    },
  });
  app.decorateRequest("actor", null as unknown as Actor);
  const auth = new Authenticator(deps.db, { ttlMs: deps.authCacheMs ?? 5000 });
  // The API speaks JSON only: any other body gets 415 rather than a confusing validation error.
  app.removeContentTypeParser("text/plain");
  // HTTP clients (axios, under the scalingo client) label an empty POST as a form: accept it as
  // "no body", and refuse a real form like any other non-JSON body.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_req, body, done) => {
    if (body === "") done(null, undefined);
    else done(new QuaiError("unsupported_media_type", "form bodies are not supported: send application/json"), undefined);
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: "Quai API", version: VERSION, description: "Quai's REST API; shapes follow Scalingo's v1 API." },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer", description: "A bearer token from POST /v1/tokens/exchange" },
          apiToken: { type: "http", scheme: "basic", description: "Any user name, the API token as password (token exchange only)" },
        },
      },
      security: [{ bearer: [] }],
    },
  });

  app.addHook("onSend", async (req, reply) => {
    reply.header("x-request-id", req.id);
  });

  // No text Quai stores or passes on may hold a NUL byte: PostgreSQL refuses it (a 500 deep in a
  // handler, possibly after part of a change), and so does every process environment.
  app.addHook("preValidation", async (req, reply) => {
    const where = nulIn(req.params, "path") ?? nulIn(req.query, "query") ?? nulIn(req.body, "body");
    if (where) return sendError(reply, "validation_failed", `${where} holds a NUL byte (\\u0000), which no name or value may`);
  });

  app.addHook("onRequest", async (req, reply) => {
    if (req.routeOptions.config?.public || !req.routeOptions.url) return;
    const header = req.headers.authorization;
    if (!header) return sendError(reply, "auth_required", "authentication required: send Authorization: Bearer <token> (get one at POST /v1/tokens/exchange)");
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return sendError(reply, "auth_required", "the Authorization header must be `Bearer <token>`");
    req.actor = await auth.authenticate(m[1] as string);
  });

  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof QuaiError) return sendError(reply, err.code, err.message, err.details);
    if (err.validation) {
      const v = validationError(err);
      return sendError(reply, v.code, v.message, v.details);
    }
    switch (err.code) {
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return sendError(reply, "body_too_large", `request body is larger than ${deps.bodyLimitBytes} bytes`);
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return sendError(reply, "unsupported_media_type", `content type ${JSON.stringify(req.headers["content-type"] ?? "")} is not supported: send application/json`);
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return sendError(reply, "bad_json", "the body is empty but the content type is application/json");
      case "FST_ERR_CTP_INVALID_JSON_BODY":
        return sendError(reply, "bad_json", `the body is not valid JSON: ${err.message}`);
    }
    if (err instanceof SyntaxError || err.statusCode === 400) return sendError(reply, "bad_json", `the body is not valid JSON: ${err.message}`);
    if (isStoreDown(err)) {
      deps.log(`api: ${req.method} ${req.url}: store unavailable: ${err.message}`);
      return sendError(reply, "store_unavailable", "the state database is not reachable; retry in a moment");
    }
    if (err.statusCode === 413) return sendError(reply, "body_too_large", `request body is larger than ${deps.bodyLimitBytes} bytes`);
    deps.log(`api: ${req.method} ${req.url} [${req.id}] failed: ${err.stack ?? err.message}`);
    return sendError(reply, "internal_error", `internal error (request id ${req.id})`);
  });

  app.setNotFoundHandler((req, reply) => sendError(reply, "route_not_found", `no endpoint ${req.method} ${req.url.split("?")[0]}`));

  await app.register(platformRoutes(deps));
  await app.register(authRoutes(deps));
  await app.register(appRoutes(deps));
  await app.register(variableRoutes(deps));
  await app.register(eventRoutes(deps));
  await app.register(keyRoutes(deps));
  await app.register(deploymentRoutes(deps, auth));
  await app.register(formationRoutes(deps, auth));
  await app.register(addonRoutes(deps));
  await app.register(maintenanceRoutes(deps));
  await app.register(domainRoutes(deps));
  await app.register(scmRoutes(deps));
  if (deps.pipeline?.git) await app.register(gitFront(deps.pipeline.git));

  app.get("/v1/openapi.json", { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
  return app;
}
