// `npm run bench`: API latency under load (on a durable embedded PostgreSQL holding 1,000 apps),
// then the deploy pipeline (bench/deploy.ts). Each benchmark prints its figures against a baseline
// measured in the same run and the target. `node bench/run.ts deploy sandbox` runs only those named
// (api, deploy, redeploy-load, router, router-cost, tls, sandbox, addons, addon-backups, review-apps).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, cpus } from "node:os";
import { join } from "node:path";
import { sql } from "kysely";
import type { FastifyInstance } from "fastify";
import { EmbeddedPostgres } from "../src/store/embedded-postgres.ts";
import { migrate, openDb, type Db } from "../src/store/db.ts";
import { Keyring } from "../src/variables/keyring.ts";
import { buildApi } from "../src/server/api.ts";
import { createApiToken, ensureUser, exchangeToken } from "../src/auth/service.ts";
import { runLoadInWorker, type LoadResult, type Scenario } from "./load.ts";
import { benchDeployTimes, benchRedeployLoad, benchSandbox, closeDeployBenches } from "./deploy.ts";
import { benchRouter } from "./router.ts";
import { benchAddonProvisioning, benchPostgresBackups } from "./addons.ts";
import { benchTls } from "./tls.ts";
import { benchReviewApps } from "./review-apps.ts";
import { benchRouterCost } from "./router-cost.ts";

const APPS = 1000;
const CONCURRENCY = 10;
const WARMUP = 300;
const REQUESTS = 3000;
const TARGET_P99_MS = 50;
const VARIABLES = ["DATABASE_URL", "REDIS_URL", "SECRET_KEY_BASE", "LOG_LEVEL", "FEATURE_FLAGS"];

interface Row {
  name: string;
  requests: number;
  p50: number;
  p99: number;
  mean: number;
  rps: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number;
}

function summarise(name: string, r: LoadResult): Row {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  return { name, requests: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), mean, rps: sorted.length / (r.wallMs / 1000) };
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  // First column left-aligned (names), the others right-aligned (figures).
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Inserts `count` apps owned by `ownerId` in one statement (names satisfy the apps.name CHECK). */
async function seedApps(db: Db, ownerId: string, count: number): Promise<string[]> {
  await sql`INSERT INTO apps (name, owner_id) SELECT 'bench-app-' || lpad(i::text, 4, '0'), ${ownerId}::uuid FROM generate_series(1, ${count}::int) AS i`.execute(db);
  const rows = await db.selectFrom("apps").select("name").orderBy("name").execute();
  return rows.map((r) => r.name);
}

const log = (line: string) => process.stderr.write(`${line}\n`);

const dir = await mkdtemp(join(tmpdir(), "quai-bench-"));
let cleaned = false;
// The pool's end() resolves before its backends have exited, so stopping the cluster right after
// logs "terminating connection due to administrator command": expected then, not worth printing.
const pgServer = new EmbeddedPostgres({ dir: join(dir, "postgres"), durable: true, log: (l) => { if (!cleaned) log(l); } });
let db: Db | undefined;
let api: FastifyInstance | undefined;
async function cleanupApi(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  await api?.close().catch(() => {});
  await db?.destroy().catch(() => {});
  await pgServer.stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
async function cleanup(): Promise<void> {
  await cleanupApi();
  await closeDeployBenches();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`bench: ${signal}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** API latency under load; stops its database when done so the next benchmarks run on a quiet machine. */
async function benchApi(): Promise<void> {
  try {
    const started = performance.now();
    log("bench: starting a durable embedded PostgreSQL");
    const databaseUrl = await pgServer.start();
    db = openDb(databaseUrl);
    await migrate(db);
    const keyring = await Keyring.open(join(dir, "master.json"));
    const { user } = await ensureUser(db, "bench@quai.test", "owner");
    const { token: apiToken } = await createApiToken(db, user, "bench");
    const { token: bearer } = await exchangeToken(db, apiToken, 3600);
    const apps = await seedApps(db, user.id, APPS);
    const pgVersion = (await sql<{ server_version: string }>`SHOW server_version`.execute(db)).rows[0]?.server_version ?? "?";

    let apiUrl = "";
    api = await buildApi({
      db,
      keyring,
      domain: "quai.bench",
      bearerTtlSeconds: 3600,
      bodyLimitBytes: 4 * 1024 * 1024,
      platform: () => ({ version: "bench", domain: "quai.bench", api_url: apiUrl, router: { http: null, https: null }, git: { http: null, ssh: null } }),
      log,
    });
    apiUrl = await api.listen({ host: "127.0.0.1", port: 0 });
    log(`bench: ${apps.length} apps, API on ${apiUrl}; ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const scenarios: { name: string; scenario: Scenario }[] = [
      { name: "GET /v1/health (baseline)", scenario: { kind: "get", path: "/v1/health" } },
      { name: "GET /v1/apps", scenario: { kind: "get", path: "/v1/apps", bearer } },
      { name: `PUT /v1/apps/:app/variables (${VARIABLES.length} vars)`, scenario: { kind: "put-variables", apps, variables: VARIABLES, bearer } },
    ];
    const rows: Row[] = [];
    for (const s of scenarios) {
      const t0 = performance.now();
      const result = await runLoadInWorker({ origin: apiUrl, scenario: s.scenario, warmup: WARMUP, requests: REQUESTS, concurrency: CONCURRENCY });
      rows.push(summarise(s.name, result));
      log(`bench: ${s.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }

    const baseline = rows[0]!;
    const ms = (v: number) => v.toFixed(2);
    console.log(
      `\nQuai API latency: ${APPS} apps, ${CONCURRENCY} concurrent keep-alive clients, ${REQUESTS} requests per endpoint after ${WARMUP} warm-up;` +
        `\nNode.js ${process.version}, PostgreSQL ${pgVersion} (durable: fsync on), ${cpus().length} CPUs; load generator in a worker thread.\n`,
    );
    console.log(
      table(
        ["endpoint", "requests", "p50 ms", "p99 ms", "mean ms", "req/s", "p99 / health", `p99 < ${TARGET_P99_MS} ms`],
        rows.map((r) => [
          r.name,
          String(r.requests),
          ms(r.p50),
          ms(r.p99),
          ms(r.mean),
          r.rps.toFixed(0),
          `${(r.p99 / baseline.p99).toFixed(2)}x`,
          r.p99 < TARGET_P99_MS ? "PASS" : "MISS",
        ]),
      ),
    );
    console.log(`\nTotal ${((performance.now() - started) / 1000).toFixed(1)} s. Target: p99 under ${TARGET_P99_MS} ms (MISS is reported, not an error).`);
  } finally {
    await cleanupApi();
  }
}

const benchmarks: { name: string; run: () => Promise<unknown> }[] = [
  { name: "api", run: benchApi },
  { name: "deploy", run: () => benchDeployTimes() },
  { name: "redeploy-load", run: () => benchRedeployLoad() },
  { name: "router", run: () => benchRouter() },
  { name: "router-cost", run: () => benchRouterCost() },
  { name: "tls", run: () => benchTls() },
  { name: "sandbox", run: () => benchSandbox() },
  { name: "addons", run: () => benchAddonProvisioning() },
  { name: "addon-backups", run: () => benchPostgresBackups() },
  { name: "review-apps", run: () => benchReviewApps() },
];
const chosen = process.argv.slice(2);
const unknown = chosen.filter((n) => !benchmarks.some((b) => b.name === n));
if (unknown.length > 0) {
  log(`bench: unknown benchmark ${unknown.join(", ")}; choose from ${benchmarks.map((b) => b.name).join(", ")}`);
  process.exit(64);
}

// One benchmark failing does not hide the others' figures; the exit code says it failed.
let exitCode = 0;
const started = performance.now();
for (const b of benchmarks) {
  if (chosen.length > 0 && !chosen.includes(b.name)) continue;
  try {
    await b.run();
  } catch (err) {
    exitCode = 1;
    log(`bench: ${b.name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
await cleanup();
console.log(`\nAll benchmarks: ${((performance.now() - started) / 1000).toFixed(1)} s (MISS is reported, not an error; a failed benchmark is).`);
process.exit(exitCode);
