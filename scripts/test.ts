// `npm test`: typecheck, lint, then every test file with a shared throwaway PostgreSQL cluster.
// Ends with the line `N passed, N failed` (typecheck and lint count as one check each).
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { globSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EmbeddedPostgres } from "../src/store/embedded-postgres.ts";

const root = new URL("..", import.meta.url).pathname;
const onlyFiles = process.argv.slice(2);

function step(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd: root, stdio: "inherit", env });
    child.on("close", (code) => resolvePromise(code ?? 1));
  });
}

let passed = 0;
let failed = 0;
const failures: string[] = [];
const check = (name: string, ok: boolean) => {
  if (ok) passed++;
  else {
    failed++;
    failures.push(name);
  }
};

if (onlyFiles.length === 0) {
  console.log("== typecheck (tsc --noEmit)");
  check("typecheck", (await step(join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.json", "--noEmit"])) === 0);
  console.log("== lint (eslint)");
  check("lint", (await step(join(root, "node_modules/.bin/eslint"), ["--max-warnings", "0", "."])) === 0);
}

const pgDir = await mkdtemp(join(tmpdir(), "quai-test-cluster-"));
const cluster = new EmbeddedPostgres({ dir: pgDir, durable: false, database: "postgres" });
const summaryFile = join(pgDir, "summary.json");
try {
  const url = await cluster.start();
  const files = onlyFiles.length > 0 ? onlyFiles : globSync(["src/**/*.test.ts", "test/**/*.test.ts"], { cwd: root }).sort();
  console.log(`== tests (${files.length} files)`);
  await step(process.execPath, [
    "--test",
    "--test-concurrency=3",
    "--test-timeout=300000",
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    `--test-reporter=${join(root, "scripts/summary-reporter.ts")}`,
    `--test-reporter-destination=${summaryFile}`,
    ...files,
  ], { ...process.env, QUAI_TEST_PG_URL: url, QUAI_PG_FSYNC: "off" });
  const summary = JSON.parse(await readFile(summaryFile, "utf8")) as { passed: number; failed: number; skipped: number; failures: string[] };
  passed += summary.passed;
  failed += summary.failed;
  failures.push(...summary.failures);
  if (summary.passed + summary.failed === 0) check("at least one test ran", false);
} catch (err) {
  check(`test run: ${(err as Error).message}`, false);
} finally {
  await cluster.stop();
  await rm(pgDir, { recursive: true, force: true });
}

if (failures.length > 0) {
  console.log("\nFailed:");
  for (const f of failures) console.log(`  - ${f}`);
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
