// The GitHub and GitLab clients against the local fake forge: the same behaviour asked of both,
// then each forge's own mapping, retries and refusals; and the webhook payload builders.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { QuaiError } from "../../core/errors.ts";
import { runChecked } from "../../core/run.ts";
import { FakeForge } from "../../testing/forge.ts";
import { githubExample, githubPayload, gitlabExample, gitlabPayload, sendGithubWebhook, sendGitlabWebhook, signGithub } from "../../testing/webhooks.ts";
import type { ForgeClient, ForgeKind, ForgeOptions, RepoRef } from "../forge.ts";
import { GitHubClient } from "./github.ts";
import { GitLabClient } from "./gitlab.ts";
import { clip, ForgeHttp, nextLink } from "./http.ts";

const TOKEN = "s3cret-token-value";

function client(kind: ForgeKind, forge: FakeForge, opts: Partial<ForgeOptions> = {}): ForgeClient {
  const base = { token: TOKEN, backoffMs: 10, attempts: 4, timeoutMs: 5000, ...opts };
  return kind === "github" ? new GitHubClient({ baseUrl: forge.githubUrl, ...base }) : new GitLabClient({ baseUrl: forge.gitlabUrl, ...base });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The entries of a .tar.gz, listed by the system's tar after our own gunzip. */
async function tarList(gz: Buffer): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "quai-forge-test-"));
  try {
    const file = join(dir, "a.tar");
    await writeFile(file, gunzipSync(gz));
    const { stdout } = await runChecked("tar", ["-tf", file]);
    return stdout.split("\n").filter(Boolean);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function refusal(p: Promise<unknown>): Promise<QuaiError> {
  const err = await p.then(
    () => assert.fail("expected an error"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof QuaiError, `expected a QuaiError, got ${String(err)}`);
  return err;
}

for (const kind of ["github", "gitlab"] as const) {
  describe(`${kind} client against the fake forge`, () => {
    let forge: FakeForge;
    let gh: ForgeClient;
    // GitLab groups nest: the project id is the URL-encoded full path, slashes and all.
    const repo: RepoRef = kind === "github" ? { owner: "acme", name: "shop" } : { owner: "acme/team", name: "shop" };
    const full = `${repo.owner}/${repo.name}`;
    let sha: string;

    before(async () => {
      forge = await new FakeForge({ token: TOKEN }).start();
      sha = forge.addRepo(kind, full, { "Procfile": "web: node server.js\n", "src/server.js": "console.log('hi')\n" });
      gh = client(kind, forge);
    });
    after(() => forge.close());

    it("reads the token's user", async () => {
      assert.deepEqual(await gh.user(), { uid: "42", username: "quai-bot", email: "bot@quai.test", avatarUrl: null });
    });

    it("downloads the commit as a gzipped tarball with exactly one top folder", async () => {
      const gz = await collect(await gh.archive(repo, sha));
      const entries = await tarList(gz);
      const tops = new Set(entries.map((e) => e.split("/")[0]));
      assert.equal(tops.size, 1, `one top folder, got ${[...tops].join(", ")}`);
      const [top] = [...tops];
      assert.ok(entries.includes(`${top}/Procfile`));
      assert.ok(entries.includes(`${top}/src/server.js`));
      if (kind === "github") {
        assert.equal(top, `acme-shop-${sha.slice(0, 7)}`);
        // The API answered a redirect to the download host, as GitHub's does.
        assert.ok(forge.requests.some((r) => r.path.startsWith("/codeload/")));
      }
    });

    it("maps checks and keeps only the newest per name", async () => {
      const c = forge.addCommit(kind, full, { "a.txt": "checks" }, sha);
      if (kind === "github") {
        forge.setCheck(kind, full, c, "lint", "failure", "check_run");
        forge.setCheck(kind, full, c, "lint", "success", "check_run"); // re-run
        forge.setCheck(kind, full, c, "test", "in_progress", "check_run");
        forge.setCheck(kind, full, c, "neutral", "neutral", "check_run");
        forge.setCheck(kind, full, c, "skipped", "skipped", "check_run");
        forge.setCheck(kind, full, c, "timeout", "timed_out", "check_run");
        forge.setCheck(kind, full, c, "ci/legacy", "pending", "status");
        forge.setCheck(kind, full, c, "ci/legacy", "error", "status");
        forge.setCheck(kind, full, c, "ci/ok", "success", "status");
        const checks = await gh.checks(repo, c);
        const byName = Object.fromEntries(checks.map((k) => [`${k.kind}:${k.name}`, k.state]));
        assert.deepEqual(byName, {
          "check_run:lint": "success",
          "check_run:test": "pending",
          "check_run:neutral": "success",
          "check_run:skipped": "success",
          "check_run:timeout": "failure",
          "status:ci/legacy": "failure",
          "status:ci/ok": "success",
        });
      } else {
        const states: Record<string, string> = {
          created: "pending",
          waiting_for_resource: "pending",
          preparing: "pending",
          pending: "pending",
          running: "pending",
          manual: "pending",
          scheduled: "pending",
          success: "success",
          skipped: "success",
          failed: "failure",
          canceled: "failure",
        };
        for (const state of Object.keys(states)) forge.setCheck(kind, full, c, `job-${state}`, state);
        forge.setCheck(kind, full, c, "job-failed", "success"); // retried and passed
        const checks = await gh.checks(repo, c);
        const byName = Object.fromEntries(checks.map((k) => [k.name, k.state]));
        assert.deepEqual(byName, Object.fromEntries(Object.entries(states).map(([s, want]) => [`job-${s}`, s === "failed" ? "success" : want])));
        assert.ok(checks.every((k) => k.kind === "status"));
      }
    });

    it("posts commit statuses, which then show among the checks", async () => {
      const long = "x".repeat(200);
      await gh.setStatus(repo, sha, { context: "quai/deploy", state: "pending", description: "Deploying", targetUrl: "http://quai.test/d/1" });
      await gh.setStatus(repo, sha, { context: "quai/deploy", state: "error", description: long });
      const mine = forge.statuses.filter((s) => s.kind === kind && s.context === "quai/deploy");
      assert.equal(mine.length, 2);
      assert.deepEqual(
        { ...mine[0], kind: undefined },
        { kind: undefined, repo: full, sha, context: "quai/deploy", state: "pending", description: "Deploying", target_url: "http://quai.test/d/1" },
      );
      assert.equal(mine[1]?.state, kind === "github" ? "error" : "failed");
      assert.equal(mine[1]?.description, `${"x".repeat(139)}…`);
      const checks = await gh.checks(repo, sha);
      assert.deepEqual(checks.find((k) => k.name === "quai/deploy"), { name: "quai/deploy", kind: "status", state: "failure" });
    });

    it("creates deployments and their statuses (GitHub) or nothing (GitLab)", async () => {
      const before = forge.requests.length;
      const id = await gh.createDeployment(repo, { sha, environment: "review-7", transient: true, description: "Review app" });
      if (kind === "gitlab") {
        assert.equal(id, undefined);
        await gh.setDeploymentStatus(repo, "1", { state: "success" });
        assert.equal(forge.requests.length, before, "no request for GitLab deployments");
        return;
      }
      assert.ok(id);
      const d = forge.deployments.find((x) => String(x.id) === id);
      assert.deepEqual(
        { ...d, id: undefined },
        {
          id: undefined,
          repo: full,
          ref: sha,
          sha,
          environment: "review-7",
          transient_environment: true,
          production_environment: false,
          auto_merge: false,
          required_contexts: [],
          description: "Review app",
        },
      );
      await gh.setDeploymentStatus(repo, id, { state: "in_progress", logUrl: "http://quai.test/log" });
      await gh.setDeploymentStatus(repo, id, { state: "success", environmentUrl: "http://shop-pr7.quai.test", description: "Deployed" });
      assert.deepEqual(
        forge.deploymentStatuses.filter((s) => String(s.deploymentId) === id).map((s) => [s.state, s.environment_url, s.log_url, s.auto_inactive]),
        [
          ["in_progress", undefined, "http://quai.test/log", false],
          ["success", "http://shop-pr7.quai.test", undefined, false],
        ],
      );
    });

    it("creates a comment, then edits it in place; a comment deleted by hand is posted anew", async () => {
      const head = forge.pushCommit(kind, full, "feature", { "b.txt": "b" });
      forge.openPull(kind, full, { number: 7, title: "Feature", headRef: "feature", headSha: head });
      const id = await gh.upsertComment(repo, 7, undefined, "Deploying review app…");
      const again = await gh.upsertComment(repo, 7, id, "Review app ready");
      assert.equal(again, id);
      const comments = forge.commentsOn(kind, full, 7);
      assert.equal(comments.length, 1, "no duplicate comment");
      assert.deepEqual([comments[0]?.body, comments[0]?.edits], ["Review app ready", 1]);

      forge.deleteComment(id);
      const third = await gh.upsertComment(repo, 7, id, "Review app updated");
      assert.notEqual(third, id);
      assert.deepEqual(forge.commentsOn(kind, full, 7).map((c) => [String(c.id), c.body, c.edits]), [[third, "Review app updated", 0]]);
    });

    it("reads pull requests, open ones and from forks", async () => {
      const forkSha = forge.addCommit(kind, full, { "fork.txt": "from a fork" }, sha);
      forge.openPull(kind, full, { number: 8, title: "From a fork", headRef: "patch-1", headSha: forkSha, fromFork: true, headRepo: "eve/shop", author: "eve" });
      const closedHead = forge.pushCommit(kind, full, "done", { "c.txt": "c" });
      forge.openPull(kind, full, { number: 9, title: "Merged", headRef: "done", headSha: closedHead });
      forge.closePull(kind, full, 9, { merged: true });

      const pr = await gh.pull(repo, 8);
      assert.equal(pr.number, 8);
      assert.equal(pr.title, "From a fork");
      assert.equal(pr.state, "open");
      assert.equal(pr.merged, false);
      assert.equal(pr.headSha, forkSha);
      assert.equal(pr.headRef, "patch-1");
      assert.equal(pr.fromFork, true);
      assert.equal(pr.author, "eve");
      assert.equal(pr.headRepo, kind === "github" ? "eve/shop" : String(forge.repo(kind, full).pulls.get(8)?.headProjectId));
      assert.match(pr.htmlUrl, /\/8$/);

      const merged = await gh.pull(repo, 9);
      assert.deepEqual([merged.state, merged.merged, merged.fromFork, merged.headRepo], ["closed", true, false, full]);

      const open = await gh.pulls(repo);
      assert.deepEqual(open.map((p) => p.number).sort(), [7, 8]);

      const missing = await refusal(gh.pull(repo, 404));
      assert.equal(missing.code, "scm_forge_refused");
      assert.match(missing.message, /GET \S+ 404/);
      assert.doesNotMatch(missing.message, new RegExp(TOKEN));
    });

    it("lists branches across pages and reads one whose name has / and shell metacharacters", async () => {
      const odd = "feat/x;$(touch pwned)&|`id`'\"#?%";
      const oddSha = forge.pushCommit(kind, full, odd, { "odd.txt": "odd" });
      const paged = client(kind, forge);
      const small = await new FakeForge({ token: TOKEN, maxPerPage: 2 }).start();
      try {
        small.addRepo(kind, full, { x: "1" });
        for (const b of ["b1", "b2", "b3", "b4"]) small.pushCommit(kind, full, b, { [b]: b });
        const all = await client(kind, small).branches(repo);
        assert.deepEqual(all.map((b) => b.name).sort(), ["b1", "b2", "b3", "b4", "main"]);
        assert.ok(small.requests.filter((r) => r.path.endsWith("/branches")).length >= 3, "followed the next links");
      } finally {
        await small.close();
      }

      const b = await paged.branch(repo, odd);
      assert.deepEqual(b, { name: odd, sha: oddSha });
      const req = forge.requests.at(-1);
      assert.ok(req?.path.endsWith(`/branches/${encodeURIComponent(odd)}`), `encoded path, got ${req?.path}`);
      assert.ok(!req?.path.includes(";") && !req?.path.includes("$"), "no raw metacharacters in the path");
      assert.equal((await refusal(paged.branch(repo, "no/such"))).code, "scm_forge_refused");
    });

    it("creates and deletes the webhook; deleting it twice is fine", async () => {
      const id = await gh.createHook(repo, "https://quai.test/hooks/abc", "hook-secret");
      const hook = forge.hooks.find((h) => String(h.id) === id);
      assert.ok(hook);
      assert.equal(hook.url, "https://quai.test/hooks/abc");
      assert.equal(hook.secret, "hook-secret");
      if (kind === "github") {
        assert.deepEqual(hook.events, ["push", "pull_request", "check_run", "check_suite", "status"]);
        assert.deepEqual(hook.body.config, { url: "https://quai.test/hooks/abc", content_type: "json", secret: "hook-secret", insecure_ssl: "0" });
      } else {
        assert.deepEqual(hook.events.sort(), ["merge_requests_events", "push_events"]);
        assert.equal(hook.body.enable_ssl_verification, true);
      }
      await gh.deleteHook(repo, id);
      assert.equal(hook.deleted, true);
      await gh.deleteHook(repo, id);
    });

    it("retries server errors and succeeds: failNext(2, 500) costs 3 requests", async () => {
      const n = forge.requests.length;
      forge.failNext(2, 500);
      await gh.user();
      assert.equal(forge.requests.length - n, 3);
    });

    it("retries 429 too", async () => {
      const n = forge.requests.length;
      forge.failNext(1, 429);
      await gh.user();
      assert.equal(forge.requests.length - n, 2);
    });

    it("gives up after `attempts` with scm_forge_unreachable naming the host and the cause", async () => {
      const n = forge.requests.length;
      forge.failNext(10, 502);
      const err = await refusal(client(kind, forge, { attempts: 3 }).user());
      forge.failNext(0);
      assert.equal(err.code, "scm_forge_unreachable");
      assert.equal(forge.requests.length - n, 3);
      assert.match(err.message, /127\.0\.0\.1:\d+/);
      assert.match(err.message, /502/);
      assert.match(err.message, /3 attempts/);
    });

    it("refuses a wrong token at once, without retrying or printing the token", async () => {
      const n = forge.requests.length;
      const wrong = kind === "github" ? new GitHubClient({ baseUrl: forge.githubUrl, token: "wrong-token", backoffMs: 10 }) : new GitLabClient({ baseUrl: forge.gitlabUrl, token: "wrong-token", backoffMs: 10 });
      const err = await refusal(wrong.user());
      assert.equal(err.code, "scm_forge_refused");
      assert.equal(forge.requests.length - n, 1);
      assert.match(err.message, /GET \/user: 401/);
      assert.doesNotMatch(err.message, /wrong-token/);
      assert.equal(err.details?.status, 401);
    });

    it("times out a stalled request and retries it", async () => {
      const n = forge.requests.length;
      forge.delayNext(1, 2000);
      const started = Date.now();
      const user = await client(kind, forge, { timeoutMs: 300 }).user();
      assert.equal(user.username, "quai-bot");
      assert.equal(forge.requests.length - n, 2);
      assert.ok(Date.now() - started < 1800, "did not wait for the stalled answer");
    });

    it("reports a network failure as unreachable", async () => {
      const dead = await new FakeForge({ token: TOKEN }).start();
      const url = kind === "github" ? dead.githubUrl : dead.gitlabUrl;
      await dead.close();
      const c = kind === "github" ? new GitHubClient({ baseUrl: url, token: TOKEN, backoffMs: 1, attempts: 2 }) : new GitLabClient({ baseUrl: url, token: TOKEN, backoffMs: 1, attempts: 2 });
      const err = await refusal(c.user());
      assert.equal(err.code, "scm_forge_unreachable");
      assert.match(err.message, /ECONNREFUSED/);
    });

    if (kind === "gitlab") {
      it("treats re-posting the same pending status as done (GitLab refuses the transition)", async () => {
        const c = forge.addCommit(kind, full, { "p.txt": "p" }, sha);
        await gh.setStatus(repo, c, { context: "quai/review-app", state: "pending", description: "Building" });
        await gh.setStatus(repo, c, { context: "quai/review-app", state: "pending", description: "Still building" });
        assert.equal(forge.statuses.filter((s) => s.sha === c).length, 1);
      });
    }
  });
}

describe("http helpers", () => {
  it("follows a download's redirect to another host without the credentials", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const download = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { "content-type": "application/octet-stream" }).end("archive-bytes");
    });
    await new Promise<void>((r) => download.listen(0, "127.0.0.1", r));
    // "localhost" and "127.0.0.1" are different origins on the same machine.
    const target = `http://localhost:${(download.address() as AddressInfo).port}/blob?token=short-lived`;
    const api = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(302, { location: target }).end();
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    try {
      const http = new ForgeHttp({ forge: "GitHub", baseUrl: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, headers: { authorization: "Bearer t0k", "private-token": "t0k", "user-agent": "quai" } });
      const body = await collect(await http.stream("/repos/a/b/tarball/x"));
      assert.equal(body.toString(), "archive-bytes");
      assert.equal(seen[0]?.authorization, "Bearer t0k");
      assert.equal(seen[1]?.authorization, undefined);
      assert.equal(seen[1]?.["private-token"], undefined);
      assert.equal(seen[1]?.["user-agent"], "quai");
    } finally {
      await new Promise((r) => api.close(r));
      await new Promise((r) => download.close(r));
    }
  });

  it("never calls a cloud metadata address, given as the forge's url or behind its redirect", async () => {
    const direct = new ForgeHttp({ forge: "GitLab", baseUrl: "http://169.254.169.254/latest/meta-data", headers: {}, attempts: 3 });
    await assert.rejects(direct.request("GET", "/user"), (e: unknown) => e instanceof QuaiError && e.code === "scm_integration_invalid" && /link-local/.test(e.message));
    let hits = 0;
    const api = createServer((_req, res) => {
      hits++;
      res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
    });
    await new Promise<void>((r) => api.listen(0, "127.0.0.1", r));
    try {
      const http = new ForgeHttp({ forge: "GitLab", baseUrl: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, headers: {}, attempts: 3 });
      await assert.rejects(http.request("GET", "/user"), (e: unknown) => e instanceof QuaiError && e.code === "scm_integration_invalid" && /169\.254\.169\.254/.test(e.message));
      assert.equal(hits, 1, "refused at once, not retried");
    } finally {
      await new Promise((r) => api.close(r));
    }
  });

  it("does not retry a download the caller aborted", async () => {
    const forge = await new FakeForge({ token: TOKEN }).start();
    try {
      const sha = forge.addRepo("github", "acme/shop", { a: "a" });
      const n = forge.requests.length;
      forge.delayNext(1, 2000);
      const gh = new GitHubClient({ baseUrl: forge.githubUrl, token: TOKEN, backoffMs: 10 });
      await assert.rejects(gh.archive({ owner: "acme", name: "shop" }, sha, AbortSignal.timeout(100)), (e: unknown) => !(e instanceof QuaiError));
      assert.equal(forge.requests.length - n, 1);
    } finally {
      await forge.close();
    }
  });

  it("reads the next link of a Link header", () => {
    assert.equal(nextLink('<https://h/x?page=2>; rel="next", <https://h/x?page=5>; rel="last"'), "https://h/x?page=2");
    assert.equal(nextLink('<https://h/x?page=1>; rel="prev"'), undefined);
    assert.equal(nextLink(null), undefined);
  });

  it("clips text without splitting a character", () => {
    assert.equal(clip("abc", 3), "abc");
    assert.equal(clip("abcd", 3), "ab…");
    assert.equal(clip("ab😀😀", 3), "ab…");
    assert.equal(clip("a😀bc", 3), "a😀…");
  });
});

/** Every key path of a JSON value (array elements share their array's path). */
function keyPaths(value: unknown, prefix = ""): Set<string> {
  const out = new Set<string>();
  const visit = (v: unknown, p: string) => {
    if (Array.isArray(v)) for (const x of v) visit(x, `${p}[]`);
    else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        out.add(`${p}.${k}`);
        visit(x, `${p}.${k}`);
      }
    }
  };
  visit(value, prefix);
  return out;
}

describe("webhook payload builders", () => {
  const sha = "0123456789abcdef0123456789abcdef01234567";

  it("keeps the structure of GitHub's real examples and changes only what was asked", () => {
    const cases = [
      ["push", undefined, { repo: "acme/shop", sha, branch: "main", before: "f".repeat(40) }],
      ["push", undefined, { repo: "acme/shop", sha, branch: "gone", deleted: true }],
      ["pull_request", "opened", { repo: "acme/shop", sha, number: 7, branch: "feature/x", title: "Feature" }],
      ["pull_request", "synchronize", { repo: "acme/shop", sha, number: 7, headRepo: "eve/shop" }],
      ["pull_request", "closed", { repo: "acme/shop", sha, number: 7, state: "closed", merged: true }],
      ["check_run", "completed", { repo: "acme/shop", sha, name: "ci", status: "completed", conclusion: "failure" }],
      ["check_suite", "completed", { repo: "acme/shop", sha, branch: "main" }],
      ["status", undefined, { repo: "acme/shop", sha, name: "ci/legacy", state: "error", branch: "main" }],
    ] as const;
    for (const [event, action, patch] of cases) {
      const original = githubExample(event, action, { deleted: "deleted" in patch ? patch.deleted : undefined });
      const built = githubPayload(event, action, patch);
      assert.deepEqual([...keyPaths(built)].sort(), [...keyPaths(original)].sort(), `${event}.${action ?? ""} keeps the example's keys`);
      const text = JSON.stringify(built);
      assert.ok(!text.includes("Codertocat/Hello-World"), `${event}: no trace of the example's repository`);
      assert.equal((built.repository as { full_name: string }).full_name, "acme/shop");
      assert.equal((built.repository as { name: string }).name, "shop");
      assert.equal((built.repository as { owner: { login: string } }).owner.login, "acme");
    }

    const push = githubPayload("push", undefined, { repo: "acme/shop", sha, branch: "main" });
    assert.deepEqual([push.ref, push.after, (push.head_commit as { id: string }).id], ["refs/heads/main", sha, sha]);

    const pr = githubPayload("pull_request", "synchronize", { repo: "acme/shop", sha, number: 7, branch: "feature/x", headRepo: "eve/shop" });
    const p = pr.pull_request as { number: number; html_url: string; head: { sha: string; ref: string; repo: { full_name: string; fork: boolean } }; base: { repo: { full_name: string } } };
    assert.deepEqual([pr.number, p.number, p.head.sha, p.head.ref, p.head.repo.full_name, p.head.repo.fork, p.base.repo.full_name], [7, 7, sha, "feature/x", "eve/shop", true, "acme/shop"]);
    assert.match(p.html_url, /acme\/shop\/pull\/7$/);

    const run = githubPayload("check_run", "completed", { sha, name: "ci", conclusion: "failure" }).check_run as { head_sha: string; name: string; conclusion: string };
    assert.deepEqual([run.head_sha, run.name, run.conclusion], [sha, "ci", "failure"]);

    const status = githubPayload("status", undefined, { sha, name: "ci/legacy", state: "error" });
    assert.deepEqual([status.sha, status.context, status.state], [sha, "ci/legacy", "error"]);

    assert.throws(() => githubPayload("pull_request", "no-such-action", {}), /no GitHub example/);
  });

  it("keeps the structure of GitLab's documented examples", () => {
    const push = gitlabPayload("push", { repo: "acme/team/shop", projectId: 12, sha, branch: "main", before: "f".repeat(40) });
    assert.deepEqual([...keyPaths(push)].sort(), [...keyPaths(gitlabExample("push"))].sort());
    assert.deepEqual([push.ref, push.after, push.checkout_sha, push.project_id], ["refs/heads/main", sha, sha, 12]);
    assert.equal((push.project as { path_with_namespace: string }).path_with_namespace, "acme/team/shop");
    assert.ok(!JSON.stringify(push).includes("mike/diaspora"));

    const mr = gitlabPayload("merge_request", { repo: "acme/team/shop", projectId: 12, sha, branch: "feature", iid: 7, action: "update", oldrev: "e".repeat(40) });
    const extra = [...keyPaths(mr)].filter((k) => !keyPaths(gitlabExample("merge_request")).has(k));
    assert.deepEqual(extra, [".object_attributes.oldrev"], "only oldrev, which GitLab adds when commits were pushed");
    const a = mr.object_attributes as { iid: number; source_branch: string; last_commit: { id: string }; url: string; source_project_id: number; target_project_id: number };
    assert.deepEqual([a.iid, a.source_branch, a.last_commit.id, a.source_project_id, a.target_project_id], [7, "feature", sha, 12, 12]);
    assert.match(a.url, /acme\/team\/shop\/-\/merge_requests\/7$/);

    const fork = gitlabPayload("merge_request", { repo: "acme/shop", projectId: 12, sourceProjectId: 99, sourceRepo: "eve/shop" });
    const f = fork.object_attributes as { source_project_id: number; source: { path_with_namespace: string }; target: { path_with_namespace: string } };
    assert.deepEqual([f.source_project_id, f.source.path_with_namespace, f.target.path_with_namespace], [99, "eve/shop", "acme/shop"]);
  });

  it("signs GitHub deliveries with HMAC-SHA256 of the exact body", () => {
    const body = JSON.stringify({ zen: "Keep it logically awesome." });
    const want = `sha256=${createHmac("sha256", "It's a Secret to Everybody").update(body).digest("hex")}`;
    assert.equal(signGithub(body, "It's a Secret to Everybody"), want);
    // GitHub's documented test vector.
    assert.equal(signGithub("Hello, World!", "It's a Secret to Everybody"), "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
  });

  it("sends deliveries with the forges' headers", async () => {
    const seen: { headers: IncomingHttpHeaders; body: string }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
        res.writeHead(202, { "content-type": "application/json" }).end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
    try {
      const payload = githubPayload("push", undefined, { repo: "acme/shop", sha, branch: "main" });
      const res = await sendGithubWebhook(url, "push", payload, "whsec", "delivery-1");
      assert.deepEqual(res, { status: 202, body: '{"ok":true}' });
      const gh = seen[0];
      assert.ok(gh);
      assert.equal(gh.headers["x-github-event"], "push");
      assert.equal(gh.headers["x-github-delivery"], "delivery-1");
      assert.equal(gh.headers["content-type"], "application/json");
      assert.equal(gh.headers["x-hub-signature-256"], signGithub(gh.body, "whsec"));
      assert.deepEqual(JSON.parse(gh.body), payload);

      await sendGithubWebhook(url, "push", "{not json", undefined);
      assert.equal(seen[1]?.headers["x-hub-signature-256"], undefined);
      assert.match(String(seen[1]?.headers["x-github-delivery"]), /^[0-9a-f-]{36}$/);

      await sendGitlabWebhook(url, "Merge Request Hook", gitlabPayload("merge_request", { iid: 3 }), "gl-token", "uuid-1");
      const gl = seen[2];
      assert.equal(gl?.headers["x-gitlab-event"], "Merge Request Hook");
      assert.equal(gl?.headers["x-gitlab-token"], "gl-token");
      assert.equal(gl?.headers["x-gitlab-event-uuid"], "uuid-1");
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
