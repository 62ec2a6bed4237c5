// Review apps: one app per pull request, made from the parent app (usually staging) as the
// repository's manifest says — fresh add-ons before the first deploy, variables inherited or
// generated, formation capped — deployed from the pull request's head, redeployed on each push,
// deleted when the pull request closes (after a delay) or goes stale. Every step is idempotent
// and the one-live-review-app-per-pull-request rule is a unique index, so a retry after a forge
// failure never makes a second one.
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline as pump } from "node:stream/promises";
import type { ExpressionBuilder, Selectable, Updateable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import type { Actor } from "../auth/service.ts";
import { createApp, findApp, type AppRecord, type AppUrls } from "../apps/service.ts";
import { deleteApp, type AppDeleteDeps } from "../apps/delete.ts";
import type { Addons } from "../addons/service.ts";
import type { Deployments } from "../deployments/service.ts";
import type { PipelineApi } from "../server/api.ts";
import { bulkSetVariables, listVariables } from "../variables/service.ts";
import { loadRelease } from "../pipeline/release.ts";
import { containerSizes, type ContainerSize } from "../runtime/types.ts";
import type { Database, ReviewAppsTable } from "../store/schema.ts";
import type { ForgeClient, PullRequest } from "./forge.ts";
import { newSecret, parseManifest, planReviewApp, type Manifest, type ManifestFile } from "./manifest.ts";
import type { LinkRow, Scm } from "./service.ts";

export type ReviewAppRow = Selectable<ReviewAppsTable>;

/** The status context of review apps on the pull request's head commit. */
export const REVIEW_APP_CONTEXT = "quai/review-app";
/** A label that asks for a review app on a link where they are not automatic. */
export const REVIEW_APP_LABEL = "quai:review-app";
/** Statuses that hold an app (or are making one); a failed one counts only if it has its app. */
const HOLDING = ["creating", "deploying", "deployed", "closed"];

const holding = (eb: ExpressionBuilder<Database, "review_apps">) => eb.or([eb("status", "in", HOLDING), eb.and([eb("status", "=", "failed"), eb("app_id", "is not", null)])]);

export interface ReviewAppDeps {
  deleteDeps: AppDeleteDeps;
  pipeline: PipelineApi;
  deployments: Deployments;
  addons?: Addons;
  appUrls: () => AppUrls;
  appUrl: (appName: string) => string;
  /** Largest container size a review app gets (QUAI_REVIEW_APP_MAX_SIZE, default M). */
  maxSize: ContainerSize;
  /** Where tarballs are read for their manifest. */
  workDir: string;
  /** First retry delay after a forge failure, doubled each time (default 30 s). */
  retryBaseMs?: number;
  /** Attempts before a review app stays failed until the next push (default 6). */
  maxAttempts?: number;
}

export function reviewAppJson(r: ReviewAppRow, appUrl: (name: string) => string): Record<string, unknown> {
  return {
    id: r.id,
    app_id: r.app_id,
    app_name: r.app_name,
    parent_app_id: r.parent_app_id,
    url: r.app_id ? appUrl(r.app_name) : null,
    status: r.status,
    error: r.error,
    sha: r.deployed_sha ?? r.head_sha,
    pr: { number: r.pr_number, title: r.pr_title, url: r.pr_url, branch: r.head_ref, head_sha: r.head_sha },
    deployment_id: r.deployment_id,
    delete_after: r.delete_after?.toISOString() ?? null,
    last_activity_at: r.last_activity_at.toISOString(),
    created_at: r.created_at.toISOString(),
    deleted_at: r.deleted_at?.toISOString() ?? null,
  };
}

/** `<parent>-pr<n>`, shortened to fit the 48-character app name rule. */
export function reviewAppName(parent: string, pr: number): string {
  const suffix = `-pr${pr}`;
  return `${parent.slice(0, 48 - suffix.length).replace(/-+$/, "")}${suffix}`;
}

/** A transient failure (the forge or a server was unreachable) is retried; the rest waits for a push. */
function transient(err: unknown): boolean {
  return err instanceof QuaiError ? err.code === "scm_forge_unreachable" || err.code === "addon_failed" : !(err instanceof ManifestProblem);
}

class ManifestProblem extends Error {}

export class ReviewApps {
  private readonly scm: Scm;
  private readonly d: ReviewAppDeps;
  private readonly watching = new Set<string>();

  constructor(scm: Scm, deps: ReviewAppDeps) {
    this.scm = scm;
    this.d = deps;
  }

  private get db() {
    return this.scm.o.db;
  }

  private async set(id: string, values: Updateable<ReviewAppsTable>): Promise<ReviewAppRow> {
    return this.db.updateTable("review_apps").set({ ...values, updated_at: new Date() }).where("id", "=", id).returningAll().executeTakeFirstOrThrow();
  }

  private async row(id: string): Promise<ReviewAppRow | undefined> {
    return this.db.selectFrom("review_apps").selectAll().where("id", "=", id).executeTakeFirst();
  }

  private async live(parentAppId: string, pr: number): Promise<ReviewAppRow | undefined> {
    return this.db.selectFrom("review_apps").selectAll().where("parent_app_id", "=", parentAppId).where("pr_number", "=", pr).where("status", "<>", "deleted").executeTakeFirst();
  }

  async list(parentAppId: string): Promise<ReviewAppRow[]> {
    return this.db.selectFrom("review_apps").selectAll().where("parent_app_id", "=", parentAppId).orderBy("created_at", "desc").limit(200).execute();
  }

  json(r: ReviewAppRow): Record<string, unknown> {
    return reviewAppJson(r, this.d.appUrl);
  }

  // ---- what the forge says ----------------------------------------------------------------------

  /** A pull request event on a link (serialized per link by the caller). */
  async onPull(linkId: string, action: string, label: string | null, pr: PullRequest): Promise<void> {
    const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", linkId).executeTakeFirst();
    if (!link) return;
    let existing = await this.live(link.app_id, pr.number);
    // Refused as a fork, and forks are allowed now: the refusal is history.
    if (existing?.status === "refused" && link.automatic_creation_from_forks_allowed) {
      await this.set(existing.id, { status: "deleted", deleted_at: new Date() });
      existing = undefined;
    }
    if (existing) await this.set(existing.id, { last_activity_at: new Date(), pr_title: pr.title.slice(0, 500) });
    switch (action) {
      case "opened":
      case "reopened":
        if (existing?.status === "closed") {
          await this.set(existing.id, { status: existing.first_deploy_done ? "deployed" : "failed", delete_after: null });
          return this.redeploy(link, existing.id, pr);
        }
        if (existing) return this.redeploy(link, existing.id, pr);
        if (link.deploy_review_apps_enabled) await this.create(link, pr, false);
        return;
      case "labeled":
        if (!existing && label === REVIEW_APP_LABEL) await this.create(link, pr, false);
        return;
      case "synchronize":
        if (existing) return this.redeploy(link, existing.id, pr);
        if (link.deploy_review_apps_enabled) await this.create(link, pr, false);
        return;
      case "closed":
        if (!existing || !link.delete_on_close_enabled) return;
        await this.set(existing.id, { status: existing.status === "queued" || existing.status === "refused" ? existing.status : "closed", delete_after: new Date(Date.now() + link.hours_before_delete_on_close * 3_600_000) });
        // A closed pull request's queued or refused record has nothing to take down.
        if (existing.status === "queued" || existing.status === "refused") await this.set(existing.id, { status: "deleted", deleted_at: new Date() });
        else if (link.hours_before_delete_on_close === 0) await this.destroy(existing.id, "pull request closed");
        return;
    }
  }

  /** Makes the review app of `pr` (or queues it past the parent's limit). */
  async create(link: LinkRow, pr: PullRequest, manual: boolean): Promise<ReviewAppRow | undefined> {
    const parent = await this.scm.appOf(link.app_id);
    if (!parent) return undefined;
    const forge = await this.scm.forgeOf(link);
    const repo = this.scm.repoOf(link);
    const base = { parent_app_id: parent.id, link_id: link.id, app_name: reviewAppName(parent.name, pr.number), pr_number: pr.number, pr_title: pr.title.slice(0, 500), pr_url: pr.htmlUrl.slice(0, 2000), head_ref: pr.headRef.slice(0, 255), head_sha: pr.headSha };
    if (pr.fromFork && !link.automatic_creation_from_forks_allowed) {
      const refused = await this.db.insertInto("review_apps").values({ ...base, status: "refused", error: "pull request from a fork" }).onConflict((oc) => oc.doNothing()).returningAll().executeTakeFirst();
      if (!refused) return undefined;
      const body = `**Quai review app: not created.** This pull request comes from a fork (\`${codeSpan(pr.headRepo)}\`), and review apps of \`${parent.name}\` are not made for forks: their code would run with the parent app's variables and secrets. A maintainer can allow it on the link (\`automatic_creation_from_forks_allowed\`).\n\n<!-- quai:review-app -->`;
      const commentId = await forge.upsertComment(repo, pr.number, undefined, body).catch((err: unknown) => this.scm.o.log(`scm: commenting on #${pr.number} failed: ${String(err)}`));
      if (commentId) await this.set(refused.id, { comment_id: commentId });
      await this.scm.event(null, parent, "review_app_refused", { pr: pr.number, reason: "fork", head_repo: pr.headRepo });
      if (manual) throw new QuaiError("review_app_forbidden", `pull request #${pr.number} comes from a fork and the link does not allow review apps for forks`);
      return refused;
    }
    const held = await this.db.selectFrom("review_apps").select(this.db.fn.countAll<number>().as("n")).where("parent_app_id", "=", parent.id).where(holding).executeTakeFirstOrThrow();
    const queued = Number(held.n) >= link.review_apps_limit;
    const row = await this.db.insertInto("review_apps").values({ ...base, status: queued ? "queued" : "creating" }).onConflict((oc) => oc.doNothing()).returningAll().executeTakeFirst();
    if (!row) {
      // Already there (a retried delivery, a manual request): a push may still need deploying.
      const existing = await this.live(parent.id, pr.number);
      if (existing && existing.status !== "refused") await this.redeploy(link, existing.id, pr);
      return existing;
    }
    if (queued) {
      await this.comment(link, row, `⏳ queued: \`${parent.name}\` has ${link.review_apps_limit} review apps, the most its link allows. This one starts when one of them is deleted.`);
      await this.scm.event(null, parent, "review_app_queued", { pr: pr.number, limit: link.review_apps_limit });
      return row;
    }
    await this.build(link, row.id);
    return this.row(row.id);
  }

  /** Fetches the head, reads the manifest, makes the app and its add-ons, and deploys. */
  private async build(link: LinkRow, id: string): Promise<void> {
    let ra = await this.row(id);
    const parent = await this.scm.appOf(link.app_id);
    if (!ra || !parent || (ra.status !== "creating" && ra.status !== "failed")) return;
    ra = await this.set(id, { status: "creating", attempts: ra.attempts + 1, retry_at: null, error: null });
    const forge = await this.scm.forgeOf(link);
    const repo = this.scm.repoOf(link);
    const actor = await this.scm.actorOf(link);
    const work = await mkdtemp(join(this.d.workDir, "review-"));
    try {
      await this.status(forge, link, ra.head_sha, "pending", `${ra.app_name}: creating the review app`);
      const tarball = join(work, "source.tar.gz");
      await pump(await forge.archive(repo, ra.head_sha), createWriteStream(tarball, { mode: 0o600 }));
      const manifest = await this.readManifest(tarball, join(work, "x"));
      const app = ra.app_id ? await this.scm.appOf(ra.app_id) : undefined;
      let created = app;
      let scripts = ra.scripts;
      if (!created) {
        const plan = await this.plan(manifest, parent, ra.app_name, ra.pr_number);
        scripts = plan.scripts;
        // Every step is idempotent: after a failure, the next attempt finds the app by name,
        // provisions only the add-ons still missing, and the app is recorded once all is done.
        created = await this.makeApp(actor, parent, ra, plan);
        await this.seed(actor, link, parent, created);
        await this.set(id, { app_id: created.id, scripts });
        await this.scm.event(actor, parent, "new_review_app", { pr: ra.pr_number, app_name: created.name, addons: plan.addons.map((a) => `${a.provider}:${a.plan}`), notes: plan.notes });
      }
      await this.deploy(actor, link, ra, created, tarball, ra.head_sha, scripts);
    } catch (err) {
      await this.failed(link, id, err);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private async failed(link: LinkRow, id: string, err: unknown): Promise<void> {
    const ra = await this.row(id);
    const parent = await this.scm.appOf(link.app_id);
    if (!ra || !parent) return;
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof QuaiError) && !(err instanceof ManifestProblem)) this.scm.o.log(`scm: review app ${ra.app_name}: ${err instanceof Error ? err.stack : message}`);
    const retry = transient(err) && ra.attempts < (this.d.maxAttempts ?? 6);
    const retryAt = retry ? new Date(Date.now() + (this.d.retryBaseMs ?? 30_000) * 2 ** (ra.attempts - 1)) : null;
    await this.set(id, { status: "failed", error: message.slice(0, 4000), retry_at: retryAt });
    await this.scm.event(null, parent, "review_app_failed", { pr: ra.pr_number, app_name: ra.app_name, error: message.slice(0, 2000), retry_at: retryAt?.toISOString() ?? null });
    const forge = await this.scm.forgeOf(link);
    await this.status(forge, link, ra.head_sha, retry ? "pending" : "failure", `${ra.app_name}: ${retry ? "retrying" : "failed"}: ${message}`);
    const fix = err instanceof ManifestProblem ? "\n\nNothing was created. Fix the manifest and push again." : retry ? `\n\nQuai retries at ${retryAt?.toISOString()}.` : "\n\nPush again to retry.";
    await this.comment(link, await this.set(id, {}), `❌ failed: ${escapeMd(message)}${fix}`);
  }

  /** The manifest at the root of the tarball's one top folder: scalingo.json first, then app.json. */
  private async readManifest(tarball: string, dir: string): Promise<Manifest | undefined> {
    await run("mkdir", ["-p", dir]);
    // Only the two names are extracted; tar complains when one is missing, which is fine.
    await run("tar", ["-xzf", tarball, "-C", dir, "--no-same-owner", "--no-same-permissions", "--wildcards", "--no-wildcards-match-slash", "*/scalingo.json", "*/app.json"]);
    for (const file of ["scalingo.json", "app.json"] as ManifestFile[]) {
      const tops = (await run("find", [dir, "-mindepth", "2", "-maxdepth", "2", "-name", file])).stdout.toString().split("\n").filter(Boolean);
      const path = tops[0];
      if (!path) continue;
      const st = await lstat(path);
      // A symbolic link could point at a file of the host: only a plain, small file is read.
      if (!st.isFile()) throw new ManifestProblem(`${file} is not a regular file`);
      if (st.size > 1024 * 1024) throw new ManifestProblem(`${file} is larger than 1 MiB`);
      try {
        return parseManifest(await readFile(path, "utf8"), file);
      } catch (err) {
        throw new ManifestProblem(err instanceof Error ? err.message : String(err));
      }
    }
    return undefined;
  }

  private async plan(manifest: Manifest | undefined, parent: AppRecord, name: string, prNumber: number) {
    const actorless = await listVariables(this.db, this.scm.o.keyring, parent);
    const parentVars = Object.fromEntries(actorless.map((v) => [v.name, v.value]));
    const parentFormation = (await this.db.selectFrom("formation").selectAll().where("app_id", "=", parent.id).execute()).map((f) => ({ name: f.type, amount: f.amount, size: f.size }));
    const engines = this.d.addons ? [...this.d.addons.engines.values()] : [];
    const providers = Object.fromEntries(engines.map((e) => [e.provider.id, { plans: e.provider.plans.map((p) => p.name), defaultPlan: (e.provider.plans[0] as { name: string }).name }]));
    const parentAddons = (await this.db.selectFrom("addons").select(["provider", "plan"]).where("app_id", "=", parent.id).where("status", "<>", "deleted").execute()).filter((a) => this.d.addons?.engines.has(a.provider));
    const addonVars = new Set(engines.flatMap((e) => [`SCALINGO_${e.provider.envPrefix}_URL`, `QUAI_${e.provider.envPrefix}_URL`]));
    try {
      return planReviewApp(manifest, {
        parentVars,
        parentFormation,
        appUrl: this.d.appUrl(name),
        appName: name,
        maxSize: this.d.maxSize,
        providers,
        addonVariable: (n) => addonVars.has(n),
        random: newSecret,
        parentAddons,
        prNumber,
      });
    } catch (err) {
      throw new ManifestProblem(err instanceof Error ? err.message : String(err));
    }
  }

  /** The app, its variables, formation and fresh add-ons: all before the first deploy. */
  private async makeApp(actor: Actor, parent: AppRecord, ra: ReviewAppRow, plan: ReturnType<typeof planReviewApp>): Promise<AppRecord> {
    let app = await this.db.selectFrom("apps").selectAll().where("name", "=", ra.app_name).executeTakeFirst();
    if (app && app.parent_app_name !== parent.name) throw new QuaiError("app_name_taken", `an app named ${ra.app_name} exists and is not a review app of ${parent.name}`);
    if (!app) {
      await createApp(this.db, actor, ra.app_name, this.d.appUrls());
      app = await this.db.updateTable("apps").set({ parent_app_name: parent.name }).where("name", "=", ra.app_name).returningAll().executeTakeFirstOrThrow();
    }
    if (plan.env.length > 0) await bulkSetVariables(this.db, this.scm.o.keyring, actor, app.id, plan.env.map((e) => ({ name: e.name, value: e.value })));
    for (const f of plan.formation) {
      const size = Object.hasOwn(containerSizes, f.size) ? f.size : "M";
      await this.db.insertInto("formation").values({ app_id: app.id, type: f.name, amount: f.amount, size }).onConflict((oc) => oc.columns(["app_id", "type"]).doUpdateSet({ amount: f.amount, size })).execute();
    }
    if (plan.addons.length > 0 && !this.d.addons) throw new QuaiError("addon_failed", "the manifest asks for add-ons and add-ons are turned off on this platform");
    for (const a of plan.addons) {
      const has = await this.db.selectFrom("addons").select("id").where("app_id", "=", app.id).where("provider", "=", a.provider).where("status", "<>", "deleted").executeTakeFirst();
      if (!has) await (this.d.addons as Addons).provision(actor, app.id, a.provider, a.plan);
    }
    return app;
  }

  /** Restores the link's seed (the parent's latest backup, or a named one) into the fresh database. */
  private async seed(actor: Actor, link: LinkRow, parent: AppRecord, app: AppRecord): Promise<void> {
    if (!link.review_apps_seed || !this.d.addons) return;
    const target = await this.db.selectFrom("addons").selectAll().where("app_id", "=", app.id).where("status", "<>", "deleted").where("provider", "=", "postgresql").executeTakeFirst();
    if (!target) return;
    let backupId: string | undefined;
    if (link.review_apps_seed === "parent-latest") {
      const b = await this.db
        .selectFrom("addon_backups")
        .innerJoin("addons", "addons.id", "addon_backups.addon_id")
        .select("addon_backups.id")
        .where("addons.app_id", "=", parent.id)
        .where("addons.provider", "=", target.provider)
        .where("addon_backups.status", "=", "done")
        .orderBy("addon_backups.created_at", "desc")
        .limit(1)
        .executeTakeFirst();
      backupId = b?.id;
    } else backupId = link.review_apps_seed.slice("backup:".length);
    if (!backupId) {
      await this.scm.event(null, parent, "review_app_seeded", { app_name: app.name, seeded: false, reason: `${parent.name} has no ${target.provider} backup yet` });
      return;
    }
    await this.d.addons.restoreBackup(actor, app.id, target.id, backupId);
    await this.scm.event(actor, parent, "review_app_seeded", { app_name: app.name, seeded: true, backup_id: backupId });
  }

  /** Queues the deployment of `tarball`: first-deploy as its hook the first time, postdeploy after. */
  private async deploy(actor: Actor, link: LinkRow, ra: ReviewAppRow, app: AppRecord, tarball: string, sha: string, scripts: ReviewAppRow["scripts"]): Promise<void> {
    const postdeploy = ra.first_deploy_done ? scripts.postdeploy : scripts.firstDeploy;
    const deployment = await this.d.deployments.create(actor, app, { source: "archive", gitRef: sha, archive: createReadStream(tarball), ...(postdeploy ? { postdeploy } : {}) });
    await this.startedDeploy(link, ra.id, app, deployment.id, sha);
  }

  private async startedDeploy(link: LinkRow, id: string, app: AppRecord, deploymentId: string, sha: string): Promise<void> {
    const forge = await this.scm.forgeOf(link);
    const repo = this.scm.repoOf(link);
    const logUrl = `${this.scm.o.apiUrl()}/v1/apps/${app.name}/deployments/${deploymentId}/output`;
    // The previous deployment of the environment is over: say so, as GitHub's auto_inactive would.
    const previous = (await this.row(id))?.forge_deployment_id;
    if (previous) await forge.setDeploymentStatus(repo, previous, { state: "inactive", description: "superseded by a newer push" }).catch(() => {});
    const forgeDeployment = await forge.createDeployment(repo, { sha, environment: app.name, transient: true, description: `Review app ${app.name}` }).catch(() => undefined);
    if (forgeDeployment) await forge.setDeploymentStatus(repo, forgeDeployment, { state: "in_progress", logUrl, environmentUrl: this.d.appUrl(app.name) }).catch(() => {});
    const ra = await this.set(id, { status: "deploying", deployment_id: deploymentId, forge_deployment_id: forgeDeployment ?? null, error: null, retry_at: null, attempts: 0 });
    await this.status(forge, link, sha, "pending", `${app.name}: deploying`, logUrl);
    await this.comment(link, ra, `⏳ deploying \`${sha.slice(0, 7)}\`…`);
    this.watch(ra);
  }

  /** Follows the review app's deployment and reports it: status, forge deployment, the comment. */
  private watch(ra: ReviewAppRow): void {
    const deploymentId = ra.deployment_id;
    if (!deploymentId || this.watching.has(deploymentId)) return;
    this.watching.add(deploymentId);
    this.scm.track(
      (async () => {
        const outcome = await this.d.deployments.waitFinished(deploymentId);
        if (!outcome || this.scm.isClosed) return;
        const ok = outcome === "success";
        const dep = await this.db.selectFrom("deployments").select("git_ref").where("id", "=", deploymentId).executeTakeFirst();
        // Only the review app's latest deployment may change its status.
        const updated = await this.db
          .updateTable("review_apps")
          .set(ok ? { status: "deployed", first_deploy_done: true, deployed_sha: dep?.git_ref ?? ra.head_sha, error: null, updated_at: new Date() } : { status: "failed", error: `deployment ${outcome}`, updated_at: new Date() })
          .where("id", "=", ra.id)
          .where("deployment_id", "=", deploymentId)
          .where("status", "=", "deploying")
          .returningAll()
          .executeTakeFirst();
        if (!updated) return;
        const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", updated.link_id).executeTakeFirst();
        if (!link) return;
        const forge = await this.scm.forgeOf(link);
        const logUrl = `${this.scm.o.apiUrl()}/v1/apps/${updated.app_name}/deployments/${deploymentId}/output`;
        const sha = dep?.git_ref ?? updated.head_sha;
        await this.status(forge, link, sha, ok ? "success" : "failure", `${updated.app_name}: ${ok ? "deployed" : `deployment ${outcome}`}`, ok ? this.d.appUrl(updated.app_name) : logUrl);
        if (updated.forge_deployment_id) await forge.setDeploymentStatus(this.scm.repoOf(link), updated.forge_deployment_id, { state: ok ? "success" : "failure", environmentUrl: this.d.appUrl(updated.app_name), logUrl }).catch(() => {});
        await this.comment(link, updated, ok ? `✅ deployed \`${sha.slice(0, 7)}\`` : `❌ deployment of \`${sha.slice(0, 7)}\` ended \`${outcome}\`; the previous version keeps serving. [Output](${logUrl})`);
      })()
        .catch((err: unknown) => this.scm.o.log(`scm: following review app deployment ${deploymentId}: ${String(err)}`))
        .finally(() => this.watching.delete(deploymentId)),
    );
  }

  /** A push to the pull request: deploy its new head (the manifest's postdeploy runs, not first-deploy). */
  private async redeploy(link: LinkRow, id: string, pr: PullRequest): Promise<void> {
    let ra = await this.row(id);
    if (!ra) return;
    // The same head again (a retried delivery, `opened` twice): it is being made or already is.
    if (ra.head_sha === pr.headSha && (ra.status === "creating" || ra.status === "deploying" || (ra.status === "deployed" && ra.deployed_sha === pr.headSha))) return;
    ra = await this.set(id, { head_sha: pr.headSha, head_ref: pr.headRef.slice(0, 255), last_activity_at: new Date() });
    if (ra.status === "queued" || ra.status === "refused" || ra.status === "closed" || ra.status === "deleting" || ra.status === "deleted") return;
    if (!ra.app_id) {
      // Nothing was made yet (a manifest error, a forge failure): try again from the start.
      await this.set(id, { status: "failed", attempts: 0 });
      return this.build(link, id);
    }
    const app = await this.scm.appOf(ra.app_id);
    if (!app) return;
    const forge = await this.scm.forgeOf(link);
    const actor = await this.scm.actorOf(link);
    const work = await mkdtemp(join(this.d.workDir, "review-"));
    try {
      const tarball = join(work, "source.tar.gz");
      await pump(await forge.archive(this.scm.repoOf(link), pr.headSha), createWriteStream(tarball, { mode: 0o600 }));
      // Scripts follow the manifest of the commit deployed; variables and add-ons stay as made.
      const manifest = await this.readManifest(tarball, join(work, "x"));
      const scripts = manifest ? manifest.scripts : ra.scripts;
      await this.set(id, { scripts });
      await this.deploy(actor, link, ra, app, tarball, pr.headSha, scripts);
    } catch (err) {
      await this.failed(link, id, err);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Runs pr-predestroy, deletes the app with its add-ons, marks the forge deployment inactive. */
  async destroy(id: string, reason: string): Promise<void> {
    const ra = await this.row(id);
    if (!ra || ra.status === "deleted" || ra.status === "deleting") return;
    const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", ra.link_id).executeTakeFirst();
    const parent = await this.scm.appOf(ra.parent_app_id);
    await this.set(id, { status: "deleting" });
    const actor = link ? await this.scm.actorOf(link) : null;
    // An attempt that failed half-way left an app not yet recorded on the row: found by name.
    const app = ra.app_id ? await this.scm.appOf(ra.app_id) : parent ? await this.db.selectFrom("apps").selectAll().where("name", "=", ra.app_name).where("parent_app_name", "=", parent.name).executeTakeFirst() : undefined;
    if (app && actor) {
      if (ra.scripts.prPredestroy && app.current_release_id) await this.runScript(app, ra.scripts.prPredestroy);
      await deleteApp(this.d.deleteDeps, actor, app, app.name);
    }
    const done = await this.set(id, { status: "deleted", deleted_at: new Date(), app_id: null });
    if (parent) await this.scm.event(actor, parent, "delete_review_app", { pr: ra.pr_number, app_name: ra.app_name, reason });
    if (link) {
      const forge = await this.scm.forgeOf(link);
      if (ra.forge_deployment_id) await forge.setDeploymentStatus(this.scm.repoOf(link), ra.forge_deployment_id, { state: "inactive", description: `deleted: ${reason}` }).catch(() => {});
      await this.comment(link, done, `🗑️ deleted (${escapeMd(reason)})`);
    }
    if (parent) await this.startQueued(parent.id);
  }

  private async runScript(app: AppRecord, command: string): Promise<void> {
    const p = this.d.pipeline;
    try {
      const release = await loadRelease(this.db, this.scm.o.keyring, app.current_release_id as string);
      const cid = `${app.name}-predestroy-${Math.random().toString(36).slice(2, 8)}`;
      const spec = await p.supervisor.specFor(app, release, cid, "pr-predestroy-1", "M", ["/quai/bin/launch", "--shell", command], null);
      let output = "";
      const res = await p.ctx.runtime.exec(spec, { onStdout: (b) => void (output += b.toString("utf8")), onStderr: (b) => void (output += b.toString("utf8")), timeoutMs: 10 * 60_000 });
      await p.supervisor.destroy(cid, 0).catch(() => {});
      await this.scm.event(null, app, "run", { command, hook: "pr-predestroy", exit_code: res.exitCode, output: output.slice(-2000) });
    } catch (err) {
      this.scm.o.log(`scm: pr-predestroy of ${app.name} failed: ${String(err)}`);
    }
  }

  /** Starts the oldest queued review apps while the parent is under its limit. */
  private async startQueued(parentId: string): Promise<void> {
    const link = await this.db.selectFrom("scm_repo_links").selectAll().where("app_id", "=", parentId).executeTakeFirst();
    if (!link) return;
    for (;;) {
      const held = await this.db.selectFrom("review_apps").select(this.db.fn.countAll<number>().as("n")).where("parent_app_id", "=", parentId).where(holding).executeTakeFirstOrThrow();
      if (Number(held.n) >= link.review_apps_limit) return;
      const next = await this.db.updateTable("review_apps").set({ status: "creating", updated_at: new Date() }).where("id", "=", (eb) => eb.selectFrom("review_apps").select("id").where("parent_app_id", "=", parentId).where("status", "=", "queued").orderBy("created_at").limit(1)).returningAll().executeTakeFirst();
      if (!next) return;
      void this.scm.serial(link.id, () => this.build(link, next.id));
    }
  }

  /** The single pull-request comment, created once and edited in place. */
  private async comment(link: LinkRow, ra: ReviewAppRow, state: string): Promise<void> {
    const url = ra.app_id ? this.d.appUrl(ra.app_name) : null;
    const body = [
      `### Quai review app \`${ra.app_name}\``,
      "",
      url ? `**${url}**` : "_No app yet._",
      "",
      state,
      "",
      `<sub>Parent app: \`${link.branch}\` → review apps of this repository's link. This comment is edited in place on every push.</sub>`,
      "<!-- quai:review-app -->",
    ].join("\n");
    try {
      const forge = await this.scm.forgeOf(link);
      const id = await forge.upsertComment(this.scm.repoOf(link), ra.pr_number, ra.comment_id ?? undefined, body);
      if (id !== ra.comment_id) await this.set(ra.id, { comment_id: id });
    } catch (err) {
      this.scm.o.log(`scm: commenting on #${ra.pr_number} failed: ${String(err)}`);
    }
  }

  private async status(forge: ForgeClient, link: LinkRow, sha: string, state: "pending" | "success" | "failure" | "error", description: string, targetUrl?: string): Promise<void> {
    await forge.setStatus(this.scm.repoOf(link), sha, { context: REVIEW_APP_CONTEXT, state, description: description.slice(0, 140), ...(targetUrl ? { targetUrl } : {}) }).catch((err: unknown) => this.scm.o.log(`scm: review-app status on ${sha.slice(0, 7)} failed: ${String(err)}`));
  }

  // ---- by hand, and on the clock ------------------------------------------------------------

  /** Creates (or redeploys) the review app of pull request `prNumber`, as asked by a user. */
  async manual(actor: Actor, appRef: string, prNumber: number): Promise<ReviewAppRow> {
    const { link } = await this.scm.findLink(actor, appRef);
    const pr = await (await this.scm.forgeOf(link)).pull(this.scm.repoOf(link), prNumber);
    if (pr.state !== "open") throw new QuaiError("review_app_forbidden", `pull request #${prNumber} is closed`);
    if (pr.fromFork && !link.automatic_creation_from_forks_allowed) throw new QuaiError("review_app_forbidden", `pull request #${prNumber} comes from a fork (${pr.headRepo}) and the link does not allow review apps for forks: their code would see the parent app's variables`);
    const refused = await this.live(link.app_id, prNumber);
    if (refused?.status === "refused") await this.set(refused.id, { status: "deleted", deleted_at: new Date() });
    const made = await this.scm.serial(link.id, () => this.create(link, pr, true));
    const row = (made as ReviewAppRow | undefined) ?? (await this.live(link.app_id, prNumber));
    if (!row) throw new QuaiError("review_app_not_found", `no review app for #${prNumber}`);
    return (await this.row(row.id)) ?? row;
  }

  /** Retries, deletions due (closed or stale), the queue, and deployments to follow. */
  async tick(): Promise<void> {
    const now = new Date();
    const rows = await this.db.selectFrom("review_apps").selectAll().where("status", "not in", ["deleted", "refused"]).execute();
    const links = new Map((await this.db.selectFrom("scm_repo_links").selectAll().execute()).map((l) => [l.id, l]));
    for (const ra of rows) {
      const link = links.get(ra.link_id);
      if (!link) continue;
      if (ra.status === "deploying") this.watch(ra);
      else if (ra.status === "failed" && ra.retry_at && ra.retry_at <= now) void this.scm.serial(link.id, () => this.build(link, ra.id));
      else if (ra.delete_after && ra.delete_after <= now && ra.status !== "deleting") void this.scm.serial(link.id, () => this.destroy(ra.id, "pull request closed"));
      else if (link.delete_stale_enabled && ra.status !== "queued" && now.getTime() - ra.last_activity_at.getTime() > link.hours_before_delete_stale * 3_600_000) {
        void this.scm.serial(link.id, () => this.destroy(ra.id, `no activity for ${link.hours_before_delete_stale} hours`));
      } else if (ra.status === "queued") void this.scm.serial(link.id, () => this.startQueued(ra.parent_app_id));
    }
  }

  /** The parent app's review apps, for the API (checks the user may see the parent). */
  async listFor(actor: Actor, appRef: string): Promise<ReviewAppRow[]> {
    const app = await findApp(this.db, actor, appRef);
    return this.list(app.id);
  }
}

/** Text for inside a code span, where escapes show: only backticks (and line breaks) would break out. */
function codeSpan(s: string): string {
  return s.replace(/[`\r\n]/g, "'");
}

/** Markdown-inert text: a pull request's strings may carry markup. */
function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-!|<>&]/g, (c) => `\\${c}`).replace(/\n/g, " ");
}
