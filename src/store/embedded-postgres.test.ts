import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import pg from "pg";
import { EmbeddedPostgres } from "./embedded-postgres.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function query(url: string, text: string): Promise<unknown[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

async function waitFor(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("embedded PostgreSQL", () => {
  let dir: string;
  let pgServer: EmbeddedPostgres;
  const logs: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-embedded-"));
    // Durable, as users run it: the crash test below relies on committed data surviving.
    pgServer = new EmbeddedPostgres({ dir, durable: true, log: (l) => logs.push(l) });
  });
  after(async () => {
    await pgServer.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("initialises a cluster with a password, private files and a `quai` database", async () => {
    const url = await pgServer.start();
    // Over its Unix socket, in a private directory of the cluster's.
    assert.equal(url.replace(/:[0-9a-f]{48}@/, ":PW@"), `postgres://quai:PW@${encodeURIComponent(join(dir, "run"))}:${new URL(url.replace(/@[^:]+:/, "@h:")).port}/quai`);
    assert.equal((await stat(join(dir, "run"))).mode & 0o777, 0o700);
    assert.deepEqual(await query(url, "SELECT current_database() AS db, inet_server_addr() AS addr"), [{ db: "quai", addr: null }]);
    // TCP on 127.0.0.1 answers too, with the same password.
    const tcp = url.replace(/@[^:]+:/, "@127.0.0.1:");
    assert.deepEqual(await query(tcp, "SELECT inet_server_addr()::text AS addr"), [{ addr: "127.0.0.1/32" }]);
    assert.equal((await stat(join(dir, "password"))).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    const wrong = url.replace(/:[0-9a-f]{48}@/, ":wrong@");
    await assert.rejects(query(wrong, "SELECT 1"), /password authentication failed/);
  });

  it("restarts the server when it dies, on the same port, with the data intact", async () => {
    await query(pgServer.url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
    const first = pgServer.pid as number;
    process.kill(first, "SIGKILL");
    await waitFor("a new postmaster", async () => pgServer.pid !== first && (await query(pgServer.url, "SELECT 1")).length === 1);
    assert.deepEqual(await query(pgServer.url, "SELECT v FROM kept"), [{ v: "still here" }]);
    assert.ok(logs.some((l) => /exited unexpectedly/.test(l)), "the crash is logged, not silent");
  });

  it("stops a postmaster left by a SIGKILLed supervisor, and starts again on the same data", async () => {
    const orphanDir = await mkdtemp(join(tmpdir(), "quai-orphan-"));
    // The supervisor runs in its own process, killed with SIGKILL as `quai server` might be.
    const child = spawn(process.execPath, ["--input-type=module", "-e", `
      import { EmbeddedPostgres } from ${JSON.stringify(new URL("./embedded-postgres.ts", import.meta.url).href)};
      const s = new EmbeddedPostgres({ dir: process.argv[1], durable: false });
      const url = await s.start();
      console.log(JSON.stringify({ url, pid: s.pid }));
      setInterval(() => {}, 1000);
    `, orphanDir], { stdio: ["ignore", "pipe", "inherit"] });
    const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
    const first = JSON.parse(line) as { url: string; pid: number };
    await query(first.url, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survived')");
    child.kill("SIGKILL");
    await once(child, "exit");
    assert.ok(alive(first.pid), "PostgreSQL outlives its killed supervisor");

    const second = new EmbeddedPostgres({ dir: orphanDir, durable: false });
    try {
      const url = await second.start();
      assert.ok(!alive(first.pid), "the orphan postmaster was stopped");
      assert.deepEqual(await query(url, "SELECT v FROM kept"), [{ v: "survived" }]);
    } finally {
      await second.stop();
    }
    assert.ok(!alive(second.pid as number), "stop leaves no process");
    assert.ok(!existsSync(join(orphanDir, "connection.json")));
    assert.match(await readFile(join(orphanDir, "data", "PG_VERSION"), "utf8"), /^\d+/);
    await rm(orphanDir, { recursive: true, force: true });
  });
});
