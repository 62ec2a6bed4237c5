// Webhooks from the forges: signature checks (constant-time) and the translation of GitHub's and
// GitLab's payloads into the few facts Quai acts on. Nothing here trusts a payload before its
// signature matched a link's secret.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { ForgeKind, PullRequest } from "./forge.ts";

/** What a delivery means to Quai. */
export type WebhookFact =
  | { kind: "push"; branch: string; sha: string; deleted: boolean }
  | { kind: "pull"; action: "opened" | "reopened" | "synchronize" | "closed" | "labeled" | "other"; label: string | null; pr: PullRequest }
  | { kind: "checks"; sha: string }
  | { kind: "ignored"; why: string };

/** A delivery's envelope, read from headers and the payload's repository. */
export interface Envelope {
  forge: ForgeKind;
  event: string;
  deliveryId: string | null;
  /** `owner/name` as the payload names it. */
  repo: string | null;
}

/** Equal-length, constant-time comparison of two strings. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  // Compare against itself when lengths differ, so the time does not tell the length either.
  return timingSafeEqual(x, x.length === y.length ? y : x) && x.length === y.length;
}

/** `sha256=<hex>` of `body` under `secret`, as GitHub sends in X-Hub-Signature-256. */
export function githubSignature(body: Buffer, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** True when `header` (X-Hub-Signature-256, or GitLab's X-Gitlab-Token) proves `secret`. */
export function signatureMatches(forge: ForgeKind, body: Buffer, header: string, secret: string): boolean {
  return forge === "github" ? safeEqual(header, githubSignature(body, secret)) : safeEqual(header, secret);
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const SHA = /^[0-9a-f]{40}$/;

/** The repository `owner/name` a payload is about. */
export function payloadRepo(forge: ForgeKind, payload: Json): string | null {
  const name = forge === "github" ? str(obj(payload.repository).full_name) : str(obj(payload.project).path_with_namespace);
  return name || null;
}

function githubPull(payload: Json): PullRequest {
  const pr = obj(payload.pull_request);
  const head = obj(pr.head);
  const base = obj(pr.base);
  const headRepo = str(obj(head.repo).full_name);
  const baseRepo = str(obj(base.repo).full_name);
  return {
    number: Number(pr.number ?? payload.number),
    title: str(pr.title),
    state: pr.state === "open" ? "open" : "closed",
    merged: pr.merged === true,
    headSha: str(head.sha),
    headRef: str(head.ref),
    headRepo: headRepo || baseRepo,
    fromFork: headRepo !== "" && headRepo.toLowerCase() !== baseRepo.toLowerCase(),
    htmlUrl: str(pr.html_url),
    author: str(obj(pr.user).login),
  };
}

function gitlabPull(payload: Json): PullRequest {
  const mr = obj(payload.object_attributes);
  const project = obj(payload.project);
  const fromFork = mr.source_project_id !== undefined && mr.target_project_id !== undefined && mr.source_project_id !== mr.target_project_id;
  return {
    number: Number(mr.iid),
    title: str(mr.title),
    state: mr.state === "opened" ? "open" : "closed",
    merged: mr.state === "merged",
    headSha: str(obj(mr.last_commit).id),
    headRef: str(mr.source_branch),
    headRepo: fromFork ? str(obj(mr.source).path_with_namespace) || String(mr.source_project_id) : str(project.path_with_namespace),
    fromFork,
    htmlUrl: str(mr.url),
    author: str(obj(payload.user).username),
  };
}

/** Translates a delivery whose signature has been checked. */
export function readFact(forge: ForgeKind, event: string, payload: Json): WebhookFact {
  if (forge === "github") {
    switch (event) {
      case "push": {
        const ref = str(payload.ref);
        if (!ref.startsWith("refs/heads/")) return { kind: "ignored", why: `push of ${ref || "no ref"} (not a branch)` };
        const sha = str(payload.after);
        return { kind: "push", branch: ref.slice("refs/heads/".length), sha, deleted: payload.deleted === true || /^0+$/.test(sha) };
      }
      case "pull_request": {
        const action = str(payload.action);
        const known = ["opened", "reopened", "synchronize", "closed", "labeled"] as const;
        const a = (known as readonly string[]).includes(action) ? (action as (typeof known)[number]) : "other";
        return { kind: "pull", action: a, label: str(obj(payload.label).name) || null, pr: githubPull(payload) };
      }
      case "check_run":
        return { kind: "checks", sha: str(obj(payload.check_run).head_sha) };
      case "check_suite":
        return { kind: "checks", sha: str(obj(payload.check_suite).head_sha) };
      case "status":
        return { kind: "checks", sha: str(payload.sha) };
      default:
        return { kind: "ignored", why: `event ${event || "(none)"} is not one Quai acts on` };
    }
  }
  switch (event) {
    case "Push Hook": {
      const ref = str(payload.ref);
      if (!ref.startsWith("refs/heads/")) return { kind: "ignored", why: `push of ${ref || "no ref"} (not a branch)` };
      const sha = str(payload.checkout_sha) || str(payload.after);
      return { kind: "push", branch: ref.slice("refs/heads/".length), sha, deleted: /^0+$/.test(str(payload.after)) };
    }
    case "Merge Request Hook": {
      const mr = obj(payload.object_attributes);
      const action = str(mr.action);
      // GitLab says "update" for any change; only a new head commit (oldrev) is a push.
      const a = action === "open" ? "opened" : action === "reopen" ? "reopened" : action === "close" || action === "merge" ? "closed" : action === "update" && mr.oldrev ? "synchronize" : "other";
      const labels = Array.isArray(payload.labels) ? (payload.labels as unknown[]).map((l) => str(obj(l).title)) : [];
      return { kind: "pull", action: a, label: labels[0] ?? null, pr: gitlabPull(payload) };
    }
    case "Pipeline Hook":
      return { kind: "checks", sha: str(obj(payload.object_attributes).sha) };
    default:
      return { kind: "ignored", why: `event ${event || "(none)"} is not one Quai acts on` };
  }
}

/** A fact Quai can act on safely: full commit ids, sane numbers. Returns why not, or undefined. */
export function factProblem(fact: WebhookFact): string | undefined {
  if (fact.kind === "push" && !fact.deleted && !SHA.test(fact.sha)) return "the push names no full commit id";
  if (fact.kind === "checks" && !SHA.test(fact.sha)) return "the check names no full commit id";
  if (fact.kind === "pull") {
    if (!Number.isInteger(fact.pr.number) || fact.pr.number <= 0) return "the pull request has no number";
    if (!SHA.test(fact.pr.headSha)) return "the pull request names no full head commit id";
  }
  return undefined;
}
