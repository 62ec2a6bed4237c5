// End to end: an app with DATABASE_URL=$SCALINGO_POSTGRESQL_URL, deployed by git push with a
// Procfile postdeploy migration, reads and writes its database through the router; a restore
// swaps its database with no failed request; added later, Redis and MySQL reach the running app
// through a release; the consoles work in one-off containers.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { gitApp, startLoad, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;

/** A web app with no dependencies: Python's standard library, and psql for the queries. */
const APP = {
  Procfile: `web: python3 server.py
postdeploy: psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
`,
  "server.py": `import os, signal, subprocess, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
def sql(q):
    return subprocess.run(["psql", os.environ["DATABASE_URL"], "-tAc", q], capture_output=True, text=True, check=True).stdout.strip()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        try:
            if self.path == "/visit":
                sql("INSERT INTO visits DEFAULT VALUES")
            data = sql("SELECT count(*) FROM visits").encode()
            code = 200
        except subprocess.CalledProcessError as e:
            data, code = e.stderr.encode(), 500
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, fmt, *args):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
srv.serve_forever()
`,
};

describe("an app and its PostgreSQL add-on, end to end", () => {
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  it("deploys with a postdeploy migration and uses its database through the router", async () => {
    assert.equal((await p.quai(["create", "db-app"])).code, 0);
    const add = await p.quai(["--app", "db-app", "addons-add", "postgresql", "postgresql-sandbox"]);
    assert.equal(add.code, 0, add.stderr);
    const env = await p.quai(["--app", "db-app", "env-set", "DATABASE_URL=$SCALINGO_POSTGRESQL_URL"]);
    assert.equal(env.code, 0, env.stderr);
    const push = await p.push("db-app", await gitApp(APP));
    assert.equal(push.code, 0, push.stderr);
    assert.equal((await p.get("db-app", "/visit")).body, "1");
    assert.equal((await p.get("db-app", "/visit")).body, "2");
  });

  it("restores a backup with no failed request, and the app then sees the backup's data", async () => {
    const backup = await p.quai(["--app", "db-app", "--json", "backups-create", "--addon", "postgresql"]);
    assert.equal(backup.code, 0, backup.stderr);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    assert.equal((await p.get("db-app", "/visit")).body, "3");

    const load = startLoad(p.routerPort, "db-app.localhost", 2);
    const restore = await p.quai(["--app", "db-app", "backups-restore", "--addon", "postgresql", "--backup", id, "--force"]);
    // Until the app runs with the new URL, and a moment after.
    for (let i = 0; i < 300; i++) {
      const d = await p.quai(["--app", "db-app", "--json", "deployments"]);
      const latest = (JSON.parse(d.stdout) as { status: string }[])[0];
      if (latest && ["success", "crashed-error", "timeout-error", "hook-error", "aborted", "build-error"].includes(latest.status)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 1500));
    const { ok, failures } = await load.stop();
    assert.equal(restore.code, 0, restore.stderr);
    assert.deepEqual(failures, []);
    assert.ok(ok > 10, `served ${ok} requests`);
    assert.equal((await p.get("db-app", "/")).body, "2", "the data as it was at the backup");
  });

  it("opens a psql console in a one-off container", async () => {
    const res = await p.quai(["--app", "db-app", "pgsql-console"], "SELECT 'console:' || count(*) FROM visits;\n");
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /console:2/);
  });

  it("adds Redis and MySQL to the running app with a release each, and opens their consoles", async () => {
    for (const [provider, plan] of [["redis", "redis-sandbox"], ["mysql", "mysql-sandbox"]]) {
      const add = await p.quai(["--app", "db-app", "addons-add", provider as string, plan as string]);
      assert.equal(add.code, 0, add.stderr);
    }
    // The config releases carry the new variables to the app's containers.
    for (let i = 0; i < 300; i++) {
      const d = JSON.parse((await p.quai(["--app", "db-app", "--json", "deployments"])).stdout) as { status: string }[];
      if (d.every((x) => !["queued", "building", "pushing", "starting"].includes(x.status))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const env = await p.quai(["--app", "db-app", "run", "sh", "-c", "echo redis=${SCALINGO_REDIS_URL%%@*} mysql=${SCALINGO_MYSQL_URL%%:*}"]);
    assert.equal(env.code, 0, env.stderr);
    assert.match(env.stdout, /redis=redis:\/\/:\S+ mysql=mysql/);
    const redis = await p.quai(["--app", "db-app", "redis-console"], "SET greeting bonjour\nGET greeting\n");
    assert.equal(redis.code, 0, redis.stderr);
    assert.match(redis.stdout, /bonjour/);
    const mysql = await p.quai(["--app", "db-app", "mysql-console"], "SELECT 40 + 2 AS answer;\n");
    assert.equal(mysql.code, 0, mysql.stderr);
    assert.match(mysql.stdout, /42/);
  });
});
