// The GitHub REST client (github.com or GitHub Enterprise Server: only the base URL differs):
// commit archives, checks, statuses, deployments, pull request comments, branches and hooks.
import type { Readable } from "node:stream";
import type { Branch, Check, CommitStatus, DeploymentState, ForgeClient, ForgeOptions, PullRequest, RepoRef } from "../forge.ts";
import { clip, ForgeHttp, refusedWith, seg } from "./http.ts";

/** The parts of GitHub's answers this client reads. */
interface GhUser {
  id: number;
  login: string;
  email?: string | null;
  avatar_url?: string | null;
}
interface GhCheckRun {
  id: number;
  name: string;
  status: string;
  conclusion: string | null;
}
interface GhStatus {
  id: number;
  context: string;
  state: string;
}
interface GhPull {
  number: number;
  title: string;
  state: string;
  merged?: boolean;
  merged_at?: string | null;
  html_url: string;
  user: { login: string } | null;
  head: { sha: string; ref: string; repo: { full_name: string } | null };
  base: { repo: { full_name: string } };
}
interface GhBranch {
  name: string;
  commit: { sha: string };
}

/** GitHub limits status and deployment-status descriptions to 140 characters. */
const DESCRIPTION_MAX = 140;

/** A GitHub client for one token. `baseUrl`: https://api.github.com or https://<host>/api/v3. */
export class GitHubClient implements ForgeClient {
  readonly kind = "github" as const;
  readonly #http: ForgeHttp;

  constructor(opts: ForgeOptions) {
    this.#http = new ForgeHttp({
      forge: "GitHub",
      baseUrl: opts.baseUrl,
      headers: {
        authorization: `Bearer ${opts.token}`,
        accept: "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
        "user-agent": "quai",
      },
      timeoutMs: opts.timeoutMs,
      attempts: opts.attempts,
      backoffMs: opts.backoffMs,
    });
  }

  async user(): Promise<{ uid: string; username: string; email: string | null; avatarUrl: string | null }> {
    const { body } = await this.#http.request<GhUser>("GET", "/user");
    return { uid: String(body.id), username: body.login, email: body.email ?? null, avatarUrl: body.avatar_url ?? null };
  }

  archive(repo: RepoRef, sha: string, signal?: AbortSignal): Promise<Readable> {
    return this.#http.stream(`${repoPath(repo)}/tarball/${seg(sha)}`, { signal });
  }

  async checks(repo: RepoRef, sha: string): Promise<Check[]> {
    const base = `${repoPath(repo)}/commits/${seg(sha)}`;
    const [runs, statuses] = await Promise.all([
      this.#http.all(`${base}/check-runs`, { per_page: 100 }, (b) => (b as { check_runs?: GhCheckRun[] }).check_runs ?? []),
      this.#http.all(`${base}/status`, { per_page: 100 }, (b) => (b as { statuses?: GhStatus[] }).statuses ?? []),
    ]);
    // A re-run check or a re-posted status leaves older entries behind: only the newest (highest
    // id) counts. A check run and a status that share a name are different checks, kept apart.
    const latest = new Map<string, { id: number; check: Check }>();
    const keep = (id: number, check: Check) => {
      const key = `${check.kind}\u0000${check.name}`;
      const seen = latest.get(key);
      if (!seen || id > seen.id) latest.set(key, { id, check });
    };
    for (const r of runs) keep(r.id, { name: r.name, kind: "check_run", state: checkRunState(r) });
    for (const s of statuses) keep(s.id, { name: s.context, kind: "status", state: statusState(s.state) });
    return [...latest.values()].map((v) => v.check);
  }

  async setStatus(repo: RepoRef, sha: string, status: CommitStatus): Promise<void> {
    await this.#http.request("POST", `${repoPath(repo)}/statuses/${seg(sha)}`, {
      body: { state: status.state, context: status.context, description: clip(status.description, DESCRIPTION_MAX), target_url: status.targetUrl },
    });
  }

  async createDeployment(repo: RepoRef, input: { sha: string; environment: string; transient: boolean; description: string }): Promise<string | undefined> {
    const { body } = await this.#http.request<{ id?: number }>("POST", `${repoPath(repo)}/deployments`, {
      body: {
        ref: input.sha,
        environment: input.environment,
        transient_environment: input.transient,
        production_environment: !input.transient,
        // Quai deploys exactly this commit: no merging of the default branch, and no waiting for
        // checks here (Quai gates on checks itself, before it deploys).
        auto_merge: false,
        required_contexts: [],
        description: clip(input.description, DESCRIPTION_MAX),
      },
    });
    return body?.id === undefined ? undefined : String(body.id);
  }

  async setDeploymentStatus(repo: RepoRef, deploymentId: string, input: { state: DeploymentState; environmentUrl?: string; logUrl?: string; description?: string }): Promise<void> {
    await this.#http.request("POST", `${repoPath(repo)}/deployments/${seg(deploymentId)}/statuses`, {
      body: {
        state: input.state,
        environment_url: input.environmentUrl,
        log_url: input.logUrl,
        description: input.description === undefined ? undefined : clip(input.description, DESCRIPTION_MAX),
        // Review apps of several pull requests live side by side: a new one must not mark the
        // others inactive.
        auto_inactive: false,
      },
    });
  }

  async upsertComment(repo: RepoRef, pr: number, commentId: string | undefined, body: string): Promise<string> {
    if (commentId !== undefined) {
      try {
        await this.#http.request("PATCH", `${repoPath(repo)}/issues/comments/${seg(commentId)}`, { body: { body } });
        return commentId;
      } catch (err) {
        // Someone deleted Quai's comment by hand: post a new one rather than give up.
        if (!refusedWith(err, 404)) throw err;
      }
    }
    const res = await this.#http.request<{ id: number }>("POST", `${repoPath(repo)}/issues/${seg(pr)}/comments`, { body: { body } });
    return String(res.body.id);
  }

  async pull(repo: RepoRef, pr: number): Promise<PullRequest> {
    const { body } = await this.#http.request<GhPull>("GET", `${repoPath(repo)}/pulls/${seg(pr)}`);
    return toPull(body);
  }

  async pulls(repo: RepoRef): Promise<PullRequest[]> {
    const list = await this.#http.all(`${repoPath(repo)}/pulls`, { state: "open", per_page: 100 }, (b) => b as GhPull[]);
    return list.map(toPull);
  }

  async branches(repo: RepoRef): Promise<Branch[]> {
    const list = await this.#http.all(`${repoPath(repo)}/branches`, { per_page: 100 }, (b) => b as GhBranch[]);
    return list.map((b) => ({ name: b.name, sha: b.commit.sha }));
  }

  async branch(repo: RepoRef, name: string): Promise<Branch> {
    const { body } = await this.#http.request<GhBranch>("GET", `${repoPath(repo)}/branches/${seg(name)}`);
    return { name: body.name, sha: body.commit.sha };
  }

  async createHook(repo: RepoRef, url: string, secret: string): Promise<string> {
    const { body } = await this.#http.request<{ id: number }>("POST", `${repoPath(repo)}/hooks`, {
      body: {
        name: "web",
        active: true,
        events: ["push", "pull_request", "check_run", "check_suite", "status"],
        config: { url, content_type: "json", secret, insecure_ssl: "0" },
      },
    });
    return String(body.id);
  }

  async deleteHook(repo: RepoRef, hookId: string): Promise<void> {
    try {
      await this.#http.request("DELETE", `${repoPath(repo)}/hooks/${seg(hookId)}`);
    } catch (err) {
      // Already deleted (by hand, or with the repository): unlinking must still go through.
      if (!refusedWith(err, 404)) throw err;
    }
  }
}

function repoPath(repo: RepoRef): string {
  return `/repos/${seg(repo.owner)}/${seg(repo.name)}`;
}

/** Neutral and skipped runs do not block a merge on GitHub, so they do not block a deploy. */
function checkRunState(run: GhCheckRun): Check["state"] {
  if (run.status !== "completed") return "pending";
  return run.conclusion === "success" || run.conclusion === "neutral" || run.conclusion === "skipped" ? "success" : "failure";
}

function statusState(state: string): Check["state"] {
  if (state === "success") return "success";
  if (state === "failure" || state === "error") return "failure";
  return "pending";
}

function toPull(pr: GhPull): PullRequest {
  const baseRepo = pr.base.repo.full_name;
  // A pull request whose fork was deleted has no head repository: it is a fork's, by elimination.
  const headRepo = pr.head.repo?.full_name ?? "";
  return {
    number: pr.number,
    title: pr.title,
    state: pr.state === "open" ? "open" : "closed",
    // The list endpoint has no `merged`, only `merged_at`.
    merged: pr.merged ?? (pr.merged_at !== null && pr.merged_at !== undefined),
    headSha: pr.head.sha,
    headRef: pr.head.ref,
    headRepo,
    fromFork: headRepo === "" || headRepo.toLowerCase() !== baseRepo.toLowerCase(),
    htmlUrl: pr.html_url,
    author: pr.user?.login ?? "",
  };
}
