// Test helper: a fake GitHub and GitLab on 127.0.0.1 (real HTTP, in-memory state) that speaks the
// REST endpoints Quai's forge clients use, records what they post, and fails or stalls on demand.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { runChecked } from "../core/run.ts";
import type { ForgeKind } from "../scm/forge.ts";

/**
 * A check's state in the forge's own words. GitHub check runs: `queued`, `in_progress`, or a
 * conclusion (`success`, `failure`, `neutral`, `skipped`, `cancelled`, `timed_out`,
 * `action_required`, `stale`) meaning completed. GitHub statuses: `pending`, `success`,
 * `failure`, `error`. GitLab statuses: `created`, `waiting_for_resource`, `preparing`,
 * `pending`, `running`, `success`, `failed`, `canceled`, `skipped`, `manual`, `scheduled`.
 */
export type FakeCheckState = string;

/** A check run or commit status on one commit. */
export interface FakeCheck {
  id: number;
  name: string;
  state: FakeCheckState;
  kind: "check_run" | "status";
  description?: string;
  targetUrl?: string;
}

/** A pull request (GitHub) or merge request (GitLab). */
export interface FakePull {
  number: number;
  title: string;
  state: "open" | "closed";
  merged: boolean;
  headRef: string;
  headSha: string;
  baseRef: string;
  fromFork: boolean;
  /** `owner/name` of the head repository (the fork's when `fromFork`). */
  headRepo: string;
  /** GitLab: the fork's project id. */
  headProjectId: number;
  author: string;
}

/** A repository (GitHub) or project (GitLab) of the fake. */
export interface FakeRepo {
  kind: ForgeKind;
  /** `owner/name`; GitLab owners may hold slashes (group/subgroup). */
  fullName: string;
  /** Repository id (GitHub) or project id (GitLab). */
  id: number;
  defaultBranch: string;
  /** Every commit as its whole file tree (path → content). */
  commits: Map<string, Record<string, string>>;
  branches: Map<string, string>;
  pulls: Map<number, FakePull>;
  /** Checks per commit, oldest first (a re-run appends). */
  checks: Map<string, FakeCheck[]>;
}

/** A status a client posted. `state` is the forge's word (GitLab: `failed`, `running`...). */
export interface RecordedStatus {
  kind: ForgeKind;
  repo: string;
  sha: string;
  context: string;
  state: string;
  description: string | undefined;
  target_url: string | undefined;
}

/** A GitHub deployment a client created. */
export interface RecordedDeployment {
  id: number;
  repo: string;
  ref: string;
  sha: string;
  environment: string;
  transient_environment: boolean;
  production_environment: boolean;
  auto_merge: boolean;
  required_contexts: unknown;
  description: string | undefined;
}

/** A GitHub deployment status a client posted. */
export interface RecordedDeploymentStatus {
  deploymentId: number;
  repo: string;
  state: string;
  environment_url: string | undefined;
  log_url: string | undefined;
  description: string | undefined;
  auto_inactive: boolean | undefined;
}

/** A pull request comment (GitLab: merge request note). */
export interface RecordedComment {
  id: number;
  kind: ForgeKind;
  repo: string;
  pr: number;
  body: string;
  /** How many times it was edited in place. */
  edits: number;
  /** Deleted "by a human" with `deleteComment`. */
  deleted: boolean;
}

/** A webhook a client registered. `secret` is GitHub's config.secret or GitLab's token. */
export interface RecordedHook {
  id: number;
  kind: ForgeKind;
  repo: string;
  url: string;
  secret: string | undefined;
  /** GitHub: `events`; GitLab: the names of the `*_events` flags set to true. */
  events: string[];
  /** The request body as sent. */
  body: Record<string, unknown>;
  deleted: boolean;
}

/** One request the fake received. `path` is as sent, still percent-encoded. */
export interface RecordedRequest {
  method: string;
  path: string;
  query: string;
}

/** Options of `FakeForge`. */
export interface FakeForgeOptions {
  /** Requests without this token (GitHub: Bearer; GitLab: PRIVATE-TOKEN) get 401. */
  token: string;
  /** The token's user, as `GET /user` answers it on both forges. */
  user?: { id: number; username: string; email: string | null; avatarUrl: string | null };
  /** Largest page the fake serves (real forges: 100); lower it to test pagination. */
  maxPerPage?: number;
}

type Json = Record<string, unknown>;

/** What a route answers. */
interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw bytes instead of JSON (archives). */
  raw?: Buffer;
}

/** A route's view of the request. */
interface Ctx {
  method: string;
  /** Decoded path segments after the forge's prefix. */
  segs: string[];
  query: URLSearchParams;
  body: Json;
  /** `http://127.0.0.1:port` + the path as sent, for Link headers. */
  url: URL;
}

class HttpError extends Error {
  readonly status: number;
  readonly body: unknown;

  constructor(status: number, body: unknown) {
    super(`HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/**
 * A fake GitHub (under `/github`) and GitLab (under `/gitlab`, API at `/gitlab/api/v4`) in one
 * server. Point a GitHubClient at `githubUrl` and a GitLabClient at `gitlabUrl`.
 *
 * ```ts
 * const forge = await new FakeForge({ token: "t" }).start();
 * const sha = await forge.addRepo("github", "acme/shop", { "Procfile": "web: node server.js" });
 * const gh = new GitHubClient({ baseUrl: forge.githubUrl, token: "t", backoffMs: 10 });
 * ```
 */
export class FakeForge {
  /** Every repository, keyed `kind:owner/name`. */
  readonly repos = new Map<string, FakeRepo>();
  readonly statuses: RecordedStatus[] = [];
  readonly deployments: RecordedDeployment[] = [];
  readonly deploymentStatuses: RecordedDeploymentStatus[] = [];
  readonly comments: RecordedComment[] = [];
  readonly hooks: RecordedHook[] = [];
  /** Every request received, in order (API and archive downloads). */
  readonly requests: RecordedRequest[] = [];

  readonly #opts: Required<FakeForgeOptions>;
  readonly #server: Server;
  #url = "";
  #nextId = 1000;
  #failures: { left: number; status: number } = { left: 0, status: 500 };
  #delays: { left: number; ms: number } = { left: 0, ms: 0 };
  /** One-time tokens of the download URLs the tarball endpoint redirected to. */
  readonly #downloadTokens = new Set<string>();
  readonly #archives = new Map<string, Buffer>();

  constructor(opts: FakeForgeOptions) {
    this.#opts = {
      token: opts.token,
      user: opts.user ?? { id: 42, username: "quai-bot", email: "bot@quai.test", avatarUrl: null },
      maxPerPage: opts.maxPerPage ?? 100,
    };
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, { status: 500, body: { message: String(err) } });
        else res.destroy();
      });
    });
  }

  /** Listens on 127.0.0.1 at a port the kernel picks; answers itself. */
  async start(): Promise<this> {
    await new Promise<void>((resolvePromise, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => resolvePromise());
    });
    this.#url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    if (!this.#url) throw new Error("FakeForge: call start() first");
    return this.#url;
  }

  /** The GitHub API base URL (for `GitHubClient`). */
  get githubUrl(): string {
    return `${this.url}/github`;
  }

  /** The GitLab base URL (for `GitLabClient`, which adds `/api/v4`). */
  get gitlabUrl(): string {
    return `${this.url}/gitlab`;
  }

  /** Stops the server, dropping open connections. */
  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolvePromise) => this.#server.close(() => resolvePromise()));
  }

  /** The next `n` API requests answer `status` (default 500) with an error body. */
  failNext(n: number, status = 500): void {
    this.#failures = { left: n, status };
  }

  /** The next `n` API requests wait `ms` before they are handled (a client that gave up is dropped). */
  delayNext(n: number, ms: number): void {
    this.#delays = { left: n, ms };
  }

  /** Creates a repository with one commit on `defaultBranch` (default `main`); answers its sha. */
  addRepo(kind: ForgeKind, fullName: string, files: Record<string, string>, opts: { defaultBranch?: string } = {}): string {
    const key = `${kind}:${fullName}`;
    if (this.repos.has(key)) throw new Error(`FakeForge: ${key} exists`);
    const defaultBranch = opts.defaultBranch ?? "main";
    this.repos.set(key, { kind, fullName, id: this.#id(), defaultBranch, commits: new Map(), branches: new Map(), pulls: new Map(), checks: new Map() });
    const sha = this.addCommit(kind, fullName, files);
    this.repo(kind, fullName).branches.set(defaultBranch, sha);
    return sha;
  }

  /** The repository, or a thrown error naming it. */
  repo(kind: ForgeKind, fullName: string): FakeRepo {
    const r = this.repos.get(`${kind}:${fullName}`);
    if (!r) throw new Error(`FakeForge: no ${kind} repository ${fullName}`);
    return r;
  }

  /**
   * A commit whose tree is `parent`'s (default: none) with `files` applied (null deletes a
   * file), on no branch: a fork's commit, reachable through its pull request. Answers its sha.
   */
  addCommit(kind: ForgeKind, fullName: string, files: Record<string, string | null>, parent?: string): string {
    const repo = this.repo(kind, fullName);
    const tree: Record<string, string> = { ...(parent ? repo.commits.get(parent) : undefined) };
    for (const [path, content] of Object.entries(files)) {
      const p = safePath(path);
      if (content === null) delete tree[p];
      else tree[p] = content;
    }
    const sha = createHash("sha1").update(`${fullName}\0${parent ?? ""}\0${JSON.stringify(Object.entries(tree).sort())}\0${this.#id()}`).digest("hex");
    repo.commits.set(sha, tree);
    return sha;
  }

  /**
   * Pushes a commit on `branch` (created from the default branch when new): the branch head's
   * tree with `files` applied (null deletes). Open pull requests from the branch follow it.
   */
  pushCommit(kind: ForgeKind, fullName: string, branch: string, files: Record<string, string | null>): string {
    const repo = this.repo(kind, fullName);
    const parent = repo.branches.get(branch) ?? repo.branches.get(repo.defaultBranch);
    const sha = this.addCommit(kind, fullName, files, parent);
    repo.branches.set(branch, sha);
    for (const pr of repo.pulls.values()) if (pr.state === "open" && !pr.fromFork && pr.headRef === branch) pr.headSha = sha;
    return sha;
  }

  /** Opens a pull request. A fork's (`fromFork`) head repository is `contributor/<name>` unless given. */
  openPull(
    kind: ForgeKind,
    fullName: string,
    pr: { number: number; title: string; headRef: string; headSha: string; fromFork?: boolean; headRepo?: string; author?: string; baseRef?: string },
  ): FakePull {
    const repo = this.repo(kind, fullName);
    if (!repo.commits.has(pr.headSha)) throw new Error(`FakeForge: ${pr.headSha} is no commit of ${fullName}`);
    const fromFork = pr.fromFork ?? false;
    const name = fullName.split("/").pop() ?? fullName;
    const pull: FakePull = {
      number: pr.number,
      title: pr.title,
      state: "open",
      merged: false,
      headRef: pr.headRef,
      headSha: pr.headSha,
      baseRef: pr.baseRef ?? repo.defaultBranch,
      fromFork,
      headRepo: fromFork ? (pr.headRepo ?? `contributor/${name}`) : fullName,
      headProjectId: fromFork ? repo.id + 100_000 : repo.id,
      author: pr.author ?? "contributor",
    };
    if (!fromFork && !repo.branches.has(pr.headRef)) repo.branches.set(pr.headRef, pr.headSha);
    repo.pulls.set(pr.number, pull);
    return pull;
  }

  /** Changes a pull request (a fork's new head, a new title). */
  updatePull(kind: ForgeKind, fullName: string, number: number, patch: Partial<Pick<FakePull, "title" | "headSha" | "state" | "merged">>): FakePull {
    const pr = this.#pull(kind, fullName, number);
    Object.assign(pr, patch);
    return pr;
  }

  /** Closes (or merges) a pull request. */
  closePull(kind: ForgeKind, fullName: string, number: number, opts: { merged?: boolean } = {}): FakePull {
    return this.updatePull(kind, fullName, number, { state: "closed", merged: opts.merged ?? false });
  }

  /** Adds a check on `sha` (a re-run: the newest per name is the one that counts). */
  setCheck(kind: ForgeKind, fullName: string, sha: string, name: string, state: FakeCheckState, checkKind: "check_run" | "status" = "status"): FakeCheck {
    if (kind === "gitlab" && checkKind === "check_run") throw new Error("FakeForge: GitLab has commit statuses only");
    const repo = this.repo(kind, fullName);
    const check: FakeCheck = { id: this.#id(), name, state, kind: checkKind };
    repo.checks.set(sha, [...(repo.checks.get(sha) ?? []), check]);
    return check;
  }

  /** Deletes a comment as a human would: editing it then answers 404. */
  deleteComment(id: number | string): void {
    const c = this.comments.find((x) => x.id === Number(id));
    if (!c) throw new Error(`FakeForge: no comment ${id}`);
    c.deleted = true;
  }

  /** Comments of one pull request that are not deleted. */
  commentsOn(kind: ForgeKind, fullName: string, pr: number): RecordedComment[] {
    return this.comments.filter((c) => c.kind === kind && c.repo === fullName && c.pr === pr && !c.deleted);
  }

  #id(): number {
    return this.#nextId++;
  }

  #pull(kind: ForgeKind, fullName: string, number: number): FakePull {
    const pr = this.repo(kind, fullName).pulls.get(number);
    if (!pr) throw new Error(`FakeForge: no pull request ${number} on ${fullName}`);
    return pr;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.#url);
    const method = req.method ?? "GET";
    this.requests.push({ method, path: url.pathname, query: url.search });
    let gone = false;
    res.on("close", () => {
      if (!res.writableFinished) gone = true;
    });
    const raw = await readBody(req);
    const segs = url.pathname.split("/").slice(1).map((s) => decodeURIComponent(s));
    const [prefix] = segs;

    if (prefix === "codeload") return send(res, await this.#codeload(segs.slice(1), url));
    if (prefix !== "github" && prefix !== "gitlab") return send(res, { status: 404, body: { message: "Not Found" } });

    if (this.#delays.left > 0) {
      this.#delays.left--;
      await sleep(this.#delays.ms);
      // The client timed out meanwhile: like a forge that never got to the request.
      if (gone) return;
    }
    if (this.#failures.left > 0) {
      this.#failures.left--;
      return send(res, { status: this.#failures.status, body: { message: `injected failure ${this.#failures.status}` } });
    }

    let body: Json = {};
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString("utf8")) as Json;
      } catch {
        return send(res, { status: 400, body: { message: "Problems parsing JSON" } });
      }
    }
    try {
      if (prefix === "github") {
        if (!req.headers["user-agent"]) throw new HttpError(403, { message: "Request forbidden by administrative rules. Please make sure your request has a User-Agent header" });
        const auth = req.headers.authorization ?? "";
        if (auth !== `Bearer ${this.#opts.token}` && auth !== `token ${this.#opts.token}`) throw new HttpError(401, { message: "Bad credentials" });
        return send(res, await this.#github({ method, segs: segs.slice(1), query: url.searchParams, body, url }));
      }
      if (segs[1] !== "api" || segs[2] !== "v4") throw new HttpError(404, { message: "404 Not Found" });
      const token = req.headers["private-token"] ?? (req.headers.authorization ?? "").replace(/^Bearer /, "");
      if (token !== this.#opts.token) throw new HttpError(401, { message: "401 Unauthorized" });
      return send(res, await this.#gitlab({ method, segs: segs.slice(3), query: url.searchParams, body, url }));
    } catch (err) {
      if (err instanceof HttpError) return send(res, { status: err.status, body: err.body });
      throw err;
    }
  }

  // ---- GitHub ----

  async #github(c: Ctx): Promise<Reply> {
    const { method, segs } = c;
    const notFound = new HttpError(404, { message: "Not Found" });
    if (segs.length === 1 && segs[0] === "user" && method === "GET") {
      const u = this.#opts.user;
      return { status: 200, body: { login: u.username, id: u.id, email: u.email, avatar_url: u.avatarUrl, type: "User" } };
    }
    if (segs[0] !== "repos" || segs.length < 4) throw notFound;
    const fullName = `${segs[1]}/${segs[2]}`;
    const repo = this.repos.get(`github:${fullName}`);
    if (!repo) throw notFound;
    const rest = segs.slice(3);
    const route = `${method} ${rest.map((s, i) => (isGithubParam(rest, i) ? ":" : s)).join("/")}`;
    const at = (i: number) => rest[i] ?? "";

    switch (route) {
      case "GET tarball/:": {
        const sha = resolve(repo, at(1));
        if (!sha) throw notFound;
        const token = randomBytes(12).toString("hex");
        this.#downloadTokens.add(token);
        const location = `${this.url}/codeload/${encodeURIComponent(segs[1] ?? "")}/${encodeURIComponent(segs[2] ?? "")}/legacy.tar.gz/${sha}?token=${token}`;
        return { status: 302, headers: { location }, body: "" };
      }
      case "GET commits/:/check-runs": {
        const sha = resolve(repo, at(1));
        if (!sha) throw new HttpError(422, { message: `No commit found for SHA: ${at(1)}` });
        const all = c.query.get("filter") === "all";
        const runs = (all ? (repo.checks.get(sha) ?? []) : latestChecks(repo, sha)).filter((k) => k.kind === "check_run").map((k) => checkRunJson(k, sha));
        return this.#page(c, runs, (items) => ({ total_count: runs.length, check_runs: items }));
      }
      case "GET commits/:/status": {
        const sha = resolve(repo, at(1));
        if (!sha) throw new HttpError(422, { message: `No commit found for SHA: ${at(1)}` });
        const list = latestChecks(repo, sha)
          .filter((k) => k.kind === "status")
          .map((k) => ({ id: k.id, context: k.name, state: k.state, description: k.description ?? null, target_url: k.targetUrl ?? null }));
        const combined = list.some((s) => s.state === "failure" || s.state === "error") ? "failure" : list.every((s) => s.state === "success") && list.length > 0 ? "success" : "pending";
        return this.#page(c, list, (items) => ({ state: combined, sha, total_count: list.length, statuses: items }));
      }
      case "POST statuses/:": {
        const sha = at(1);
        if (!repo.commits.has(sha)) throw new HttpError(422, { message: `No commit found for SHA: ${sha}` });
        const state = str(c.body.state) ?? "";
        if (!["pending", "success", "failure", "error"].includes(state)) throw validation("state");
        const description = str(c.body.description);
        if (description !== undefined && description.length > 140) throw validation("description");
        const context = str(c.body.context) ?? "default";
        const targetUrl = str(c.body.target_url);
        this.statuses.push({ kind: "github", repo: fullName, sha, context, state, description, target_url: targetUrl });
        const check = this.setCheck("github", fullName, sha, context, state, "status");
        check.description = description;
        check.targetUrl = targetUrl;
        return { status: 201, body: { id: check.id, state, context, description: description ?? null, target_url: targetUrl ?? null } };
      }
      case "POST deployments": {
        const ref = str(c.body.ref) ?? "";
        const sha = resolve(repo, ref);
        if (!sha) throw new HttpError(422, { message: `No ref found for: ${ref}` });
        const environment = str(c.body.environment) ?? "production";
        const d: RecordedDeployment = {
          id: this.#id(),
          repo: fullName,
          ref,
          sha,
          environment,
          transient_environment: c.body.transient_environment === true,
          production_environment: c.body.production_environment === true,
          auto_merge: c.body.auto_merge !== false,
          required_contexts: c.body.required_contexts,
          description: str(c.body.description),
        };
        this.deployments.push(d);
        return { status: 201, body: { id: d.id, sha, ref, environment, description: d.description ?? null } };
      }
      case "POST deployments/:/statuses": {
        const id = Number(at(1));
        if (!this.deployments.some((d) => d.id === id && d.repo === fullName)) throw notFound;
        const state = str(c.body.state) ?? "";
        if (!["error", "failure", "inactive", "in_progress", "queued", "pending", "success"].includes(state)) throw validation("state");
        const s: RecordedDeploymentStatus = {
          deploymentId: id,
          repo: fullName,
          state,
          environment_url: str(c.body.environment_url),
          log_url: str(c.body.log_url),
          description: str(c.body.description),
          auto_inactive: typeof c.body.auto_inactive === "boolean" ? c.body.auto_inactive : undefined,
        };
        this.deploymentStatuses.push(s);
        return { status: 201, body: { id: this.#id(), state } };
      }
      case "POST issues/:/comments": {
        const pr = Number(at(1));
        if (!repo.pulls.has(pr)) throw notFound;
        const body = str(c.body.body);
        if (body === undefined) throw validation("body");
        const comment: RecordedComment = { id: this.#id(), kind: "github", repo: fullName, pr, body, edits: 0, deleted: false };
        this.comments.push(comment);
        return { status: 201, body: { id: comment.id, body, html_url: `${this.url}/github/${fullName}/pull/${pr}#issuecomment-${comment.id}` } };
      }
      case "PATCH issues/comments/:": {
        const comment = this.comments.find((x) => x.kind === "github" && x.repo === fullName && x.id === Number(at(2)) && !x.deleted);
        if (!comment) throw notFound;
        const body = str(c.body.body);
        if (body === undefined) throw validation("body");
        comment.body = body;
        comment.edits++;
        return { status: 200, body: { id: comment.id, body } };
      }
      case "GET pulls/:": {
        const pr = repo.pulls.get(Number(at(1)));
        if (!pr) throw notFound;
        return { status: 200, body: { ...this.#githubPull(repo, pr), merged: pr.merged } };
      }
      case "GET pulls": {
        const state = c.query.get("state") ?? "open";
        const list = [...repo.pulls.values()].filter((p) => state === "all" || p.state === state).map((p) => this.#githubPull(repo, p));
        return this.#page(c, list, (items) => items);
      }
      case "GET branches": {
        const list = [...repo.branches].map(([name, sha]) => ({ name, commit: { sha }, protected: false }));
        return this.#page(c, list, (items) => items);
      }
      case "GET branches/:": {
        const sha = repo.branches.get(at(1));
        if (!sha) throw new HttpError(404, { message: "Branch not found" });
        return { status: 200, body: { name: at(1), commit: { sha }, protected: false } };
      }
      case "POST hooks": {
        const config = (c.body.config ?? {}) as Json;
        const events = Array.isArray(c.body.events) ? c.body.events.filter((e): e is string => typeof e === "string") : ["push"];
        if (c.body.name !== "web" || !str(config.url)) throw validation("config");
        const hook: RecordedHook = { id: this.#id(), kind: "github", repo: fullName, url: str(config.url) ?? "", secret: str(config.secret), events, body: c.body, deleted: false };
        this.hooks.push(hook);
        return { status: 201, body: { id: hook.id, name: "web", active: c.body.active !== false, events, config: { ...config, secret: hook.secret ? "********" : undefined } } };
      }
      case "DELETE hooks/:": {
        const hook = this.hooks.find((h) => h.kind === "github" && h.repo === fullName && h.id === Number(at(1)) && !h.deleted);
        if (!hook) throw notFound;
        hook.deleted = true;
        return { status: 204 };
      }
      default:
        throw notFound;
    }
  }

  #githubPull(repo: FakeRepo, pr: FakePull): Json {
    const [owner] = pr.headRepo.split("/");
    return {
      number: pr.number,
      title: pr.title,
      state: pr.state,
      merged_at: pr.merged ? "2024-01-01T00:00:00Z" : null,
      html_url: `${this.url}/github/${repo.fullName}/pull/${pr.number}`,
      user: { login: pr.author },
      head: { label: `${owner}:${pr.headRef}`, ref: pr.headRef, sha: pr.headSha, repo: { full_name: pr.headRepo, fork: pr.fromFork } },
      base: { label: `${repo.fullName.split("/")[0]}:${pr.baseRef}`, ref: pr.baseRef, sha: repo.branches.get(pr.baseRef) ?? "", repo: { full_name: repo.fullName, fork: false } },
    };
  }

  async #codeload(segs: string[], url: URL): Promise<Reply> {
    // codeload/<owner>/<name>/legacy.tar.gz/<sha>?token=...: the token stands for the API auth.
    const [owner, name, format, sha] = segs;
    const token = url.searchParams.get("token") ?? "";
    const repo = this.repos.get(`github:${owner}/${name}`);
    if (!repo || format !== "legacy.tar.gz" || !sha || !repo.commits.has(sha) || !this.#downloadTokens.delete(token)) return { status: 404, body: "Not Found" };
    const top = `${owner}-${name}-${sha.slice(0, 7)}`;
    return { status: 200, raw: await this.#archive(repo, sha, top), headers: { "content-type": "application/x-gzip", "content-disposition": `attachment; filename=${top}.tar.gz` } };
  }

  // ---- GitLab ----

  async #gitlab(c: Ctx): Promise<Reply> {
    const { method, segs } = c;
    if (segs.length === 1 && segs[0] === "user" && method === "GET") {
      const u = this.#opts.user;
      return { status: 200, body: { id: u.id, username: u.username, email: u.email, public_email: null, avatar_url: u.avatarUrl, state: "active" } };
    }
    if (segs[0] !== "projects" || segs.length < 2) throw new HttpError(404, { message: "404 Not Found" });
    const ref = segs[1] ?? "";
    const repo = [...this.repos.values()].find((r) => r.kind === "gitlab" && (r.fullName === ref || String(r.id) === ref));
    if (!repo) throw new HttpError(404, { message: "404 Project Not Found" });
    const fullName = repo.fullName;
    const rest = segs.slice(2);
    const at = (i: number) => rest[i] ?? "";
    const route = `${method} ${rest.map((s, i) => (isGitlabParam(rest, i) ? ":" : s)).join("/")}`;
    const mr = (iid: string) => {
      const pr = repo.pulls.get(Number(iid));
      if (!pr) throw new HttpError(404, { message: "404 Not found" });
      return pr;
    };

    switch (route) {
      case "GET repository/archive.tar.gz": {
        const sha = resolve(repo, c.query.get("sha") ?? repo.defaultBranch);
        if (!sha) throw new HttpError(404, { message: "404 File Not Found" });
        const name = fullName.split("/").pop() ?? fullName;
        // GitLab names the folder <project>-<ref>-<sha>; the ref asked for here is the sha.
        const top = `${name}-${sha}-${sha}`;
        return { status: 200, raw: await this.#archive(repo, sha, top), headers: { "content-type": "application/octet-stream", "content-disposition": `attachment; filename="${top}.tar.gz"` } };
      }
      case "GET repository/commits/:/statuses": {
        const sha = resolve(repo, at(2));
        if (!sha) throw new HttpError(404, { message: "404 Commit Not Found" });
        const list = (c.query.get("all") === "true" ? (repo.checks.get(sha) ?? []) : latestChecks(repo, sha)).map((k) => ({
          id: k.id,
          sha,
          name: k.name,
          status: k.state,
          description: k.description ?? null,
          target_url: k.targetUrl ?? null,
          allow_failure: false,
        }));
        return this.#page(c, list, (items) => items);
      }
      case "POST statuses/:": {
        const sha = at(1);
        if (!repo.commits.has(sha)) throw new HttpError(404, { message: "404 Commit Not Found" });
        const state = str(c.body.state) ?? "";
        if (!["pending", "running", "success", "failed", "canceled"].includes(state)) throw new HttpError(400, { error: "state does not have a valid value" });
        const name = str(c.body.name) ?? str(c.body.context) ?? "default";
        // GitLab keeps a status as a job: pending → pending (or running → running) is no transition.
        const last = (repo.checks.get(sha) ?? []).filter((k) => k.name === name).at(-1);
        if (last && last.state === state && (state === "pending" || state === "running")) {
          throw new HttpError(400, { message: `Cannot transition status via :${state === "pending" ? "enqueue" : "run"} from :${state}` });
        }
        const description = str(c.body.description);
        const targetUrl = str(c.body.target_url);
        this.statuses.push({ kind: "gitlab", repo: fullName, sha, context: name, state, description, target_url: targetUrl });
        const check = this.setCheck("gitlab", fullName, sha, name, state, "status");
        check.description = description;
        check.targetUrl = targetUrl;
        return { status: 201, body: { id: check.id, sha, name, status: state, description: description ?? null, target_url: targetUrl ?? null } };
      }
      case "GET merge_requests": {
        const state = c.query.get("state") ?? "all";
        const list = [...repo.pulls.values()].map((p) => this.#gitlabMr(repo, p)).filter((m) => state === "all" || m.state === state);
        return this.#page(c, list, (items) => items);
      }
      case "GET merge_requests/:":
        return { status: 200, body: this.#gitlabMr(repo, mr(at(1))) };
      case "POST merge_requests/:/notes": {
        const pr = mr(at(1));
        const body = str(c.body.body);
        if (!body) throw new HttpError(400, { message: "400 Bad request - Note can't be blank" });
        const comment: RecordedComment = { id: this.#id(), kind: "gitlab", repo: fullName, pr: pr.number, body, edits: 0, deleted: false };
        this.comments.push(comment);
        return { status: 201, body: { id: comment.id, body, noteable_iid: pr.number } };
      }
      case "PUT merge_requests/:/notes/:": {
        const pr = mr(at(1));
        const comment = this.comments.find((x) => x.kind === "gitlab" && x.repo === fullName && x.pr === pr.number && x.id === Number(at(3)) && !x.deleted);
        if (!comment) throw new HttpError(404, { message: "404 Note Not Found" });
        const body = str(c.body.body);
        if (!body) throw new HttpError(400, { message: "400 Bad request - Note can't be blank" });
        comment.body = body;
        comment.edits++;
        return { status: 200, body: { id: comment.id, body } };
      }
      case "GET repository/branches": {
        const list = [...repo.branches].map(([name, sha]) => ({ name, commit: { id: sha }, default: name === repo.defaultBranch }));
        return this.#page(c, list, (items) => items);
      }
      case "GET repository/branches/:": {
        const sha = repo.branches.get(at(2));
        if (!sha) throw new HttpError(404, { message: "404 Branch Not Found" });
        return { status: 200, body: { name: at(2), commit: { id: sha }, default: at(2) === repo.defaultBranch } };
      }
      case "POST hooks": {
        const url = str(c.body.url);
        if (!url) throw new HttpError(400, { error: "url is missing" });
        const events = Object.entries(c.body)
          .filter(([k, v]) => k.endsWith("_events") && v === true)
          .map(([k]) => k);
        const hook: RecordedHook = { id: this.#id(), kind: "gitlab", repo: fullName, url, secret: str(c.body.token), events, body: c.body, deleted: false };
        this.hooks.push(hook);
        return { status: 201, body: { id: hook.id, url, project_id: repo.id, push_events: c.body.push_events !== false, merge_requests_events: c.body.merge_requests_events === true } };
      }
      case "DELETE hooks/:": {
        const hook = this.hooks.find((h) => h.kind === "gitlab" && h.repo === fullName && h.id === Number(at(1)) && !h.deleted);
        if (!hook) throw new HttpError(404, { message: "404 Not found" });
        hook.deleted = true;
        return { status: 204 };
      }
      default:
        throw new HttpError(404, { error: "404 Not Found" });
    }
  }

  #gitlabMr(repo: FakeRepo, pr: FakePull): Json & { state: string } {
    return {
      id: pr.number + 10_000,
      iid: pr.number,
      project_id: repo.id,
      title: pr.title,
      state: pr.state === "open" ? "opened" : pr.merged ? "merged" : "closed",
      sha: pr.headSha,
      source_branch: pr.headRef,
      target_branch: pr.baseRef,
      source_project_id: pr.headProjectId,
      target_project_id: repo.id,
      web_url: `${this.url}/gitlab/${repo.fullName}/-/merge_requests/${pr.number}`,
      author: { username: pr.author },
    };
  }

  /** One page of `list` (`page`, `per_page`), with Link (both forges) and X-Next-Page (GitLab). */
  #page<T>(c: Ctx, list: T[], wrap: (items: T[]) => unknown): Reply {
    const perPage = Math.min(Math.max(1, Number(c.query.get("per_page") ?? 30) || 30), this.#opts.maxPerPage);
    const page = Math.max(1, Number(c.query.get("page") ?? 1) || 1);
    const items = list.slice((page - 1) * perPage, page * perPage);
    const headers: Record<string, string> = { "x-total": String(list.length), "x-per-page": String(perPage), "x-page": String(page) };
    if (page * perPage < list.length) {
      const next = new URL(c.url);
      next.searchParams.set("page", String(page + 1));
      next.searchParams.set("per_page", String(perPage));
      headers.link = `<${next.href}>; rel="next"`;
      headers["x-next-page"] = String(page + 1);
    }
    return { status: 200, body: wrap(items), headers };
  }

  /** The gzipped tarball of `sha` with one top folder, made with the system's tar. */
  async #archive(repo: FakeRepo, sha: string, top: string): Promise<Buffer> {
    const key = `${repo.kind}:${repo.fullName}:${sha}`;
    const cached = this.#archives.get(key);
    if (cached) return cached;
    const dir = await mkdtemp(join(tmpdir(), "quai-fakeforge-"));
    try {
      for (const [path, content] of Object.entries(repo.commits.get(sha) ?? {})) {
        const file = join(dir, top, path);
        await mkdir(dirname(file), { recursive: true });
        await writeFile(file, content);
      }
      await mkdir(join(dir, top), { recursive: true });
      const out = join(dir, "archive.tar.gz");
      await runChecked("tar", ["-czf", out, "-C", dir, "--", top]);
      const buf = await readFile(out);
      this.#archives.set(key, buf);
      return buf;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** The newest check per kind and name on `sha`, oldest first. */
function latestChecks(repo: FakeRepo, sha: string): FakeCheck[] {
  const latest = new Map<string, FakeCheck>();
  for (const k of repo.checks.get(sha) ?? []) latest.set(`${k.kind}\0${k.name}`, k);
  return [...latest.values()];
}

function checkRunJson(k: FakeCheck, sha: string): Json {
  const running = k.state === "queued" || k.state === "in_progress" || k.state === "pending";
  return {
    id: k.id,
    name: k.name,
    head_sha: sha,
    status: running ? (k.state === "pending" ? "queued" : k.state) : "completed",
    conclusion: running ? null : k.state,
  };
}

/** A full sha of the repository, or the head of a branch of that name. */
function resolve(repo: FakeRepo, ref: string): string | undefined {
  if (repo.commits.has(ref)) return ref;
  return repo.branches.get(ref);
}

/** Which segments of a GitHub path (after owner/name) are parameters, for route matching. */
function isGithubParam(rest: string[], i: number): boolean {
  const prev = rest[i - 1];
  if (i === 1 && prev === "issues") return rest[1] !== "comments";
  if (i === 2 && rest[0] === "issues" && prev === "comments") return true;
  return i === 1 && ["tarball", "commits", "statuses", "deployments", "pulls", "branches", "hooks"].includes(prev ?? "");
}

/** Which segments of a GitLab path (after the project) are parameters, for route matching. */
function isGitlabParam(rest: string[], i: number): boolean {
  const prev = rest[i - 1];
  return (
    (prev === "commits" && rest[0] === "repository") ||
    (prev === "branches" && rest[0] === "repository") ||
    prev === "statuses" ||
    prev === "merge_requests" ||
    prev === "notes" ||
    prev === "hooks"
  );
}

function validation(field: string): HttpError {
  return new HttpError(422, { message: "Validation Failed", errors: [{ resource: "Resource", field, code: "invalid" }] });
}

/** A relative path inside the tree: no absolute paths, no `..`, so the archive stays in its folder. */
function safePath(path: string): string {
  const p = posix.normalize(path);
  if (p.startsWith("/") || p === "." || p === ".." || p.startsWith("../")) throw new Error(`FakeForge: unsafe path ${JSON.stringify(path)}`);
  return p;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed) return;
  const headers: Record<string, string> = { ...reply.headers };
  let payload: Buffer | string = "";
  if (reply.raw) payload = reply.raw;
  else if (reply.body !== undefined && reply.status !== 204) {
    payload = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
    headers["content-type"] ??= typeof reply.body === "string" ? "text/plain" : "application/json; charset=utf-8";
  }
  res.writeHead(reply.status, headers);
  res.end(payload);
}
