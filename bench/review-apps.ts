// Review-app latency: from the `pull_request opened` webhook to the review app answering 200 with a
// fresh PostgreSQL, against the floor measured in the same run on the same platform: a git push of
// the same code to a new app until it answers, plus provisioning a PostgreSQL add-on by hand first.
// Target: within 1.2× of that floor.
import { cpus, loadavg } from "node:os";
import { FakeForge } from "../src/testing/forge.ts";
import { githubPayload, sendGithubWebhook } from "../src/testing/webhooks.ts";
import { gitApp, pythonWebApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

const TARGET = 1.2;
const ROUNDS = 3;
const TOKEN = "bench-forge-token";
const REPO = "bench/histo";

const log = (line: string) => process.stderr.write(`${line}\n`);

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Polls the router until `app` answers 200 with `body`; returns the time it did, in ms. */
async function answered(p: TestPlatform, app: string, body: string, deadlineMs = 300_000): Promise<number> {
  const end = performance.now() + deadlineMs;
  for (;;) {
    const r = await p.get(app).catch(() => undefined);
    if (r?.status === 200 && r.body === body) return performance.now();
    if (performance.now() > end) throw new Error(`${app} did not answer within ${deadlineMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function benchReviewApps(): Promise<void> {
  console.log(`\n== review apps: pull_request opened → review app answering 200 with a fresh PostgreSQL (median of ${ROUNDS})`);
  const load = loadavg()[0] ?? 0;
  const forge = await new FakeForge({ token: TOKEN }).start();
  let p: TestPlatform | undefined;
  try {
    p = await startPlatform({ QUAI_SCM_TICK_SECONDS: "1" });
    const files = (body: string) => ({ ...pythonWebApp(body), "scalingo.json": JSON.stringify({ addons: ["postgresql:postgresql-sandbox"] }) });
    forge.addRepo("github", REPO, files("main"));
    const must = async (args: string[]) => {
      const r = await (p as TestPlatform).quai(args);
      if (r.code !== 0) throw new Error(`quai ${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    await must(["create", "bench-parent"]);
    await must(["integrations-add", "github-enterprise", "--url", forge.githubUrl, "--token", TOKEN]);
    await must(["--app", "bench-parent", "integration-link-create", REPO, "--deploy-review-apps", "--review-apps-limit", "20"]);
    const hook = forge.hooks.find((h) => !h.deleted);
    if (!hook?.secret) throw new Error("no webhook registered");

    const floor: number[] = [];
    const review: number[] = [];
    const pushes: number[] = [];
    const provisions: number[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      // The floor, by hand in the review app's order: a PostgreSQL add-on on a new app (no release
      // yet, so no config release), then the first push of the same code until it answers.
      const name = `bench-push-${i}`;
      await must(["create", name]);
      const dir = await gitApp(files(`push ${i}`));
      const t1 = performance.now();
      await must(["--app", name, "addons-add", "postgresql", "postgresql-sandbox"]);
      const provision = performance.now() - t1;
      const t0 = performance.now();
      const pushed = await p.push(name, dir);
      if (pushed.code !== 0) throw new Error(`push failed: ${pushed.stderr}`);
      const live = (await answered(p, name, `push ${i}`)) - t0;
      pushes.push(live);
      provisions.push(provision);
      floor.push(live + provision);

      // The review app: the webhook, then the app answering.
      const sha = forge.pushCommit("github", REPO, `feature-${i}`, files(`review ${i}`));
      forge.openPull("github", REPO, { number: i, title: `Bench ${i}`, headRef: `feature-${i}`, headSha: sha });
      const t2 = performance.now();
      const res = await sendGithubWebhook(hook.url, "pull_request", githubPayload("pull_request", "opened", { repo: REPO, sha, number: i, branch: `feature-${i}` }), hook.secret);
      if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${res.body}`);
      review.push((await answered(p, `bench-parent-pr${i}`, `review ${i}`)) - t2);
      log(`bench: round ${i}: push→live ${(live / 1000).toFixed(2)} s + PostgreSQL ${(provision / 1000).toFixed(2)} s; review app ${((review.at(-1) as number) / 1000).toFixed(2)} s`);
    }
    const ratio = median(review) / median(floor);
    const s = (ms: number) => (ms / 1000).toFixed(2);
    console.log(`push→live ${s(median(pushes))} s + PostgreSQL provisioning ${s(median(provisions))} s = floor ${s(median(floor))} s`);
    console.log(`webhook→review app 200 ${s(median(review))} s; ratio ${ratio.toFixed(2)}x (target ≤ ${TARGET}x): ${ratio <= TARGET ? "PASS" : "MISS"}`);
    console.log(`(Node.js ${process.version}, ${cpus().length} CPUs, load average ${load.toFixed(1)} at start, ${(loadavg()[0] ?? 0).toFixed(1)} at end)`);
  } finally {
    await p?.close();
    await forge.close();
  }
}
