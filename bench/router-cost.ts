// Router cost, counted rather than timed: the user-space instructions one nginx worker executes
// per proxied request, under valgrind's callgrind, for the bare hand-written proxy, the same proxy
// setting the required request headers, and Quai's rendered config (ADR 0022). Throughput on a
// shared 2-CPU machine moves by several percent from run to run; these counts repeat within a
// fraction of a percent, so a change to the router's config shows here first.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../src/core/net.ts";
import { errorPages, renderNginxConf } from "../src/router/render.ts";
import { answers200, startBenchBackend } from "./backend.ts";
import { runLoadInWorker } from "./load.ts";
import { handWrittenConf } from "./router.ts";

/** Requests of the short and the long run: their difference cancels nginx's start and stop. */
const FEW = 500;
const MANY = 2_500;

/** One config's count. */
export interface RouterCostRow {
  name: "hand-nginx" | "hand-nginx-headers" | "quai-nginx";
  instructionsPerRequest: number;
}

/**
 * Runs nginx (one process: no master, no separate worker) under callgrind on `conf`, sends it
 * `requests` requests from 10 keep-alive clients, stops it and returns the instructions it ran.
 */
async function countRun(valgrind: string, nginx: string, dir: string, conf: string, port: number, requests: number): Promise<number> {
  const file = join(dir, "nginx.conf");
  const out = join(dir, `callgrind-${requests}.out`);
  await writeFile(file, conf);
  const child = spawn(valgrind, ["--tool=callgrind", `--callgrind-out-file=${out}`, nginx, "-p", `${dir}/`, "-c", file, "-g", "daemon off; master_process off;"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  try {
    let up = false;
    for (let i = 0; i < 600 && !up && child.exitCode === null; i++) {
      up = await answers200((cb) => http.get({ host: "127.0.0.1", port, path: "/", agent: false }, cb));
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    if (!up) throw new Error(`nginx under callgrind did not answer on port ${port}: ${stderr.trim().slice(-500)}`);
    await runLoadInWorker({ origin: `http://127.0.0.1:${port}`, scenario: { kind: "get", path: "/" }, warmup: 0, requests, concurrency: 10 });
  } finally {
    if (child.exitCode === null) {
      child.kill("SIGQUIT");
      await once(child, "exit");
    }
  }
  const totals = /^(?:summary|totals): (\d+)/m.exec(await readFile(out, "utf8"));
  if (!totals) throw new Error(`no instruction total in ${out}`);
  return Number(totals[1]);
}

/** Counts each config, prints the table and returns the figures; undefined when valgrind is missing. */
export async function benchRouterCost(opts: { nginx?: string; valgrind?: string } = {}): Promise<RouterCostRow[] | undefined> {
  const nginx = opts.nginx ?? "/usr/sbin/nginx";
  const valgrind = opts.valgrind ?? "/usr/bin/valgrind";
  if (!existsSync(valgrind)) {
    console.log("\nRouter cost: skipped (valgrind is not installed; `npm run bench` installs it).");
    return undefined;
  }
  const root = await mkdtemp(join(tmpdir(), "quai-bench-router-cost-"));
  const backend = await startBenchBackend("hello from the backend\n");
  try {
    const configs: { name: RouterCostRow["name"]; conf: (dir: string, port: number) => Promise<string> }[] = [
      { name: "hand-nginx", conf: async (dir, port) => handWrittenConf(dir, port, backend.port, false) },
      { name: "hand-nginx-headers", conf: async (dir, port) => handWrittenConf(dir, port, backend.port, true) },
      {
        name: "quai-nginx",
        conf: async (dir, port) => {
          const html = join(dir, "html");
          await mkdir(html, { recursive: true });
          for (const [page, text] of Object.entries(errorPages())) await writeFile(join(html, page), text);
          await mkdir(join(dir, "logs"), { recursive: true });
          await mkdir(join(dir, "temp"), { recursive: true });
          const state = { domain: "localhost", apps: [{ name: "bench", hostnames: ["127.0.0.1"], backends: [{ host: "127.0.0.1", port: backend.port }], accessLog: join(dir, "logs", "bench.log") }] };
          return renderNginxConf(state, {
            prefix: dir,
            listen: { host: "127.0.0.1", port },
            statusPort: await freePort(),
            workers: 1,
            generation: 1,
            errorPagesDir: html,
            pidFile: join(dir, "nginx.pid"),
            errorLog: join(dir, "logs", "error.log"),
            accessLog: join(dir, "logs", "access.log"),
            tempDir: join(dir, "temp"),
          });
        },
      },
    ];
    const rows: RouterCostRow[] = [];
    for (const c of configs) {
      const counts: number[] = [];
      for (const requests of [FEW, MANY]) {
        const dir = join(root, `${c.name}-${requests}`);
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o755);
        const port = await freePort();
        counts.push(await countRun(valgrind, nginx, dir, await c.conf(dir, port), port, requests));
      }
      rows.push({ name: c.name, instructionsPerRequest: ((counts[1] as number) - (counts[0] as number)) / (MANY - FEW) });
    }
    const bare = rows[0]?.instructionsPerRequest ?? NaN;
    console.log(
      `\nRouter cost: user-space instructions per proxied request, one nginx process under callgrind,` +
        `\n(${MANY} requests − ${FEW} requests) ÷ ${MANY - FEW}, 10 keep-alive clients; no target: the steady figure behind the throughput ratios.\n`,
    );
    const width = Math.max(...rows.map((r) => r.name.length));
    console.log(`${"config".padEnd(width)}  instructions  × bare\n${"-".repeat(width)}  ------------  ------`);
    for (const r of rows) console.log(`${r.name.padEnd(width)}  ${r.instructionsPerRequest.toFixed(0).padStart(12)}  ${(r.instructionsPerRequest / bare).toFixed(3).padStart(5)}x`);
    return rows;
  } finally {
    backend.close();
    await rm(root, { recursive: true, force: true });
  }
}
