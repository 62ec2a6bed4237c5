// SCM integrations and repo links: forge accounts, the link of an app to a repository (Scalingo's
// shape), and the webhook intake that turns verified deliveries into branch deploys and review
// apps. One ticker re-reads what webhooks may have missed: waiting checks, timeouts, deletions.
import { randomBytes, randomUUID } from "node:crypto";
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import type { Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import { recordEvent, type EventType } from "../events/service.ts";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import type { ScmIntegrationsTable, ScmRepoLinksTable } from "../store/schema.ts";
import type { ForgeClient, ForgeKind, RepoRef } from "./forge.ts";
import { GitHubClient } from "./forges/github.ts";
import { GitLabClient } from "./forges/gitlab.ts";
import { factProblem, payloadRepo, readFact, signatureMatches, type WebhookFact } from "./webhooks.ts";
import type { BranchDeploys } from "./deploys.ts";
import type { ReviewApps } from "./review-apps.ts";

export type IntegrationRow = Selectable<ScmIntegrationsTable>;
export type LinkRow = Selectable<ScmRepoLinksTable>;

/** Scalingo's integration types and the forge each speaks. */
export const SCM_TYPES: Record<string, { forge: ForgeKind; defaultUrl?: string }> = {
  github: { forge: "github", defaultUrl: "https://api.github.com" },
  "github-enterprise": { forge: "github" },
  gitlab: { forge: "gitlab", defaultUrl: "https://gitlab.com" },
  "gitlab-self-hosted": { forge: "gitlab" },
};

/** Link settings a user may set (POST and PATCH). */
export interface LinkSettings {
  branch?: string;
  auto_deploy_enabled?: boolean;
  deploy_review_apps_enabled?: boolean;
  delete_on_close_enabled?: boolean;
  hours_before_delete_on_close?: number;
  delete_stale_enabled?: boolean;
  hours_before_delete_stale?: number;
  automatic_creation_from_forks_allowed?: boolean;
  required_checks?: string[] | null;
  ci_timeout_minutes?: number;
  review_apps_limit?: number;
  review_apps_seed?: string | null;
}

export interface ScmOptions {
  db: Db;
  keyring: Keyring;
  log: (line: string) => void;
  /** The API's public address (webhook URLs, deployment output links). */
  apiUrl: () => string;
  /** Makes the client of one forge; tests may wrap it. */
  forgeFor?: (forge: ForgeKind, baseUrl: string, token: string) => ForgeClient;
  /** Forge request settings (timeouts, retries). */
  forgeTimeoutMs?: number;
  forgeAttempts?: number;
  forgeBackoffMs?: number;
  /** How often waiting deploys, queues and deletions are looked at (default 15 s). */
  tickMs?: number;
}

/** A branch name Quai accepts on a link: git's rules, without anything a shell or URL would read. */
export function assertBranch(branch: string): void {
  if (branch.length === 0 || branch.length > 255 || branch.startsWith("-") || branch.startsWith("/") || branch.endsWith("/") || branch.endsWith(".lock") || branch.includes("..") || branch.includes("//") || !/^[A-Za-z0-9._/+@-]+$/.test(branch)) {
    throw new QuaiError("scm_repo_link_invalid", `branch ${JSON.stringify(branch)} is not a valid git branch name (letters, digits, . _ / + @ -)`);
  }
}

/** `owner/name` from a repository URL (https, ssh `git@host:owner/name.git`) or `owner/name`. */
export function parseRepoUrl(source: string, forge: ForgeKind): RepoRef {
  let path = source.trim();
  const scp = /^[\w.-]+@[\w.-]+:(.+)$/.exec(path);
  if (scp) path = scp[1] as string;
  else if (/^[a-z+]+:\/\//i.test(path)) {
    try {
      path = new URL(path).pathname;
    } catch {
      throw new QuaiError("scm_repo_link_invalid", `${JSON.stringify(source)} is not a repository URL`);
    }
  }
  path = path.replace(/\/-\/.*$/, "").replace(/\.git$/, "").replace(/^\/+|\/+$/g, "");
  const parts = path.split("/").filter(Boolean);
  const seg = /^[A-Za-z0-9._-]{1,100}$/;
  if (parts.length < 2 || !parts.every((p) => seg.test(p) && p !== "." && p !== "..")) {
    throw new QuaiError("scm_repo_link_invalid", `${JSON.stringify(source)} is not a repository URL or owner/name`);
  }
  // GitHub: the last two segments (a base path like /github on a fake forge is dropped); GitLab
  // groups nest, and its base path is rarely a prefix of the repository's page, so keep them all.
  if (forge === "github") return { owner: parts[parts.length - 2] as string, name: parts[parts.length - 1] as string };
  return { owner: parts.slice(0, -1).join("/"), name: parts[parts.length - 1] as string };
}

/** The integration in Scalingo's shape (never the token). */
export function integrationJson(i: IntegrationRow): Record<string, unknown> {
  return { id: i.id, scm_type: i.scm_type, url: i.url, uid: i.uid, username: i.username, email: i.email, avatar_url: i.avatar_url, created_at: i.created_at.toISOString(), owner: { id: i.owner_id } };
}

/** The integrations service, repo links and webhook intake. */
export class Scm {
  readonly o: ScmOptions;
  deploys?: BranchDeploys;
  reviewApps?: ReviewApps;
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly pending = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private lastPrune = 0;
  private closed = false;

  constructor(opts: ScmOptions) {
    this.o = opts;
  }

  // ---- forges ---------------------------------------------------------------------------------

  private makeClient(forge: ForgeKind, baseUrl: string, token: string): ForgeClient {
    if (this.o.forgeFor) return this.o.forgeFor(forge, baseUrl, token);
    const opts = { baseUrl, token, timeoutMs: this.o.forgeTimeoutMs, attempts: this.o.forgeAttempts, backoffMs: this.o.forgeBackoffMs };
    return forge === "github" ? new GitHubClient(opts) : new GitLabClient(opts);
  }

  /** The client of a link's integration. */
  async forgeOf(link: LinkRow): Promise<ForgeClient> {
    return this.clientOf(await this.o.db.selectFrom("scm_integrations").selectAll().where("id", "=", link.integration_id).executeTakeFirstOrThrow());
  }

  /** The client of an integration, with its token unsealed. */
  private clientOf(i: IntegrationRow): ForgeClient {
    return this.makeClient(SCM_TYPES[i.scm_type]?.forge ?? "github", i.url, this.o.keyring.open({ keyId: i.token_key_id, data: i.token_enc }, `scm-token:${i.id}`));
  }

  repoOf(link: LinkRow): RepoRef {
    return { owner: link.owner, name: link.repo };
  }

  /** The user a link acts as (its linker). */
  async actorOf(link: LinkRow): Promise<Actor> {
    const u = await this.o.db.selectFrom("users").select(["id", "email", "username", "role"]).where("id", "=", link.linker_id).executeTakeFirstOrThrow();
    return u;
  }

  async appOf(id: string): Promise<AppRecord | undefined> {
    return this.o.db.selectFrom("apps").selectAll().where("id", "=", id).executeTakeFirst();
  }

  async event(actor: Actor | null, app: { id: string; name: string } | null, type: EventType, data: Record<string, unknown>): Promise<void> {
    await recordEvent(this.o.db, { actor, app, type, data }).catch((err: unknown) => this.o.log(`scm: recording ${type} failed: ${String(err)}`));
  }

  // ---- integrations ---------------------------------------------------------------------------

  async addIntegration(actor: Actor, input: { scm_type: string; url?: string; access_token: string }): Promise<IntegrationRow> {
    const type = SCM_TYPES[input.scm_type];
    if (!type) throw new QuaiError("scm_integration_invalid", `scm_type ${JSON.stringify(input.scm_type)} is not one of ${Object.keys(SCM_TYPES).join(", ")}`);
    const url = (input.url ?? type.defaultUrl ?? "").replace(/\/+$/, "");
    if (!url) throw new QuaiError("scm_integration_invalid", `${input.scm_type} needs the url of its API`);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new QuaiError("scm_integration_invalid", `url ${JSON.stringify(url)} is not a URL`);
    }
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new QuaiError("scm_integration_invalid", "the forge's url must be http:// or https://");
    if (parsed.username || parsed.password) throw new QuaiError("scm_integration_invalid", "put the token in access_token, not in the url");
    if (!input.access_token || input.access_token.length > 1024 || /\s/.test(input.access_token)) throw new QuaiError("scm_integration_invalid", "access_token is missing or not a token");
    // The token must work: the forge tells who it belongs to.
    const who = await this.makeClient(type.forge, url, input.access_token).user();
    const existing = await this.o.db.selectFrom("scm_integrations").select("id").where("owner_id", "=", actor.id).where("scm_type", "=", input.scm_type).where("url", "=", url).executeTakeFirst();
    const id = existing?.id ?? randomUUID();
    const sealed = this.o.keyring.seal(input.access_token, `scm-token:${id}`);
    const values = { scm_type: input.scm_type, url, token_enc: sealed.data, token_key_id: sealed.keyId, uid: who.uid, username: who.username, email: who.email, avatar_url: who.avatarUrl };
    const row = existing
      ? await this.o.db.updateTable("scm_integrations").set(values).where("id", "=", id).returningAll().executeTakeFirstOrThrow()
      : await this.o.db.insertInto("scm_integrations").values({ id, owner_id: actor.id, ...values }).returningAll().executeTakeFirstOrThrow();
    await this.event(actor, null, "new_integration", { integration_id: row.id, scm_type: row.scm_type, url: row.url, username: row.username });
    return row;
  }

  async listIntegrations(actor: Actor): Promise<IntegrationRow[]> {
    return this.o.db.selectFrom("scm_integrations").selectAll().where("owner_id", "=", actor.id).orderBy("created_at").execute();
  }

  /** By id, or by scm_type when the user has one of that type. */
  async findIntegration(actor: Actor, ref: string): Promise<IntegrationRow> {
    const rows = await this.listIntegrations(actor);
    const byId = rows.find((r) => r.id === ref);
    if (byId) return byId;
    const byType = rows.filter((r) => r.scm_type === ref);
    if (byType.length === 1) return byType[0] as IntegrationRow;
    throw new QuaiError("scm_integration_not_found", byType.length > 1 ? `you have ${byType.length} ${ref} integrations: name one by id` : `no SCM integration ${JSON.stringify(ref)}: add one with quai integrations-add`);
  }

  async removeIntegration(actor: Actor, ref: string): Promise<void> {
    const i = await this.findIntegration(actor, ref);
    const used = await this.o.db.selectFrom("scm_repo_links").innerJoin("apps", "apps.id", "scm_repo_links.app_id").select("apps.name").where("integration_id", "=", i.id).execute();
    if (used.length > 0) throw new QuaiError("scm_integration_in_use", `integration ${i.scm_type} is used by the repo links of ${used.map((u) => u.name).join(", ")}`);
    await this.o.db.deleteFrom("scm_integrations").where("id", "=", i.id).execute();
    await this.event(actor, null, "delete_integration", { integration_id: i.id, scm_type: i.scm_type });
  }

  // ---- repo links -----------------------------------------------------------------------------

  webhookUrl(forge: ForgeKind): string {
    return `${this.o.apiUrl()}/v1/scm/${forge}/webhook`;
  }

  private validateSettings(s: LinkSettings): void {
    if (s.branch !== undefined) assertBranch(s.branch);
    const hours = (name: string, v: number | undefined) => {
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 24 * 365)) throw new QuaiError("scm_repo_link_invalid", `${name} must be a whole number of hours from 0 to 8760`);
    };
    hours("hours_before_delete_on_close", s.hours_before_delete_on_close);
    hours("hours_before_delete_stale", s.hours_before_delete_stale);
    if (s.ci_timeout_minutes !== undefined && (!Number.isInteger(s.ci_timeout_minutes) || s.ci_timeout_minutes < 1 || s.ci_timeout_minutes > 24 * 60)) throw new QuaiError("scm_repo_link_invalid", "ci_timeout_minutes must be from 1 to 1440");
    if (s.review_apps_limit !== undefined && (!Number.isInteger(s.review_apps_limit) || s.review_apps_limit < 1 || s.review_apps_limit > 100)) throw new QuaiError("scm_repo_link_invalid", "review_apps_limit must be from 1 to 100");
    if (s.required_checks) {
      if (s.required_checks.length > 50 || s.required_checks.some((c) => c.length === 0 || c.length > 255)) throw new QuaiError("scm_repo_link_invalid", "required_checks is a list of at most 50 check names");
    }
    if (s.review_apps_seed !== undefined && s.review_apps_seed !== null && s.review_apps_seed !== "parent-latest" && !/^backup:[0-9a-f-]{36}$/.test(s.review_apps_seed)) {
      throw new QuaiError("scm_repo_link_invalid", `review_apps_seed is "parent-latest" or "backup:<backup id>", got ${JSON.stringify(s.review_apps_seed)}`);
    }
  }

  async findLink(actor: Actor, appRef: string): Promise<{ app: AppRecord; link: LinkRow }> {
    const app = await findApp(this.o.db, actor, appRef);
    const link = await this.o.db.selectFrom("scm_repo_links").selectAll().where("app_id", "=", app.id).executeTakeFirst();
    if (!link) throw new QuaiError("scm_repo_link_not_found", `app ${app.name} is not linked to a repository: link it with quai integration-link-create`);
    return { app, link };
  }

  async createLink(actor: Actor, appRef: string, input: LinkSettings & { source: string; auth_integration_uuid?: string; scm_type?: string }): Promise<LinkRow> {
    const app = await findApp(this.o.db, actor, appRef);
    const integration = await this.findIntegration(actor, input.auth_integration_uuid ?? input.scm_type ?? (await this.onlyIntegration(actor)));
    const forge = SCM_TYPES[integration.scm_type]?.forge ?? "github";
    const repo = parseRepoUrl(input.source, forge);
    this.validateSettings(input);
    const exists = await this.o.db.selectFrom("scm_repo_links").select("id").where("app_id", "=", app.id).executeTakeFirst();
    if (exists) throw new QuaiError("scm_repo_link_exists", `app ${app.name} is already linked to a repository: update it, or delete the link first`);
    const client = this.clientOf(integration);
    const branch = input.branch ?? "main";
    // The branch must exist, which also proves the token reaches the repository.
    await client.branch(repo, branch);
    const secret = randomBytes(32).toString("hex");
    const id = randomUUID();
    const sealed = this.o.keyring.seal(secret, `scm-webhook:${id}`);
    const hookId = await client.createHook(repo, this.webhookUrl(forge), secret);
    let link: LinkRow;
    try {
      link = await this.o.db
        .insertInto("scm_repo_links")
        .values({
          id,
          app_id: app.id,
          integration_id: integration.id,
          linker_id: actor.id,
          scm_type: integration.scm_type,
          owner: repo.owner,
          repo: repo.name,
          branch,
          auto_deploy_enabled: input.auto_deploy_enabled ?? false,
          deploy_review_apps_enabled: input.deploy_review_apps_enabled ?? false,
          delete_on_close_enabled: input.delete_on_close_enabled ?? true,
          hours_before_delete_on_close: input.hours_before_delete_on_close ?? 0,
          delete_stale_enabled: input.delete_stale_enabled ?? false,
          hours_before_delete_stale: input.hours_before_delete_stale ?? 72,
          automatic_creation_from_forks_allowed: input.automatic_creation_from_forks_allowed ?? false,
          required_checks: input.required_checks ?? null,
          ci_timeout_minutes: input.ci_timeout_minutes ?? 60,
          review_apps_limit: input.review_apps_limit ?? 5,
          review_apps_seed: input.review_apps_seed ?? null,
          webhook_secret_enc: sealed.data,
          webhook_secret_key_id: sealed.keyId,
          hook_id: hookId,
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    } catch (err) {
      await client.deleteHook(repo, hookId).catch(() => {});
      if ((err as { code?: string }).code === "23505") throw new QuaiError("scm_repo_link_exists", `app ${app.name} is already linked to a repository`);
      throw err;
    }
    await this.event(actor, app, "link_scm", { repo: `${repo.owner}/${repo.name}`, branch, scm_type: integration.scm_type, auto_deploy_enabled: link.auto_deploy_enabled, deploy_review_apps_enabled: link.deploy_review_apps_enabled });
    return link;
  }

  private async onlyIntegration(actor: Actor): Promise<string> {
    const rows = await this.listIntegrations(actor);
    if (rows.length === 1) return (rows[0] as IntegrationRow).id;
    throw new QuaiError("scm_integration_not_found", rows.length === 0 ? "you have no SCM integration: add one with quai integrations-add" : "you have several SCM integrations: name one (auth_integration_uuid or scm_type)");
  }

  async updateLink(actor: Actor, appRef: string, input: LinkSettings): Promise<LinkRow> {
    const { app, link } = await this.findLink(actor, appRef);
    this.validateSettings(input);
    if (input.branch !== undefined && input.branch !== link.branch) await (await this.forgeOf(link)).branch(this.repoOf(link), input.branch);
    const changes = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
    if (Object.keys(changes).length === 0) return link;
    const updated = await this.o.db.updateTable("scm_repo_links").set({ ...changes, updated_at: new Date() }).where("id", "=", link.id).returningAll().executeTakeFirstOrThrow();
    await this.event(actor, app, "update_scm_link", { changes });
    return updated;
  }

  async deleteLink(actor: Actor, appRef: string): Promise<void> {
    const { app, link } = await this.findLink(actor, appRef);
    // Review apps live by their link (closing, staleness, the comment): they go with it.
    if (this.reviewApps) {
      const ra = this.reviewApps;
      const live = await this.o.db.selectFrom("review_apps").select("id").where("link_id", "=", link.id).where("status", "not in", ["deleted", "refused"]).execute();
      for (const r of live) await this.serial(link.id, () => ra.destroy(r.id, "the repository link was deleted"));
    }
    if (link.hook_id) {
      const client = await this.forgeOf(link);
      await client.deleteHook(this.repoOf(link), link.hook_id).catch((err: unknown) => this.o.log(`scm: removing the webhook of ${app.name}'s repository failed: ${String(err)}`));
    }
    await this.o.db.deleteFrom("scm_repo_links").where("id", "=", link.id).execute();
    await this.event(actor, app, "unlink_scm", { repo: `${link.owner}/${link.repo}` });
  }

  /** The link in Scalingo's shape, plus Quai's settings and its webhook URL. */
  linkJson(link: LinkRow, linker?: Actor): Record<string, unknown> {
    const forge = SCM_TYPES[link.scm_type]?.forge ?? "github";
    return {
      id: link.id,
      app_id: link.app_id,
      linker: linker ? { id: linker.id, username: linker.username, email: linker.email } : { id: link.linker_id },
      owner: link.owner,
      repo: link.repo,
      branch: link.branch,
      scm_type: link.scm_type,
      auth_integration_uuid: link.integration_id,
      created_at: link.created_at.toISOString(),
      updated_at: link.updated_at.toISOString(),
      auto_deploy_enabled: link.auto_deploy_enabled,
      deploy_review_apps_enabled: link.deploy_review_apps_enabled,
      delete_on_close_enabled: link.delete_on_close_enabled,
      hours_before_delete_on_close: link.hours_before_delete_on_close,
      delete_stale_enabled: link.delete_stale_enabled,
      hours_before_delete_stale: link.hours_before_delete_stale,
      automatic_creation_from_forks_allowed: link.automatic_creation_from_forks_allowed,
      required_checks: link.required_checks,
      ci_timeout_minutes: link.ci_timeout_minutes,
      review_apps_limit: link.review_apps_limit,
      review_apps_seed: link.review_apps_seed,
      webhook_url: this.webhookUrl(forge),
    };
  }

  // ---- webhooks -------------------------------------------------------------------------------

  private async recordDelivery(forge: ForgeKind, deliveryId: string | null, event: string, repo: string | null, linkId: string | null, outcome: "accepted" | "refused" | "ignored", reason: string | null): Promise<boolean> {
    try {
      await this.o.db.insertInto("scm_deliveries").values({ provider: forge, delivery_id: deliveryId ?? `none-${randomBytes(8).toString("hex")}`, event: event.slice(0, 100), repo: repo?.slice(0, 300) ?? null, link_id: linkId, outcome, reason }).execute();
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === "23505") return false;
      throw err;
    }
  }

  /** Records a refusal with its precise reason; the sender is told `answer` (default: the reason). */
  private async refuse(forge: ForgeKind, deliveryId: string | null, event: string, repo: string | null, reason: string, app?: { id: string; name: string }, answer = reason): Promise<never> {
    await this.recordDelivery(forge, deliveryId, event, repo, null, "refused", reason);
    this.o.log(`scm: refused a ${forge} ${event || "?"} webhook${repo ? ` for ${repo}` : ""}: ${reason}`);
    if (app) await this.event(null, app, "scm_webhook_refused", { forge, event, delivery_id: deliveryId, reason });
    throw new QuaiError("scm_webhook_refused", `webhook refused: ${answer}`);
  }

  /**
   * Checks and records one delivery, then queues what it asks for; resolves once queued (the
   * forge is answered quickly; the work goes on). Throws `scm_webhook_refused` when it cannot
   * be trusted: no signature, no link of that repository whose secret matches, or a replay.
   */
  async receive(forge: ForgeKind, headers: Record<string, string | string[] | undefined>, body: Buffer): Promise<{ accepted: boolean; actions: string[] }> {
    const h = (name: string) => {
      const v = headers[name];
      return typeof v === "string" ? v : undefined;
    };
    const event = (forge === "github" ? h("x-github-event") : h("x-gitlab-event")) ?? "";
    const deliveryId = (forge === "github" ? h("x-github-delivery") : (h("x-gitlab-event-uuid") ?? h("idempotency-key"))) ?? null;
    const signature = forge === "github" ? h("x-hub-signature-256") : h("x-gitlab-token");
    let payload: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(body.toString("utf8"));
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      payload = parsed as Record<string, unknown>;
    } catch {
      await this.recordDelivery(forge, deliveryId, event, null, null, "refused", "the payload is not a JSON object");
      throw new QuaiError("scm_webhook_invalid", "the webhook payload is not a JSON object");
    }
    const repo = payloadRepo(forge, payload);
    if (!signature) return this.refuse(forge, deliveryId, event, repo, forge === "github" ? "no X-Hub-Signature-256 header" : "no X-Gitlab-Token header");
    if (!repo) return this.refuse(forge, deliveryId, event, null, "the payload names no repository");
    const slash = repo.lastIndexOf("/");
    const links = await this.o.db
      .selectFrom("scm_repo_links")
      .selectAll()
      .where("scm_type", "in", Object.entries(SCM_TYPES).filter(([, t]) => t.forge === forge).map(([k]) => k))
      .where((eb) => eb(eb.fn("lower", ["owner"]), "=", repo.slice(0, slash).toLowerCase()))
      .where((eb) => eb(eb.fn("lower", ["repo"]), "=", repo.slice(slash + 1).toLowerCase()))
      .execute();
    // An unknown repository and a wrong signature get the same answer: a stranger cannot probe
    // which repositories are linked. The record says which it was.
    const noMatch = "the signature matches no link of this repository";
    if (links.length === 0) return this.refuse(forge, deliveryId, event, repo, `no app is linked to ${repo}`, undefined, noMatch);
    // Every link's secret is tried, in constant time each: the one that matches is the sender.
    const matching = links.filter((l) => signatureMatches(forge, body, signature, this.o.keyring.open({ keyId: l.webhook_secret_key_id, data: l.webhook_secret_enc }, `scm-webhook:${l.id}`)));
    if (matching.length === 0) {
      const first = links[0] as LinkRow;
      return this.refuse(forge, deliveryId, event, repo, noMatch, await this.appOf(first.app_id));
    }
    if (!deliveryId) return this.refuse(forge, null, event, repo, "no delivery id header");
    const fact = readFact(forge, event, payload);
    const problem = factProblem(fact);
    const ignored = fact.kind === "ignored" ? fact.why : problem;
    const fresh = await this.recordDelivery(forge, deliveryId, event, repo, (matching[0] as LinkRow).id, ignored ? "ignored" : "accepted", ignored ?? null);
    if (!fresh) return this.refuse(forge, deliveryId, event, repo, `delivery ${deliveryId} was already received (replay)`, await this.appOf((matching[0] as LinkRow).app_id));
    if (ignored) return { accepted: false, actions: [ignored] };
    const actions: string[] = [];
    for (const link of matching) {
      const what = this.dispatch(link, fact);
      if (what) actions.push(what);
    }
    return { accepted: true, actions };
  }

  /** Queues what a fact asks of one link; returns a description, or undefined when nothing. */
  private dispatch(link: LinkRow, fact: WebhookFact): string | undefined {
    switch (fact.kind) {
      case "push":
        if (fact.deleted || fact.branch !== link.branch) return undefined;
        if (!link.auto_deploy_enabled || !this.deploys) return `push to ${fact.branch}: auto-deploy is off`;
        this.serial(link.id, () => (this.deploys as BranchDeploys).start(link.id, fact.branch, fact.sha, false));
        return `push to ${fact.branch}: deploy ${fact.sha.slice(0, 7)} once CI passes`;
      case "checks":
        if (!this.deploys) return undefined;
        this.serial(link.id, () => (this.deploys as BranchDeploys).evaluateSha(link.id, fact.sha));
        return `checks of ${fact.sha.slice(0, 7)} re-read`;
      case "pull":
        if (!this.reviewApps) return undefined;
        this.serial(link.id, () => (this.reviewApps as ReviewApps).onPull(link.id, fact.action, fact.label, fact.pr));
        return `pull request #${fact.pr.number} ${fact.action}`;
      default:
        return undefined;
    }
  }

  // ---- work queues and the ticker -------------------------------------------------------------

  /** Runs `fn` after the link's earlier work, never concurrently with it; failures are logged. */
  serial(key: string, fn: () => Promise<unknown>): Promise<unknown> {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.then(fn).catch((err: unknown) => this.o.log(`scm: ${key}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));
    this.queues.set(key, next);
    this.track(next);
    void next.then(() => {
      if (this.queues.get(key) === next) this.queues.delete(key);
    });
    return next;
  }

  track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Resolves when the queued work (and the work it queued) has ended. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  start(): void {
    const tick = async () => {
      if (this.ticking || this.closed) return;
      this.ticking = true;
      try {
        await this.deploys?.tick();
        await this.reviewApps?.tick();
        // Deliveries are kept a month: long enough to refuse any replay a forge would still send.
        if (Date.now() - this.lastPrune > 3_600_000) {
          this.lastPrune = Date.now();
          await this.o.db.deleteFrom("scm_deliveries").where("received_at", "<", new Date(Date.now() - 30 * 86_400_000)).execute();
        }
      } catch (err) {
        this.o.log(`scm: tick failed: ${String(err)}`);
      } finally {
        this.ticking = false;
      }
    };
    this.timer = setInterval(() => void tick(), this.o.tickMs ?? 15_000);
    this.timer.unref();
    void tick();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.settle();
  }
}
