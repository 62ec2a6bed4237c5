// The PostgreSQL engine: the add-on conformance suite through `pg`, then what is PostgreSQL's own
// (extensions, dumps that must be refused, WAL archiving, recovery limits). Real servers throughout.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import pg from "pg";
import { runAddonEngineSuite, type EngineClient } from "../../../test/conformance/addons.suite.ts";
import { run } from "../../core/run.ts";
import { EngineHarness } from "../../testing/addons.ts";
import type { Instance, ServerProcess, WalSegment } from "../engine.ts";
import { serverAlive } from "../process.ts";
import {
  ARCHIVE_SCRIPT,
  availableExtensions,
  backupStopTime,
  planExtensionRestore,
  postgresqlConf,
  PostgresqlEngine,
  scramVerifier,
  UNTRUSTED_EXTENSION_ALLOWLIST,
  walFileName,
  withPgClient,
} from "./postgresql.ts";

/** Runs `fn` with a client connected to `url`. */
const withClient = <T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> => withPgClient({ connectionString: url, connectionTimeoutMillis: 5000 }, fn);

const client: EngineClient = {
  write: (url, items) =>
    withClient(url, async (c) => {
      await c.query("CREATE TABLE IF NOT EXISTS items (value text NOT NULL)");
      for (const item of items) await c.query("INSERT INTO items (value) VALUES ($1)", [item]);
    }),
  read: (url) => withClient(url, async (c) => (await c.query<{ value: string }>("SELECT value FROM items ORDER BY value")).rows.map((r) => r.value)),
};

runAddonEngineSuite((ctx) => new PostgresqlEngine(ctx), client);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("PostgreSQL engine", () => {
  let h: EngineHarness<PostgresqlEngine>;
  let engine: PostgresqlEngine;
  const logged: string[] = [];
  const urlOf = (inst: Instance) => h.urlOf(inst);
  const dumpOf = (inst: Instance) => h.backupOf(inst);

  before(async () => {
    h = await EngineHarness.open("quai-pg-engine-", (ctx) => new PostgresqlEngine(ctx), (l) => logged.push(l));
    engine = h.engine;
  });
  after(() => h.close());

  describe("provider and credentials", () => {
    it("offers the five plans in order, with Scalingo's ids", () => {
      assert.deepEqual(engine.provider.plans.map((p) => [p.name, p.position, p.memoryBytes / 2 ** 20, p.maxConnections, p.diskBytes / 2 ** 30]), [
        ["postgresql-sandbox", 0, 256, 10, 1],
        ["postgresql-starter-512", 1, 512, 50, 10],
        ["postgresql-starter-1024", 2, 1024, 100, 20],
        ["postgresql-starter-2048", 3, 2048, 150, 40],
        ["postgresql-starter-4096", 4, 4096, 200, 80],
      ]);
      assert.ok(engine.provider.plans.every((p) => p.displayName && p.description));
      assert.equal(engine.backupFormat, "pg_dump-custom");
    });

    it("generates distinct, URL-safe credentials", () => {
      const a = engine.newCredentials();
      const b = engine.newCredentials();
      assert.match(a.user, /^u_[0-9a-f]{12}$/);
      assert.match(a.database, /^db_[0-9a-f]{12}$/);
      assert.match(a.password, /^[A-Za-z0-9_-]{32,}$/);
      assert.match(a.admin.password ?? "", /^[A-Za-z0-9_-]{32,}$/);
      assert.notEqual(a.password, b.password);
      assert.notEqual(a.user, b.user);
    });

    it("stores SCRAM verifiers that match PostgreSQL's (RFC 7677 test vector)", () => {
      // The salt and iterations of the RFC's example; PostgreSQL stores StoredKey and ServerKey.
      const v = scramVerifier("pencil", Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), 4096);
      assert.equal(v, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
    });

    it("computes WAL file names as pg_walfile_name does", () => {
      assert.equal(walFileName(1, "0/3000028", 16 * 2 ** 20), "000000010000000000000003");
      assert.equal(walFileName(2, "1/A2000000", 16 * 2 ** 20), "0000000200000001000000A2");
    });

    it("reads a backup history file's stop time", () => {
      assert.deepEqual(backupStopTime("LABEL: x\nSTOP TIME: 2024-05-01 10:20:30 UTC\n"), new Date("2024-05-01T10:20:30Z"));
      assert.equal(backupStopTime("LABEL: x\n"), undefined);
    });
  });

  describe("configuration", () => {
    it("quotes the instance's paths for postgresql.conf and the shell", () => {
      const inst: Instance = { id: "x", dir: `/srv/it's "q" $(touch pwned)`, port: 15432, plan: engine.provider.plans[1]!, credentials: engine.newCredentials() };
      const conf = postgresqlConf(inst, { recovery: { walDir: `/srv/it's/restore-wal`, targetTime: new Date("2024-05-01T10:00:00.250Z") } });
      // What PostgreSQL reads from a quoted value: '' is a quote, a backslash escapes.
      const setting = (name: string) => {
        const m = new RegExp(`^${name} = '((?:[^'\\\\]|''|\\\\.)*)'$`, "m").exec(conf);
        return m?.[1]?.replace(/''|\\(.)/g, (_all, escaped: string | undefined) => escaped ?? "'");
      };
      assert.equal(setting("archive_command"), `/bin/sh '/srv/it'\\''s "q" $(touch pwned)/archive-wal.sh' %p '/srv/it'\\''s "q" $(touch pwned)/wal-archive' %f`);
      assert.equal(setting("restore_command"), `cp -- '/srv/it'\\''s/restore-wal'/%f %p`);
      assert.equal(setting("unix_socket_directories"), `/srv/it's "q" $(touch pwned)/run`);
      assert.match(conf, /^recovery_target_time = '2024-05-01 10:00:00\.250\+00'$/m);
      assert.match(conf, /^max_connections = 53$/m);
      assert.match(conf, /^shared_buffers = '128MB'$/m);
      assert.match(conf, /^port = 15432$/m);
      assert.match(conf, /^hot_standby = off$/m);
    });

    it("archive script: copies atomically, accepts the same file again, refuses a different one", async () => {
      const dir = await mkdtemp(join(h.root, "archive-"));
      const script = join(dir, "archive-wal.sh");
      await writeFile(script, ARCHIVE_SCRIPT, { mode: 0o700 });
      await writeFile(join(dir, "seg"), "one");
      await writeFile(join(dir, "other"), "two");
      const archive = join(dir, "wal-archive");
      await run("mkdir", [archive]);
      const archiveOf = async (src: string) => (await run("/bin/sh", [script, join(dir, src), archive, "000000010000000000000001"])).code;
      assert.equal(await archiveOf("seg"), 0);
      assert.equal(await readFile(join(archive, "000000010000000000000001"), "utf8"), "one");
      assert.equal(await archiveOf("seg"), 0, "archiving the same file again succeeds");
      assert.notEqual(await archiveOf("other"), 0, "a different file under the same name is refused");
      assert.equal(await readFile(join(archive, "000000010000000000000001"), "utf8"), "one");
      assert.deepEqual(await readdir(archive), ["000000010000000000000001"], "no temporary file left");
    });

    it("plans a restore around the allow-listed extensions of a dump", () => {
      const toc = [
        ";",
        "; Archive created at 2024-05-01",
        "3380; 3079 16390 EXTENSION - pg_stat_statements ",
        "3381; 0 0 COMMENT - EXTENSION pg_stat_statements ",
        "3382; 3079 16400 EXTENSION - pgcrypto ",
        "3383; 0 0 COMMENT - EXTENSION pgcrypto ",
        "215; 1259 16420 TABLE public items u_1",
      ].join("\n");
      const plan = planExtensionRestore(toc, UNTRUSTED_EXTENSION_ALLOWLIST);
      assert.deepEqual(plan.extensions, ["pg_stat_statements"]);
      assert.doesNotMatch(plan.list, /pg_stat_statements/);
      assert.match(plan.list, /EXTENSION - pgcrypto/);
      assert.match(plan.list, /TABLE public items/);
    });
  });

  describe("a running instance", () => {
    let inst: Instance;
    let proc: ServerProcess;

    it("provisions and starts quickly", async (t) => {
      const started = await h.timedRunning();
      inst = started.inst;
      proc = started.proc;
      const total = started.provisionMs + started.startMs;
      t.diagnostic(`provision ${started.provisionMs} ms, start ${started.startMs} ms, total ${total} ms`);
      assert.ok(total < 15_000, `provision and start took ${total} ms`);
      assert.equal(await engine.ping(inst), true);
    });

    it("gives the app a role that is neither superuser nor able to create roles or databases", async () => {
      const row = await withClient(urlOf(inst), async (c) => (await c.query("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = current_user")).rows[0]);
      assert.deepEqual(row, { rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false });
      const postgresUrl = new URL(urlOf(inst));
      postgresUrl.pathname = "/postgres";
      await assert.rejects(withClient(postgresUrl.toString(), async () => {}), /permission denied for database "postgres"/);
    });

    it("lets the app create trusted extensions with plain CREATE EXTENSION", async () => {
      const available = new Map((await availableExtensions()).map((e) => [e.name, e]));
      const trusted = ["pgcrypto", "citext", "hstore", "pg_trgm", "uuid-ossp", "unaccent"].filter((n) => available.get(n)?.trusted);
      assert.ok(trusted.length >= 6, `trusted extensions on this system: ${trusted.join(", ")}`);
      await withClient(urlOf(inst), async (c) => {
        for (const name of trusted) await c.query(`CREATE EXTENSION ${pg.escapeIdentifier(name)}`);
        const { rows } = await c.query("SELECT encode(digest('abc', 'sha256'), 'hex') AS h, 'A'::citext = 'a'::citext AS ci, similarity('word', 'words') > 0 AS trgm");
        assert.deepEqual(rows[0], { h: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", ci: true, trgm: true });
      });
    });

    it("creates an allow-listed untrusted extension through quai.create_extension, and refuses others", async () => {
      const has = new Set((await availableExtensions()).map((e) => e.name));
      assert.ok(has.has("pg_stat_statements"));
      await withClient(urlOf(inst), async (c) => {
        await assert.rejects(c.query("CREATE EXTENSION pg_stat_statements"), /permission denied to create extension/);
        await c.query("SELECT quai.create_extension('pg_stat_statements')");
        const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_stat_statements");
        assert.ok((rows[0] as { n: number }).n >= 0);
        if (has.has("postgres_fdw")) {
          await c.query("SELECT quai.create_extension('postgres_fdw')");
          await c.query("CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'x')");
        }
        await assert.rejects(c.query("SELECT quai.create_extension('adminpack')"), (err: Error & { hint?: string }) => {
          assert.match(err.message, /extension "adminpack" cannot be created with quai\.create_extension/);
          assert.match(err.hint ?? "", /pg_stat_statements/);
          return true;
        });
        await assert.rejects(c.query("SELECT quai.create_extension('../../x')"), /cannot be created/);
        await assert.rejects(c.query("CREATE TABLE quai.mine (x int)"), /permission denied for schema quai/);
        await assert.rejects(c.query("CREATE FUNCTION quai_ext.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"), /permission denied for schema quai_ext/);
        await assert.rejects(c.query("CREATE OR REPLACE FUNCTION quai.create_extension(name text) RETURNS void LANGUAGE sql AS ''"), /must be owner|permission denied/);
      });
    });

    it("summarizes every user table of every schema, partitioned tables once", async () => {
      await withClient(urlOf(inst), async (c) => {
        await c.query("CREATE SCHEMA billing");
        await c.query("CREATE TABLE billing.invoices (id int)");
        await c.query("INSERT INTO billing.invoices SELECT generate_series(1, 3)");
        await c.query("CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at)");
        await c.query("CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");
        await c.query("INSERT INTO events VALUES ('2024-02-01'), ('2024-03-01')");
        await c.query("CREATE TABLE \"odd \"\"name\" (x int)");
        await c.query("INSERT INTO \"odd \"\"name\" VALUES (1)");
      });
      assert.deepEqual(await engine.summarize(inst), { "billing.invoices": 3, "public.events": 2, 'public.odd "name': 1 });
    });

    it("backs up and restores a database using trusted and allow-listed extensions", async () => {
      await withClient(urlOf(inst), async (c) => {
        await c.query("CREATE TABLE secrets (id serial PRIMARY KEY, email citext UNIQUE, token text DEFAULT encode(gen_random_bytes(8), 'hex'))");
        await c.query("INSERT INTO secrets (email) VALUES ('A@example.com'), ('b@example.com')");
        await c.query("CREATE VIEW statements AS SELECT calls FROM pg_stat_statements");
      });
      const t0 = Date.now();
      const dump = await dumpOf(inst);
      const t1 = Date.now();
      const { inst: target, proc: targetProc } = await h.running();
      const t2 = Date.now();
      await engine.restore(target, targetProc, Readable.from([dump]));
      const t3 = Date.now();
      logged.push(`backup ${dump.length} bytes in ${t1 - t0} ms, restore in ${t3 - t2} ms`);
      assert.deepEqual(await engine.summarize(target), await engine.summarize(inst));
      await withClient(urlOf(target), async (c) => {
        assert.equal((await c.query("SELECT count(*)::int AS n FROM secrets WHERE email = 'a@EXAMPLE.com'")).rows[0].n, 1);
        await c.query("SELECT * FROM statements");
        const owners = await c.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'billing')");
        assert.deepEqual(owners.rows, [{ tableowner: target.credentials.user }], "the app owns what was restored");
        await c.query("INSERT INTO secrets (email) VALUES ('c@example.com')");
      });
    });

    it("rejects a corrupted dump and leaves the database as it was", async () => {
      const { inst: target, proc: targetProc } = await h.running();
      const dump = await dumpOf(inst);
      await assert.rejects(engine.restore(target, targetProc, Readable.from([Buffer.from("not a dump at all")])), /pg_restore/);
      await assert.rejects(engine.restore(target, targetProc, Readable.from([dump.subarray(0, Math.floor(dump.length * 0.8))])), /pg_restore/);
      const flipped = Buffer.from(dump);
      for (let i = Math.floor(flipped.length * 0.6); i < flipped.length * 0.6 + 64; i++) flipped[i] = (flipped[i] as number) ^ 0xa5;
      await assert.rejects(engine.restore(target, targetProc, Readable.from([flipped])), /pg_restore/);
      assert.deepEqual(await engine.summarize(target), {}, "nothing half-restored");
      assert.equal(await engine.ping(target), true);
    });

    it("fails a backup when the server dies during the dump, and streams a large one through the blob store", async () => {
      const victim = await h.newInstance();
      let victimProc = await h.provisionAndStart(victim);
      await withClient(urlOf(victim), (c) => c.query("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v FROM generate_series(1, 400000) g"));
      let killed = false;
      const out = new Writable({
        write(_chunk, _enc, done) {
          if (!killed) {
            killed = true;
            process.kill(victimProc.pid, "SIGKILL");
          }
          done();
        },
      });
      await assert.rejects(engine.backup(victim, out), /pg_dump exited with/);
      assert.ok(killed);
      while (serverAlive(victimProc)) await sleep(20);
      victimProc = h.track(victim, await engine.start(victim));
      assert.equal((await engine.summarize(victim))["public.big"], 400000, "the data survives the kill");

      // The same data, dumped to and restored from the blob store in many chunks: the restore
      // replays what reading the table of contents took from the stream, then the rest.
      const dumpOut = new PassThrough();
      const stored = h.ctx.blobs.put(dumpOut);
      const t0 = Date.now();
      await engine.backup(victim, dumpOut);
      dumpOut.end();
      const blob = await stored;
      const t1 = Date.now();
      const { inst: target, proc: targetProc } = await h.running();
      const t2 = Date.now();
      await engine.restore(target, targetProc, await h.ctx.blobs.get(blob.key));
      logged.push(`backup of 400000 rows (${blob.size} bytes) in ${t1 - t0} ms, restore in ${Date.now() - t2} ms`);
      assert.deepEqual(await engine.summarize(target), { "public.big": 400000 });
    });

    it("starts although postmaster.pid names a live process that is not its server (pid reused)", async () => {
      await engine.stop(inst, proc);
      assert.equal(serverAlive(proc), false);
      const sleeper = spawn("sleep", ["30"], { stdio: "ignore" });
      try {
        const pidFile = join(inst.dir, "data", "postmaster.pid");
        await writeFile(pidFile, `${sleeper.pid}\n${join(inst.dir, "data")}\n`);
        proc = h.track(inst, await engine.start(inst));
        assert.equal(await engine.ping(inst), true);
      } finally {
        sleeper.kill("SIGKILL");
      }
    });

    it("starts, and says why, when the app changed its role's password from inside", async () => {
      await withClient(urlOf(inst), (c) => c.query("ALTER ROLE CURRENT_USER PASSWORD 'changed-by-the-app'"));
      await engine.stop(inst, proc);
      const t0 = Date.now();
      proc = h.track(inst, await engine.start(inst));
      assert.ok(Date.now() - t0 < 10_000, "no wait for a login that cannot succeed");
      assert.ok(serverAlive(proc));
      assert.equal(await engine.ping(inst), false);
      assert.ok(logged.some((l) => l.includes(`refuses the password of ${inst.credentials.user}`)));
      const changed = new URL(urlOf(inst));
      changed.password = "changed-by-the-app";
      assert.equal((await withClient(changed.toString(), (c) => c.query("SELECT 1 AS one"))).rows[0].one, 1);
    });

    it("stops and destroys a server it was not given the process of", async () => {
      const { inst: other, proc: otherProc } = await h.running();
      await engine.destroy(other, undefined);
      assert.equal(serverAlive(otherProc), false);
      assert.equal(existsSync(other.dir), false);
    });
  });

  describe("point-in-time recovery", () => {
    let source: Instance;
    let baseKey: string;
    let restorableFrom: Date;
    let segments: WalSegment[] = [];
    let afterLastWrite: Date;

    before(async () => {
      // A directory whose name is shell and config syntax: archive_command must still work.
      source = await h.newInstance({ dir: join(h.root, `it's "$(touch pwned)" ${randomUUID().slice(0, 8)}`) });
      await h.provisionAndStart(source);
      await client.write(urlOf(source), ["one"]);
      const base = new PassThrough();
      const stored = h.ctx.blobs.put(base);
      const t0 = Date.now();
      const info = await engine.pitr.baseBackup(source, base);
      logged.push(`base backup in ${Date.now() - t0} ms`);
      base.end();
      baseKey = (await stored).key;
      restorableFrom = info.restorableFrom;
      assert.match(info.startWal, /^[0-9A-F]{24}$/);
      assert.ok(restorableFrom.getTime() <= Date.now());
      await client.write(urlOf(source), ["two"]);
      await sleep(1100);
      afterLastWrite = new Date();
      await sleep(300);
      await engine.pitr.switchWal(source);
      segments = await engine.pitr.shipWal(source);
    });

    it("archives WAL from a directory whose name is shell syntax, and ships it oldest first", async () => {
      assert.ok(segments.length > 0);
      assert.equal(existsSync(join(h.root, "pwned")), false);
      assert.deepEqual(segments.map((s) => s.name), segments.map((s) => s.name).sort());
      assert.ok(segments.some((s) => s.name.endsWith(".backup")), "the backup history file is shipped");
      const left = await readdir(join(source.dir, "wal-archive"));
      assert.ok(left.every((n) => !segments.some((s) => s.name === n)), "shipped files leave the archive dir");
      assert.deepEqual(await engine.pitr.shipWal(source), [], "nothing twice");
    });

    it("recovers to a time after the last transaction (the archived WAL reaches past it)", async () => {
      const target = await h.newInstance();
      await engine.provision(target);
      const t0 = Date.now();
      h.track(target, await engine.pitr.restoreToTime(target, await h.ctx.blobs.get(baseKey), segments, afterLastWrite));
      logged.push(`point-in-time recovery in ${Date.now() - t0} ms`);
      assert.deepEqual(await client.read(urlOf(target)), ["one", "two"]);
      const sourceAdmin = new URL(urlOf(source));
      sourceAdmin.port = String(target.port);
      await assert.rejects(client.read(sourceAdmin.toString()), "the source's credentials do not open the copy");
    });

    it("refuses a time after the last archived WAL, naming the latest restorable time", async () => {
      const target = await h.newInstance();
      await engine.provision(target);
      const latest = new Date(Math.max(...segments.map((s) => s.archivedAt.getTime())));
      await assert.rejects(engine.pitr.restoreToTime(target, await h.ctx.blobs.get(baseKey), segments, new Date(latest.getTime() + 60_000)), new RegExp(`latest restorable time is ${latest.toISOString()}`));
    });

    it("refuses a time before the base backup's end, naming the earliest restorable time", async () => {
      const target = await h.newInstance();
      await engine.provision(target);
      await assert.rejects(engine.pitr.restoreToTime(target, await h.ctx.blobs.get(baseKey), segments, new Date(restorableFrom.getTime() - 5_000)), /earliest restorable time of this base backup is \S+Z/);
    });
  });

  after(() => {
    // Figures and engine messages for the record: visible with --test-reporter=spec.
    for (const line of logged) console.log(`# ${line}`);
  });
});
