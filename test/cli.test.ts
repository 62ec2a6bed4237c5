// The CLI as a user runs it: spawned `quai` commands against a spawned `quai server`.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "../src/core/net.ts";
import { quai, spawnServer, type ServerProcess } from "../src/testing/cli.ts";
import { scratchDir } from "../src/testing/scratch.ts";

describe("quai CLI against a running server", () => {
  let home: string;
  let config: string;
  let server: ServerProcess;
  let env: NodeJS.ProcessEnv;
  let listen: string;

  before(async () => {
    home = await scratchDir("quai-cli-home-");
    config = await scratchDir("quai-cli-config-");
    listen = `127.0.0.1:${await freePort()}`;
    // Durable PostgreSQL, as users run it: the crash tests below rely on commits surviving.
    server = await spawnServer({ QUAI_HOME: home, QUAI_PG_FSYNC: "on" }, ["--listen", listen]);
    env = { QUAI_HOME: home, QUAI_CONFIG_DIR: config, QUAI_URL: "", QUAI_TOKEN: "", QUAI_APP: "" };
  });
  after(async () => {
    await server.stop();
    await rm(home, { recursive: true, force: true });
    await rm(config, { recursive: true, force: true });
  });

  it("prints the API address and an owner token once, at first start", () => {
    assert.equal(server.url, `http://${listen}`);
    assert.match(server.token ?? "", /^qt_[A-Za-z0-9_-]{43}$/);
  });

  it("refuses commands before login with exit 77, and says how to log in", async () => {
    const res = await quai(["apps"], env);
    assert.equal(res.code, 77);
    assert.match(res.stderr, /quai login/);
  });

  it("creates a user token with `admin token-create`, printed alone on stdout", async () => {
    const res = await quai(["admin", "token-create", "--email", "dev@example.org"], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^qt_[A-Za-z0-9_-]{43}\n$/);
    const login = await quai(["login", "--url", server.url, "--api-token", res.stdout.trim()], env);
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /Logged in as dev@example\.org/);
    assert.equal((await stat(join(config, "credentials.json"))).mode & 0o777, 0o600);
    assert.match((await quai(["whoami"], env)).stdout, /dev@example\.org \(dev, owner\)/);
  });

  it("logs in from stdin and keeps working when QUAI_URL/QUAI_TOKEN are given instead", async () => {
    const login = await quai(["login", "--url", server.url], env, server.token);
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /admin@example\.org/);
    const viaEnv = await quai(["whoami"], { ...env, QUAI_CONFIG_DIR: join(config, "empty"), QUAI_URL: server.url, QUAI_TOKEN: server.token });
    assert.match(viaEnv.stdout, /admin@example\.org/);
  });

  it("manages apps with the catalogue's exit codes", async () => {
    assert.equal((await quai(["create", "rdv-solidarites"], env)).code, 0);
    const dup = await quai(["create", "rdv-solidarites"], env);
    assert.equal(dup.code, 73);
    assert.match(dup.stderr, /already exists \[app_name_taken\]/);
    const bad = await quai(["create", "rdv;reboot"], env);
    assert.equal(bad.code, 65);
    assert.match(bad.stderr, /app_name_invalid/);
    const apps = JSON.parse((await quai(["apps", "--json"], env)).stdout) as { name: string; url: string }[];
    assert.deepEqual(apps.map((a) => a.name), ["rdv-solidarites"]);
    assert.equal(apps[0]?.url, "http://rdv-solidarites.localhost");
    const info = JSON.parse((await quai(["--app", "rdv-solidarites", "app-info", "--json"], env)).stdout) as { name: string };
    assert.equal(info.name, "rdv-solidarites");
    assert.equal((await quai(["-a", "nope-app", "app-info"], env)).code, 66);
  });

  it("sets, lists, resolves and unsets variables", async () => {
    const a = ["--app", "rdv-solidarites"];
    const set = await quai([...a, "env-set", "DATABASE_URL=$PG_URL", "PG_URL=postgres://db:5432/rdv", "GREETING=hello world; $(rm -rf /)$$"], env);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stderr, "", "every reference resolves: no warning");
    const listed = (await quai([...a, "env"], env)).stdout;
    assert.match(listed, /^DATABASE_URL=\$PG_URL$/m);
    const resolved = JSON.parse((await quai([...a, "env", "--resolved", "--json"], env)).stdout) as { name: string; value: string }[];
    assert.equal(resolved.find((v) => v.name === "DATABASE_URL")?.value, "postgres://db:5432/rdv");
    assert.equal(resolved.find((v) => v.name === "GREETING")?.value, "hello world; $(rm -rf /)$", "shell syntax is just text");
    assert.equal((await quai([...a, "env-set", "NOEQUALS"], env)).code, 64);
    const digit = await quai([...a, "env-set", "1BAD=x"], env);
    assert.equal(digit.code, 65);
    assert.match(digit.stderr, /starts with a digit/);
    const cycle = await quai([...a, "env-set", "X=$Y", "Y=$X"], env);
    assert.equal(cycle.code, 65);
    assert.match(cycle.stderr, /cycle/);
    // Unsetting a name another variable refers to is stored, and said to leave the app as it is.
    const unset = await quai([...a, "env-unset", "GREETING", "PG_URL"], env);
    assert.equal(unset.code, 0, unset.stderr);
    assert.match(unset.stderr, /^warning: undefined variable referenced: DATABASE_URL refers to \$PG_URL; rdv-solidarites keeps running its current config/);
    const dangling = await quai([...a, "env-set", "CACHE_URL=$REDIS_URL"], env);
    assert.equal(dangling.code, 0, dangling.stderr);
    assert.match(dangling.stderr, /CACHE_URL refers to \$REDIS_URL/);
    assert.equal((await quai([...a, "env-unset", "CACHE_URL"], env)).code, 0);
    // Names Quai sets in containers: stored, and said to be hidden from the app.
    const hidden = await quai([...a, "env-set", "PORT=80", "HOME=/srv", "APP_ENV=prod"], env);
    assert.equal(hidden.code, 0, hidden.stderr);
    assert.match(hidden.stderr, /^warning: PORT is the port Quai gives each web container: web processes never see the value set here/m);
    assert.match(hidden.stderr, /^warning: HOME is set by Quai in every container/m);
    assert.doesNotMatch(hidden.stderr, /APP_ENV/);
    assert.equal((await quai([...a, "env-unset", "PORT", "HOME", "APP_ENV"], env)).code, 0);
    const missing = await quai([...a, "env", "--resolved"], env);
    assert.equal(missing.code, 65);
    assert.match(missing.stderr, /DATABASE_URL refers to \$PG_URL/);
    const jsonErr = await quai([...a, "env", "--resolved", "--json"], env);
    assert.equal(JSON.parse(jsonErr.stderr).error, "variable_reference_missing");
  });

  it("shows events with who did what", async () => {
    const events = JSON.parse((await quai(["--app", "rdv-solidarites", "events", "--json"], env)).stdout) as { type: string; user: { email: string } }[];
    assert.deepEqual(events.map((e) => e.type), ["delete_variable", "edit_variables", "delete_variable", "edit_variables", "delete_variable", "edit_variables", "new_app"]);
    assert.ok(events.every((e) => e.user.email === "admin@example.org" || e.user.email === "dev@example.org"));
  });

  it("renames, and deletes only with confirmation", async () => {
    const renamed = await quai(["--app", "rdv-solidarites", "rename", "--new-name", "rdv-solidarites-prod"], env);
    assert.equal(renamed.code, 0, renamed.stderr);
    // An app named as an argument is not the one --app gives: nothing is deleted.
    const named = await quai(["--app", "rdv-solidarites-prod", "destroy", "old-review-app", "--force"], env);
    assert.equal(named.code, 64);
    assert.match(named.stderr, /takes the app with --app .* "old-review-app", while the app given is rdv-solidarites-prod; nothing deleted/);
    assert.match((await quai(["apps"], env)).stdout, /rdv-solidarites-prod/);
    const noForce = await quai(["--app", "rdv-solidarites-prod", "destroy"], env);
    assert.equal(noForce.code, 64);
    assert.match(noForce.stderr, /--force/);
    assert.equal((await quai(["--app", "rdv-solidarites-prod", "destroy", "--force"], env)).code, 0);
    assert.match((await quai(["apps"], env)).stdout, /No apps yet/);
  });

  it("has help with an example for each command, and refuses unknown commands and flags", async () => {
    const help = await quai(["help"], env);
    assert.equal(help.code, 0);
    for (const cmd of ["login", "logout", "apps", "create", "destroy", "rename", "env", "env-set", "env-unset", "events", "server", "admin token-create"]) {
      assert.match(help.stdout, new RegExp(`^  ${cmd} `, "m"), cmd);
    }
    assert.equal((help.stdout.match(/e\.g\. quai/g) ?? []).length >= 12, true);
    // A flag with one dash, or an argument a command does not take, is refused, not ignored.
    const dash = await quai(["--app", "rdv-solidarites-prod", "events", "-n", "5"], env);
    assert.equal(dash.code, 64);
    assert.match(dash.stderr, /unexpected argument "-n": flags start with two dashes/);
    const one = await quai(["help", "env-set"], env);
    assert.equal(one.code, 0);
    assert.match(one.stdout, /^Usage: quai env-set KEY=VALUE/);
    assert.doesNotMatch(one.stdout, /env-unset/);
    const group = await quai(["help", "admin"], env);
    assert.match(group.stdout, /^Usage: quai admin token-create/m);
    assert.equal((await quai(["help", "frobnicate"], env)).code, 64);
    assert.equal((await quai(["frobnicate"], env)).code, 64);
    assert.equal((await quai(["apps", "--bogus"], env)).code, 64);
  });

  it("says when the API cannot be reached (exit 69)", async () => {
    const res = await quai(["apps"], { ...env, QUAI_URL: `http://127.0.0.1:${await freePort()}`, QUAI_TOKEN: "qt_x" });
    assert.equal(res.code, 69);
    assert.match(res.stderr, /cannot reach the Quai API/);
  });

  it("recovers when its PostgreSQL dies: restarted, data intact", async () => {
    await quai(["create", "survivor"], env);
    const { pid } = JSON.parse(readFileSync(join(home, "postgres", "connection.json"), "utf8")) as { pid: number };
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + 30_000;
    let apps = "";
    while (Date.now() < deadline) {
      const res = await quai(["apps"], env);
      if (res.code === 0) {
        apps = res.stdout;
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.match(apps, /survivor/);
    assert.ok(server.log.some((l) => /postgres: exited unexpectedly/.test(l)), "the crash is logged");
  });

  it("loses nothing when killed with SIGKILL mid-request, and starts again", async () => {
    await quai(["create", "steady"], env);
    await quai(["--app", "steady", "env-set", "KEEP=me"], env);
    // Requests in flight while the server is killed.
    const inflight = Array.from({ length: 5 }, (_, i) => quai(["--app", "steady", "env-set", `BURST_${i}=v${i}`], env));
    await new Promise((r) => setTimeout(r, 150));
    server.proc.kill("SIGKILL");
    await Promise.all(inflight);
    server = await spawnServer({ QUAI_HOME: home, QUAI_PG_FSYNC: "on" }, ["--listen", listen]);
    assert.equal(server.token, undefined, "no new owner token on a later start");
    const vars = JSON.parse((await quai(["--app", "steady", "env", "--json"], env)).stdout) as { name: string; value: string }[];
    assert.equal(vars.find((v) => v.name === "KEEP")?.value, "me");
    const names = JSON.parse((await quai(["apps", "--json"], env)).stdout).map((a: { name: string }) => a.name);
    assert.deepEqual(names.sort(), ["steady", "survivor"]);
    const events = JSON.parse((await quai(["--app", "steady", "events", "--json", "--per-page", "100"], env)).stdout) as { type: string; type_data: { names?: string[] } }[];
    // Every burst variable that exists has its event and the reverse: no change is half-made.
    const burstVars = vars.filter((v) => v.name.startsWith("BURST_")).map((v) => v.name).sort();
    const burstEvents = events.flatMap((e) => e.type_data.names ?? []).filter((n) => n.startsWith("BURST_")).sort();
    assert.deepEqual(burstVars, burstEvents);
    assert.match((await quai(["whoami"], env)).stdout, /admin@example\.org/, "tokens survived");
  });

  it("`admin` commands say when no server runs", async () => {
    await server.stop();
    const res = await quai(["admin", "token-create", "--email", "x@example.org"], env);
    assert.equal(res.code, 69);
    assert.match(res.stderr, /no running Quai server/);
    server = await spawnServer({ QUAI_HOME: home }, ["--listen", listen]);
  });
});
