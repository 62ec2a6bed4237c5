// The git front over smart HTTP: `git http-backend` as a CGI, streamed both ways, behind HTTP
// Basic auth with an API token as the password. Pushes to main/master deploy through the
// repository's pre-receive hook (hook.sh), which calls back the internal endpoint below.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { run } from "../core/run.ts";
import { QuaiError } from "../core/errors.ts";
import { spawnStreaming } from "../core/spawner.ts";
import { actorForApiToken, type Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import type { Db } from "../store/db.ts";
import type { Deployments } from "../deployments/service.ts";
import type { DeploymentOutputs } from "../pipeline/output.ts";

/** What the git front needs. */
export interface GitFrontDeps {
  db: Db;
  /** Bare repositories live here, one per app id. */
  reposDir: string;
  deployments: () => Deployments;
  outputs: DeploymentOutputs;
  /** Base URL of this server's API (the hook calls it back). */
  apiUrl: () => string;
  appUrl: (app: AppRecord) => string;
  log: (line: string) => void;
  /** Pushes in progress (see grantPush). */
  grants: Map<string, PushGrant>;
}

const hookScript = fileURLToPath(new URL("./hook.sh", import.meta.url));

let backend: Promise<string[]> | undefined;
/**
 * How to start git's CGI: `git-http-backend` from git's exec path, asked once; `git http-backend`
 * if that fails. The `git` wrapper's own start cost ~1.6 ms of each of a push's two requests.
 */
function httpBackend(): Promise<string[]> {
  backend ??= run("git", ["--exec-path"]).then(
    (res) => {
      const direct = join(res.stdout.trim(), "git-http-backend");
      return res.code === 0 && res.stdout.trim().startsWith("/") && existsSync(direct) ? [direct] : ["git", "http-backend"];
    },
    () => ["git", "http-backend"],
  );
  return backend;
}

/** Creates the app's bare repository (once) with Quai's pre-receive hook. */
export async function ensureRepo(reposDir: string, appId: string): Promise<string> {
  const dir = join(reposDir, `${appId}.git`);
  if (!existsSync(join(dir, "HEAD"))) {
    await mkdir(reposDir, { recursive: true, mode: 0o700 });
    const res = await run("git", ["init", "--quiet", "--bare", "--initial-branch=main", dir]);
    if (res.code !== 0) throw new Error(`git init failed: ${res.stderr}`);
    // Written into the new config rather than by two `git config` runs (a process each).
    await appendFile(join(dir, "config"), "[http]\n\treceivepack = true\n[receive]\n\tdenyNonFastForwards = false\n");
  }
  const hook = join(dir, "hooks", "pre-receive");
  const text = `#!/bin/sh\n# Quai: deploys pushes to main or master (see src/git/hook.sh).\nexec /bin/bash "$QUAI_HOOK_SCRIPT"\n`;
  if ((await readFile(hook, "utf8").catch(() => "")) !== text) {
    await writeFile(hook, text);
    await chmod(hook, 0o755);
  }
  return dir;
}

/** One-time callback tokens of pushes in progress, shared by the HTTP and SSH fronts. */
export interface PushGrant {
  actor: Actor;
  app: AppRecord;
  /** The id of the deployment this push may create, whose build runner started ahead. */
  deploymentId?: string;
}

/** The end of the last push of each app (see `pushTurn`). */
const pushChains = new Map<string, Promise<void>>();

/**
 * Waits for the app's turn to receive a push, and returns the function that ends it. Pushes to
 * one app take turns from their start to their ref update: two pushes from the same base would
 * otherwise both deploy, the second going live while git refuses its ref update (the first had
 * moved the branch), and the branch would no longer hold the code that runs. In turn, the hook
 * refuses a push whose base is no longer the branch's head before anything is built.
 */
export async function pushTurn(appId: string): Promise<() => void> {
  const before = pushChains.get(appId) ?? Promise.resolve();
  let end = () => {};
  const mine = new Promise<void>((resolve) => (end = resolve));
  const chain = before.then(() => mine);
  pushChains.set(appId, chain);
  void chain.then(() => {
    if (pushChains.get(appId) === chain) pushChains.delete(appId);
  });
  await before;
  return end;
}

/** Registers a push and returns the environment its pre-receive hook needs to call back. */
export function grantPush(deps: GitFrontDeps, who: PushGrant): { token: string; env: NodeJS.ProcessEnv } {
  const token = randomBytes(24).toString("hex");
  deps.grants.set(token, who);
  return {
    token,
    env: {
      QUAI_HOOK_URL: `${deps.apiUrl()}/internal/git/deploy`,
      QUAI_HOOK_TOKEN: token,
      QUAI_HOOK_SCRIPT: hookScript,
    },
  };
}

export function gitFront(deps: GitFrontDeps): FastifyPluginAsync {
  const grants = deps.grants;
  return async (app) => {
    // git's bodies are streamed straight to the CGI, whatever their size (100 MB pushes).
    for (const type of ["application/x-git-receive-pack-request", "application/x-git-upload-pack-request", "application/gzip"]) {
      app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
    }

    const authenticate = async (req: FastifyRequest, reply: FastifyReply): Promise<{ actor: Actor; app: AppRecord } | undefined> => {
      const header = req.headers.authorization ?? "";
      const m = /^Basic\s+(\S+)$/i.exec(header);
      if (!m) {
        void reply.code(401).header("www-authenticate", 'Basic realm="Quai"').type("text/plain").send("Authentication required: use your API token as the password\n");
        return undefined;
      }
      const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
      const password = decoded.slice(decoded.indexOf(":") + 1);
      let actor: Actor;
      try {
        actor = await actorForApiToken(deps.db, password);
      } catch (err) {
        void reply.code(401).header("www-authenticate", 'Basic realm="Quai"').type("text/plain").send(`${err instanceof Error ? err.message : "invalid token"}\n`);
        return undefined;
      }
      const name = (req.params as { repo: string }).repo.replace(/\.git$/, "");
      const found = await findApp(deps.db, actor, name);
      return { actor, app: found };
    };

    const cgi = async (req: FastifyRequest, reply: FastifyReply, pathInfo: string) => {
      const who = await authenticate(req, reply);
      if (!who) return reply;
      await ensureRepo(deps.reposDir, who.app.id);
      const endTurn = pathInfo === "/git-receive-pack" ? await pushTurn(who.app.id) : () => {};
      // A push: the build runner of the deployment it may make starts now, beside the transfer.
      const deploymentId = pathInfo === "/git-receive-pack" ? deps.deployments().prestart(who.app) : undefined;
      const { token, env: hookEnv } = grantPush(deps, { ...who, deploymentId });
      const query = req.url.includes("?") ? req.url.slice(req.url.indexOf("?") + 1) : "";
      const env: NodeJS.ProcessEnv = {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: deps.reposDir,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: `/${who.app.id}.git${pathInfo}`,
        REQUEST_METHOD: req.method,
        QUERY_STRING: query,
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: who.actor.email,
        REMOTE_ADDR: req.ip,
        GIT_PROTOCOL: (req.headers["git-protocol"] as string | undefined) ?? "",
        HTTP_CONTENT_ENCODING: (req.headers["content-encoding"] as string | undefined) ?? "",
        ...hookEnv,
      };
      if (req.headers["content-length"]) env.CONTENT_LENGTH = req.headers["content-length"];
      const [program, ...args] = await httpBackend();
      const child = spawnStreaming(program as string, args, { env, stdio: ["pipe", "pipe", "pipe"] });
      child.stderr!.on("data", (b: Buffer) => deps.log(`git: ${b.toString().trim()}`));
      child.on("error", (err: Error) => {
        endTurn();
        deps.log(`git: http-backend could not start: ${err.message}`);
      });
      const body = req.body as NodeJS.ReadableStream | undefined;
      if (body && typeof body.pipe === "function") body.pipe(child.stdin!);
      else child.stdin!.end();
      child.stdin!.on("error", () => {});
      reply.hijack();
      const res = reply.raw;
      let head = Buffer.alloc(0);
      let headersDone = false;
      child.stdout!.on("data", (chunk: Buffer) => {
        if (headersDone) {
          res.write(chunk);
          return;
        }
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        headersDone = true;
        let status = 200;
        const headers: Record<string, string> = {};
        for (const line of head.subarray(0, end).toString("latin1").split("\r\n")) {
          const i = line.indexOf(":");
          if (i < 0) continue;
          const k = line.slice(0, i).trim();
          const v = line.slice(i + 1).trim();
          if (k.toLowerCase() === "status") status = Number(v.split(" ")[0]) || 200;
          else headers[k] = v;
        }
        res.writeHead(status, headers);
        res.write(head.subarray(end + 4));
      });
      child.on("close", () => {
        endTurn();
        grants.delete(token);
        if (deploymentId) deps.deployments().dropPrestart(deploymentId);
        if (!headersDone) res.writeHead(500, { "content-type": "text/plain" }).end("git failed\n");
        else res.end();
      });
      // A pusher who disconnects ends the CGI; a deployment already queued goes on.
      res.on("close", () => {
        if (child.exitCode === null) child.kill("SIGTERM");
      });
      return reply;
    };

    const params = { type: "object", properties: { repo: { type: "string", pattern: "^[a-z0-9-]{3,48}\\.git$" } }, required: ["repo"] } as const;
    const opts = { config: { public: true }, schema: { hide: true, params } };
    app.get("/:repo/info/refs", opts, (req, reply) => cgi(req, reply, "/info/refs"));
    app.post("/:repo/git-receive-pack", opts, (req, reply) => cgi(req, reply, "/git-receive-pack"));
    app.post("/:repo/git-upload-pack", opts, (req, reply) => cgi(req, reply, "/git-upload-pack"));

    // Called by the pre-receive hook with the pushed commit as a tarball; streams the deployment.
    app.post<{ Querystring: { ref: string; sha: string } }>("/internal/git/deploy", { config: { public: true }, schema: { hide: true } }, async (req, reply) => {
      const m = /^Bearer\s+([0-9a-f]{48})$/.exec(req.headers.authorization ?? "");
      const grant = m ? grants.get(m[1] as string) : undefined;
      if (!grant) return reply.code(401).type("text/plain").send("unknown push\n");
      const branch = String(req.query.ref ?? "").replace(/^refs\/heads\//, "");
      const sha = String(req.query.sha ?? "");
      if (!/^[0-9a-f]{40,64}$/.test(sha)) return reply.code(422).type("text/plain").send("bad sha\n");
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      let deployment;
      try {
        deployment = await deps.deployments().create(grant.actor, grant.app, { source: "git", gitRef: sha, archive: req.body as NodeJS.ReadableStream as never, id: grant.deploymentId });
      } catch (err) {
        const msg = err instanceof QuaiError ? err.message : "internal error";
        res.end(`Quai: ${msg}\n\0build-error\n`);
        return reply;
      }
      res.write(`-----> Deployment ${deployment.id} of ${grant.app.name} (${branch} at ${sha.slice(0, 8)}) queued\n`);
      const abort = new AbortController();
      res.on("close", () => abort.abort());
      let final = "aborted";
      // Ended already (its live output dropped): its status is in the store.
      const finalNow = () => deps.deployments().finalStatus(grant.app.id, deployment.id).catch(() => undefined);
      for await (const e of deps.outputs.follow(deployment.id, finalNow, abort.signal)) {
        if (e.type === "log") res.write(e.text);
        else if (e.type === "status") {
          if (e.status === "queued") res.write("       Waiting for the deployment before it to finish\n");
          if (e.final) final = e.status;
        }
      }
      if (final === "success") res.write(`\n-----> ${grant.app.name} is live at ${deps.appUrl(grant.app)}\n`);
      else res.write(`\n !     Deployment ended: ${final}. The push is refused; the app is unchanged.\n`);
      res.end(`\0${final}\n`);
      return reply;
    });
  };
}

