// Deployments: records, the per-app queue, and the run of one deployment through the pipeline
// (receive → build → release → deploy). One deployment runs at a time per app, across every
// server sharing the database: the queue is the `deployments` table, the lock an advisory lock.
import { recordEvent } from "../events/service.ts";
import { PassThrough, pipeline, Readable } from "node:stream";
import { rm } from "node:fs/promises";
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { join } from "node:path";
import type { Actor } from "../auth/service.ts";
import type { AppRecord } from "../apps/service.ts";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import { BlobTooLarge } from "../blobs/store.ts";
import { listVariables, resolveVariables } from "../variables/service.ts";
import type { PipelineContext } from "../pipeline/context.ts";
import { buildSlug, BuildError, cleanUpBuild, prestartRunner, unpackOnReceipt, type PrestartedRunner, type Receipt } from "../pipeline/build.ts";
import { startCacheDetach } from "../pipeline/slug.ts";
import { harvestNpmContent } from "../pipeline/npm-store.ts";
import { createRelease, loadRelease } from "../pipeline/release.ts";
import { deployRelease, DeployError, replacedContainers } from "../pipeline/deploy.ts";
import type { Supervisor } from "../formation/supervisor.ts";
import type { DeploymentsTable } from "../store/schema.ts";
import type { Selectable } from "kysely";
import { finalStatuses } from "../pipeline/output.ts";

/** How long after a failure of the store an app's deployment queue is looked at again. */
const PUMP_RETRY_MS = 5_000;

export type DeploymentRow = Selectable<DeploymentsTable>;

/** A git ref as Scalingo shows it: a branch, tag or commit name. Refuses shell syntax and options. */
export function assertGitRef(ref: string): void {
  if (ref.length === 0 || ref.length > 255 || ref.startsWith("-") || !/^[A-Za-z0-9._/@+-]+$/.test(ref) || ref.includes("..")) {
    throw new QuaiError("git_ref_invalid", `git ref ${JSON.stringify(ref)} is not a valid branch, tag or commit name`);
  }
}

/** Scalingo's deployment JSON. */
export function deploymentJson(d: DeploymentRow, apiBase: string, appName: string): Record<string, unknown> {
  const duration = d.started_at && d.finished_at ? Math.round((d.finished_at.getTime() - d.started_at.getTime()) / 1000) : null;
  return {
    id: d.id,
    app_id: d.app_id,
    created_at: d.created_at.toISOString(),
    started_at: d.started_at?.toISOString() ?? null,
    finished_at: d.finished_at?.toISOString() ?? null,
    status: d.status,
    git_ref: d.git_ref,
    previous_git_ref: d.previous_git_ref,
    duration,
    image_size: d.image_size,
    stack_base_image: "quai-24",
    source: d.source,
    error: d.error,
    pusher: { id: d.pusher_id, email: d.pusher_email, username: d.pusher_username },
    links: { output: `${apiBase}/v1/apps/${appName}/deployments/${d.id}/output` },
  };
}

/** Why a source was given. */
export interface NewDeployment {
  source: "git" | "archive" | "rollback" | "config";
  gitRef: string | null;
  /** The gzipped tarball; for rollbacks, absent. */
  archive?: Readable;
  /** Release to redeploy (rollback). */
  releaseId?: string;
  postdeploy?: string;
  /** The id the deployment gets, given by `prestart` (its build runner started ahead). */
  id?: string;
}

/** Removes a source unpacked on receipt; nothing is left to remove when its build took it. */
function removeReceived(done: Promise<string | undefined>): void {
  void done
    .then(async (dir) => {
      if (dir) await rm(dir, { recursive: true, force: true });
    })
    .catch(() => {});
}

/** The pipeline's front: create, run, cancel, list deployments. */
export class Deployments {
  private readonly ctx: PipelineContext;
  private readonly sup: Supervisor;
  /** Deployments running in this process: their abort, their app, and when they end. */
  private readonly running = new Map<string, { abort: AbortController; appId: string; ended: Promise<void> }>();
  private readonly pumping = new Set<string>();
  /** Sources unpacked as they were received, by deployment id, until their build takes them. */
  private readonly received = new Map<string, Promise<string | undefined>>();
  /** Build runners started ahead (`prestart`), by the id their deployment is to have. */
  private readonly prestarted = new Map<string, Promise<PrestartedRunner | undefined>>();
  private closed = false;
  private readonly bus = new EventEmitter();

  constructor(ctx: PipelineContext, sup: Supervisor) {
    this.ctx = ctx;
    this.sup = sup;
  }

  /** Marks deployments left mid-way by a dead server as aborted, and resumes queues. */
  async recover(): Promise<void> {
    // Stopped just after its switch: its release serves. It ends `success`, and what runs of the
    // earlier releases retires, as the deployment would have had it.
    const switched = await this.ctx.db
      .updateTable("deployments")
      .set({ status: "success", finished_at: new Date() })
      .from("apps")
      .whereRef("apps.id", "=", "deployments.app_id")
      .whereRef("apps.current_release_id", "=", "deployments.release_id")
      .where("deployments.status", "=", "starting")
      .where(sql<boolean>`pg_try_advisory_lock(hashtext('quai-deploy:' || deployments.app_id::text)) AND pg_advisory_unlock(hashtext('quai-deploy:' || deployments.app_id::text))`)
      .returning(["deployments.id", "deployments.app_id", "deployments.release_id"])
      .execute();
    for (const d of switched) {
      await this.ctx.outputs.append(d.id, "\n-----> The control plane stopped just after the switch: the new release serves.\n");
      this.ctx.outputs.status(d.id, "success");
      const old = await replacedContainers(this.ctx, d.app_id, d.release_id as string);
      if (old.length > 0) void this.sup.retire(old).catch((err: unknown) => this.ctx.log(`deployments: retiring the containers ${d.id} replaced: ${String(err)}`));
    }
    const stale = await this.ctx.db
      .updateTable("deployments")
      .set({ status: "aborted", error: "the control plane stopped during this deployment; the previous release kept serving", finished_at: new Date() })
      .where("status", "in", ["building", "pushing", "starting"])
      .where(sql<boolean>`pg_try_advisory_lock(hashtext('quai-deploy:' || app_id::text)) AND pg_advisory_unlock(hashtext('quai-deploy:' || app_id::text))`)
      .returning(["id", "app_id", "release_id"])
      .execute();
    for (const d of stale) {
      // Containers it had started (the control plane stopped before its switch) serve nothing.
      if (d.release_id) {
        const started = await this.ctx.db.selectFrom("containers").select("id").where("release_id", "=", d.release_id).where("type", "!=", "one-off").execute();
        for (const c of started) await this.sup.destroy(c.id, 1000).catch(() => {});
      }
      // A build cut short holds the app's build cache in its work directory: give it back.
      await cleanUpBuild(this.ctx, d.id, d.app_id);
      await this.ctx.outputs.append(d.id, "\n !     The control plane stopped during this deployment; it was aborted. The previous release kept serving.\n");
      this.ctx.outputs.status(d.id, "aborted");
    }
    const queued = await this.ctx.db.selectFrom("deployments").select("app_id").distinct().where("status", "=", "queued").execute();
    for (const q of queued) void this.pump(q.app_id);
  }

  close(): void {
    this.closed = true;
    for (const r of this.running.values()) r.abort.abort(new Error("server stopping"));
    for (const id of [...this.prestarted.keys()]) this.dropPrestart(id);
  }

  /**
   * A push to the app is under way: starts the build runner of the deployment it may create, so
   * that the sandbox's start overlaps the rest of the push (ADR 0031). Returns the id that
   * deployment is to have (`NewDeployment.id`), or undefined when the app has a deployment under
   * way here (its build would wait anyway). One unclaimed after 2 minutes, or dropped, goes.
   */
  prestart(app: { id: string; name: string; uid: number }): string | undefined {
    if (this.closed || this.pumping.has(app.id)) return undefined;
    const id = randomUUID();
    const started = prestartRunner(this.ctx, { deploymentId: id, app, gitRef: null }).catch((err: unknown) => {
      this.ctx.log(`deployments: starting a build runner ahead: ${String(err)}`);
      return undefined;
    });
    this.prestarted.set(id, started);
    setTimeout(() => this.dropPrestart(id), 120_000).unref();
    return id;
  }

  /** Stops the runner `prestart` started for deployment `id` and removes its directories, unless a build took it. */
  dropPrestart(id: string): void {
    const started = this.prestarted.get(id);
    if (!started) return;
    this.prestarted.delete(id);
    void started.then(async (pre) => {
      if (!pre) return;
      await pre.runner.stop(new Error("no build took it"));
      await rm(pre.work, { recursive: true, force: true });
    });
  }

  /** Records a deployment (status queued) and starts the app's queue. */
  async create(actor: Actor, app: AppRecord, input: NewDeployment): Promise<DeploymentRow> {
    if (input.gitRef !== null) assertGitRef(input.gitRef);
    let sourceKey: string | null = null;
    let receipt: Receipt | undefined;
    // Asked beside the archive's storing: a round trip fewer on the way to the build.
    const previous = this.ctx.db.selectFrom("deployments").select("git_ref").where("app_id", "=", app.id).where("status", "=", "success").orderBy("created_at", "desc").limit(1).executeTakeFirst();
    previous.catch(() => undefined); // Awaited below unless the storing failed first.
    if (input.archive) {
      // Stored, and unpacked as it arrives for the build to find (both streams start together).
      receipt = await unpackOnReceipt(this.ctx, app.uid).catch((err: unknown) => {
        this.ctx.log(`deployments: unpacking a source as it is received: ${String(err)}`);
        return undefined;
      });
      const archive = input.archive;
      const body = new PassThrough();
      // An archive that fails or ends early (the pusher went away) fails the storing with it.
      pipeline(archive, body, () => {});
      if (receipt) archive.pipe(receipt.input);
      try {
        sourceKey = (await this.ctx.blobs.put(body, { maxBytes: this.ctx.settings.sourceLimitBytes })).key;
      } catch (err) {
        receipt?.abort();
        if (err instanceof BlobTooLarge) throw new QuaiError("deployment_source_too_large", `the source archive is larger than ${this.ctx.settings.sourceLimitBytes} bytes`);
        throw err;
      }
    }
    const prev = await previous;
    const row = await this.ctx.db
      .insertInto("deployments")
      .values({ ...(input.id && this.prestarted.has(input.id) ? { id: input.id } : {}), app_id: app.id, status: "queued", git_ref: input.gitRef, previous_git_ref: prev?.git_ref ?? null, source: input.source, source_blob: sourceKey, rollback_release_id: input.releaseId ?? null, postdeploy_hook: input.postdeploy ?? null, pusher_id: actor.id, pusher_email: actor.email, pusher_username: actor.username })
      .returningAll()
      .executeTakeFirstOrThrow();
    if (receipt) this.keepReceived(row.id, receipt.done);
    // The queue starts beside the event's recording.
    const recorded = recordEvent(this.ctx.db, { actor, app, type: "deployment", data: { deployment_id: row.id, git_ref: input.gitRef, source: input.source } });
    this.bus.emit("new", app.id, row.id);
    this.ctx.outputs.status(row.id, "queued");
    void this.pump(app.id);
    await recorded;
    return row;
  }

  /**
   * Queues a release of the running slug with the app's current variables (after a variable or
   * add-on change), unless one is already queued: it reads the variables when it runs. Returns
   * the deployment that will carry the change, or undefined when the app has no release yet.
   */
  async configRelease(actor: Actor, app: AppRecord): Promise<string | undefined> {
    const fresh = await this.ctx.db.selectFrom("apps").select("current_release_id").where("id", "=", app.id).executeTakeFirst();
    if (!fresh?.current_release_id) return undefined;
    const waiting = await this.ctx.db.selectFrom("deployments").select("id").where("app_id", "=", app.id).where("status", "=", "queued").where("source", "=", "config").executeTakeFirst();
    if (waiting) return waiting.id;
    return (await this.create(actor, app, { source: "config", gitRef: null, releaseId: fresh.current_release_id })).id;
  }

  /** Resolves once deployment `id` has ended (with its final status), or after `timeoutMs`. */
  async waitFinished(id: string, timeoutMs = 15 * 60_000): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const row = await this.ctx.db.selectFrom("deployments").select("status").where("id", "=", id).executeTakeFirst();
      if (!row || finalStatuses.has(row.status)) return row?.status;
      await new Promise((r) => setTimeout(r, 250));
    }
    return undefined;
  }

  /**
   * Resolves once no process-type container of the app runs another release than its current
   * one (the old containers have drained and stopped after a switch), or after `timeoutMs`.
   */
  async waitRetired(appId: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const old = await sql<{ n: string }>`
        SELECT count(*) AS n FROM containers c JOIN apps a ON a.id = c.app_id
        WHERE c.app_id = ${appId} AND c.type <> 'one-off' AND c.release_id IS DISTINCT FROM a.current_release_id`.execute(this.ctx.db);
      if (Number(old.rows[0]?.n ?? 0) === 0) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Calls `fn` for each new deployment; returns the unsubscribe function. */
  onNew(fn: (appId: string, id: string) => void): () => void {
    this.bus.on("new", fn);
    return () => this.bus.off("new", fn);
  }

  /** The deployment's final status, or undefined while it runs (what `outputs.follow` asks). */
  async finalStatus(appId: string, id: string): Promise<string | undefined> {
    const row = await this.find(appId, id);
    return finalStatuses.has(row.status) ? row.status : undefined;
  }

  /** Finds a deployment of an app. */
  async find(appId: string, id: string): Promise<DeploymentRow> {
    const row = isUuid(id) ? await this.ctx.db.selectFrom("deployments").selectAll().where("app_id", "=", appId).where("id", "=", id).executeTakeFirst() : undefined;
    if (!row) throw new QuaiError("deployment_not_found", `no deployment ${id} on this app`);
    return row;
  }

  async list(appId: string, page: number, perPage: number): Promise<{ rows: DeploymentRow[]; total: number }> {
    const rows = await this.ctx.db.selectFrom("deployments").selectAll().where("app_id", "=", appId).orderBy("created_at", "desc").limit(perPage).offset((page - 1) * perPage).execute();
    const total = await this.ctx.db.selectFrom("deployments").select(sql<number>`count(*)`.as("n")).where("app_id", "=", appId).executeTakeFirstOrThrow();
    return { rows, total: Number(total.n) };
  }

  /** The latest deployment of an app, if any. */
  async latest(appId: string): Promise<DeploymentRow | undefined> {
    return this.ctx.db.selectFrom("deployments").selectAll().where("app_id", "=", appId).orderBy("created_at", "desc").limit(1).executeTakeFirst();
  }

  /** Keeps a source unpacked on receipt for the deployment's build; one unused for 15 minutes goes. */
  private keepReceived(id: string, done: Promise<string | undefined>): void {
    this.received.set(id, done);
    setTimeout(() => this.dropReceived(id), 15 * 60_000).unref();
  }

  /** Takes the deployment's source unpacked on receipt, if it is still kept (at most once). */
  private claimReceived(id: string): Promise<string | undefined> | undefined {
    const done = this.received.get(id);
    this.received.delete(id);
    return done;
  }

  /** Removes the deployment's source unpacked on receipt, unless its build took it already. */
  private dropReceived(id: string): void {
    const done = this.claimReceived(id);
    if (done) removeReceived(done);
  }

  /** Cancels a queued or running deployment: it ends `aborted`, the running release keeps serving. */
  async cancel(actor: Actor, app: AppRecord, id: string): Promise<DeploymentRow> {
    const d = await this.find(app.id, id);
    if (finalStatuses.has(d.status)) throw new QuaiError("deployment_finished", `deployment ${id} already ended (${d.status})`);
    const queued = await this.ctx.db.updateTable("deployments").set({ status: "aborted", error: `cancelled by ${actor.email}`, finished_at: new Date() }).where("id", "=", id).where("status", "=", "queued").returningAll().executeTakeFirst();
    if (queued) {
      this.dropReceived(id);
      await this.ctx.outputs.append(id, ` !     Cancelled by ${actor.email} before it started.\n`);
      this.ctx.outputs.status(id, "aborted");
      return queued;
    }
    await this.ctx.db.updateTable("deployments").set({ cancel_requested: true }).where("id", "=", id).execute();
    this.running.get(id)?.abort.abort(new CancelledError(`cancelled by ${actor.email}`));
    return this.find(app.id, id);
  }

  /**
   * The app is being deleted: its queued deployments end `aborted`, its running ones are aborted
   * (their build stops, their new containers go) and awaited, up to `waitMs`.
   */
  async abortForDeletion(actor: Actor, appId: string, waitMs = 60_000): Promise<void> {
    const reason = `the app was deleted by ${actor.email}`;
    const queued = await this.ctx.db.updateTable("deployments").set({ status: "aborted", error: reason, finished_at: new Date() }).where("app_id", "=", appId).where("status", "=", "queued").returning("id").execute();
    for (const { id } of queued) {
      this.dropReceived(id);
      await this.ctx.outputs.append(id, ` !     Not started: ${reason}.\n`);
      this.ctx.outputs.status(id, "aborted");
    }
    const ending: Promise<void>[] = [];
    for (const r of this.running.values()) {
      if (r.appId !== appId) continue;
      r.abort.abort(new AppDeletedError(reason));
      ending.push(r.ended);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(ending), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  /**
   * Runs the app's queued deployments in order while holding the app's advisory lock. The lock is
   * on a dedicated connection, so it is released if this process dies.
   */
  async pump(appId: string): Promise<void> {
    if (this.pumping.has(appId) || this.closed) return;
    this.pumping.add(appId);
    try {
      for (;;) {
        const more = await this.ctx.db.connection().execute(async (conn) => {
          const got = await sql<{ ok: boolean }>`SELECT pg_try_advisory_lock(hashtext(${"quai-deploy:" + appId})) AS ok`.execute(conn);
          if (!got.rows[0]?.ok) return false;
          try {
            for (;;) {
              if (this.closed) return false;
              const next = await conn.selectFrom("deployments").selectAll().where("app_id", "=", appId).where("status", "=", "queued").orderBy("created_at").limit(1).executeTakeFirst();
              if (!next) break;
              await this.runOne(next);
            }
          } finally {
            await sql`SELECT pg_advisory_unlock(hashtext(${"quai-deploy:" + appId}))`.execute(conn);
          }
          // A deployment queued between the last look and the unlock would be stranded: look again.
          const again = await conn.selectFrom("deployments").select("id").where("app_id", "=", appId).where("status", "=", "queued").limit(1).executeTakeFirst();
          return again !== undefined;
        });
        if (!more) return;
      }
    } catch (err) {
      // The store failed (a deployment itself never throws): its queue is looked at again soon,
      // or a push behind it would wait for the next one.
      this.ctx.log(`deployments: queue of app ${appId} failed (looked at again in ${PUMP_RETRY_MS / 1000} s): ${err instanceof Error ? err.stack : String(err)}`);
      if (!this.closed) setTimeout(() => void this.pump(appId), PUMP_RETRY_MS).unref();
    } finally {
      this.pumping.delete(appId);
    }
  }

  private async setStatus(id: string, status: string, extra: Partial<{ error: string | null; started_at: Date; finished_at: Date; slug_blob: string; image_size: number; release_id: string }> = {}): Promise<void> {
    await this.ctx.db.updateTable("deployments").set({ status, ...extra }).where("id", "=", id).execute();
    this.ctx.outputs.status(id, status);
  }

  /** One deployment, start to end. Never throws: the outcome is the deployment's status. */
  private async runOne(d: DeploymentRow): Promise<void> {
    // Taken only while still queued: a cancel between the queue's look and here wins.
    const claimed = await this.ctx.db.updateTable("deployments").set({ status: "building", started_at: new Date() }).where("id", "=", d.id).where("status", "=", "queued").returning("id").executeTakeFirst();
    if (!claimed) return;
    this.ctx.outputs.status(d.id, "building");
    const abort = new AbortController();
    let ended = () => {};
    this.running.set(d.id, { abort, appId: d.app_id, ended: new Promise<void>((resolve) => (ended = resolve)) });
    const out = (text: string) => void this.ctx.outputs.append(d.id, text);
    const app = await this.ctx.db.selectFrom("apps").select(["id", "name", "uid"]).where("id", "=", d.app_id).executeTakeFirst();
    /** Whether a build ran to its end (its npm downloads are then worth sharing). */
    let buildDone = false;
    const received = this.claimReceived(d.id);
    try {
      if (!app) throw new Error("the app was deleted");
      const listed = await listVariables(this.ctx.db, this.ctx.keyring, { id: app.id } as AppRecord);
      const vars = resolveVariables(listed);
      const env = Object.fromEntries(vars.map((v) => [v.name, v.value]));
      const actor = d.pusher_email;
      let release;
      const rollbackOf = d.rollback_release_id;
      if (d.source === "config") {
        // The release current now, not when the variables changed: a push queued in between wins.
        const current = await this.ctx.db.selectFrom("apps").select("current_release_id").where("id", "=", app.id).executeTakeFirst();
        const base = await loadRelease(this.ctx.db, this.ctx.keyring, current?.current_release_id ?? rollbackOf ?? "");
        out(`-----> Config changed: releasing v${base.version}'s slug with the app's current variables\n`);
        release = await createRelease(this.ctx.db, this.ctx.keyring, { appId: app.id, deploymentId: d.id, gitRef: base.gitRef, slugKey: base.slugKey, slugSize: base.slugSize, processTypes: base.processTypes, config: env, description: "Config change", createdBy: actor });
        await this.setStatus(d.id, "pushing", { slug_blob: base.slugKey, image_size: base.slugSize });
      } else if (rollbackOf) {
        const old = await loadRelease(this.ctx.db, this.ctx.keyring, rollbackOf);
        out(`-----> Rolling back to v${old.version} (${old.gitRef ?? "no git ref"}), with its config\n`);
        out(`       Databases are not rolled back: a rollback redeploys code and config only.\n`);
        release = await createRelease(this.ctx.db, this.ctx.keyring, { appId: app.id, deploymentId: d.id, gitRef: old.gitRef, slugKey: old.slugKey, slugSize: old.slugSize, processTypes: old.processTypes, config: old.config, description: `Rollback to v${old.version}`, createdBy: actor });
        await this.setStatus(d.id, "pushing", { slug_blob: old.slugKey, image_size: old.slugSize });
      } else {
        if (!d.source_blob) throw new BuildError("the deployment has no source");
        out(`-----> Building ${app.name}${d.git_ref ? ` at ${d.git_ref}` : ""}\n`);
        const prestarted = this.prestarted.get(d.id);
        this.prestarted.delete(d.id);
        const built = await buildSlug(this.ctx, { deploymentId: d.id, app, sourceKey: d.source_blob, gitRef: d.git_ref, env, received, prestarted }, out, abort.signal);
        buildDone = true;
        [, release] = await Promise.all([
          this.setStatus(d.id, "pushing", { slug_blob: built.slugKey, image_size: built.slugSize }),
          createRelease(this.ctx.db, this.ctx.keyring, { appId: app.id, deploymentId: d.id, gitRef: d.git_ref, slugKey: built.slugKey, slugSize: built.slugSize, processTypes: built.processTypes, config: env, description: `Deploy ${d.git_ref ?? "archive"}`, createdBy: actor }),
        ]);
      }
      out(`-----> Release v${release.version} created\n`);
      await this.setStatus(d.id, "starting", { release_id: release.id });
      if (abort.signal.aborted) throw abort.signal.reason;
      await deployRelease(this.ctx, this.sup, app, release, out, { postdeploy: d.postdeploy_hook ?? undefined, signal: abort.signal });
      const now = new Date();
      await this.ctx.db.updateTable("apps").set({ last_deployed_at: now, last_deployed_by: d.pusher_username, last_deployment_id: d.id }).where("id", "=", app.id).execute();
      out(`-----> Deployed v${release.version} in ${((now.getTime() - (d.created_at.getTime())) / 1000).toFixed(1)} s\n`);
      await this.setStatus(d.id, "success", { finished_at: now });
    } catch (err) {
      const outcome = abort.signal.aborted ? "aborted" : err instanceof DeployError ? err.outcome : "build-error";
      const message = abort.signal.aborted ? (abort.signal.reason instanceof Error ? abort.signal.reason.message : "aborted") : err instanceof Error ? err.message : String(err);
      if (!(err instanceof BuildError) && !(err instanceof DeployError) && !abort.signal.aborted) this.ctx.log(`deployments: ${d.id} failed: ${err instanceof Error ? err.stack : String(err)}`);
      const after = abort.signal.reason instanceof AppDeletedError ? "" : "; the previous release keeps serving";
      out(`\n !     ${message.replace(/\n/g, "\n !     ")}\n !     Deployment ${outcome}${after}.\n`);
      await this.setStatus(d.id, outcome, { error: message, finished_at: new Date() }).catch(() => {});
    } finally {
      this.running.delete(d.id);
      ended();
      // What the build did not take (it failed first, or the deployment needed no build).
      if (received) removeReceived(received);
      if (app) {
        startCacheDetach(this.ctx, app.id);
        // What the build downloaded from the npm registry, the first build of another app reuses.
        // Once the deployment has ended: the walk over the npm cache would slow the release's start.
        if (buildDone && this.ctx.settings.sharedNpmBytes > 0) {
          void harvestNpmContent(join(this.ctx.paths.caches, app.id), app.uid, this.ctx.paths.sharedNpm, this.ctx.settings.sharedNpmBytes).catch((err: unknown) => this.ctx.log(`deployments: shared npm store: ${String(err)}`));
        }
      }
    }
  }
}

/** A deployment cancelled by a user. */
export class CancelledError extends Error {}

/** A deployment stopped because its app is being deleted. */
export class AppDeletedError extends CancelledError {}
