import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { factProblem, githubSignature, payloadRepo, readFact, safeEqual, signatureMatches } from "./webhooks.ts";
import { githubPayload, gitlabPayload } from "../testing/webhooks.ts";

const SHA = "a".repeat(40);
const SHA2 = "b".repeat(40);

describe("webhook payloads", () => {
  it("reads GitHub's real push, pull_request, check and status payloads", () => {
    const push = githubPayload("push", undefined, { repo: "acme/histo", sha: SHA, branch: "main" });
    assert.equal(payloadRepo("github", push), "acme/histo");
    assert.deepEqual(readFact("github", "push", push), { kind: "push", branch: "main", sha: SHA, deleted: false });
    const deleted = githubPayload("push", undefined, { repo: "acme/histo", before: SHA, branch: "old", deleted: true });
    assert.equal((readFact("github", "push", deleted) as { deleted: boolean }).deleted, true);
    const tag = githubPayload("push", undefined, { repo: "acme/histo", sha: SHA, ref: "refs/tags/v1" });
    assert.equal(readFact("github", "push", tag).kind, "ignored");
    for (const action of ["opened", "reopened", "synchronize", "closed", "labeled"]) {
      const pr = githubPayload("pull_request", action, { repo: "acme/histo", sha: SHA, number: 42, title: "<b>x</b>", branch: "feature/a" });
      const fact = readFact("github", "pull_request", pr);
      assert.equal(fact.kind, "pull");
      if (fact.kind !== "pull") continue;
      assert.equal(fact.action, action);
      assert.equal(fact.pr.number, 42);
      assert.equal(fact.pr.headSha, SHA);
      assert.equal(fact.pr.headRef, "feature/a");
      assert.equal(fact.pr.title, "<b>x</b>");
      assert.equal(fact.pr.fromFork, false);
    }
    const fork = readFact("github", "pull_request", githubPayload("pull_request", "opened", { repo: "acme/histo", sha: SHA, number: 3, headRepo: "mallory/histo" }));
    assert.equal(fork.kind === "pull" && fork.pr.fromFork, true);
    assert.deepEqual(readFact("github", "check_run", githubPayload("check_run", "completed", { repo: "acme/histo", sha: SHA2 })), { kind: "checks", sha: SHA2 });
    assert.deepEqual(readFact("github", "check_suite", githubPayload("check_suite", "completed", { repo: "acme/histo", sha: SHA2 })), { kind: "checks", sha: SHA2 });
    assert.deepEqual(readFact("github", "status", githubPayload("status", undefined, { repo: "acme/histo", sha: SHA2 })), { kind: "checks", sha: SHA2 });
    assert.equal(readFact("github", "issues", {}).kind, "ignored");
  });

  it("reads GitLab's documented Push Hook and Merge Request Hook", () => {
    const push = gitlabPayload("push", { repo: "collectivites/dialog", sha: SHA, branch: "main" });
    assert.equal(payloadRepo("gitlab", push), "collectivites/dialog");
    assert.deepEqual(readFact("gitlab", "Push Hook", push), { kind: "push", branch: "main", sha: SHA, deleted: false });
    const open = readFact("gitlab", "Merge Request Hook", gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: SHA, iid: 5, action: "open", branch: "feat" }));
    assert.equal(open.kind === "pull" && open.action, "opened");
    assert.equal(open.kind === "pull" && open.pr.number, 5);
    const update = readFact("gitlab", "Merge Request Hook", gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: SHA2, iid: 5, action: "update", oldrev: SHA }));
    assert.equal(update.kind === "pull" && update.action, "synchronize");
    const retitled = readFact("gitlab", "Merge Request Hook", gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: SHA2, iid: 5, action: "update" }));
    assert.equal(retitled.kind === "pull" && retitled.action, "other", "an update without new commits is not a push");
    const merged = readFact("gitlab", "Merge Request Hook", gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: SHA2, iid: 5, action: "merge", state: "merged" }));
    assert.equal(merged.kind === "pull" && merged.action, "closed");
    const fork = readFact("gitlab", "Merge Request Hook", gitlabPayload("merge_request", { repo: "collectivites/dialog", sha: SHA, iid: 6, action: "open", sourceProjectId: 999, sourceRepo: "mallory/dialog" }));
    assert.equal(fork.kind === "pull" && fork.pr.fromFork, true);
  });

  it("refuses facts without full commit ids", () => {
    assert.match(factProblem({ kind: "push", branch: "main", sha: "abc", deleted: false }) ?? "", /commit/);
    assert.match(factProblem({ kind: "checks", sha: "$(reboot)" }) ?? "", /commit/);
    assert.equal(factProblem({ kind: "push", branch: "main", sha: SHA, deleted: false }), undefined);
  });

  it("checks signatures in constant time, refusing near misses", () => {
    const body = Buffer.from('{"zen":"hi"}');
    const good = githubSignature(body, "s3cret");
    assert.equal(signatureMatches("github", body, good, "s3cret"), true);
    assert.equal(signatureMatches("github", body, good, "s3cre"), false);
    assert.equal(signatureMatches("github", body, good.slice(0, -1), "s3cret"), false);
    assert.equal(signatureMatches("github", Buffer.from('{"zen":"ho"}'), good, "s3cret"), false);
    assert.equal(signatureMatches("gitlab", body, "tok", "tok"), true);
    assert.equal(signatureMatches("gitlab", body, "tok2", "tok"), false);
    assert.equal(safeEqual("", ""), true);
    assert.equal(safeEqual("a", ""), false);
  });
});
