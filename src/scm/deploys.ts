// Auto-deploys of a linked branch, gated on CI: a push waits until the checks of its commit pass
// (Quai's own never count), then Quai fetches that exact commit's tarball and deploys it through
// the archive pipeline. A newer push supersedes a waiting one; a failed check or a timeout ends
// the wait, with a status on the commit and an event saying why.
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import type { Actor } from "../auth/service.ts";
import type { AppRecord } from "../apps/service.ts";
import type { Deployments } from "../deployments/service.ts";
import type { ScmBranchDeploysTable } from "../store/schema.ts";
import type { CommitStatus, ForgeClient } from "./forge.ts";
import { decide } from "./gate.ts";
import type { LinkRow, Scm } from "./service.ts";

export type BranchDeployRow = Selectable<ScmBranchDeploysTable>;

/** The status context of a linked branch's deploys: stable, so a team can make it required. */
export const DEPLOY_CONTEXT = "quai/deploy";

export interface BranchDeployDeps {
  deployments: Deployments;
  appUrl: (appName: string) => string;
}

export function branchDeployJson(r: BranchDeployRow): Record<string, unknown> {
  return { id: r.id, branch: r.branch, sha: r.sha, manual: r.manual, status: r.status, reason: r.reason, deployment_id: r.deployment_id, deadline: r.deadline.toISOString(), created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString() };
}

export class BranchDeploys {
  private readonly scm: Scm;
  private readonly d: BranchDeployDeps;
  private readonly watching = new Set<string>();

  constructor(scm: Scm, deps: BranchDeployDeps) {
    this.scm = scm;
    this.d = deps;
  }

  private get db() {
    return this.scm.o.db;
  }

  outputUrl(app: { name: string }, deploymentId: string): string {
    return `${this.scm.o.apiUrl()}/v1/apps/${app.name}/deployments/${deploymentId}/output`;
  }

  /** Posts a status; a forge that fails here never stops a deploy (it is logged). */
  private async status(forge: ForgeClient, link: LinkRow, sha: string, s: Omit<CommitStatus, "context">): Promise<void> {
    await forge.setStatus(this.scm.repoOf(link), sha, { context: DEPLOY_CONTEXT, ...s }).catch((err: unknown) => this.scm.o.log(`scm: status ${s.state} on ${sha.slice(0, 7)} failed: ${String(err)}`));
  }

  private async set(id: string, status: string, extra: Partial<{ reason: string | null; deployment_id: string; forge_deployment_id: string | null }> = {}): Promise<BranchDeployRow> {
    return this.db.updateTable("scm_branch_deploys").set({ status, ...extra, updated_at: new Date() }).where("id", "=", id).returningAll().executeTakeFirstOrThrow();
  }

  /** Records a push to the linked branch and deploys it now (manual) or once CI passes. */
  async start(linkId: string, branch: string, sha: string, manual: boolean, actor?: Actor): Promise<BranchDeployRow | undefined> {
    const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", linkId).executeTakeFirst();
    if (!link) return undefined;
    const app = await this.scm.appOf(link.app_id);
    if (!app) return undefined;
    const forge = await this.scm.forgeOf(link);
    // Only the newest push of a branch deploys: older waiting ones step aside.
    const superseded = await this.db
      .updateTable("scm_branch_deploys")
      .set({ status: "superseded", reason: `superseded by ${sha.slice(0, 7)}`, updated_at: new Date() })
      .where("link_id", "=", link.id)
      .where("status", "=", "waiting")
      .where("sha", "<>", sha)
      .returningAll()
      .execute();
    for (const old of superseded) {
      await this.status(forge, link, old.sha, { state: "error", description: `${app.name}: not deployed, superseded by ${sha.slice(0, 7)}` });
      await this.scm.event(null, app, "scm_deploy_superseded", { sha: old.sha, by: sha, branch });
    }
    const same = await this.db.selectFrom("scm_branch_deploys").selectAll().where("link_id", "=", link.id).where("sha", "=", sha).where("status", "in", ["waiting", "deploying"]).executeTakeFirst();
    if (same && !manual) return same;
    const row = await this.db
      .insertInto("scm_branch_deploys")
      .values({ link_id: link.id, app_id: app.id, branch, sha, manual, status: "waiting", deadline: new Date(Date.now() + link.ci_timeout_minutes * 60_000) })
      .returningAll()
      .executeTakeFirstOrThrow();
    if (manual) return this.deploy(row, link, app, forge, actor);
    await this.status(forge, link, sha, { state: "pending", description: `${app.name}: waiting for CI before deploying` });
    await this.scm.event(null, app, "scm_deploy_waiting", { sha, branch, required_checks: link.required_checks ?? "all but quai/*" });
    return this.evaluate(row.id);
  }

  /** Re-reads the checks of every waiting deploy of `sha` on the link. */
  async evaluateSha(linkId: string, sha: string): Promise<void> {
    const rows = await this.db.selectFrom("scm_branch_deploys").select("id").where("link_id", "=", linkId).where("sha", "=", sha).where("status", "=", "waiting").execute();
    for (const r of rows) await this.evaluate(r.id);
  }

  /** One look at a waiting deploy's checks: deploy, keep waiting, give up, or time out. */
  async evaluate(id: string): Promise<BranchDeployRow | undefined> {
    const row = await this.db.selectFrom("scm_branch_deploys").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row || row.status !== "waiting") return row;
    const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", row.link_id).executeTakeFirst();
    const app = await this.scm.appOf(row.app_id);
    if (!link || !app) return this.set(row.id, "error", { reason: "the link or the app was deleted" });
    const forge = await this.scm.forgeOf(link);
    let checks;
    try {
      checks = await forge.checks(this.scm.repoOf(link), row.sha);
    } catch (err) {
      // The forge is down: the next tick (or check webhook) looks again, until the deadline.
      this.scm.o.log(`scm: reading the checks of ${row.sha.slice(0, 7)} failed: ${(err as Error).message}`);
      return this.timeoutIfDue(row, link, app, forge);
    }
    const verdict = decide(checks, link.required_checks);
    if (verdict.verdict === "blocked") {
      const reason = `CI failed: ${verdict.failed.join(", ")}`;
      await this.status(forge, link, row.sha, { state: "failure", description: `${app.name}: not deployed, ${reason}` });
      await this.scm.event(null, app, "scm_deploy_blocked", { sha: row.sha, branch: row.branch, failed: verdict.failed });
      return this.set(row.id, "blocked", { reason });
    }
    if (verdict.verdict === "wait") {
      const due = await this.timeoutIfDue(row, link, app, forge, verdict.pending);
      if (due.status !== "waiting") return due;
      if (row.reason !== `waiting for ${verdict.pending.join(", ")}`) return this.set(row.id, "waiting", { reason: `waiting for ${verdict.pending.join(", ")}` });
      return row;
    }
    return this.deploy(row, link, app, forge);
  }

  private async timeoutIfDue(row: BranchDeployRow, link: LinkRow, app: AppRecord, forge: ForgeClient, pending: string[] = []): Promise<BranchDeployRow> {
    if (row.deadline.getTime() > Date.now()) return row;
    const reason = `CI did not finish within ${link.ci_timeout_minutes} minutes${pending.length ? ` (still pending: ${pending.join(", ")})` : ""}`;
    await this.status(forge, link, row.sha, { state: "error", description: `${app.name}: not deployed, ${reason}` });
    await this.scm.event(null, app, "scm_deploy_timeout", { sha: row.sha, branch: row.branch, pending });
    return this.set(row.id, "timeout", { reason });
  }

  /** Fetches the commit's tarball from the forge and queues its deployment. */
  private async deploy(row: BranchDeployRow, link: LinkRow, app: AppRecord, forge: ForgeClient, actor?: Actor): Promise<BranchDeployRow> {
    const repo = this.scm.repoOf(link);
    const who = actor ?? (await this.scm.actorOf(link));
    const forgeDeployment = await forge.createDeployment(repo, { sha: row.sha, environment: app.name, transient: false, description: `Deploy ${row.branch} to ${app.name}` }).catch((err: unknown) => {
      this.scm.o.log(`scm: creating the forge deployment of ${app.name} failed: ${String(err)}`);
      return undefined;
    });
    let deploymentId: string;
    try {
      const archive = await forge.archive(repo, row.sha);
      deploymentId = (await this.d.deployments.create(who, app, { source: "archive", gitRef: row.sha, archive })).id;
    } catch (err) {
      const reason = `could not fetch ${row.sha.slice(0, 7)} from the forge: ${(err as Error).message}`;
      await this.status(forge, link, row.sha, { state: "error", description: `${app.name}: ${reason}`.slice(0, 140) });
      if (forgeDeployment) await forge.setDeploymentStatus(repo, forgeDeployment, { state: "failure", description: "source not fetched" }).catch(() => {});
      await this.scm.event(who, app, "scm_deploy_failed", { sha: row.sha, branch: row.branch, reason });
      const failed = await this.set(row.id, "error", { reason, forge_deployment_id: forgeDeployment ?? null });
      if (row.manual && err instanceof QuaiError) throw err;
      return failed;
    }
    const target = this.outputUrl(app, deploymentId);
    await this.status(forge, link, row.sha, { state: "pending", description: `${app.name}: deploying`, targetUrl: target });
    if (forgeDeployment) await forge.setDeploymentStatus(repo, forgeDeployment, { state: "in_progress", logUrl: target, environmentUrl: this.d.appUrl(app.name) }).catch(() => {});
    const updated = await this.set(row.id, "deploying", { deployment_id: deploymentId, forge_deployment_id: forgeDeployment ?? null, reason: null });
    this.watch(updated);
    return updated;
  }

  /** Follows a deployment to its end, then reports it on the commit and the forge deployment. */
  private watch(row: BranchDeployRow): void {
    if (!row.deployment_id || this.watching.has(row.id)) return;
    this.watching.add(row.id);
    this.scm.track(
      (async () => {
        const outcome = await this.d.deployments.waitFinished(row.deployment_id as string);
        if (!outcome || this.scm.isClosed) return;
        const link = await this.db.selectFrom("scm_repo_links").selectAll().where("id", "=", row.link_id).executeTakeFirst();
        const app = await this.scm.appOf(row.app_id);
        if (!link || !app) return;
        const forge = await this.scm.forgeOf(link);
        const ok = outcome === "success";
        const target = this.outputUrl(app, row.deployment_id as string);
        await this.status(forge, link, row.sha, { state: ok ? "success" : "failure", description: ok ? `${app.name}: deployed` : `${app.name}: deployment ${outcome}`, targetUrl: target });
        if (row.forge_deployment_id) {
          await forge.setDeploymentStatus(this.scm.repoOf(link), row.forge_deployment_id, { state: ok ? "success" : "failure", environmentUrl: this.d.appUrl(app.name), logUrl: target }).catch(() => {});
        }
        await this.set(row.id, ok ? "success" : "failed", { reason: ok ? null : `deployment ${outcome}` });
      })()
        .catch((err: unknown) => this.scm.o.log(`scm: following deployment ${row.deployment_id}: ${String(err)}`))
        .finally(() => this.watching.delete(row.id)),
    );
  }

  /** Deploys the head of `branch` now, without waiting for CI (the "Trigger deployment" button). */
  async manual(actor: Actor, appRef: string, branch: string): Promise<BranchDeployRow> {
    const { link } = await this.scm.findLink(actor, appRef);
    const head = await (await this.scm.forgeOf(link)).branch(this.scm.repoOf(link), branch);
    const row = await this.start(link.id, head.name, head.sha, true, actor);
    if (!row) throw new QuaiError("scm_repo_link_not_found", "the link was deleted meanwhile");
    return row;
  }

  async list(appId: string, limit = 50): Promise<BranchDeployRow[]> {
    return this.db.selectFrom("scm_branch_deploys").selectAll().where("app_id", "=", appId).orderBy("created_at", "desc").limit(limit).execute();
  }

  /** Polls the checks of waiting deploys (a missed webhook, a timeout) and follows deployments. */
  async tick(): Promise<void> {
    const rows = await this.db.selectFrom("scm_branch_deploys").selectAll().where("status", "in", ["waiting", "deploying"]).execute();
    for (const r of rows) {
      if (r.status === "deploying") this.watch(r);
      else void this.scm.serial(r.link_id, () => this.evaluate(r.id));
    }
  }
}
