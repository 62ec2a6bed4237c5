// End to end with a local fake GitHub and GitLab: a staging app linked to a repository deploys
// its branch only once CI is green (never waiting on its own status), review apps are made per
// pull request with their own PostgreSQL and the manifest's variables, redeployed on push with one
// comment edited in place, and deleted on close with their add-ons. Webhooks are the real payloads
// of @octokit/webhooks-examples and GitLab's documented examples; forgeries are refused.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { addonServers, pythonWebApp, startPlatform, until, type TestPlatform } from "../src/testing/platform.ts";
import { FakeForge } from "../src/testing/forge.ts";
import { request } from "node:http";
import { existsSync } from "node:fs";
import { githubPayload, gitlabPayload, sendGithubWebhook, sendGitlabWebhook, signGithub } from "../src/testing/webhooks.ts";

const TOKEN = "ghp_fake_token_for_tests";
const REPO = "acme/histo";

let p: TestPlatform;
let forge: FakeForge;
let hookUrl: string;
let secret: string;

interface ReviewAppJson {
  app_name: string;
  status: string;
  error: string | null;
  sha: string;
  url: string | null;
  pr: { number: number; title: string };
}
interface DeployJson {
  sha: string;
  status: string;
  reason: string | null;
}

const manifest = JSON.stringify({
  name: "histo",
  env: {
    GREETING: { value: "hello from a review app" },
    SECRET_KEY: { generator: "secret", description: "Session signing key" },
    SELF_URL: { generator: "url" },
    PARENT_ONLY: { description: "copied from the parent" },
    DATABASE_URL: { value: "$SCALINGO_POSTGRESQL_URL" },
  },
  addons: ["postgresql:postgresql-sandbox"],
  formation: { web: { amount: 1, size: "XL" } },
  scripts: {
    "first-deploy": `psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "CREATE TABLE hooks (kind text)" -c "INSERT INTO hooks VALUES ('first-deploy')"`,
    postdeploy: `psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "INSERT INTO hooks VALUES ('postdeploy')"`,
    "pr-predestroy": `echo "predestroy of $APP: $(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM hooks") hooks ran"`,
  },
});

function appFiles(body: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...pythonWebApp(body), "scalingo.json": manifest, ...extra };
}

async function reviewApps(): Promise<ReviewAppJson[]> {
  const r = await p.quai(["--app", "staging", "--json", "review-apps"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ReviewAppJson[];
}

async function reviewApp(n: number, status: string | string[], ms = 180_000): Promise<ReviewAppJson> {
  const wanted = Array.isArray(status) ? status : [status];
  try {
    return await until(`review app of #${n} ${wanted.join("/")}`, async () => (await reviewApps()).find((r) => r.pr.number === n && wanted.includes(r.status)), ms, 500);
  } catch (err) {
    // Say where it stands and what the server said, so a failure explains itself.
    const now = (await reviewApps()).filter((r) => r.pr.number === n);
    throw new Error(`${(err as Error).message}; now ${JSON.stringify(now)}; server: ${p.server.log.filter((l) => /scm|review|deploy/i.test(l)).slice(-30).join("\n")}`, { cause: err });
  }
}

/**
 * POSTs `body` and resolves with the status, even when the server answers before reading it all
 * (a 413 on the announced length) and the rest of the upload then fails.
 */
function postStatus(url: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: "POST", headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers } }, (res) => {
      answered = true;
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    req.end(body);
  });
}

/** Add-on servers running (one entry per server, whatever its process count). */
async function addonServerCount(): Promise<number> {
  return new Set((await addonServers(p.home)).map((s) => s.instance)).size;
}

async function deploys(app = "staging"): Promise<DeployJson[]> {
  const r = await p.quai(["--app", app, "--json", "integration-link-deploys"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as DeployJson[];
}

const push = (sha: string, branch = "main") => sendGithubWebhook(hookUrl, "push", githubPayload("push", undefined, { repo: REPO, sha, branch }), secret);
const pull = (action: string, n: number, sha: string, extra: Record<string, unknown> = {}) =>
  sendGithubWebhook(hookUrl, "pull_request", githubPayload("pull_request", action, { repo: REPO, sha, number: n, branch: `feature-${n}`, title: `PR ${n}`, ...extra }), secret);
const statusEvent = (sha: string, name: string, state: "success" | "failure" | "pending") => sendGithubWebhook(hookUrl, "status", githubPayload("status", undefined, { repo: REPO, sha, name, state }), secret);
const ownStatuses = (sha: string, context: string) => forge.statuses.filter((s) => s.sha === sha && s.context === context).map((s) => s.state);

describe("GitHub and GitLab integration, end to end", () => {
  before(async () => {
    forge = await new FakeForge({ token: TOKEN }).start();
    p = await startPlatform({ QUAI_SCM_TICK_SECONDS: "1", QUAI_SCM_BACKOFF_MS: "50", QUAI_SCM_TIMEOUT_MS: "3000", QUAI_REVIEW_APP_RETRY_SECONDS: "1", QUAI_REVIEW_APP_MAX_SIZE: "M" });
    forge.addRepo("github", REPO, appFiles("v1"));
    assert.equal((await p.quai(["create", "staging"])).code, 0);
    const add = await p.quai(["integrations-add", "github-enterprise", "--url", forge.githubUrl, "--token", TOKEN]);
    assert.equal(add.code, 0, add.stderr);
    const env = await p.quai(["--app", "staging", "env-set", "PARENT_ONLY=from-parent", "GREETING=staging"]);
    assert.equal(env.code, 0, env.stderr);
    const pg = await p.quai(["--app", "staging", "addons-add", "postgresql", "postgresql-sandbox"]);
    assert.equal(pg.code, 0, pg.stderr);
    const link = await p.quai(["--app", "staging", "integration-link-create", `https://github.example/${REPO}`, "--branch", "main", "--auto-deploy", "--deploy-review-apps"]);
    assert.equal(link.code, 0, link.stderr);
    const hook = forge.hooks.find((h) => h.repo === REPO && !h.deleted);
    assert.ok(hook?.secret, "Quai registered its webhook with a secret");
    hookUrl = hook.url;
    secret = hook.secret;
    assert.match(hookUrl, /\/v1\/scm\/github\/webhook$/);
  });
  after(async () => {
    await p?.close();
    await forge?.close();
  });

  it("deploys a push to the linked branch only once its checks pass", async () => {
    const sha = forge.pushCommit("github", REPO, "main", appFiles("v2"));
    forge.setCheck("github", REPO, sha, "ci/test", "pending", "status");
    forge.setCheck("github", REPO, sha, "build", "in_progress", "check_run");
    assert.equal((await push(sha)).status, 202);
    const waiting = await until("the push waiting for CI", async () => (await deploys()).find((d) => d.sha === sha && d.status === "waiting" && d.reason?.includes("ci/test") ? d : undefined), 30_000, 200);
    assert.match(waiting.reason ?? "", /build, ci\/test/);
    assert.deepEqual(ownStatuses(sha, "quai/deploy"), ["pending"]);
    // Several ticks later (and with Quai's own pending status on the commit), still nothing deployed.
    await new Promise((r) => setTimeout(r, 2500));
    assert.notEqual((await p.get("staging")).status, 200);
    assert.equal((await deploys()).find((d) => d.sha === sha)?.status, "waiting");
    forge.setCheck("github", REPO, sha, "ci/test", "success", "status");
    assert.equal((await statusEvent(sha, "ci/test", "success")).status, 202);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await deploys()).find((d) => d.sha === sha)?.status, "waiting", "one check still runs");
    forge.setCheck("github", REPO, sha, "build", "success", "check_run");
    // No webhook for this one: the ticker's poll picks it up.
    await until("staging serving v2", async () => ((await p.get("staging")).body === "v2" ? true : undefined), 120_000, 500);
    await until("quai/deploy success", async () => (ownStatuses(sha, "quai/deploy").at(-1) === "success" ? true : undefined), 30_000, 200);
    const states = ownStatuses(sha, "quai/deploy");
    assert.equal(states[0], "pending");
    assert.ok(!states.includes("failure"), states.join(","));
    const success = forge.statuses.filter((s) => s.sha === sha && s.context === "quai/deploy").at(-1);
    assert.match(success?.description ?? "", /staging/);
    assert.match(success?.target_url ?? "", /\/v1\/apps\/staging\/deployments\/[0-9a-f-]+\/output$/);
    const gh = forge.deployments.find((d) => d.sha === sha);
    assert.equal(gh?.environment, "staging");
    // The deployment's own status follows the commit status: a request later.
    const ghStates = () => forge.deploymentStatuses.filter((s) => s.deploymentId === gh?.id).map((s) => s.state);
    await until("the GitHub deployment's success", async () => (ghStates().at(-1) === "success" ? true : undefined), 10_000, 50);
    assert.deepEqual(ghStates(), ["in_progress", "success"]);
  });

  it("does not deploy a commit whose check failed, and says why on the commit", async () => {
    const sha = forge.pushCommit("github", REPO, "main", appFiles("v3-broken"));
    forge.setCheck("github", REPO, sha, "ci/test", "failure", "status");
    assert.equal((await push(sha)).status, 202);
    const blocked = await until("blocked", async () => (await deploys()).find((d) => d.sha === sha && d.status === "blocked"), 30_000, 200);
    assert.match(blocked.reason ?? "", /ci\/test/);
    const last = forge.statuses.filter((s) => s.sha === sha && s.context === "quai/deploy").at(-1);
    assert.equal(last?.state, "failure");
    assert.match(last?.description ?? "", /not deployed.*ci\/test/);
    assert.equal((await p.get("staging")).body, "v2");
    const events = await p.quai(["--app", "staging", "events"]);
    assert.match(events.stdout, /scm_deploy_blocked/);
  });

  it("deploys only the newest of two waiting pushes", async () => {
    const older = forge.pushCommit("github", REPO, "main", appFiles("v4"));
    forge.setCheck("github", REPO, older, "ci/test", "pending", "status");
    await push(older);
    await until("older waiting", async () => (await deploys()).find((d) => d.sha === older && d.status === "waiting"), 30_000, 200);
    const newer = forge.pushCommit("github", REPO, "main", appFiles("v5"));
    forge.setCheck("github", REPO, newer, "ci/test", "success", "status");
    await push(newer);
    await until("staging serving v5", async () => ((await p.get("staging")).body === "v5" ? true : undefined), 120_000, 500);
    forge.setCheck("github", REPO, older, "ci/test", "success", "status");
    await statusEvent(older, "ci/test", "success");
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await deploys()).find((d) => d.sha === older)?.status, "superseded");
    assert.equal((await p.get("staging")).body, "v5");
  });

  it("deploys a branch by hand, without waiting for CI", async () => {
    const sha = forge.pushCommit("github", REPO, "main", appFiles("v6"));
    forge.setCheck("github", REPO, sha, "ci/test", "pending", "status");
    const manual = await p.quai(["--app", "staging", "integration-link-manual-deploy", "main"]);
    assert.equal(manual.code, 0, manual.stderr);
    assert.match(manual.stdout, new RegExp(sha.slice(0, 7)));
    await until("staging serving v6", async () => ((await p.get("staging")).body === "v6" ? true : undefined), 120_000, 500);
    const unknown = await p.quai(["--app", "staging", "integration-link-manual-deploy", "no-such-branch"]);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /404|refused/);
  });

  it("makes a review app with its own PostgreSQL and the manifest's variables, comments once, redeploys on push, deletes on close", async () => {
    const title = `<img src=x onerror=alert(1)> **Nouveau** formulaire`;
    const branch = "feature/signalement;$(touch /tmp/pwned)";
    const sha = forge.pushCommit("github", REPO, branch, appFiles("review v1"));
    forge.openPull("github", REPO, { number: 7, title, headRef: branch, headSha: sha });
    const before = await addonServerCount();
    // Staging's data, backed up: the review app's fresh database starts from it (the link's seed).
    const seed = await p.quai(["--app", "staging", "run", "sh", "-c", `psql "$SCALINGO_POSTGRESQL_URL" -v ON_ERROR_STOP=1 -c "CREATE TABLE seeded (note text)" -c "INSERT INTO seeded VALUES ('from staging')"`]);
    assert.equal(seed.code, 0, seed.stderr);
    const backup = await p.quai(["--app", "staging", "backups-create", "--addon", "postgresql"]);
    assert.equal(backup.code, 0, backup.stderr);
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--seed", "parent-latest"])).code, 0);
    assert.equal((await pull("opened", 7, sha, { title, branch })).status, 202);
    const ra = await reviewApp(7, "deployed");
    assert.equal(ra.app_name, "staging-pr7");
    assert.equal(existsSync("/tmp/pwned"), false, "a branch name is data, never run");
    assert.equal(ra.pr.title, title);
    assert.equal((await p.get("staging-pr7")).body, "review v1");
    const env = Object.fromEntries((await p.get("staging-pr7", "/env")).body.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    assert.equal(env.GREETING, "hello from a review app");
    assert.equal(env.PARENT_ONLY, "from-parent");
    assert.match(env.SECRET_KEY ?? "", /^[0-9a-f]{32,}$/);
    assert.equal(env.SELF_URL, ra.url);
    assert.equal(env.CONTAINER_SIZE, "M", "the manifest's XL is capped to the review-app limit");
    const parentEnv = await p.quai(["--app", "staging", "env"]);
    const parentDb = /SCALINGO_POSTGRESQL_URL=(\S+)/.exec(parentEnv.stdout)?.[1];
    assert.ok(env.SCALINGO_POSTGRESQL_URL && parentDb && env.SCALINGO_POSTGRESQL_URL !== parentDb, "a database of its own");
    assert.equal(env.DATABASE_URL, env.SCALINGO_POSTGRESQL_URL);
    assert.equal(await addonServerCount(), before + 1);
    // One comment with the URL; the title's markup is never echoed.
    const comments = forge.commentsOn("github", REPO, 7);
    assert.equal(comments.length, 1);
    assert.ok(comments[0]?.body.includes(ra.url as string));
    assert.ok(!comments[0]?.body.includes("<img"));
    const gh = forge.deployments.find((d) => d.environment === "staging-pr7");
    assert.equal(gh?.transient_environment, true);
    assert.equal(ownStatuses(sha, "quai/review-app").at(-1), "success");
    const hooks1 = await p.quai(["--app", "staging-pr7", "run", "sh", "-c", `psql "$DATABASE_URL" -tAc "SELECT string_agg(kind, ',') FROM hooks"`]);
    assert.equal(hooks1.stdout.trim(), "first-deploy", hooks1.stderr);
    const seeded = await p.quai(["--app", "staging-pr7", "run", "sh", "-c", `psql "$DATABASE_URL" -tAc "SELECT note FROM seeded"`]);
    assert.equal(seeded.stdout.trim(), "from staging", seeded.stderr);
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--no-seed"])).code, 0);

    const sha2 = forge.pushCommit("github", REPO, branch, appFiles("review v2"));
    assert.equal((await pull("synchronize", 7, sha2, { title, branch })).status, 202);
    await until("review app serving v2", async () => ((await p.get("staging-pr7")).body === "review v2" ? true : undefined), 120_000, 500);
    await reviewApp(7, "deployed");
    const after2 = forge.commentsOn("github", REPO, 7);
    assert.equal(after2.length, 1, "the same comment, edited");
    assert.ok((after2[0]?.edits ?? 0) >= 1);
    assert.match(after2[0]?.body ?? "", new RegExp(sha2.slice(0, 7)));
    const hooks2 = await p.quai(["--app", "staging-pr7", "run", "sh", "-c", `psql "$DATABASE_URL" -tAc "SELECT string_agg(kind, ',') FROM hooks"`]);
    assert.equal(hooks2.stdout.trim(), "first-deploy,postdeploy");

    forge.closePull("github", REPO, 7);
    assert.equal((await pull("closed", 7, sha2, { title, branch, state: "closed" })).status, 202);
    await reviewApp(7, "deleted", 60_000);
    assert.equal((await p.get("staging-pr7")).status, 404);
    const apps = await p.quai(["apps"]);
    assert.doesNotMatch(apps.stdout, /staging-pr7/);
    await until("the review app's database stopped", async () => ((await addonServerCount()) === before ? true : undefined), 30_000, 200);
    // Every deployment of the review app's environment ends inactive.
    const environments = forge.deployments.filter((d) => d.environment === "staging-pr7");
    assert.equal(environments.length, 2);
    // Posted once the review app is marked deleted: a request or two later.
    const lastStates = () => environments.map((d) => forge.deploymentStatuses.filter((s) => s.deploymentId === d.id).at(-1)?.state);
    await until("both deployments inactive", async () => (lastStates().every((st) => st === "inactive") ? true : undefined), 10_000, 50);
    assert.equal(forge.commentsOn("github", REPO, 7).length, 1);
    // pr-predestroy ran in the review app, with its database, before it was deleted.
    const all = JSON.parse((await p.quai(["--json", "events", "--per-page", "100"])).stdout) as { type: string; app_name: string; type_data: { hook?: string; exit_code?: number; output?: string } }[];
    const predestroy = all.find((e) => e.type === "run" && e.type_data.hook === "pr-predestroy" && e.app_name === "staging-pr7");
    assert.equal(predestroy?.type_data.exit_code, 0);
    assert.match(predestroy?.type_data.output ?? "", /predestroy of staging-pr7: 2 hooks ran/);
  });

  it("does not make review apps for forks, and explains it on the pull request", async () => {
    const sha = forge.pushCommit("github", REPO, "fork-base", appFiles("fork"));
    forge.openPull("github", REPO, { number: 8, title: "From a fork", headRef: "patch-1", headSha: sha, fromFork: true });
    assert.equal((await pull("opened", 8, sha, { headRepo: "mallory/histo", branch: "patch-1" })).status, 202);
    const refused = await reviewApp(8, "refused", 30_000);
    assert.equal(refused.url, null);
    const comments = forge.commentsOn("github", REPO, 8);
    assert.equal(comments.length, 1);
    assert.match(comments[0]?.body ?? "", /fork/);
    await pull("synchronize", 8, sha, { headRepo: "mallory/histo", branch: "patch-1" });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(forge.commentsOn("github", REPO, 8).length, 1, "no second comment");
    assert.doesNotMatch((await p.quai(["apps"])).stdout, /staging-pr8/);
    // Asked by hand, the answer is the same, with its reason and exit code.
    const manual = await p.quai(["--app", "staging", "integration-link-manual-review-app", "8"]);
    assert.equal(manual.code, 77, manual.stderr);
    assert.match(manual.stderr, /fork/);
    const closed = forge.pushCommit("github", REPO, "closed-pr", appFiles("closed"));
    forge.openPull("github", REPO, { number: 12, title: "Closed", headRef: "closed-pr", headSha: closed });
    forge.closePull("github", REPO, 12);
    const late = await p.quai(["--app", "staging", "integration-link-manual-review-app", "12"]);
    assert.notEqual(late.code, 0);
    assert.match(late.stderr, /closed/);
  });

  it("refuses a manifest it does not understand, on the pull request and in events, creating nothing", async () => {
    const bad = JSON.stringify({ env: { TOKEN: { generator: "password" } }, adons: ["redis"] });
    const sha = forge.pushCommit("github", REPO, "bad-manifest", appFiles("bad", { "scalingo.json": bad }));
    forge.openPull("github", REPO, { number: 9, title: "Bad manifest", headRef: "bad-manifest", headSha: sha });
    await pull("opened", 9, sha, { branch: "bad-manifest" });
    const failed = await reviewApp(9, "failed", 60_000);
    assert.match(failed.error ?? "", /password/);
    assert.match(failed.error ?? "", /adons/);
    assert.equal(failed.url, null);
    assert.doesNotMatch((await p.quai(["apps"])).stdout, /staging-pr9/);
    const comment = forge.commentsOn("github", REPO, 9)[0];
    assert.match(comment?.body ?? "", /password/);
    assert.match((await p.quai(["--app", "staging", "events"])).stdout, /review_app_failed/);
  });

  it("survives a forge answering 500 without making a second review app", async () => {
    const sha = forge.pushCommit("github", REPO, "flaky", appFiles("flaky"));
    forge.openPull("github", REPO, { number: 10, title: "Flaky forge", headRef: "flaky", headSha: sha });
    forge.failNext(6, 500);
    await pull("opened", 10, sha, { branch: "flaky" });
    await pull("opened", 10, sha, { branch: "flaky" });
    await reviewApp(10, "deployed");
    assert.equal((await reviewApps()).filter((r) => r.pr.number === 10).length, 1);
    assert.equal(forge.commentsOn("github", REPO, 10).length, 1);
    assert.equal((await p.get("staging-pr10")).body, "flaky");
  });

  it("queues review apps past the link's limit, and deletes stale ones", async () => {
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--review-apps-limit", "1"])).code, 0);
    const sha = forge.pushCommit("github", REPO, "queued", appFiles("queued"));
    forge.openPull("github", REPO, { number: 11, title: "Queued", headRef: "queued", headSha: sha });
    await pull("opened", 11, sha, { branch: "queued" });
    await reviewApp(11, "queued", 30_000);
    assert.match(forge.commentsOn("github", REPO, 11)[0]?.body ?? "", /queued/);
    // #10 closes: its slot goes to #11.
    forge.closePull("github", REPO, 10);
    const pr10 = forge.repo("github", REPO).pulls.get(10)?.headSha as string;
    await pull("closed", 10, pr10, { branch: "flaky", state: "closed" });
    await reviewApp(10, "deleted", 60_000);
    await reviewApp(11, "deployed");
    assert.equal((await p.get("staging-pr11")).body, "queued");
    assert.equal(forge.commentsOn("github", REPO, 11).length, 1);
    // No activity for longer than the link allows (0 hours here): deleted by the clock.
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--destroy-on-stale", "--hours-before-destroy-on-stale", "0"])).code, 0);
    await reviewApp(11, "deleted", 60_000);
    assert.match((await p.quai(["--app", "staging", "events"])).stdout, /no activity/);
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--no-destroy-on-stale", "--review-apps-limit", "5"])).code, 0);
  });

  it("makes a review app on the quai:review-app label when they are not automatic", async () => {
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--no-deploy-review-apps"])).code, 0);
    const sha = forge.pushCommit("github", REPO, "labeled", appFiles("labeled"));
    forge.openPull("github", REPO, { number: 13, title: "Labeled", headRef: "labeled", headSha: sha });
    assert.equal((await pull("opened", 13, sha, { branch: "labeled" })).status, 202);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await reviewApps()).find((r) => r.pr.number === 13), undefined, "not automatic: nothing made on open");
    const labeled = githubPayload("pull_request", "labeled", { repo: REPO, sha, number: 13, branch: "labeled", title: "PR 13" });
    (labeled.label as Record<string, unknown>).name = "quai:review-app";
    assert.equal((await sendGithubWebhook(hookUrl, "pull_request", labeled, secret)).status, 202);
    await reviewApp(13, "deployed");
    assert.equal((await p.get("staging-pr13")).body, "labeled");
    forge.closePull("github", REPO, 13);
    await pull("closed", 13, sha, { branch: "labeled", state: "closed" });
    await reviewApp(13, "deleted", 60_000);
    assert.equal((await p.quai(["--app", "staging", "integration-link-update", "--deploy-review-apps"])).code, 0);
  });

  it("refuses unsigned, badly signed, replayed, foreign and oversized deliveries", async () => {
    const sha = forge.repo("github", REPO).branches.get("main") as string;
    const payload = githubPayload("push", undefined, { repo: REPO, sha, branch: "main" });
    const unsigned = await sendGithubWebhook(hookUrl, "push", payload, undefined);
    assert.equal(unsigned.status, 401);
    assert.match(JSON.stringify(unsigned.body), /X-Hub-Signature-256/);
    const badSignature = await sendGithubWebhook(hookUrl, "push", payload, "not-the-secret");
    assert.equal(badSignature.status, 401);
    const id = "5b4e0a36-1111-4222-8333-444455556666";
    assert.equal((await sendGithubWebhook(hookUrl, "ping", { zen: "hi", repository: { full_name: REPO } }, secret, id)).status, 202);
    const replay = await sendGithubWebhook(hookUrl, "ping", { zen: "hi", repository: { full_name: REPO } }, secret, id);
    assert.equal(replay.status, 401);
    assert.match(JSON.stringify(replay.body), /replay/);
    const foreign = await sendGithubWebhook(hookUrl, "push", githubPayload("push", undefined, { repo: "someone/else", sha, branch: "main" }), secret);
    assert.equal(foreign.status, 401);
    // The same answer as a bad signature: nobody can probe which repositories are linked.
    assert.equal((JSON.parse(foreign.body) as { message: string }).message, (JSON.parse(badSignature.body) as { message: string }).message);
    // A second app linked to another repository: its secret does not open this repository.
    forge.addRepo("github", "acme/other", pythonWebApp("other"));
    assert.equal((await p.quai(["create", "other"])).code, 0);
    assert.equal((await p.quai(["--app", "other", "integration-link-create", "acme/other"])).code, 0);
    const otherSecret = forge.hooks.find((h) => h.repo === "acme/other")?.secret as string;
    assert.equal((await sendGithubWebhook(hookUrl, "push", payload, otherSecret)).status, 401);
    const huge = JSON.stringify({ ...payload, padding: "x".repeat(10 * 1024 * 1024) });
    assert.equal(await postStatus(hookUrl, huge, { "x-github-event": "push", "x-github-delivery": "huge-1", "x-hub-signature-256": signGithub(huge, secret) }), 413);
    assert.equal((await sendGithubWebhook(hookUrl, "push", "{not json", secret)).status, 400);
    const events = await p.quai(["--app", "staging", "events"]);
    assert.match(events.stdout, /scm_webhook_refused/);
    assert.match(events.stdout, /replay/);
    // Link settings are validated too: a branch is a git branch name, nothing a shell would read.
    const bad = await p.quai(["--app", "staging", "integration-link-update", "--branch", "main;rm -rf /"]);
    assert.equal(bad.code, 65);
    assert.match(bad.stderr, /not a valid git branch/);
  });

  it("deploys a GitLab project's pushes through its own webhook token", async () => {
    forge.addRepo("gitlab", "collectivites/dialog", pythonWebApp("gitlab v1"));
    assert.equal((await p.quai(["create", "dialog"])).code, 0);
    assert.equal((await p.quai(["integrations-add", "gitlab-self-hosted", "--url", forge.gitlabUrl, "--token", TOKEN])).code, 0);
    const link = await p.quai(["--app", "dialog", "integration-link-create", "https://gitlab.example/collectivites/dialog", "--integration", "gitlab-self-hosted", "--auto-deploy", "--deploy-review-apps"]);
    assert.equal(link.code, 0, link.stderr);
    const hook = forge.hooks.find((h) => h.kind === "gitlab" && !h.deleted);
    assert.ok(hook?.secret);
    const sha = forge.pushCommit("gitlab", "collectivites/dialog", "main", pythonWebApp("gitlab v2"));
    forge.setCheck("gitlab", "collectivites/dialog", sha, "test", "success", "status");
    const payload = gitlabPayload("push", { repo: "collectivites/dialog", sha, branch: "main" });
    assert.equal((await sendGitlabWebhook(hook.url, "Push Hook", payload, "wrong")).status, 401);
    assert.equal((await sendGitlabWebhook(hook.url, "Push Hook", payload, hook.secret)).status, 202);
    await until("dialog serving gitlab v2", async () => ((await p.get("dialog")).body === "gitlab v2" ? true : undefined), 120_000, 500);
    await until("quai/deploy success on GitLab", async () => (forge.statuses.filter((s) => s.sha === sha && s.context === "quai/deploy").at(-1)?.state === "success" ? true : undefined), 30_000, 200);

    // A merge request gets its review app, with a note on it; merging deletes the app.
    const mrSha = forge.pushCommit("gitlab", "collectivites/dialog", "feature-arretes", pythonWebApp("gitlab review"));
    forge.openPull("gitlab", "collectivites/dialog", { number: 3, title: "Arrêtés", headRef: "feature-arretes", headSha: mrSha });
    const open = gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: mrSha, iid: 3, action: "open", state: "opened", branch: "feature-arretes" });
    assert.equal((await sendGitlabWebhook(hook.url, "Merge Request Hook", open, hook.secret)).status, 202);
    const listed = async () => JSON.parse((await p.quai(["--app", "dialog", "--json", "review-apps"])).stdout) as ReviewAppJson[];
    await until("the GitLab review app deployed", async () => (await listed()).find((r) => r.pr.number === 3 && r.status === "deployed"), 180_000, 500);
    assert.equal((await p.get("dialog-pr3")).body, "gitlab review");
    assert.equal(forge.commentsOn("gitlab", "collectivites/dialog", 3).length, 1);
    forge.closePull("gitlab", "collectivites/dialog", 3, { merged: true });
    const merged = gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: mrSha, iid: 3, action: "merge", state: "merged", branch: "feature-arretes" });
    assert.equal((await sendGitlabWebhook(hook.url, "Merge Request Hook", merged, hook.secret)).status, 202);
    await until("the GitLab review app deleted", async () => (await listed()).find((r) => r.pr.number === 3 && r.status === "deleted"), 60_000, 500);
    assert.equal((await p.get("dialog-pr3")).status, 404);
  });
});
