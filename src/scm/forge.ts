// What Quai asks of a forge (GitHub, GitLab): the code of one commit, the checks on it, statuses,
// deployments and comments back. One interface, one client per forge (forges/github.ts,
// forges/gitlab.ts); the base URL is configuration, so tests point it at a local fake forge.
import type { Readable } from "node:stream";

/** The forges Quai speaks to. Enterprise and self-hosted flavours differ only by base URL. */
export type ForgeKind = "github" | "gitlab";

/** A repository on a forge: `owner` may hold slashes on GitLab (group/subgroup). */
export interface RepoRef {
  owner: string;
  name: string;
}

/** The outcome of one CI check on a commit: a GitHub check run or commit status, a GitLab status. */
export interface Check {
  /** The check run's name or the status's context (GitLab: the status `name`). */
  name: string;
  state: "pending" | "success" | "failure";
  kind: "check_run" | "status";
}

export interface PullRequest {
  number: number;
  title: string;
  state: "open" | "closed";
  merged: boolean;
  headSha: string;
  headRef: string;
  /** `owner/name` of the repository the head branch lives in. */
  headRepo: string;
  /** True when the head repository is not the base repository. */
  fromFork: boolean;
  /** The pull request's page on the forge. */
  htmlUrl: string;
  author: string;
}

export interface Branch {
  name: string;
  sha: string;
}

/** A commit status Quai posts; `context` is stable per role (quai/deploy, quai/review-app). */
export interface CommitStatus {
  context: string;
  state: "pending" | "success" | "failure" | "error";
  description: string;
  targetUrl?: string;
}

export type DeploymentState = "in_progress" | "success" | "failure" | "inactive";

/**
 * The client of one forge for one token. Every call retries network errors, timeouts, 429 and
 * 5xx answers with backoff, then throws `scm_forge_unreachable`; 401/403/404 throw
 * `scm_forge_refused` at once.
 */
export interface ForgeClient {
  readonly kind: ForgeKind;
  /** The token's user (checks the token when an integration is added). */
  user(): Promise<{ uid: string; username: string; email: string | null; avatarUrl: string | null }>;
  /** The gzipped tarball of `sha`, with one top folder (streamed). */
  archive(repo: RepoRef, sha: string, signal?: AbortSignal): Promise<Readable>;
  /** Every check run and commit status on `sha` (the latest per name). */
  checks(repo: RepoRef, sha: string): Promise<Check[]>;
  setStatus(repo: RepoRef, sha: string, status: CommitStatus): Promise<void>;
  /** A GitHub Deployment; GitLab answers undefined (its environments follow from statuses). */
  createDeployment(repo: RepoRef, input: { sha: string; environment: string; transient: boolean; description: string }): Promise<string | undefined>;
  setDeploymentStatus(repo: RepoRef, deploymentId: string, input: { state: DeploymentState; environmentUrl?: string; logUrl?: string; description?: string }): Promise<void>;
  /** Creates the pull request's comment, or edits `commentId` in place; returns the comment's id. */
  upsertComment(repo: RepoRef, pr: number, commentId: string | undefined, body: string): Promise<string>;
  pull(repo: RepoRef, pr: number): Promise<PullRequest>;
  /** Open pull requests. */
  pulls(repo: RepoRef): Promise<PullRequest[]>;
  branches(repo: RepoRef): Promise<Branch[]>;
  branch(repo: RepoRef, name: string): Promise<Branch>;
  /** Registers Quai's webhook on the repository; returns the hook's id. */
  createHook(repo: RepoRef, url: string, secret: string): Promise<string>;
  deleteHook(repo: RepoRef, hookId: string): Promise<void>;
}

/** How a client talks to its forge. */
export interface ForgeOptions {
  /** API base: https://api.github.com, https://ghe.example.org/api/v3, https://gitlab.com (the client adds /api/v4). */
  baseUrl: string;
  token: string;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** Attempts for retryable failures (default 4). */
  attempts?: number;
  /** First backoff delay, doubled each attempt (default 500 ms). */
  backoffMs?: number;
}
