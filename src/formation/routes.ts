// Formation, containers, releases, rollback, logs and one-off runs, in Scalingo's shapes where
// Scalingo has one (/scale, /containers, /ps, /restart, /logs, /run).
import { recordEvent } from "../events/service.ts";
import type { FastifyPluginAsync } from "fastify";
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../core/run.ts";
import { WebSocketServer, type WebSocket } from "ws";
import { appParams } from "../core/http.ts";
import { QuaiError } from "../core/errors.ts";
import type { ApiDeps } from "../server/api.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import type { Actor, Authenticator } from "../auth/service.ts";
import { containerSizes, type ContainerSize } from "../runtime/types.ts";
import { currentRelease, restart, scale, type ScaleInput } from "./service.ts";
import { runnableTypes } from "../pipeline/procfile.ts";
import { findRelease } from "../pipeline/release.ts";
import { deploymentJson } from "../deployments/service.ts";
import { matches } from "../logs/store.ts";
import { recordRun } from "./run.ts";
import { onUpgrade } from "../server/upgrade.ts";

/** What may wait unsent for one slow log follower or attached client before output is skipped. */
const FOLLOW_BUFFER_BYTES = 8 * 1024 * 1024;

/** Abort reason of an attached one-off stopped through `containers/:id/stop`. */
const STOPPED = new Error("stopped through the API");
/** A terminal dimension the run WebSocket accepts (columns or rows). */
const dim = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 9999;

/** Files sent with `run --file`: plain names, base64 content, 50 MB in all. */
function parseUploads(raw: unknown): { name: string; data: Buffer }[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > 20) throw new QuaiError("run_command_invalid", "files must be a list of at most 20 {name, data} objects");
  let total = 0;
  return raw.map((f: { name?: unknown; data?: unknown }) => {
    if (typeof f?.name !== "string" || !/^[A-Za-z0-9._-]{1,255}$/.test(f.name) || f.name.startsWith(".")) throw new QuaiError("run_command_invalid", `upload name ${JSON.stringify(f?.name)} must be a plain file name (letters, digits, ".", "_", "-")`);
    if (typeof f.data !== "string") throw new QuaiError("run_command_invalid", `upload ${f.name} has no data`);
    const data = Buffer.from(f.data, "base64");
    total += data.length;
    if (total > 50 * 1024 * 1024) throw new QuaiError("run_command_invalid", "uploads are limited to 50 MB in all");
    return { name: f.name, data };
  });
}

export function formationRoutes(deps: ApiDeps, auth: Authenticator): FastifyPluginAsync {
  return async (app) => {
    const p = deps.pipeline;
    if (!p) return;
    const { ctx, supervisor: sup } = p;
    const ref = (a: AppRecord) => ({ id: a.id, name: a.name, uid: a.uid });
    /** Ends each open log stream (`logs -f`). */
    const following = new Set<() => void>();
    /** Attached one-offs (runs of the control plane's, not started containers), by container id. */
    const attached = new Map<string, AbortController>();

    // Scale and restart answer 202 with a Location naming an operation, as Scalingo does; Quai's
    // finish before answering, so their operations are already done (kept one hour, in memory).
    const operations = new Map<string, { id: string; app_id: string; type: string; status: string; created_at: string; finished_at: string; error: string | null }>();
    const recordOperation = (a: AppRecord, type: string, started: Date): string => {
      const id = randomUUID();
      operations.set(id, { id, app_id: a.id, type, status: "done", created_at: started.toISOString(), finished_at: new Date().toISOString(), error: null });
      const cutoff = Date.now() - 3600_000;
      for (const [k, v] of operations) if (Date.parse(v.created_at) < cutoff) operations.delete(k);
      return `${deps.platform().api_url}/v1/apps/${a.name}/operations/${id}`;
    };
    app.get<{ Params: { app: string; id: string } }>("/v1/apps/:app/operations/:id", {
      schema: { summary: "An operation started by scale or restart", tags: ["containers"], params: { type: "object", required: ["app", "id"], properties: { app: { type: "string" }, id: { type: "string" } } } },
    }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const op = operations.get(req.params.id);
      if (!op || op.app_id !== found.id) throw new QuaiError("operation_not_found", `no operation ${req.params.id} on this app`);
      return { operation: op };
    });

    app.get("/v1/features/container_sizes", { schema: { summary: "Container sizes (Scalingo's)", tags: ["containers"] } }, async () => ({
      container_sizes: Object.entries(containerSizes).map(([name, s], i) => ({ id: name, name, human_name: `${name} (${s.memoryMb} MB)`, ordinal: i + 1, memory: s.memoryMb * 1024 * 1024, human_cpu: "shared", pids_limit: s.pids, swap: 0, sku: name, hourly_price: 0, thirtydays_price: 0, pricings: {} })),
    }));

    const formationJson = async (a: AppRecord) => {
      const release = await currentRelease(ctx, sup, a.id);
      const rows = await ctx.db.selectFrom("formation").selectAll().where("app_id", "=", a.id).orderBy("type").execute();
      return rows.map((r) => ({ name: r.type, amount: r.amount, size: r.size, command: release && Object.hasOwn(release.processTypes, r.type) ? release.processTypes[r.type] : null }));
    };

    app.get<{ Params: { app: string } }>("/v1/apps/:app/containers", { schema: { summary: "The formation: amount and size per process type", tags: ["containers"], params: appParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      return { containers: await formationJson(found) };
    });

    app.post<{ Params: { app: string }; Body: { containers: ScaleInput[] } }>("/v1/apps/:app/scale", {
      schema: {
        summary: "Scale process types (amount and size); returns once the new containers serve",
        tags: ["containers"],
        params: appParams,
        body: {
          type: "object",
          required: ["containers"],
          additionalProperties: false,
          properties: { containers: { type: "array", minItems: 1, items: { type: "object", required: ["name"], additionalProperties: false, properties: { name: { type: "string" }, amount: { type: "integer" }, size: { type: "string" } } } } },
        },
      },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const started = new Date();
      const containers = await scale(ctx, sup, ref(found), req.body.containers);
      void reply.header("location", recordOperation(found, "scale", started));
      await recordEvent(deps.db, { actor: req.actor, app: found, type: "scale", data: { containers: req.body.containers } });
      return reply.code(202).send({ containers });
    });

    app.get<{ Params: { app: string } }>("/v1/apps/:app/ps", { schema: { summary: "Running containers", tags: ["containers"], params: appParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const rows = await ctx.db.selectFrom("containers").selectAll().where("app_id", "=", found.id).orderBy("type").orderBy("index").execute();
      // Each container's own release: the current one's, an earlier one's retiring, or the one a
      // deployment is starting.
      const ids = [...new Set(rows.map((c) => c.release_id))];
      const versions = new Map(ids.length ? (await ctx.db.selectFrom("releases").select(["id", "version"]).where("id", "in", ids).execute()).map((r) => [r.id, `v${r.version}`]) : []);
      return {
        containers: await Promise.all(rows.map(async (c) => {
          const st = await ctx.runtime.stats(c.id).catch(() => undefined);
          return { id: c.id, label: `${c.type}-${c.index}`, type: c.type, type_index: c.index, state: c.state, size: c.size, port: c.port, restarts: c.restarts, last_exit: c.last_exit, release: versions.get(c.release_id) ?? "-", created_at: c.created_at.toISOString(), memory_bytes: st?.memoryBytes ?? null, memory_limit_bytes: st?.memoryLimitBytes ?? null };
        })),
      };
    });

    app.post<{ Params: { app: string }; Body: { scope?: string[] | string } | undefined }>("/v1/apps/:app/restart", {
      schema: { summary: "Rolling restart of all or some process types", tags: ["containers"], params: appParams },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      // The scalingo client sends one type as a string; the API documents a list.
      const raw: unknown = req.body?.scope ?? [];
      const scope = typeof raw === "string" ? [raw] : raw;
      if (!Array.isArray(scope) || scope.some((s) => typeof s !== "string")) throw new QuaiError("validation_failed", "scope must be a list of process types");
      const started = new Date();
      await restart(ctx, sup, ref(found), scope);
      void reply.header("location", recordOperation(found, "restart", started));
      await recordEvent(deps.db, { actor: req.actor, app: found, type: "restart", data: { scope } });
      return reply.code(202).send({ restarted: scope.length ? scope : "all" });
    });

    app.post<{ Params: { app: string; id: string } }>("/v1/apps/:app/containers/:id/stop", {
      schema: { summary: "Stop a one-off container (by id or label, e.g. one-off-3)", tags: ["run"], params: { type: "object", required: ["app", "id"], properties: { app: { type: "string" }, id: { type: "string" } } } },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const rows = await ctx.db.selectFrom("containers").selectAll().where("app_id", "=", found.id).where("type", "=", "one-off").execute();
      const c = rows.find((r) => r.id === req.params.id || `one-off-${r.index}` === req.params.id);
      if (!c) throw new QuaiError("container_not_found", `no running one-off container ${req.params.id} (only one-off containers can be stopped; scale the others)`);
      // An attached run is a process of the control plane's, not a started container: its abort
      // ends it, and the attach clears its row.
      const run = attached.get(c.id);
      if (run) run.abort(STOPPED);
      else await sup.destroy(c.id, 10_000);
      return reply.code(202).send();
    });

    app.get<{ Params: { app: string } }>("/v1/apps/:app/releases", { schema: { summary: "Releases, newest first", tags: ["releases"], params: appParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const rows = await ctx.db.selectFrom("releases").select(["id", "version", "git_ref", "description", "created_by", "created_at", "slug_size", "process_types"]).where("app_id", "=", found.id).orderBy("version", "desc").limit(100).execute();
      return { releases: rows.map((r) => ({ id: r.id, version: r.version, git_ref: r.git_ref, description: r.description, created_by: r.created_by, created_at: r.created_at.toISOString(), slug_size: r.slug_size, process_types: runnableTypes(r.process_types), current: r.id === found.current_release_id })) };
    });

    app.post<{ Params: { app: string }; Body: { version?: number } | undefined }>("/v1/apps/:app/rollback", {
      schema: { summary: "Redeploy an earlier release's slug and config (default: the newest earlier one that went live); databases are not rolled back", tags: ["releases"], params: appParams },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const current = await currentRelease(ctx, sup, found.id);
      if (!current) throw new QuaiError("no_release", "the app has no release to roll back from");
      // By default the newest earlier release that went live: one whose deployment failed or was
      // cancelled never served, and is no way back.
      const served = req.body?.version === undefined
        ? await ctx.db.selectFrom("releases").select("version").where("app_id", "=", found.id).where("version", "<", current.version)
          .where((eb) => eb.exists(eb.selectFrom("deployments").select("deployments.id").whereRef("deployments.release_id", "=", "releases.id").where("deployments.status", "=", "success")))
          .orderBy("version", "desc").limit(1).executeTakeFirst()
        : undefined;
      const version = req.body?.version ?? served?.version ?? 0;
      if (typeof version !== "number" || !Number.isInteger(version) || version < 1 || version > 2_147_483_647) {
        throw new QuaiError("release_not_found", req.body?.version === undefined ? "there is no earlier release that went live to roll back to" : `the app has no release ${JSON.stringify(req.body.version)}`);
      }
      const target = await findRelease(ctx.db, ctx.keyring, found.id, version);
      const d = await p.deployments.create(req.actor, found, { source: "rollback", gitRef: target.gitRef, releaseId: target.id });
      return reply.code(201).send({ deployment: deploymentJson(d, deps.platform().api_url, found.name), release: { version: target.version } });
    });

    // Logs: Scalingo answers with a logs_url the client then reads; the URL carries a short-lived signed token.
    const secret = randomBytes(32);
    const sign = (appId: string, exp: number) => createHmac("sha256", secret).update(`${appId}.${exp}`).digest("base64url");
    app.get<{ Params: { app: string } }>("/v1/apps/:app/logs", { schema: { summary: "The URL of the app's log stream (valid 1 hour)", tags: ["logs"], params: appParams } }, async (req) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const exp = Math.floor(Date.now() / 1000) + 3600;
      return { app: { id: found.id, name: found.name }, logs_url: `${deps.platform().api_url}/v1/apps/${found.name}/logs/stream?token=${exp}.${sign(found.id, exp)}` };
    });

    app.get<{ Params: { app: string }; Querystring: { token?: string; n?: string; stream?: string; filter?: string } }>("/v1/apps/:app/logs/stream", {
      config: { public: true },
      schema: {
        summary: "Log lines (n, default 100, at most 10,000 sent; stream=true follows; filter=web)",
        tags: ["logs"],
        params: appParams,
        querystring: { type: "object", properties: { token: { type: "string" }, n: { type: "string", pattern: "^[1-9][0-9]{0,14}$" }, stream: { type: "string", enum: ["true", "false"] }, filter: { type: "string" } } },
      },
    }, async (req, reply) => {
      const found = await ctx.db.selectFrom("apps").select(["id", "name"]).where("name", "=", req.params.app).executeTakeFirst();
      const [expRaw, sig] = String(req.query.token ?? "").split(".");
      const exp = Number(expRaw);
      const given = Buffer.from(sig ?? "");
      const expected = found ? Buffer.from(sign(found.id, exp)) : undefined;
      const good = expected && Number.isInteger(exp) && exp > Date.now() / 1000 && given.length === expected.length && timingSafeEqual(expected, given);
      if (!found || !good) throw new QuaiError("token_invalid", "the logs URL is invalid or expired: ask GET /v1/apps/:app/logs for a new one");
      const n = Math.min(Number(req.query.n ?? 100), 10_000);
      const filter = req.query.filter || undefined;
      await sup.shipLogs();
      const lines = await sup.logs.tail(found.id, n, filter);
      if (req.query.stream !== "true") return reply.type("text/plain; charset=utf-8").send(lines.map((l) => l + "\n").join(""));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      res.write(lines.map((l) => l + "\n").join(""));
      // A reader that does not keep up is not buffered for without end: lines that find more
      // than FOLLOW_BUFFER_BYTES waiting for it are skipped, and it is told how many.
      let skipped = 0;
      const off = sup.logs.follow(
        found.id,
        (text) => {
          const out = filter ? text.split("\n").filter((l) => l && matches(l, filter)).map((l) => l + "\n").join("") : text;
          if (!out) return;
          if (res.writableLength > FOLLOW_BUFFER_BYTES) {
            skipped += out.split("\n").length - 1;
            return;
          }
          if (skipped) res.write(`quai: ${skipped} lines skipped: this reader did not keep up\n`);
          skipped = 0;
          res.write(out);
        },
        // The app was deleted: nothing more will come.
        () => res.end(),
      );
      const end = () => res.end();
      following.add(end);
      res.on("close", () => {
        off();
        following.delete(end);
      });
      return reply;
    });

    // One-off containers. Detached: POST /run with detached=true. Attached: WebSocket /run/attach.
    const runSchema = {
      type: "object",
      required: ["command"],
      additionalProperties: false,
      properties: {
        command: { anyOf: [{ type: "string", minLength: 1 }, { type: "array", minItems: 1, items: { type: "string" } }] },
        env: { type: "object", additionalProperties: { type: "string" } },
        size: { type: "string" },
        detached: { type: "boolean" },
        files: { type: "array", maxItems: 20, items: { type: "object", required: ["name", "data"], additionalProperties: false, properties: { name: { type: "string" }, data: { type: "string" } } } },
      },
    } as const;
    app.post<{ Params: { app: string }; Body: { command: string | string[]; env?: Record<string, string>; size?: string; detached?: boolean; files?: { name: string; data: string }[] } }>("/v1/apps/:app/run", {
      bodyLimit: 72 * 1024 * 1024,
      schema: { summary: "Start a one-off container (detached; attach through the /run/attach WebSocket)", tags: ["run"], params: appParams, body: runSchema },
    }, async (req, reply) => {
      const found = await findApp(deps.db, req.actor, req.params.app);
      const job = await prepareRun(found, req.actor, req.body);
      // Its spec is kept like a container's, so a restarted control plane re-adopts it.
      await writeFile(join(ctx.paths.containers, job.spec.id, "spec.json"), JSON.stringify(job.spec), { mode: 0o600 });
      let state;
      try {
        state = await ctx.runtime.start(job.spec);
      } catch (err) {
        // Nothing runs: no row or files stay behind.
        await sup.destroy(job.spec.id, 0).catch(() => {});
        throw err;
      }
      // When it ends: its output is shipped, its row, cgroup and files removed.
      void ctx.runtime.wait(job.spec.id).then(() => sup.destroy(job.spec.id, 0)).catch(() => {});
      return reply.code(201).send({ container: { id: job.spec.id, label: job.label, type: "one-off", state: state.status, command: job.commandText, size: job.spec.size, created_at: state.startedAt } });
    });

    const prepareRun = async (found: AppRecord, actor: Actor, body: { command: unknown; env?: Record<string, string>; size?: string; files?: unknown }) => {
      const files = parseUploads(body.files);
      const release = await currentRelease(ctx, sup, found.id);
      if (!release) throw new QuaiError("no_release", "the app has no release yet: deploy it first, then run commands in it");
      const argv = typeof body.command === "string" ? ["/quai/bin/launch", "--shell", body.command] : Array.isArray(body.command) && body.command.length > 0 && body.command.every((a) => typeof a === "string") ? ["/quai/bin/launch", ...(body.command as string[])] : undefined;
      // A shell line of blanks, or a program named "": nothing to run (the launcher would say "not found").
      const program = typeof body.command === "string" ? body.command : (body.command as string[] | undefined)?.[0];
      if (!argv || program === undefined || program.trim() === "") throw new QuaiError("run_command_invalid", "the command is empty");
      if (argv.some((a) => a.includes("\0"))) throw new QuaiError("run_command_invalid", "the command holds a NUL byte, which no program argument can");
      const size = (body.size ?? "M") as ContainerSize;
      if (!Object.hasOwn(containerSizes, size)) throw new QuaiError("formation_invalid", `unknown size "${body.size}": sizes are ${Object.keys(containerSizes).join(", ")}`);
      for (const [k, v] of Object.entries(body.env ?? {})) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new QuaiError("variable_name_invalid", `--env name ${JSON.stringify(k)} is not a valid variable name`);
        if (typeof v !== "string") throw new QuaiError("validation_failed", `--env ${k}: the value must be a string`);
        if (v.includes("\0")) throw new QuaiError("validation_failed", `--env ${k}: the value holds a NUL byte, which no environment can carry`);
      }
      const n = await recordRun(ctx, found, actor, typeof body.command === "string" ? body.command : (body.command as string[]));
      const id = `${found.name}-one-off-${n}-${randomBytes(3).toString("hex")}`;
      const spec = await sup.specFor(ref(found), release, id, `one-off-${n}`, size, argv, null, body.env ?? {});
      if (files.length > 0) {
        // `--file`: uploads land in /tmp/uploads, as on Scalingo, owned by the app's uid.
        const dir = join(ctx.paths.containers, id, "uploads");
        await mkdir(dir, { mode: 0o700 });
        for (const f of files) await writeFile(join(dir, f.name), f.data, { mode: 0o600 });
        await run("chown", ["-R", `${found.uid}:${found.uid}`, dir]);
        spec.binds = [...(spec.binds ?? []), { source: dir, target: "/tmp/uploads", writable: true }];
      }
      await ctx.db.insertInto("containers").values({ id, app_id: found.id, release_id: release.id, type: "one-off", index: n, size, port: null, state: "running" }).execute();
      return { spec, label: `one-off-${n}`, commandText: typeof body.command === "string" ? body.command : (body.command as string[]).join(" ") };
    };

    // A start message carries the uploads (base64, like POST /run's body): no message is larger.
    const wss = new WebSocketServer({ noServer: true, maxPayload: 72 * 1024 * 1024 });
    onUpgrade(app.server, /^\/v1\/apps\/([^/?]+)\/run\/attach(?:\?|$)/, (req, socket, head, appRef) => wss.handleUpgrade(req, socket, head, (ws) => attach(ws, appRef)));
    // Protocol: → {type:"auth",data:{token}}, → {type:"start",command,env,size,tty,cols,rows,files},
    // → {type:"stdin",data(base64)} / {type:"resize",cols,rows} / {type:"eof"};
    // ← {type:"ready"}, ← {type:"started",container}, ← {type:"stdout"|"stderr",data(base64)},
    // ← {type:"exit",code,signal,oom}, ← {type:"error",error,message}.
    const attach = (ws: WebSocket, appRef: string) => {
      let stdin: PassThrough | undefined;
      let who: { actor: Actor; app: AppRecord } | undefined;
      const abort = new AbortController();
      const authTimer = setTimeout(() => ws.close(4001, "auth timeout"), 10_000);
      ws.on("close", () => {
        clearTimeout(authTimer);
        abort.abort();
      });
      let stage = 0;
      const resizes = new EventEmitter<{ resize: [cols: number, rows: number] }>();
      ws.on("message", async (data) => {
        let msg: { type?: string; data?: unknown; command?: unknown; env?: Record<string, string>; size?: string; tty?: boolean; token?: string; cols?: number; rows?: number; files?: unknown };
        try {
          msg = JSON.parse(String(data)) as typeof msg;
        } catch {
          return ws.close(4000, "bad message");
        }
        try {
          if (stage === 0) {
            stage = 1;
            clearTimeout(authTimer);
            const token = (msg.data as { token?: string } | undefined)?.token;
            if (msg.type !== "auth" || !token) throw new QuaiError("auth_required", "first message must be {type: auth}");
            const actor = await auth.authenticate(token);
            const found = await findApp(deps.db, actor, appRef);
            who = { actor, app: found };
            ws.send(JSON.stringify({ type: "ready" }));
            return;
          }
          if (stage === 1 && msg.type === "start") {
            stage = 2;
            // Input may arrive while the container is prepared: buffer it from now on.
            stdin = new PassThrough();
            const { actor, app: found } = who as { actor: Actor; app: AppRecord };
            // The terminal's size, for programs that lay out their output (the pty reads LINES/COLUMNS).
            // (a size out of a terminal's range is left to the pty's default).
            const term: Record<string, string> = msg.tty && dim(msg.cols) && dim(msg.rows) ? { COLUMNS: String(msg.cols), LINES: String(msg.rows), TERM: "xterm-256color" } : {};
            const env = msg.env === undefined || (typeof msg.env === "object" && msg.env !== null && !Array.isArray(msg.env)) ? msg.env : null;
            if (env === null) throw new QuaiError("validation_failed", "env must be an object of names and values");
            const job = await prepareRun(found, actor, { command: msg.command, env: { ...term, ...env }, size: msg.size, files: msg.files });
            // However the run ends (the client gone, `containers/:id/stop`, an error), its row,
            // cgroup and files go with it.
            attached.set(job.spec.id, abort);
            // Output for a client that does not read it is skipped past FOLLOW_BUFFER_BYTES, and
            // the client told, rather than held in the control plane's memory.
            let skippedBytes = 0;
            const send = (type: "stdout" | "stderr", b: Buffer) => {
              if (ws.bufferedAmount > FOLLOW_BUFFER_BYTES) {
                skippedBytes += b.length;
                return;
              }
              if (skippedBytes) ws.send(JSON.stringify({ type: "stderr", data: Buffer.from(`\r\nquai: ${skippedBytes} bytes of output skipped: this client did not keep up\r\n`).toString("base64") }));
              skippedBytes = 0;
              ws.send(JSON.stringify({ type, data: b.toString("base64") }));
            };
            try {
              ws.send(JSON.stringify({ type: "started", container: job.label }));
              const res = await ctx.runtime.exec(job.spec, {
                stdin,
                tty: msg.tty === true,
                resizes,
                signal: abort.signal,
                onStdout: (b) => send("stdout", b),
                onStderr: (b) => send("stderr", b),
              });
              ws.send(JSON.stringify({ type: "exit", code: res.exitCode, signal: res.signal, oom: res.oomKilled }));
              ws.close(1000);
            } catch (err) {
              if (!abort.signal.aborted) throw err;
              // Stopped through the API: killed, as `docker kill` reports it. Else the client left.
              if (abort.signal.reason === STOPPED) {
                ws.send(JSON.stringify({ type: "exit", code: 137, signal: "SIGKILL", oom: false }));
                ws.close(1000);
              }
            } finally {
              attached.delete(job.spec.id);
              await sup.destroy(job.spec.id, 0).catch(() => {});
            }
            return;
          }
          if (stage === 2 && msg.type === "stdin" && typeof msg.data === "string") {
            // Input the command does not read yet is not buffered without end: the socket waits.
            if (stdin && !stdin.write(Buffer.from(msg.data, "base64"))) {
              ws.pause();
              stdin.once("drain", () => ws.resume());
            }
          } else if (stage === 2 && msg.type === "eof") stdin?.end();
          // The client's terminal changed size (a size out of range is ignored, as at the start).
          else if (stage === 2 && msg.type === "resize" && dim(msg.cols) && dim(msg.rows)) resizes.emit("resize", msg.cols, msg.rows);
        } catch (err) {
          const e = err instanceof QuaiError ? err : new QuaiError("internal_error", "internal error");
          if (!(err instanceof QuaiError)) ctx.log(`run: ${String(err)}`);
          ws.send(JSON.stringify({ type: "error", error: e.code, message: e.message }));
          ws.close(4000, e.code);
        }
      });
    };
    // A stopping server ends its log streams and attached runs: it would wait on them for ever.
    app.addHook("preClose", async () => {
      for (const end of following) end();
      for (const client of wss.clients) client.terminate();
    });
    app.addHook("onClose", async () => wss.close());
  };
}
