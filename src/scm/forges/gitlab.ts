// The GitLab REST client (gitlab.com or self-managed: only the base URL differs): commit archives,
// commit statuses, merge request notes, branches and project hooks, through API v4.
import type { Readable } from "node:stream";
import type { Branch, Check, CommitStatus, DeploymentState, ForgeClient, ForgeOptions, PullRequest, RepoRef } from "../forge.ts";
import { clip, ForgeHttp, refusedWith, seg } from "./http.ts";

/** The parts of GitLab's answers this client reads. */
interface GlUser {
  id: number;
  username: string;
  email?: string | null;
  public_email?: string | null;
  avatar_url?: string | null;
}
interface GlStatus {
  id: number;
  name: string;
  status: string;
}
interface GlMergeRequest {
  iid: number;
  title: string;
  state: string;
  sha: string;
  source_branch: string;
  source_project_id: number;
  target_project_id: number;
  web_url: string;
  author: { username: string } | null;
}
interface GlBranch {
  name: string;
  commit: { id: string };
}

/** Quai's descriptions are one short line; GitLab shows about this much of them. */
const DESCRIPTION_MAX = 140;

/** A GitLab client for one token. `baseUrl`: https://gitlab.com or the instance's root URL. */
export class GitLabClient implements ForgeClient {
  readonly kind = "gitlab" as const;
  readonly #http: ForgeHttp;

  constructor(opts: ForgeOptions) {
    this.#http = new ForgeHttp({
      forge: "GitLab",
      baseUrl: `${opts.baseUrl.replace(/\/+$/, "")}/api/v4`,
      headers: { "private-token": opts.token, accept: "application/json", "user-agent": "quai" },
      timeoutMs: opts.timeoutMs,
      attempts: opts.attempts,
      backoffMs: opts.backoffMs,
    });
  }

  async user(): Promise<{ uid: string; username: string; email: string | null; avatarUrl: string | null }> {
    const { body } = await this.#http.request<GlUser>("GET", "/user");
    return { uid: String(body.id), username: body.username, email: body.email || body.public_email || null, avatarUrl: body.avatar_url ?? null };
  }

  archive(repo: RepoRef, sha: string, signal?: AbortSignal): Promise<Readable> {
    return this.#http.stream(`${projectPath(repo)}/repository/archive.tar.gz`, { query: { sha }, signal });
  }

  async checks(repo: RepoRef, sha: string): Promise<Check[]> {
    // Without `all=true` GitLab already answers the latest status per name; the newest id still
    // wins here in case a page boundary splits a retried job from its successor.
    const list = await this.#http.all(`${projectPath(repo)}/repository/commits/${seg(sha)}/statuses`, { per_page: 100 }, (b) => b as GlStatus[]);
    const latest = new Map<string, GlStatus>();
    for (const s of list) {
      const seen = latest.get(s.name);
      if (!seen || s.id > seen.id) latest.set(s.name, s);
    }
    return [...latest.values()].map((s) => ({ name: s.name, kind: "status", state: statusState(s.status) }));
  }

  async setStatus(repo: RepoRef, sha: string, status: CommitStatus): Promise<void> {
    const state = status.state === "failure" || status.state === "error" ? "failed" : status.state;
    try {
      await this.#http.request("POST", `${projectPath(repo)}/statuses/${seg(sha)}`, {
        body: { state, name: status.context, description: clip(status.description, DESCRIPTION_MAX), target_url: status.targetUrl },
      });
    } catch (err) {
      // GitLab models a status as a job: posting `pending` to a job already pending is a refused
      // transition (400), though the commit already shows what we meant to say.
      if (refusedWith(err, 400) && /cannot transition status/i.test(String(err.details?.forgeMessage ?? ""))) return;
      throw err;
    }
  }

  /**
   * GitLab has no deployment API a client can drive: its environments and deployments are made by
   * CI jobs. The commit status (with its target URL) is what shows the deploy there.
   */
  async createDeployment(_repo: RepoRef, _input: { sha: string; environment: string; transient: boolean; description: string }): Promise<string | undefined> {
    return undefined;
  }

  /** A no-op: see `createDeployment`. */
  async setDeploymentStatus(_repo: RepoRef, _deploymentId: string, _input: { state: DeploymentState; environmentUrl?: string; logUrl?: string; description?: string }): Promise<void> {}

  async upsertComment(repo: RepoRef, pr: number, commentId: string | undefined, body: string): Promise<string> {
    const notes = `${projectPath(repo)}/merge_requests/${seg(pr)}/notes`;
    if (commentId !== undefined) {
      try {
        await this.#http.request("PUT", `${notes}/${seg(commentId)}`, { body: { body } });
        return commentId;
      } catch (err) {
        // Someone deleted Quai's note by hand: post a new one rather than give up.
        if (!refusedWith(err, 404)) throw err;
      }
    }
    const res = await this.#http.request<{ id: number }>("POST", notes, { body: { body } });
    return String(res.body.id);
  }

  async pull(repo: RepoRef, pr: number): Promise<PullRequest> {
    const { body } = await this.#http.request<GlMergeRequest>("GET", `${projectPath(repo)}/merge_requests/${seg(pr)}`);
    return toPull(repo, body);
  }

  async pulls(repo: RepoRef): Promise<PullRequest[]> {
    const list = await this.#http.all(`${projectPath(repo)}/merge_requests`, { state: "opened", per_page: 100 }, (b) => b as GlMergeRequest[]);
    return list.map((mr) => toPull(repo, mr));
  }

  async branches(repo: RepoRef): Promise<Branch[]> {
    const list = await this.#http.all(`${projectPath(repo)}/repository/branches`, { per_page: 100 }, (b) => b as GlBranch[]);
    return list.map((b) => ({ name: b.name, sha: b.commit.id }));
  }

  async branch(repo: RepoRef, name: string): Promise<Branch> {
    const { body } = await this.#http.request<GlBranch>("GET", `${projectPath(repo)}/repository/branches/${seg(name)}`);
    return { name: body.name, sha: body.commit.id };
  }

  async createHook(repo: RepoRef, url: string, secret: string): Promise<string> {
    const { body } = await this.#http.request<{ id: number }>("POST", `${projectPath(repo)}/hooks`, {
      body: {
        url,
        token: secret,
        push_events: true,
        merge_requests_events: true,
        pipeline_events: false,
        enable_ssl_verification: true,
      },
    });
    return String(body.id);
  }

  async deleteHook(repo: RepoRef, hookId: string): Promise<void> {
    try {
      await this.#http.request("DELETE", `${projectPath(repo)}/hooks/${seg(hookId)}`);
    } catch (err) {
      // Already deleted (by hand, or with the project): unlinking must still go through.
      if (!refusedWith(err, 404)) throw err;
    }
  }
}

/** GitLab takes the URL-encoded full path as project id; `owner` may hold subgroups. */
function projectPath(repo: RepoRef): string {
  return `/projects/${seg(`${repo.owner}/${repo.name}`)}`;
}

/**
 * Skipped counts as success: GitLab skips jobs that did not need to run (rules, `when`), and a
 * pipeline whose jobs passed or were skipped passes. Canceled is a failure: nothing proved the
 * commit good. Manual and scheduled jobs have not run yet, so they are pending. Unknown states
 * (GitLab adds some now and then) stay pending: waiting is safer than deploying unchecked code.
 */
function statusState(status: string): Check["state"] {
  switch (status) {
    case "success":
    case "skipped":
      return "success";
    case "failed":
    case "canceled":
      return "failure";
    default:
      return "pending";
  }
}

function toPull(repo: RepoRef, mr: GlMergeRequest): PullRequest {
  const fromFork = mr.source_project_id !== mr.target_project_id;
  return {
    number: mr.iid,
    title: mr.title,
    state: mr.state === "opened" ? "open" : "closed",
    merged: mr.state === "merged",
    headSha: mr.sha,
    headRef: mr.source_branch,
    // The fork's path would cost one more request; its id names it just as well.
    headRepo: fromFork ? String(mr.source_project_id) : `${repo.owner}/${repo.name}`,
    fromFork,
    htmlUrl: mr.web_url,
    author: mr.author?.username ?? "",
  };
}
