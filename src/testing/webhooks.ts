// Test helper: webhook deliveries built from real payloads (GitHub's from @octokit/webhooks-examples,
// GitLab's documented examples in test/fixtures/gitlab), with only names, SHAs and URLs changed.
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** A JSON object, as a payload is. */
export type JsonObject = Record<string, unknown>;

/** The GitHub events Quai subscribes to. */
export type GithubEvent = "push" | "pull_request" | "check_run" | "check_suite" | "status";

/**
 * What to change in a GitHub example. Each field touches only the places named; everything else
 * stays as GitHub sent it.
 */
export interface GithubPayloadPatch {
  /** `owner/name`: repository.full_name, name, owner.login and every URL naming the repository. */
  repo?: string;
  /**
   * The commit: push `after` and head_commit.id, pull_request.head.sha, check_run.head_sha,
   * check_suite.head_sha, status `sha` (every occurrence of the example's sha, URLs included).
   */
  sha?: string;
  /** push and pull_request (synchronize) `before`. */
  before?: string;
  /** push: `refs/heads/<branch>`; pull_request: head.ref; check_run/check_suite: head_branch; status: branches. */
  branch?: string;
  /** push: a full ref instead (e.g. `refs/tags/v1`). */
  ref?: string;
  /** push: a deleted branch (after = 000…, no head commit); `before` (or `sha`) is the old head. */
  deleted?: boolean;
  /** pull_request `number` (and in check runs' and suites' pull_requests). */
  number?: number;
  /** pull_request.title. */
  title?: string;
  /** pull_request.state, or the status event's state. */
  state?: "open" | "closed" | "pending" | "success" | "failure" | "error";
  /** pull_request.merged (with merged_at). */
  merged?: boolean;
  /** pull_request: `owner/name` of the head repository when it is a fork. */
  headRepo?: string;
  /** pull_request.base.ref. */
  baseRef?: string;
  /** pull_request.user.login. */
  author?: string;
  /** check_run.name, or the status event's context. */
  name?: string;
  /** check_run.status or check_suite.status (queued, in_progress, completed). */
  status?: string;
  /** check_run.conclusion or check_suite.conclusion. */
  conclusion?: string | null;
}

interface ExampleDefinition {
  name: string;
  actions: string[];
  examples: JsonObject[];
}

let definitions: ExampleDefinition[] | undefined;

function githubDefinitions(): ExampleDefinition[] {
  // Read on first use: the file is several megabytes and most tests never need it.
  definitions ??= JSON.parse(readFileSync(fileURLToPath(import.meta.resolve("@octokit/webhooks-examples/api.github.com/index.json")), "utf8")) as ExampleDefinition[];
  return definitions;
}

const ZERO = "0".repeat(40);

/**
 * A copy of the real example this module starts from for `event`/`action`. Pushes: a branch push
 * with a head commit, or a deletion when `deleted`.
 */
export function githubExample(event: GithubEvent, action?: string, opts: { deleted?: boolean } = {}): JsonObject {
  const def = githubDefinitions().find((d) => d.name === event);
  if (!def) throw new Error(`no GitHub example for event ${event}`);
  let candidates = def.examples.filter((e) => action === undefined || e.action === action);
  if (event === "push") {
    const fit = candidates.filter((e) => (opts.deleted ? e.deleted === true : str(e.ref).startsWith("refs/heads/") && e.head_commit !== null));
    if (fit.length > 0) candidates = fit;
  }
  const example = candidates[0];
  if (!example) throw new Error(`no GitHub example for ${event}${action ? `.${action}` : ""} (actions with examples: ${[...new Set(def.examples.map((e) => e.action))].join(", ")})`);
  return structuredClone(example);
}

/** A real GitHub payload for `event`/`action` with `patch` applied. */
export function githubPayload(event: GithubEvent, action: string | undefined, patch: GithubPayloadPatch = {}): JsonObject {
  const p = githubExample(event, action, { deleted: patch.deleted });
  const pr = obj(p.pull_request);
  const checkRun = obj(p.check_run);
  const checkSuite = obj(p.check_suite);
  const origRepo = str(obj(p.repository)?.full_name);
  const origSha = event === "push" ? str(p.after) : event === "pull_request" ? str(obj(pr?.head)?.sha) : event === "check_run" ? str(checkRun?.head_sha) : event === "check_suite" ? str(checkSuite?.head_sha) : str(p.sha);

  // A fork first: its URLs name the original repository too, and must not become the base's.
  if (pr && patch.headRepo) {
    const head = obj(pr.head);
    const headRepo = obj(head?.repo);
    if (head && headRepo) {
      replaceIn(headRepo, origRepo, patch.headRepo);
      renameRepo(headRepo, patch.headRepo);
      headRepo.fork = true;
      const user = obj(head.user);
      if (user) user.login = ownerOf(patch.headRepo);
    }
  }
  if (patch.repo && origRepo) {
    replaceIn(p, origRepo, patch.repo);
    walk(p, (o) => {
      if (o.full_name === patch.repo) renameRepo(o, patch.repo ?? "");
      // Check runs' and suites' pull_requests name repositories by API URL and short name only.
      else if (typeof o.url === "string" && o.url.endsWith(`/repos/${patch.repo}`) && typeof o.name === "string") o.name = nameOf(patch.repo ?? "");
    });
    if (pr) {
      const base = obj(pr.base);
      const baseUser = obj(base?.user);
      if (baseUser) baseUser.login = ownerOf(patch.repo);
      if (!patch.headRepo) {
        const headUser = obj(obj(pr.head)?.user);
        if (headUser) headUser.login = ownerOf(patch.repo);
      }
    }
  }

  if (event === "push" && patch.deleted) {
    p.deleted = true;
    p.created = false;
    p.after = ZERO;
    p.head_commit = null;
    p.commits = [];
    const old = str(p.before);
    const next = patch.before ?? patch.sha;
    if (next && old) replaceIn(p, old, next);
  } else {
    if (patch.sha && origSha) replaceIn(p, origSha, patch.sha);
    if (patch.before !== undefined && "before" in p) p.before = patch.before;
  }

  if (event === "push" && (patch.ref || patch.branch)) p.ref = patch.ref ?? `refs/heads/${patch.branch}`;

  if (pr) {
    const head = obj(pr.head);
    const base = obj(pr.base);
    const oldNumber = Number(pr.number);
    if (patch.number !== undefined) {
      for (const [from, to] of [`/pull/`, `/pulls/`, `/issues/`].map((s) => [`${s}${oldNumber}`, `${s}${patch.number}`] as const)) replaceIn(pr, from, to);
      pr.number = patch.number;
      if ("number" in p) p.number = patch.number;
    }
    if (patch.title !== undefined) pr.title = patch.title;
    if (patch.state === "open" || patch.state === "closed") {
      pr.state = patch.state;
      if (patch.state === "closed" && pr.closed_at === null) pr.closed_at = pr.updated_at;
    }
    if (patch.merged !== undefined) {
      pr.merged = patch.merged;
      pr.merged_at = patch.merged ? (pr.closed_at ?? pr.updated_at) : null;
    }
    if (patch.author !== undefined) {
      const user = obj(pr.user);
      if (user) user.login = patch.author;
    }
    if (head && patch.branch !== undefined) head.ref = patch.branch;
    if (head) head.label = `${ownerOf(str(obj(head.repo)?.full_name) || origRepo)}:${str(head.ref)}`;
    if (base && patch.baseRef !== undefined) base.ref = patch.baseRef;
    if (base) base.label = `${ownerOf(str(obj(base.repo)?.full_name) || origRepo)}:${str(base.ref)}`;
  }

  for (const run of [checkRun, checkSuite]) {
    if (!run) continue;
    if (patch.status !== undefined) run.status = patch.status;
    if (patch.conclusion !== undefined) run.conclusion = patch.conclusion;
  }
  // A check run carries its suite; both list the pull requests of the commit.
  const suite = checkSuite ?? obj(checkRun?.check_suite);
  if (suite && patch.branch !== undefined) suite.head_branch = patch.branch;
  for (const holder of [checkRun, suite]) {
    for (const linked of Array.isArray(holder?.pull_requests) ? holder.pull_requests : []) {
      const l = obj(linked);
      if (!l) continue;
      if (patch.branch !== undefined) {
        const h = obj(l.head);
        if (h) h.ref = patch.branch;
      }
      if (patch.number !== undefined) {
        if (typeof l.url === "string") l.url = l.url.replace(/\/pulls\/\d+$/, `/pulls/${patch.number}`);
        l.number = patch.number;
      }
    }
  }
  if (checkRun && patch.name !== undefined) checkRun.name = patch.name;

  if (event === "status") {
    if (patch.name !== undefined) p.context = patch.name;
    if (patch.state !== undefined && patch.state !== "open" && patch.state !== "closed") p.state = patch.state;
    const branches = Array.isArray(p.branches) ? p.branches : [];
    const first = obj(branches[0]);
    if (patch.branch !== undefined && first) {
      const commit = obj(first.commit);
      p.branches = [{ ...first, name: patch.branch, commit: { ...commit, sha: str(p.sha), url: str(commit?.url).replace(/[0-9a-f]{40}$/, str(p.sha)) } }];
    }
  }
  return p;
}

/** The X-Hub-Signature-256 value for `body` under `secret`: `sha256=<hex HMAC>`. */
export function signGithub(body: string, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** A delivery's answer. */
export interface WebhookResponse {
  status: number;
  /** The response body as text (`JSON.parse` it for API errors). */
  body: string;
}

/**
 * Posts a GitHub delivery to `url`: X-GitHub-Event, X-GitHub-Delivery (a new UUID unless given),
 * X-Hub-Signature-256 when `secret` is given. A string payload is sent as is (bad JSON tests).
 */
export async function sendGithubWebhook(url: string, event: string, payload: JsonObject | string, secret: string | undefined, deliveryId?: string): Promise<WebhookResponse> {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "user-agent": "GitHub-Hookshot/quai-test",
    "x-github-event": event,
    "x-github-delivery": deliveryId ?? randomUUID(),
  };
  if (secret !== undefined) headers["x-hub-signature-256"] = signGithub(body, secret);
  const res = await fetch(url, { method: "POST", headers, body });
  return { status: res.status, body: await res.text() };
}

/** The GitLab events with a documented example here. */
export type GitlabKind = "push" | "merge_request";

/** What to change in a GitLab example; everything else stays as documented. */
export interface GitlabPayloadPatch {
  /** `group/name` (groups may nest): project.path_with_namespace, names and every URL naming it. */
  repo?: string;
  /** Project id: project.id, push `project_id`, merge request target (and source) project id. */
  projectId?: number;
  /** push: `after`, checkout_sha and the last commit's id; merge request: last_commit.id. */
  sha?: string;
  /** push `before`. */
  before?: string;
  /** push: `refs/heads/<branch>`; merge request: source_branch. */
  branch?: string;
  /** push: a deleted branch (after = 000…, checkout_sha null, no commits). */
  deleted?: boolean;
  /** merge request iid (and its URL). */
  iid?: number;
  title?: string;
  /** merge request state. */
  state?: "opened" | "closed" | "merged" | "locked";
  /** merge request action: open, close, reopen, update, merge, approved... */
  action?: string;
  /** merge request `oldrev`: GitLab sends it only when an update pushed new commits. */
  oldrev?: string;
  /** merge request target_branch. */
  targetBranch?: string;
  /** merge request from a fork: the source project's id and path. */
  sourceProjectId?: number;
  sourceRepo?: string;
  /** The user who triggered the event (merge request `user.username`, push `user_username`). */
  author?: string;
}

const fixtureDir = new URL("../../test/fixtures/gitlab/", import.meta.url);

/** A copy of GitLab's documented example payload for `kind`. */
export function gitlabExample(kind: GitlabKind): JsonObject {
  return JSON.parse(readFileSync(new URL(`${kind}.json`, fixtureDir), "utf8")) as JsonObject;
}

/** GitLab's documented payload for `kind` with `patch` applied. */
export function gitlabPayload(kind: GitlabKind, patch: GitlabPayloadPatch = {}): JsonObject {
  const p = gitlabExample(kind);
  const project = obj(p.project);
  const origPath = str(project?.path_with_namespace);
  const attrs = obj(p.object_attributes);

  if (attrs) {
    // The documented example's source and target name another project than `project`: make
    // them all the patched repository, except a fork's source.
    const target = obj(attrs.target);
    const source = obj(attrs.source);
    if (patch.repo && target) setGitlabProject(target, patch.repo);
    const sourcePath = patch.sourceRepo ?? patch.repo;
    if (source && sourcePath) {
      // The last commit lives in the source project, and its URL says so.
      const last = obj(attrs.last_commit);
      if (last) replaceIn(last, str(source.path_with_namespace), sourcePath);
      setGitlabProject(source, sourcePath);
    }
  }
  if (patch.repo && project) {
    replaceIn(p, origPath, patch.repo);
    setGitlabProject(project, patch.repo);
    const repository = obj(p.repository);
    if (repository) {
      repository.name = nameOf(patch.repo);
      replaceIn(repository, origPath, patch.repo);
    }
  }
  if (patch.projectId !== undefined) {
    if (project) project.id = patch.projectId;
    if ("project_id" in p) p.project_id = patch.projectId;
    if (attrs) {
      attrs.target_project_id = patch.projectId;
      if (patch.sourceProjectId === undefined) attrs.source_project_id = patch.projectId;
    }
  }

  if (kind === "push") {
    const origAfter = str(p.after);
    if (patch.deleted) {
      p.after = ZERO;
      p.checkout_sha = null;
      p.commits = [];
      p.total_commits_count = 0;
      if (patch.before ?? patch.sha) p.before = patch.before ?? patch.sha;
    } else {
      if (patch.sha) replaceIn(p, origAfter, patch.sha);
      if (patch.before !== undefined) p.before = patch.before;
    }
    if (patch.branch !== undefined) p.ref = `refs/heads/${patch.branch}`;
    if (patch.author !== undefined) p.user_username = patch.author;
    return p;
  }

  if (attrs) {
    const last = obj(attrs.last_commit);
    if (patch.sha && last) {
      const old = str(last.id);
      replaceIn(last, old, patch.sha);
    }
    if (patch.branch !== undefined) attrs.source_branch = patch.branch;
    if (patch.targetBranch !== undefined) attrs.target_branch = patch.targetBranch;
    if (patch.title !== undefined) attrs.title = patch.title;
    if (patch.state !== undefined) {
      attrs.state = patch.state;
      attrs.state_id = { opened: 1, closed: 2, merged: 3, locked: 4 }[patch.state];
    }
    if (patch.action !== undefined) attrs.action = patch.action;
    if (patch.oldrev !== undefined) attrs.oldrev = patch.oldrev;
    if (patch.sourceProjectId !== undefined) attrs.source_project_id = patch.sourceProjectId;
    if (patch.iid !== undefined) attrs.iid = patch.iid;
    const web = str(obj(attrs.target)?.web_url) || str(project?.web_url);
    if (patch.repo || patch.iid !== undefined) attrs.url = `${web}/-/merge_requests/${String(attrs.iid)}`;
  }
  if (patch.author !== undefined) {
    const user = obj(p.user);
    if (user) user.username = patch.author;
  }
  return p;
}

/**
 * Posts a GitLab delivery to `url`: X-Gitlab-Event (`Push Hook`, `Merge Request Hook`...),
 * X-Gitlab-Token when `token` is given, X-Gitlab-Event-UUID (a new UUID unless given).
 */
export async function sendGitlabWebhook(url: string, event: string, payload: JsonObject | string, token: string | undefined, uuid?: string): Promise<WebhookResponse> {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "user-agent": "GitLab/quai-test",
    "x-gitlab-event": event,
    "x-gitlab-event-uuid": uuid ?? randomUUID(),
  };
  if (token !== undefined) headers["x-gitlab-token"] = token;
  const res = await fetch(url, { method: "POST", headers, body });
  return { status: res.status, body: await res.text() };
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function obj(v: unknown): JsonObject | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

function ownerOf(fullName: string): string {
  const i = fullName.lastIndexOf("/");
  return i < 0 ? fullName : fullName.slice(0, i);
}

function nameOf(fullName: string): string {
  return fullName.slice(fullName.lastIndexOf("/") + 1);
}

/** Calls `fn` on every object inside `value`, `value` included. */
function walk(value: unknown, fn: (o: JsonObject) => void): void {
  if (Array.isArray(value)) for (const v of value) walk(v, fn);
  else {
    const o = obj(value);
    if (!o) return;
    fn(o);
    for (const v of Object.values(o)) walk(v, fn);
  }
}

/** Replaces `from` with `to` inside every string of `root` (keys untouched). */
function replaceIn(root: JsonObject, from: string, to: string): void {
  if (!from || from === to) return;
  const fix = (v: unknown): unknown => (typeof v === "string" ? v.split(from).join(to) : v);
  walk(root, (o) => {
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === "string") o[k] = fix(v);
      else if (Array.isArray(v)) o[k] = v.map(fix);
    }
  });
}

/** Sets a GitHub repository object's name and owner to `fullName`'s. */
function renameRepo(repo: JsonObject, fullName: string): void {
  const owner = ownerOf(fullName);
  repo.full_name = fullName;
  repo.name = nameOf(fullName);
  const o = obj(repo.owner);
  if (o) {
    const oldLogin = str(o.login);
    if (oldLogin && oldLogin !== owner) {
      // The owner's URLs (…/users/<login>/…, …/<login>) follow the new login.
      for (const [k, v] of Object.entries(o)) {
        if (typeof v === "string" && k.endsWith("url")) o[k] = v.replace(new RegExp(`/${escapeRe(oldLogin)}(?=/|$|\\{)`), `/${owner}`);
      }
    }
    o.login = owner;
    if ("name" in o) o.name = owner;
  }
}

/** Sets a GitLab project object (project, source, target) to `path`. */
function setGitlabProject(project: JsonObject, path: string): void {
  const old = str(project.path_with_namespace);
  if (old) replaceIn(project, old, path);
  project.path_with_namespace = path;
  project.name = nameOf(path);
  project.namespace = ownerOf(path);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
