// The CI gate on a real store and the fake forge, without the deploy pipeline: a push whose checks
// never finish times out with a status and an event, a forge that is down only delays the verdict,
// the same push delivered twice waits once, and a failed check blocks it. Nothing here may
// deploy: the deployments stand-in throws if asked.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testDb, type TestDb } from "../testing/db.ts";
import { FakeForge } from "../testing/forge.ts";
import { ensureUser, type Actor } from "../auth/service.ts";
import { createApp } from "../apps/service.ts";
import { Keyring } from "../variables/keyring.ts";
import { rotateMasterKey } from "../variables/service.ts";
import type { Deployments } from "../deployments/service.ts";
import { Scm } from "./service.ts";
import { BranchDeploys } from "./deploys.ts";

const REPO = "acme/gate";

describe("CI gate of a linked branch", () => {
  let store: TestDb;
  let dir: string;
  let actor: Actor;
  let forge: FakeForge;
  let scm: Scm;
  let deploys: BranchDeploys;
  let linkId: string;
  let keyring: Keyring;

  before(async () => {
    store = await testDb();
    dir = await mkdtemp(join(tmpdir(), "quai-gate-"));
    forge = await new FakeForge({ token: "t" }).start();
    ({ user: actor } = await ensureUser(store.db, "gate@quai.test", "owner"));
    await createApp(store.db, actor, "gate-app", { domain: "quai.test" });
    keyring = await Keyring.open(join(dir, "master.json"));
    scm = new Scm({ db: store.db, keyring, log: () => {}, apiUrl: () => "http://127.0.0.1:1", forgeBackoffMs: 5, forgeAttempts: 2, forgeTimeoutMs: 2000 });
    const refuse = { create: async () => Promise.reject(new Error("the gate must not deploy here")) } as unknown as Deployments;
    deploys = new BranchDeploys(scm, { deployments: refuse, appUrl: (n) => `http://${n}.quai.test` });
    scm.deploys = deploys;
    forge.addRepo("github", REPO, { "index.js": "1" });
    const integration = await scm.addIntegration(actor, { scm_type: "github-enterprise", url: forge.githubUrl, access_token: "t" });
    linkId = (await scm.createLink(actor, "gate-app", { source: REPO, auth_integration_uuid: integration.id, auto_deploy_enabled: true, ci_timeout_minutes: 5 })).id;
  });
  after(async () => {
    await scm?.close();
    await forge?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const row = async (sha: string) => store.db.selectFrom("scm_branch_deploys").selectAll().where("sha", "=", sha).execute();
  const events = async (type: string) => store.db.selectFrom("events").select("type_data").where("type", "=", type).execute();

  it("waits once for a push delivered twice, through a forge outage, then times out with a status and an event", async () => {
    const sha = forge.pushCommit("github", REPO, "main", { "index.js": "2" });
    forge.setCheck("github", REPO, sha, "ci/test", "pending", "status");
    await deploys.start(linkId, "main", sha, false);
    await deploys.start(linkId, "main", sha, false);
    const rows = await row(sha);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.status, "waiting");
    // The forge is down for this look: still waiting, no verdict from a failure to ask.
    forge.failNext(4, 503);
    assert.equal((await deploys.evaluate(rows[0]?.id as string))?.status, "waiting");
    // The deadline passes (moved back instead of waiting five minutes).
    await store.db.updateTable("scm_branch_deploys").set({ deadline: new Date(Date.now() - 1000) }).where("sha", "=", sha).execute();
    const ended = await deploys.evaluate(rows[0]?.id as string);
    assert.equal(ended?.status, "timeout");
    assert.match(ended?.reason ?? "", /did not finish within 5 minutes \(still pending: ci\/test\)/);
    const last = forge.statuses.filter((s) => s.sha === sha && s.context === "quai/deploy").at(-1);
    assert.equal(last?.state, "error");
    assert.match(last?.description ?? "", /not deployed/);
    assert.equal((await events("scm_deploy_timeout")).length, 1);
    // A later check webhook for that commit changes nothing.
    forge.setCheck("github", REPO, sha, "ci/test", "success", "status");
    await deploys.evaluateSha(linkId, sha);
    assert.equal((await row(sha))[0]?.status, "timeout");
  });

  it("still reaches the forge after a master key rotation (the token and webhook secret are re-sealed)", async () => {
    const rotated = await rotateMasterKey(store.db, keyring);
    const link = await store.db.selectFrom("scm_repo_links").selectAll().where("id", "=", linkId).executeTakeFirstOrThrow();
    assert.equal(link.webhook_secret_key_id, rotated.keyId);
    assert.match(keyring.open({ keyId: link.webhook_secret_key_id, data: link.webhook_secret_enc }, `scm-webhook:${link.id}`), /^[0-9a-f]{64}$/);
    const branches = await (await scm.forgeOf(link)).branches({ owner: "acme", name: "gate" });
    assert.ok(branches.some((b) => b.name === "main"));
  });

  it("blocks on a failed check run even with a required list naming another, and says which", async () => {
    await scm.updateLink(actor, "gate-app", { required_checks: ["build", "quai/deploy"] });
    const sha = forge.pushCommit("github", REPO, "main", { "index.js": "3" });
    forge.setCheck("github", REPO, sha, "build", "failure", "check_run");
    forge.setCheck("github", REPO, sha, "docs", "failure", "check_run");
    const blocked = await deploys.start(linkId, "main", sha, false);
    assert.equal(blocked?.status, "blocked");
    assert.equal(blocked?.reason, "CI failed: build");
    const sha2 = forge.pushCommit("github", REPO, "main", { "index.js": "4" });
    forge.setCheck("github", REPO, sha2, "docs", "failure", "check_run");
    // `docs` is not required: only `build` (not reported yet) is waited for.
    assert.equal((await deploys.start(linkId, "main", sha2, false))?.status, "waiting");
  });
});
