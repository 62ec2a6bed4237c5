// Add-ons through the API and the CLI, with real servers: provisioning and the app's variables,
// backups (on demand, downloaded and resumed, verified), restores into a new instance with the
// old one kept, point-in-time recovery, crash restarts, removal with a final backup, and the
// faults and bad input the issue names.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import pg from "pg";
import mysql from "mysql2/promise";
import { Redis } from "ioredis";
import { spawnServer, quai, type ServerProcess } from "../src/testing/cli.ts";
import { addonServers, bearer, stopAddonServers } from "../src/testing/platform.ts";
import { portIsFree } from "../src/core/net.ts";

let root: string;
let home: string;
let server: ServerProcess;
let token: string;
let auth: string;
let cliEnv: NodeJS.ProcessEnv;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api<T = Record<string, unknown>>(method: string, path: string, body?: unknown, as = auth): Promise<{ status: number; body: T }> {
  const res = await fetch(server.url + path, { method, headers: { authorization: `Bearer ${as}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

interface Addon {
  id: string;
  instance_id: string;
  status: string;
  plan: { id: string };
  env: string[];
  backups: { last_success_at: string | null; stale: boolean };
  archive: { earliest_restorable_time: string | null } | null;
}
interface Backup {
  id: string;
  status: string;
  size: number;
  sha256: string;
  error: string | null;
  verification: { ok: boolean; error?: string; summary?: Record<string, number> } | null;
}

async function variable(app: string, name: string): Promise<string | undefined> {
  const res = await api<{ variables: { name: string; value: string }[] }>("GET", `/v1/apps/${app}/variables`);
  return res.body.variables.find((v) => v.name === name)?.value;
}

async function createApp(name: string): Promise<void> {
  const res = await api("POST", "/v1/apps", { app: { name } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
}

async function addAddon(app: string, provider: string, plan: string): Promise<Addon> {
  const res = await api<{ addon: Addon }>("POST", `/v1/apps/${app}/addons`, { addon: { addon_provider_id: provider, plan_id: plan } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.addon;
}

async function backupNow(app: string, addon: string): Promise<Backup> {
  const res = await api<{ backup: Backup }>("POST", `/v1/apps/${app}/addons/${addon}/backups`);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  for (;;) {
    const b = (await api<{ backup: Backup }>("GET", `/v1/apps/${app}/addons/${addon}/backups/${res.body.backup.id}`)).body.backup;
    if (b.status === "done" || b.status === "error") return b;
    await sleep(100);
  }
}

async function pgQuery<T extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** The postmaster's pid: the parent of the backend serving a connection (read while it is open). */
async function postmasterPid(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    return Number((await readFile(`/proc/${rows[0]?.pid}/stat`, "utf8")).split(") ")[1]?.split(" ")[1]);
  } finally {
    await c.end();
  }
}

/** What a Redis server answers a raw command sent without logging in. */
function rawRedis(port: number, command: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const socket = connect({ host: "127.0.0.1", port }, () => socket.write(command + "\r\n"));
    socket.once("data", (d) => {
      socket.destroy();
      resolvePromise(d.toString());
    });
    socket.once("error", reject);
  });
}

const notes = async (app: string) => (await pgQuery<{ body: string }>((await variable(app, "SCALINGO_POSTGRESQL_URL")) as string, "SELECT body FROM notes ORDER BY id")).map((r) => r.body);

describe("add-ons", () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "quai-addons-"));
    home = join(root, "home");
    server = await spawnServer({ QUAI_HOME: home });
    token = server.token as string;
    auth = await bearer(server.url, token);
    cliEnv = { QUAI_CONFIG_DIR: join(root, "cli"), QUAI_URL: server.url, QUAI_TOKEN: token };
  });
  after(async () => {
    // A server that died on its own explains every failure after it: show how it ended.
    if (server && (server.proc.exitCode !== null || server.proc.signalCode !== null)) {
      process.stderr.write(`quai server exited by itself (${server.proc.exitCode ?? server.proc.signalCode}); its last log lines:\n${server.log.slice(-40).join("\n")}\n`);
    }
    await server?.stop();
    if (home) await stopAddonServers(home);
    await rm(root, { recursive: true, force: true });
  });

  it("lists providers and plans without a token, as Scalingo does", async () => {
    const res = await fetch(`${server.url}/v1/addon_providers`);
    assert.equal(res.status, 200);
    const { addon_providers } = (await res.json()) as { addon_providers: { id: string; plans: { id: string; disk_bytes: number }[] }[] };
    assert.deepEqual(addon_providers.map((p) => p.id).sort(), ["mysql", "postgresql", "redis"]);
    for (const p of addon_providers) assert.ok(p.plans.length >= 3 && p.plans.every((pl) => pl.id.startsWith(p.id) && pl.disk_bytes > 0));
  });

  describe("PostgreSQL", () => {
    const app = "pg-app";
    let addon: Addon;

    it("provisions a database the app reaches with SCALINGO_POSTGRESQL_URL, and DATABASE_URL as a reference", async () => {
      await createApp(app);
      addon = await addAddon(app, "postgresql", "postgresql-sandbox");
      assert.equal(addon.status, "running");
      const url = await variable(app, "SCALINGO_POSTGRESQL_URL");
      assert.ok(url?.startsWith("postgres://"), url);
      assert.equal(await variable(app, "QUAI_POSTGRESQL_URL"), url);
      const ref = await api("PUT", `/v1/apps/${app}/variables`, { variables: [{ name: "DATABASE_URL", value: "$SCALINGO_POSTGRESQL_URL" }] });
      assert.equal(ref.status, 200, JSON.stringify(ref.body));
      const resolved = await api<{ variables: { name: string; value: string }[] }>("GET", `/v1/apps/${app}/variables?resolved=true`);
      assert.equal(resolved.body.variables.find((v) => v.name === "DATABASE_URL")?.value, url);
      await pgQuery(url as string, "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)");
      await pgQuery(url as string, "INSERT INTO notes (body) VALUES ('first'), ('second')");
      // The app owner may enable trusted extensions itself.
      await pgQuery(url as string, "CREATE EXTENSION IF NOT EXISTS pgcrypto");
    });

    it("refuses unknown providers and plans, and a second add-on of one provider", async () => {
      const p = await api<{ error: string }>("POST", `/v1/apps/${app}/addons`, { addon: { addon_provider_id: "mongodb", plan_id: "x" } });
      assert.equal(p.status, 422);
      assert.equal(p.body.error, "addon_provider_unknown");
      const q = await api<{ error: string; message: string }>("POST", `/v1/apps/${app}/addons`, { addon: { addon_provider_id: "postgresql", plan_id: "postgresql-huge" } });
      assert.equal(q.status, 422);
      assert.equal(q.body.error, "addon_plan_unknown");
      assert.match(q.body.message, /postgresql-sandbox/);
      const again = await api<{ error: string }>("POST", `/v1/apps/${app}/addons`, { addon: { addon_provider_id: "postgresql", plan_id: "postgresql-sandbox" } });
      assert.equal(again.status, 409);
      assert.equal(again.body.error, "addon_exists");
    });

    let backup: Backup;
    it("backs up on demand: done, with size and checksum; downloads resume with Range", async () => {
      backup = await backupNow(app, addon.id);
      assert.equal(backup.status, "done", backup.error ?? "");
      assert.ok(backup.size > 0);
      const full = Buffer.from(await (await fetch(`${server.url}/v1/apps/${app}/addons/${addon.id}/backups/${backup.id}/archive`, { headers: { authorization: `Bearer ${auth}` } })).arrayBuffer());
      assert.equal(full.length, backup.size);
      assert.equal(createHash("sha256").update(full).digest("hex"), backup.sha256);
      // A start past the end, even past what a number holds exactly: 416 with the size.
      for (const start of [String(backup.size), "9007199254740993", "99999999999999999999"]) {
        const past = await fetch(`${server.url}/v1/apps/${app}/addons/${addon.id}/backups/${backup.id}/archive`, { headers: { authorization: `Bearer ${auth}`, range: `bytes=${start}-` } });
        assert.equal(past.status, 416, start);
        assert.equal(past.headers.get("content-range"), `bytes */${backup.size}`, start);
      }
      // An interrupted download picks up where it stopped (the CLI does it with --output).
      const out = join(root, "partial.pgdump");
      await writeFile(out, full.subarray(0, Math.floor(full.length / 2)));
      const res = await quai(["--app", app, "backups-download", "--addon", "postgresql", "--backup", backup.id, "--output", out], cliEnv);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /sha256 checked, resumed\)/);
      assert.equal(createHash("sha256").update(await readFile(out)).digest("hex"), backup.sha256);
      // A file of the same name that is not this backup's start (yesterday's dump) is not
      // resumed into a corrupt one: the checksum catches it and the backup comes whole.
      const stale = join(root, "stale.pgdump");
      await writeFile(stale, Buffer.alloc(Math.floor(full.length / 3), 7));
      const again = await quai(["--app", app, "backups-download", "--addon", "postgresql", "--backup", backup.id, "--output", stale], cliEnv);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stderr, /held something other than backup/);
      assert.equal(createHash("sha256").update(await readFile(stale)).digest("hex"), backup.sha256);
      const nowhere = await quai(["--app", app, "backups-download", "--addon", "postgresql", "--output", join(root, "no", "such", "dir.pgdump")], cliEnv);
      assert.equal(nowhere.code, 64);
      assert.match(nowhere.stderr, /cannot write .*: no such directory/);
    });

    it("verifies a backup in a throwaway server: tables and row counts", async () => {
      const res = await api<{ backup: Backup }>("POST", `/v1/apps/${app}/addons/${addon.id}/backups/${backup.id}/verify`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.backup.verification?.ok, true, JSON.stringify(res.body.backup.verification));
      assert.equal(res.body.backup.verification?.summary?.["public.notes"], 2);
    });

    it("restores a backup into a new instance, switches the app to it, keeps the old one", async () => {
      const before = await variable(app, "SCALINGO_POSTGRESQL_URL");
      await pgQuery(before as string, "INSERT INTO notes (body) VALUES ('after the backup')");
      const res = await api<{ addon: Addon }>("POST", `/v1/apps/${app}/addons/${addon.id}/restore`, { backup_id: backup.id });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const after = await variable(app, "SCALINGO_POSTGRESQL_URL");
      assert.notEqual(after, before, "a new server, a new URL");
      assert.deepEqual(await notes(app), ["first", "second"]);
      const kept = await api<{ instances: { id: string; role: string }[] }>("GET", `/v1/apps/${app}/addons/${addon.id}/instances`);
      assert.equal(kept.body.instances.length, 1);
      assert.equal(kept.body.instances[0]?.role, "detached");
    });

    it("undoes a restore by switching back to the instance it replaced, and back again", async () => {
      const restored = (await api<{ addon: Addon }>("GET", `/v1/apps/${app}/addons/${addon.id}`)).body.addon.instance_id;
      const [replaced] = (await api<{ instances: { id: string }[] }>("GET", `/v1/apps/${app}/addons/${addon.id}/instances`)).body.instances;
      const undo = await quai(["--app", app, "addons-reattach", "postgresql", replaced!.id, "--force"], cliEnv);
      assert.equal(undo.code, 0, undo.stderr);
      assert.deepEqual(await notes(app), ["first", "second", "after the backup"], "the data from before the restore");
      const redo = await quai(["--app", app, "addons-reattach", "postgresql", restored, "--force"], cliEnv);
      assert.equal(redo.code, 0, redo.stderr);
      assert.deepEqual(await notes(app), ["first", "second"]);
      const unknown = await api<{ error: string }>("POST", `/v1/apps/${app}/addons/${addon.id}/instances/${addon.id}/reattach`);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.error, "addon_instance_not_found");
    });

    it("refuses to restore a corrupted backup and leaves the data as it was; verification catches it", async () => {
      const fresh = await backupNow(app, addon.id);
      assert.equal(fresh.status, "done");
      const file = join(home, "blobs", "sha256", fresh.sha256.slice(0, 2), fresh.sha256);
      const bytes = await readFile(file);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = (bytes[at] as number) ^ 0xff;
      await writeFile(file, bytes);
      const res = await api<{ error: string }>("POST", `/v1/apps/${app}/addons/${addon.id}/restore`, { backup_id: fresh.id });
      assert.equal(res.status, 422);
      assert.equal(res.body.error, "backup_corrupted");
      assert.deepEqual(await notes(app), ["first", "second"]);
      const v = await api<{ backup: Backup }>("POST", `/v1/apps/${app}/addons/${addon.id}/backups/${fresh.id}/verify`);
      assert.equal(v.body.backup.verification?.ok, false);
      assert.match(v.body.backup.verification?.error ?? "", /checksum/);
    });

    it("recovers to a point in time, and refuses times outside the window or malformed", async () => {
      const url = (await variable(app, "SCALINGO_POSTGRESQL_URL")) as string;
      // The restored instance takes a base backup of its own: wait for the window to open.
      for (let i = 0; i < 100; i++) {
        const a = (await api<{ addon: Addon }>("GET", `/v1/apps/${app}/addons/${addon.id}`)).body.addon;
        if (a.archive?.earliest_restorable_time) break;
        await sleep(200);
      }
      await sleep(1100);
      await pgQuery(url, "INSERT INTO notes (body) VALUES ('kept by PITR')");
      await sleep(1100);
      const target = new Date().toISOString();
      await sleep(1100);
      await pgQuery(url, "INSERT INTO notes (body) VALUES ('dropped by PITR')");

      const future = await api<{ error: string }>("POST", `/v1/apps/${app}/addons/${addon.id}/pitr_restore`, { to: "2099-01-01 00:00:00" });
      assert.equal(future.status, 422);
      assert.equal(future.body.error, "pitr_out_of_range");
      const early = await api<{ error: string; message: string }>("POST", `/v1/apps/${app}/addons/${addon.id}/pitr_restore`, { to: "2001-01-01T00:00:00Z" });
      assert.equal(early.body.error, "pitr_out_of_range");
      assert.match(early.body.message, /earliest/);
      const bad = await api<{ error: string }>("POST", `/v1/apps/${app}/addons/${addon.id}/pitr_restore`, { to: "2026-02-30 10:00" });
      assert.equal(bad.body.error, "pitr_time_invalid");

      const res = await quai(["--app", app, "pitr-restore", "--addon", "postgresql", "--to", target, "--force"], cliEnv);
      assert.equal(res.code, 0, res.stderr + res.stdout);
      assert.deepEqual(await notes(app), ["first", "second", "kept by PITR"]);
    });

    it("restarts a server that dies, and says so in the events", async () => {
      const url = (await variable(app, "SCALINGO_POSTGRESQL_URL")) as string;
      process.kill(await postmasterPid(url), "SIGKILL");
      let ok = false;
      for (let i = 0; i < 100 && !ok; i++) {
        await sleep(200);
        ok = await notes(app).then(() => true, () => false);
      }
      assert.ok(ok, "the database answers again");
      assert.deepEqual(await notes(app), ["first", "second", "kept by PITR"]);
      const events = await api<{ events: { type: string }[] }>("GET", `/v1/apps/${app}/events`);
      assert.ok(events.body.events.some((e) => e.type === "addon_crash"));
    });

    it("marks a backup whose server is killed mid-dump as error, keeps no file, and the next one works", async () => {
      const url = (await variable(app, "SCALINGO_POSTGRESQL_URL")) as string;
      await pgQuery(url, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS pad FROM generate_series(1, 400000) g");
      const started = await api<{ backup: Backup }>("POST", `/v1/apps/${app}/addons/${addon.id}/backups`);
      const postmaster = await postmasterPid(url);
      await sleep(150);
      process.kill(postmaster, "SIGKILL");
      let b: Backup;
      for (;;) {
        b = (await api<{ backup: Backup }>("GET", `/v1/apps/${app}/addons/${addon.id}/backups/${started.body.backup.id}`)).body.backup;
        if (b.status === "done" || b.status === "error") break;
        await sleep(100);
      }
      assert.equal(b.status, "error", "a dump cut short is not a backup");
      assert.ok(b.error);
      const dl = await fetch(`${server.url}/v1/apps/${app}/addons/${addon.id}/backups/${b.id}/archive`, { headers: { authorization: `Bearer ${auth}` } });
      assert.equal(dl.status, 409);
      for (let i = 0; i < 100 && !(await notes(app).then(() => true, () => false)); i++) await sleep(200);
      const next = await backupNow(app, addon.id);
      assert.equal(next.status, "done", next.error ?? "");
      const events = await api<{ events: { type: string }[] }>("GET", `/v1/apps/${app}/events`);
      assert.ok(events.body.events.some((e) => e.type === "addon_backup_failed"));
    });

    it("lets only users who can see both apps restore across apps", async () => {
      const other = await quai(["admin", "create-user", "--email", "someone@example.org"], { QUAI_HOME: home });
      assert.equal(other.code, 0, other.stderr);
      const otherToken = other.stdout.trim().split(/\s+/).pop() as string;
      const otherAuth = await bearer(server.url, otherToken);
      assert.equal((await api("POST", "/v1/apps", { app: { name: "their-app" } }, otherAuth)).status, 201);
      const theirs = await api<{ addon: Addon }>("POST", "/v1/apps/their-app/addons", { addon: { addon_provider_id: "postgresql", plan_id: "postgresql-sandbox" } }, otherAuth);
      assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
      const res = await api<{ error: string }>("POST", `/v1/apps/their-app/addons/${theirs.body.addon.id}/restore`, { backup_id: backup.id }, otherAuth);
      assert.equal(res.status, 404);
      assert.equal(res.body.error, "backup_not_found");
      // The owner sees both: production's backup restores into the other app's database.
      const ok = await api("POST", `/v1/apps/their-app/addons/${theirs.body.addon.id}/restore`, { backup_id: backup.id });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.deepEqual(await notes("their-app"), ["first", "second"]);
      const del = await api("DELETE", "/v1/apps/their-app?current_name=their-app", undefined, otherAuth);
      assert.equal(del.status, 204);
    });

    it("changes plan: the server restarts with the plan's settings and keeps its data", async () => {
      const before = (await pgQuery<{ max_connections: string }>((await variable(app, "SCALINGO_POSTGRESQL_URL")) as string, "SHOW max_connections"))[0]?.max_connections;
      const res = await quai(["--app", app, "addons-upgrade", "postgresql", "postgresql-starter-512"], cliEnv);
      assert.equal(res.code, 0, res.stderr);
      const url = (await variable(app, "SCALINGO_POSTGRESQL_URL")) as string;
      const after = (await pgQuery<{ max_connections: string }>(url, "SHOW max_connections"))[0]?.max_connections;
      assert.ok(Number(after) > Number(before), `max_connections ${before} → ${after}`);
      assert.deepEqual(await notes(app), ["first", "second", "kept by PITR"]);
      const hour = await api<{ error: string }>("PATCH", `/v1/apps/${app}/addons/${addon.id}`, { addon: { backup_hour: 25 } });
      assert.equal(hour.status, 422);
      assert.equal(hour.body.error, "backup_hour_invalid");
      const set = await quai(["--app", app, "addons-config", "postgresql", "--backup-hour", "1"], cliEnv);
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /01:00 Europe\/Paris/);
    });

    it("removes with a final backup kept, the variables gone and the server stopped", async () => {
      const url = new URL((await variable(app, "SCALINGO_POSTGRESQL_URL")) as string);
      const noTerminal = await quai(["--app", app, "addons-remove", "postgresql"], cliEnv);
      assert.notEqual(noTerminal.code, 0, "asks for confirmation");
      const res = await quai(["--app", app, "addons-remove", "postgresql", "--force"], cliEnv);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /final backup/);
      assert.equal(await variable(app, "SCALINGO_POSTGRESQL_URL"), undefined);
      for (let i = 0; i < 50 && !(await portIsFree(Number(url.port))); i++) await sleep(100);
      assert.equal(await portIsFree(Number(url.port)), true, "the server is gone");
      const list = await api<{ backups: { backup_type: string; status: string }[] }>("GET", `/v1/apps/${app}/addons/${addon.id}/backups`);
      assert.ok(list.body.backups.some((b) => b.backup_type === "final" && b.status === "done"));
    });
  });

  describe("MySQL and Redis", () => {
    it("provisions MySQL, backs up and restores through the API", async () => {
      await createApp("my-app");
      const addon = await addAddon("my-app", "mysql", "mysql-sandbox");
      const url = (await variable("my-app", "SCALINGO_MYSQL_URL")) as string;
      const c = await mysql.createConnection(url);
      await c.query("CREATE TABLE t (v varchar(20))");
      await c.query("INSERT INTO t VALUES ('kept')");
      await c.end();
      const b = await backupNow("my-app", addon.id);
      assert.equal(b.status, "done", b.error ?? "");
      const c2 = await mysql.createConnection(url);
      await c2.query("INSERT INTO t VALUES ('lost')");
      await c2.end();
      const res = await api("POST", `/v1/apps/my-app/addons/${addon.id}/restore`, { backup_id: b.id });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const c3 = await mysql.createConnection((await variable("my-app", "SCALINGO_MYSQL_URL")) as string);
      const [rows] = await c3.query("SELECT v FROM t");
      await c3.end();
      assert.deepEqual((rows as { v: string }[]).map((r) => r.v), ["kept"]);
      const pitr = await api<{ error: string }>("POST", `/v1/apps/my-app/addons/${addon.id}/pitr_restore`, { to: "2026-11-22 10:00:00" });
      assert.equal(pitr.body.error, "pitr_unsupported");
    });

    it("provisions Redis with a password, and the CLI lists it with its backups", async () => {
      await createApp("redis-app");
      const add = await quai(["--app", "redis-app", "addons-add", "redis", "redis-sandbox"], cliEnv);
      assert.equal(add.code, 0, add.stderr);
      const url = (await variable("redis-app", "SCALINGO_REDIS_URL")) as string;
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await r.connect();
      await r.set("greeting", "bonjour");
      r.disconnect();
      assert.match(await rawRedis(Number(new URL(url).port), "GET greeting"), /^-NOAUTH/);
      // The app's only add-on needs no --addon.
      const b = await quai(["--app", "redis-app", "backups-create"], cliEnv);
      assert.equal(b.code, 0, b.stderr);
      const list = await quai(["--app", "redis-app", "addons"], cliEnv);
      assert.match(list.stdout, /Redis \(redis\)/);
      assert.match(list.stdout, /last good one 20/);
      assert.match((await quai(["--app", "redis-app", "backups"], cliEnv)).stdout, /^[0-9a-f-]{36} .* done /m);
      // Addressed through another add-on's URL (my-app's MySQL, which the same user sees), a
      // Redis backup is not found there, nor downloaded.
      const redis = (await api<{ addons: Addon[] }>("GET", "/v1/apps/redis-app/addons")).body.addons[0] as Addon;
      const [rb] = (await api<{ backups: Backup[] }>("GET", `/v1/apps/redis-app/addons/${redis.id}/backups`)).body.backups;
      const my = (await api<{ addons: Addon[] }>("GET", "/v1/apps/my-app/addons")).body.addons[0] as Addon;
      for (const path of [`/v1/apps/my-app/addons/${my.id}/backups/${rb?.id}`, `/v1/apps/my-app/addons/${my.id}/backups/${rb?.id}/archive`]) {
        const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${auth}` } });
        assert.equal(res.status, 404, path);
        assert.equal(((await res.json()) as { error: string }).error, "backup_not_found", path);
      }
      const own = await fetch(`${server.url}/v1/apps/redis-app/addons/${redis.id}/backups/${rb?.id}/archive`, { headers: { authorization: `Bearer ${auth}` } });
      assert.equal(own.status, 200, "through its own add-on it downloads");
      assert.equal((await own.arrayBuffer()).byteLength, rb?.size);
      await createApp("bare-app");
      const none = await quai(["--app", "bare-app", "backups"], cliEnv);
      assert.equal(none.code, 66);
      assert.match(none.stderr, /app bare-app has no add-on/);
      await addAddon("redis-app", "postgresql", "postgresql-sandbox");
      const two = await quai(["--app", "redis-app", "backups-create"], cliEnv);
      assert.equal(two.code, 64);
      assert.match(two.stderr, /app redis-app has 2 add-ons \((postgresql, redis|redis, postgresql)\): say which, as in quai backups-create --addon <addon>/);
      const del = await api("DELETE", "/v1/apps/redis-app?current_name=redis-app");
      assert.equal(del.status, 204);
      assert.equal(await portIsFree(Number(new URL(url).port)), true, "deleting the app stops its add-ons");
    });

    it("deleting an app during a restore of its add-on waits for the restore, then stops every server of the app", async () => {
      await createApp("doomed-db");
      const addon = await addAddon("doomed-db", "postgresql", "postgresql-sandbox");
      await pgQuery((await variable("doomed-db", "SCALINGO_POSTGRESQL_URL")) as string, "CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 50000) g");
      const backup = await backupNow("doomed-db", addon.id);
      assert.equal(backup.status, "done");
      const others = new Set((await addonServers(home)).map((s) => s.instance).filter((i) => i !== addon.instance_id));
      const restore = api("POST", `/v1/apps/doomed-db/addons/${addon.id}/restore`, { backup_id: backup.id });
      for (let i = 0; i < 600; i++) {
        if ((await api<{ addon: Addon }>("GET", `/v1/apps/doomed-db/addons/${addon.id}`)).body.addon.status === "restoring") break;
        await sleep(25);
      }
      const del = await api("DELETE", "/v1/apps/doomed-db?current_name=doomed-db");
      assert.equal(del.status, 204, JSON.stringify(del.body));
      assert.equal((await restore).status, 200, "the restore was let finish");
      // Neither the server the restore filled nor the one it replaced runs on for no app.
      assert.deepEqual((await addonServers(home)).filter((s) => !others.has(s.instance)), []);
      assert.equal((await api("GET", "/v1/apps/doomed-db")).status, 404);
    });
  });

  describe("across control-plane restarts", () => {
    it("keeps add-on servers running through a SIGKILL of quai server, and a restore interrupted by one leaves exactly one instance", async () => {
      await createApp("restart-app");
      const addon = await addAddon("restart-app", "postgresql", "postgresql-sandbox");
      const url = (await variable("restart-app", "SCALINGO_POSTGRESQL_URL")) as string;
      await pgQuery(url, "CREATE TABLE t AS SELECT g AS id, repeat('y', 300) AS pad FROM generate_series(1, 300000) g");
      const b = await backupNow("restart-app", addon.id);
      assert.equal(b.status, "done");
      const restoring = fetch(`${server.url}/v1/apps/restart-app/addons/${addon.id}/restore`, { method: "POST", headers: { authorization: `Bearer ${auth}`, "content-type": "application/json" }, body: JSON.stringify({ backup_id: b.id }) }).catch(() => undefined);
      await sleep(800);
      server.proc.kill("SIGKILL");
      await new Promise((r) => server.proc.once("exit", r));
      await restoring;
      // The database kept serving while the control plane was down.
      assert.equal((await pgQuery<{ n: string }>(url, "SELECT count(*) AS n FROM t"))[0]?.n, "300000");
      server = await spawnServer({ QUAI_HOME: home, QUAI_LISTEN: new URL(server.url).host });
      auth = await bearer(server.url, token);
      const a = (await api<{ addon: Addon }>("GET", `/v1/apps/restart-app/addons/${addon.id}`)).body.addon;
      assert.equal(a.status, "running");
      const now = (await variable("restart-app", "SCALINGO_POSTGRESQL_URL")) as string;
      assert.equal((await pgQuery<{ n: string }>(now, "SELECT count(*) AS n FROM t"))[0]?.n, "300000");
      // Exactly one instance of the add-on runs, the current one: no restore leftover.
      const apps = (await api<{ apps: { name: string }[] }>("GET", "/v1/apps")).body.apps;
      const currents = new Set<string>();
      for (const x of apps) for (const ad of (await api<{ addons: Addon[] }>("GET", `/v1/apps/${x.name}/addons`)).body.addons) currents.add(ad.instance_id);
      const servers = await addonServers(home);
      const strays = await Promise.all(servers.filter((s) => !currents.has(s.instance)).map(async (s) => `${s.instance}: ${(await readFile(`/proc/${s.pid}/cmdline`, "utf8").catch(() => "")).replace(/\0/g, " ")}`));
      assert.deepEqual(strays, [], "only current instances run");
      assert.ok(servers.some((s) => s.instance === a.instance_id));
    });
  });
});
