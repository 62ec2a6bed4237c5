import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { decide } from "./gate.ts";
import type { Check } from "./forge.ts";

const check = (name: string, state: Check["state"], kind: Check["kind"] = "check_run"): Check => ({ name, state, kind });

describe("CI gate", () => {
  it("waits while any check is pending, deploys when all passed", () => {
    assert.deepEqual(decide([check("test", "pending"), check("lint", "success")], null), { verdict: "wait", pending: ["test"] });
    assert.deepEqual(decide([check("test", "success"), check("ci/circleci", "success", "status")], null), { verdict: "deploy", passed: ["ci/circleci", "test"] });
  });
  it("gives up as soon as one check failed, even with others pending", () => {
    assert.deepEqual(decide([check("test", "failure"), check("e2e", "pending")], null), { verdict: "blocked", failed: ["test"] });
  });
  it("never waits for Quai's own statuses, pending or failed", () => {
    assert.deepEqual(decide([check("quai/deploy", "pending", "status"), check("quai/review-app", "failure", "status"), check("test", "success")], null), { verdict: "deploy", passed: ["test"] });
    // Even when a team lists Quai's context among the required ones (to protect the branch).
    assert.deepEqual(decide([check("test", "success")], ["test", "quai/deploy"]), { verdict: "deploy", passed: ["test"] });
  });
  it("with an explicit list, waits for a required check not reported yet and ignores the others", () => {
    assert.deepEqual(decide([check("lint", "failure")], ["test"]), { verdict: "wait", pending: ["test"] });
    assert.deepEqual(decide([check("lint", "failure"), check("test", "success")], ["test"]), { verdict: "deploy", passed: ["test"] });
  });
  it("deploys a commit with no CI at all", () => {
    assert.deepEqual(decide([], null), { verdict: "deploy", passed: [] });
  });
});
