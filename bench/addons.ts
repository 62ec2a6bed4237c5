// Add-on benchmarks: provisioning time per engine against starting the same server by hand,
// backup and restore of a PostgreSQL database (1 GB by default; QUAI_BENCH_PG_MB) against raw
// pg_dump / pg_restore of the same data, and a point-in-time restore of that database.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { run } from "../src/core/run.ts";
import { addonPortRange, freePort } from "../src/core/net.ts";
import { canConnect, startDetached, stopDetached, unprivileged } from "../src/addons/process.ts";
import { postgresBinDir } from "../src/store/embedded-postgres.ts";
import { EngineHarness } from "../src/testing/addons.ts";
import { PostgresqlEngine } from "../src/addons/engines/postgresql.ts";
import { MysqlEngine } from "../src/addons/engines/mysql.ts";
import { RedisEngine } from "../src/addons/engines/redis.ts";
import type { AddonEngine, EngineContext, ServerProcess } from "../src/addons/engine.ts";
import { withPgClient } from "../src/addons/engines/postgresql.ts";

const log = (line: string) => process.stderr.write(`${line}\n`);
const seconds = (ms: number) => (ms / 1000).toFixed(2);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function print(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log([line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n"));
}

/** Provision + start of each engine (median of 3), against the server started by hand. */
export async function benchAddonProvisioning(): Promise<void> {
  console.log("\n== add-on provisioning (provision + start until an authenticated connection works; median of 3)");
  const targets: Record<string, number> = { postgresql: 3000, mysql: 3000, redis: 500 };
  const rows: string[][] = [];
  const engines: [string, (ctx: EngineContext) => AddonEngine][] = [
    ["postgresql", (ctx) => new PostgresqlEngine(ctx)],
    ["mysql", (ctx) => new MysqlEngine(ctx)],
    ["redis", (ctx) => new RedisEngine(ctx)],
  ];
  for (const [id, make] of engines) {
    const h = await EngineHarness.open(`quai-bench-${id}-`, make);
    try {
      // One instance first: MariaDB builds its template once per host, not per add-on.
      await h.running();
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t = await h.timedRunning();
        times.push(t.provisionMs + t.startMs);
      }
      const byHand = await startByHand(id, h.root);
      const ms = median(times);
      rows.push([id, seconds(ms), seconds(byHand), `${(ms / byHand).toFixed(2)}x`, seconds(targets[id] as number), ms <= (targets[id] as number) ? "PASS" : "MISS"]);
    } finally {
      await h.close();
    }
  }
  print(["engine", "quai s", "by hand s", "ratio", "target s", "result"], rows);
  console.log("(by hand: initdb / mariadb-install-db / nothing, then the bare server until it accepts a connection, no users or config)");
}

/** The same server started by hand with its defaults: the floor of provisioning. */
async function startByHand(id: string, root: string): Promise<number> {
  const dir = await mkdtemp(join(root, "by-hand-"));
  const started = performance.now();
  const port = await freePort("127.0.0.1", addonPortRange);
  const inst = { id: `bench-${id}`, dir, port, plan: { name: "x", displayName: "x", description: "", memoryBytes: 1024 ** 3, maxConnections: 20, diskBytes: 1024 ** 3, position: 0 }, credentials: { user: "u", password: "p", database: "d", admin: {} } };
  let proc: ServerProcess;
  if (id === "postgresql") {
    const bin = postgresBinDir();
    const [cmd, args] = unprivileged(join(bin, "initdb"), ["-D", join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync"]);
    await run(cmd, args);
    proc = await startDetached(inst, join(bin, "postgres"), ["-D", join(dir, "data"), "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", `unix_socket_directories=${dir}`], join(dir, "log"));
  } else if (id === "mysql") {
    const [cmd, args] = unprivileged("mariadb-install-db", ["--no-defaults", `--datadir=${join(dir, "data")}`, "--auth-root-authentication-method=normal", "--skip-test-db"]);
    await run(cmd, args);
    proc = await startDetached(inst, "/usr/sbin/mariadbd", ["--no-defaults", `--datadir=${join(dir, "data")}`, `--port=${port}`, "--bind-address=127.0.0.1", `--socket=${join(dir, "sock")}`, `--pid-file=${join(dir, "pid")}`], join(dir, "log"));
  } else {
    proc = await startDetached(inst, "/usr/bin/redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""], join(dir, "log"));
  }
  while (!(await canConnect(port))) await sleep(5);
  const ms = performance.now() - started;
  await stopDetached(inst, proc, "SIGKILL", 1000);
  return ms;
}

/** Backup, restore and point-in-time restore of a large PostgreSQL database, against raw tools. */
export async function benchPostgresBackups(): Promise<void> {
  const mb = Number(process.env.QUAI_BENCH_PG_MB ?? 1024);
  console.log(`\n== PostgreSQL backup and restore of ${mb} MB (Quai: streamed to the blob store and back; raw: pg_dump -Fc to a file, pg_restore from it; restores: the mean of two each, in the order raw, Quai, Quai, raw, each into a new server)`);
  const h = await EngineHarness.open("quai-bench-pgdata-", (ctx) => new PostgresqlEngine(ctx));
  const engine = h.engine as PostgresqlEngine;
  try {
    // The biggest plan: the data must fit its disk, and the server gets its memory.
    const { inst } = await h.running(4);
    const base = new PassThrough();
    const baseStored = h.ctx.blobs.put(base);
    await engine.pitr.baseBackup(inst, base);
    base.end();
    const baseBlob = await baseStored;
    const url = h.urlOf(inst);
    // Rows of ~290 bytes of hex (about 330 in the table): they compress about as well as real
    // text columns do.
    const rows = Math.round((mb * 1024 * 1024) / 330);
    const fill = performance.now();
    await withPgClient({ connectionString: url }, async (c) => {
      await c.query("CREATE TABLE bench (id bigint PRIMARY KEY, body text NOT NULL)");
      for (let from = 1; from <= rows; from += 500_000) {
        const to = Math.min(rows, from + 499_999);
        await c.query(`INSERT INTO bench SELECT g, md5(g::text) || md5((g + 1)::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text) || md5((g * 57)::text) || md5((g * 91)::text) || md5((g * 97)::text) || md5((g * 101)::text) FROM generate_series($1::bigint, $2::bigint) g`, [from, to]);
      }
    });
    const pitrTarget = new Date();
    await sleep(1100);
    await withPgClient({ connectionString: url }, (c) => c.query("INSERT INTO bench VALUES (0, 'after the target')"));
    const dataBytes = await engine.dataBytes(inst);
    const tableBytes = await withPgClient({ connectionString: url }, async (c) => Number((await c.query<{ n: string }>("SELECT pg_total_relation_size('bench') AS n")).rows[0]?.n));
    log(`bench: filled ${rows} rows (table ${(tableBytes / 1024 ** 2).toFixed(0)} MB, data directory ${(dataBytes / 1024 ** 2).toFixed(0)} MB) in ${seconds(performance.now() - fill)} s`);

    const scratch = await mkdtemp(join(tmpdir(), "quai-bench-raw-"));
    try {
      // Raw: pg_dump to a file, the same server, the same data (the platform's own schemas
      // left out, as Quai's dump leaves them out).
      let t = performance.now();
      const raw = await run("pg_dump", ["-Fc", "-N", "quai", "-N", "quai_ext", "-f", join(scratch, "raw.dump"), url]);
      if (raw.code !== 0) throw new Error(`pg_dump: ${raw.stderr}`);
      const rawDumpMs = performance.now() - t;
      const rawSize = (await stat(join(scratch, "raw.dump"))).size;

      t = performance.now();
      const out = new PassThrough();
      const stored = h.ctx.blobs.put(out);
      await engine.backup(inst, out);
      out.end();
      const blob = await stored;
      const quaiDumpMs = performance.now() - t;

      // Each restore goes into a fresh instance of the same plan and starts on a quiet machine:
      // the instance before it is gone (its checkpoint, WAL archiving and the kernel's write-back
      // of its gigabyte would otherwise land in the next one's time). Raw, Quai, Quai, raw, so a
      // machine slowing down or speeding up during the run weighs on both alike.
      const restoreOnce = async (how: "raw" | "quai"): Promise<number> => {
        const target = await h.newInstance({ plan: 4 });
        let proc = await h.provisionAndStart(target);
        await run("sync", []);
        const started = performance.now();
        if (how === "raw") {
          const rr = await run("pg_restore", ["--no-owner", "--no-privileges", "-d", h.urlOf(target), join(scratch, "raw.dump")]);
          if (rr.code !== 0) throw new Error(`pg_restore: ${rr.stderr}`);
        } else {
          proc = h.track(target, await engine.restore(target, proc, await h.ctx.blobs.get(blob.key)));
        }
        const ms = performance.now() - started;
        const restored = await withPgClient({ connectionString: h.urlOf(target) }, async (c) => Number((await c.query<{ n: string }>("SELECT count(*) AS n FROM bench")).rows[0]?.n));
        if (restored !== rows + 1) throw new Error(`${how} restore: ${restored} rows in bench, expected ${rows + 1}`);
        await engine.destroy(target, proc);
        await run("sync", []);
        return ms;
      };
      const restores = { raw: [] as number[], quai: [] as number[] };
      for (const how of ["raw", "quai", "quai", "raw"] as const) restores[how].push(await restoreOnce(how));
      log(`bench: restores (raw, quai, quai, raw): ${[restores.raw[0], ...restores.quai, restores.raw[1]].map((ms) => seconds(ms ?? NaN)).join(", ")} s`);
      const rawRestoreMs = ((restores.raw[0] ?? NaN) + (restores.raw[1] ?? NaN)) / 2;
      const quaiRestoreMs = ((restores.quai[0] ?? NaN) + (restores.quai[1] ?? NaN)) / 2;

      // Point in time: base backup + all WAL since, recovered to before the last insert.
      await engine.pitr.switchWal(inst);
      const segments = await engine.pitr.shipWal(inst);
      const target3 = await h.newInstance({ plan: 4 });
      await engine.provision(target3);
      t = performance.now();
      h.track(target3, await engine.pitr.restoreToTime(target3, await h.ctx.blobs.get(baseBlob.key), segments, pitrTarget));
      const pitrMs = performance.now() - t;
      const count = await withPgClient({ connectionString: h.urlOf(target3) }, async (c) => Number((await c.query<{ n: string }>("SELECT count(*) AS n FROM bench")).rows[0]?.n));

      const mbps = (ms: number) => ((tableBytes / 1024 ** 2) / (ms / 1000)).toFixed(1);
      print(["step", "raw s", "quai s", "quai MB/s", "raw / quai", "target", "result"], [
        ["backup", seconds(rawDumpMs), seconds(quaiDumpMs), mbps(quaiDumpMs), `${(rawDumpMs / quaiDumpMs).toFixed(2)}x`, ">= 0.90x", rawDumpMs / quaiDumpMs >= 0.9 ? "PASS" : "MISS"],
        ["restore", seconds(rawRestoreMs), seconds(quaiRestoreMs), mbps(quaiRestoreMs), `${(rawRestoreMs / quaiRestoreMs).toFixed(2)}x`, ">= 0.90x", rawRestoreMs / quaiRestoreMs >= 0.9 ? "PASS" : "MISS"],
      ]);
      console.log(`dump sizes: raw ${(rawSize / 1024 ** 2).toFixed(1)} MB, quai ${(blob.size / 1024 ** 2).toFixed(1)} MB`);
      console.log(`point-in-time restore: ${seconds(pitrMs)} s (${segments.length} WAL files replayed; ${count === rows ? "data exactly as at the target" : `WRONG: ${count} rows, expected ${rows}`})`);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } finally {
    await h.close();
  }
}
