// End to end: git push → build → release → containers → router, with the real git client,
// bubblewrap, cgroups and nginx. Apps here use the Procfile buildpack and Python's standard
// library so each deploy takes about a second.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { connect } from "node:net";
import WebSocket from "ws";
import { QUAI_BIN } from "../src/testing/cli.ts";
import { run } from "../src/core/run.ts";
import { clientFromToken } from "scalingo";
import { bearer, commitAll, gitApp, pythonWebApp, startLoad, startPlatform, type TestPlatform } from "../src/testing/platform.ts";
import { scratchDir } from "../src/testing/scratch.ts";

let p: TestPlatform;

async function waitUntil(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: still not so after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function json<T>(args: string[]): Promise<T> {
  const res = await p.quai([...args, "--json"]);
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as T;
}

describe("git push deploys", () => {
  let dir: string;
  before(async () => {
    p = await startPlatform();
    assert.equal((await p.quai(["create", "web-app"])).code, 0);
    dir = await gitApp(pythonWebApp("v1"));
  });
  after(async () => {
    await p?.close();
  });

  it("builds, streams the output to the pusher, records the deployment and serves the app", async () => {
    const push = await p.push("web-app", dir);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /remote: -----> Procfile app detected/);
    assert.match(push.stderr, /remote: -----> Release v1 created/);
    assert.match(push.stderr, /web-app is live at http:\/\/web-app\.localhost:\d+/);
    const res = await p.get("web-app");
    assert.equal(res.status, 200);
    assert.equal(res.body, "v1");
    assert.ok(res.headers["x-request-id"], "the router sets X-Request-ID");
    const deployments = await json<{ id: string; status: string; git_ref: string; pusher: { email: string }; image_size: number; duration: number }[]>(["--app", "web-app", "deployments"]);
    assert.equal(deployments.length, 1);
    const d = deployments[0]!;
    assert.equal(d.status, "success");
    assert.match(d.git_ref, /^[0-9a-f]{40}$/);
    assert.match(d.pusher.email, /@/);
    assert.ok(d.image_size > 0);
    const output = await p.quai(["--app", "web-app", "deployment-logs", d.id]);
    assert.match(output.stdout, /-----> Switched traffic to v1/);
  });

  it("gives containers the release's variables, PORT and CONTAINER, and nothing of the host", async () => {
    assert.equal((await p.quai(["--app", "web-app", "env-set", "GREETING=bonjour", "URL_REF=$GREETING/x"])).code, 0);
    await commitAll(dir, "env");
    assert.equal((await p.push("web-app", dir)).code, 0);
    const env = (await p.get("web-app", "/env")).body;
    assert.match(env, /^GREETING=bonjour$/m);
    assert.match(env, /^URL_REF=bonjour\/x$/m, "references are resolved");
    assert.match(env, /^CONTAINER=web-1$/m);
    assert.match(env, /^CONTAINER_SIZE=M$/m);
    assert.match(env, /^PORT=\d+$/m);
    assert.doesNotMatch(env, /QUAI_HOME|QUAI_TOKEN|PG_/);
    const port = Number(/^PORT=(\d+)$/m.exec(env)![1]);
    assert.ok(port < 32768, `app port ${port} is below the ephemeral range`);
  });

  it("deploys master, and HEAD:main from another branch", async () => {
    const master = await p.push("web-app", dir, "HEAD:master");
    assert.equal(master.code, 0, master.stderr);
    assert.match(master.stderr, /web-app is live/);
  });

  it("says a push to another branch is stored and does not deploy", async () => {
    const before = await json<unknown[]>(["--app", "web-app", "deployments"]);
    const push = await p.push("web-app", dir, "HEAD:refs/heads/feature;$(id)");
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /branch feature;\$\(id\) stored; only main or master deploys/);
    assert.equal((await json<unknown[]>(["--app", "web-app", "deployments"])).length, before.length);
    // The build runner started for the push that might have deployed has ended, and its
    // directory is gone (removed once the runner, and its cgroup, are).
    await waitUntil(async () => (await readdir(join(p.home, "runtime", "builds"))).every((n) => !n.startsWith(".pre-")), "the runner started ahead is removed");
  });

  it("two pushes from the same base take turns: the second is refused before it builds, and main holds what runs", async () => {
    assert.equal((await p.quai(["create", "two-pushes"])).code, 0);
    const first = await gitApp(pythonWebApp("base"));
    assert.equal((await p.push("two-pushes", first)).code, 0);
    const second = await scratchDir("quai-clone-");
    assert.equal((await run("git", ["clone", "-q", first, second])).code, 0);
    // The first push is slow (its hook sleeps): the second starts, and waits its turn, while it deploys.
    await writeFile(join(first, "Procfile"), "web: python3 server.py\npostdeploy: sleep 6\n");
    await writeFile(join(first, "server.py"), pythonWebApp("first")["server.py"] as string);
    await commitAll(first, "first");
    await writeFile(join(second, "server.py"), pythonWebApp("second")["server.py"] as string);
    await commitAll(second, "second");
    const a = p.push("two-pushes", first);
    await waitUntil(async () => (await json<{ status: string }[]>(["--app", "two-pushes", "deployments"])).some((d) => d.status !== "success"), "the first push deploys", 60_000);
    const b = await p.push("two-pushes", second);
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /main moved while this push waited for the one before it: fetch, merge and push again/);
    assert.equal((await a).code, 0);
    assert.equal((await p.get("two-pushes")).body, "first");
    const head = (await run("git", ["-C", first, "rev-parse", "HEAD"])).stdout.trim();
    const u = new URL(p.url);
    const remote = (await run("git", ["ls-remote", `http://q:${p.token}@${u.host}/two-pushes.git`, "refs/heads/main"])).stdout.split("\t")[0];
    assert.equal(remote, head, "main is the commit that runs");
    // Two deployments in all: the refused push built nothing.
    assert.deepEqual((await json<{ status: string }[]>(["--app", "two-pushes", "deployments"])).map((d) => d.status), ["success", "success"]);
    assert.equal((await p.quai(["--app", "two-pushes", "destroy", "--force"])).code, 0);
  });

  it("a scale during a deployment applies to the new release, and a deployment leaves one-offs running", async () => {
    assert.equal((await p.quai(["create", "busy-app"])).code, 0);
    const app = await gitApp(pythonWebApp("one"));
    assert.equal((await p.push("busy-app", app)).code, 0);
    const job = await p.quai(["--app", "busy-app", "run", "--detached", "sleep", "120"]);
    assert.equal(job.code, 0, job.stderr);
    await writeFile(join(app, "server.py"), pythonWebApp("two")["server.py"] as string);
    // Its hook gives the scale below (a CLI call or two on a loaded machine) time to land in it.
    await writeFile(join(app, "Procfile"), "web: python3 server.py\npostdeploy: sleep 12\n");
    await commitAll(app, "two");
    const push = p.push("busy-app", app);
    await waitUntil(async () => (await json<{ status: string }[]>(["--app", "busy-app", "deployments"]))[0]?.status === "starting", "the second deployment starts its containers", 60_000);
    const scaled = await p.quai(["--app", "busy-app", "scale", "web:2"]);
    assert.equal(scaled.code, 0, scaled.stderr);
    const pushed = await push;
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stderr, /The formation changed during the deployment: web:2:M/);
    const ps = await json<{ containers: { label: string; state: string; release: string }[] }>(["--app", "busy-app", "ps"]);
    const live = ps.containers.filter((c) => c.state !== "stopping");
    assert.deepEqual(live.filter((c) => c.label.startsWith("web-")).map((c) => [c.label, c.state, c.release]), [["web-1", "running", "v2"], ["web-2", "running", "v2"]], JSON.stringify(ps.containers));
    assert.ok(live.some((c) => c.label.startsWith("one-off-") && c.state === "running"), "the detached one-off still runs");
    assert.equal((await p.get("busy-app")).body, "two");
    assert.equal((await p.quai(["--app", "busy-app", "destroy", "--force"])).code, 0);
  });

  it("starts a push's build runner during the push: the build gets the pushed commit as SOURCE_VERSION", async () => {
    assert.equal((await p.quai(["create", "node-sv"])).code, 0);
    const node = await gitApp({
      "package.json": JSON.stringify({ name: "sv", version: "1.0.0", private: true, scripts: { build: "echo built from $SOURCE_VERSION", start: "node server.js" } }),
      "server.js": 'require("node:http").createServer((_q, r) => r.end("sv")).listen(process.env.PORT);\n',
    });
    // The runner's directory, named by the deployment's id, exists while the push is received.
    const builds = join(p.home, "runtime", "builds");
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const n of await readdir(builds).catch(() => [])) if (n.startsWith(".pre-")) seen.add(n.slice(".pre-".length));
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const logBefore = p.server.log.length;
    const push = await p.push("node-sv", node).finally(() => (watching = false));
    await watcher;
    assert.equal(push.code, 0, push.stderr);
    const sha = (await run("git", ["-C", node, "rev-parse", "HEAD"])).stdout.trim();
    assert.match(push.stderr, new RegExp(`built from ${sha}`));
    assert.equal((await p.get("node-sv")).body, "sv");
    assert.deepEqual((await readdir(builds)).filter((n) => n.startsWith(".pre-")), []);
    // ...and that runner is the one that built: the deployment has its id, and no build had to
    // start another (which the server's log says).
    const [deployment] = await json<{ id: string }[]>(["--app", "node-sv", "deployments"]);
    assert.ok(deployment && seen.has(deployment.id), `the deployment ${deployment?.id} is the one whose runner started during the push (seen: ${[...seen].join(", ") || "none"})`);
    const said = p.server.log.slice(logBefore).join("\n");
    assert.doesNotMatch(said, /runner started ahead/);
  });

  it("redeploys with no failed request under constant load", async () => {
    await writeFile(join(dir, "server.py"), pythonWebApp("v2")["server.py"] as string);
    await commitAll(dir, "v2");
    const load = startLoad(p.routerPort, "web-app.localhost", 2);
    const push = await p.push("web-app", dir);
    await new Promise((r) => setTimeout(r, 500));
    const { ok, failures, bodies } = await load.stop();
    assert.equal(push.code, 0, push.stderr);
    assert.deepEqual(failures, []);
    assert.ok(ok > 20, `served ${ok} requests`);
    assert.ok(bodies.has("v1") && bodies.has("v2"), "both releases answered during the switch");
    assert.equal((await p.get("web-app")).body, "v2");
  });

  it("scales web:2 and spreads requests over both containers", async () => {
    const scaled = await p.quai(["--app", "web-app", "scale", "web:2"]);
    assert.equal(scaled.code, 0, scaled.stderr);
    const ps = await json<{ containers: { label: string; state: string }[] }>(["--app", "web-app", "ps"]);
    assert.deepEqual(ps.containers.filter((c) => c.state === "running").map((c) => c.label).sort(), ["web-1", "web-2"]);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(/^CONTAINER=(.*)$/m.exec((await p.get("web-app", "/env")).body)![1]!);
    assert.deepEqual([...seen].sort(), ["web-1", "web-2"]);
    assert.equal((await p.quai(["--app", "web-app", "scale", "web:1"])).code, 0);
  });

  it("runs worker processes: they get a PORT but need not listen", async () => {
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\nworker: python3 -u -c \"import itertools, time; [print('working') or time.sleep(1) for _ in itertools.count()]\"\n");
    await commitAll(dir, "worker");
    const push = await p.push("web-app", dir);
    assert.equal(push.code, 0, push.stderr);
    const scaled = await p.quai(["--app", "web-app", "scale", "worker:1:S"]);
    assert.equal(scaled.code, 0, scaled.stderr);
    const ps = await json<{ containers: { label: string; state: string; size: string }[] }>(["--app", "web-app", "ps"]);
    assert.ok(ps.containers.some((c) => c.label === "worker-1" && c.state === "running" && c.size === "S"), JSON.stringify(ps.containers));
    assert.equal((await p.quai(["--app", "web-app", "scale", "worker:0"])).code, 0);
    const events = (await p.quai(["--app", "web-app", "events", "--per-page", "2"])).stdout;
    assert.match(events, /scale +web-app +\S+ +worker:0\n.*scale +web-app +\S+ +worker:1:S\n/s);
  });

  it("restarts web containers with new ones up before the old ones go", async () => {
    const before = await json<{ containers: { id: string; label: string }[] }>(["--app", "web-app", "ps"]);
    const res = await p.quai(["--app", "web-app", "restart", "web"]);
    assert.equal(res.code, 0, res.stderr);
    const after = await json<{ containers: { id: string; label: string; state: string }[] }>(["--app", "web-app", "ps"]);
    assert.deepEqual(after.containers.map((c) => [c.label, c.state]), [["web-1", "running"]]);
    assert.notEqual(after.containers[0]!.id, before.containers[0]!.id, "a new container");
    assert.equal((await p.get("web-app")).status, 200);
    const unknown = await p.quai(["--app", "web-app", "restart", "nope"]);
    assert.equal(unknown.code, 65);
  });

  it("the scalingo client scales, lists containers and sizes, restarts, and reads the logs", async () => {
    const client = await clientFromToken(p.token, { apiUrl: p.url, authApiUrl: p.url });
    const scaled = await client.Containers.scale("web-app", [{ name: "web", amount: 2, size: "S" }]);
    assert.deepEqual(scaled.formation.filter((f) => f.name === "web"), [{ name: "web", amount: 2, size: "S" }]);
    assert.equal(scaled.operation?.status, "done");
    const processes = await client.Containers.processes("web-app");
    assert.deepEqual(processes.map((c) => [c.type, c.type_index, (c as unknown as { size: string; state: string }).size, (c as unknown as { state: string }).state]).sort(), [["web", 1, "S", "running"], ["web", 2, "S", "running"]]);
    assert.deepEqual((await client.Containers.for("web-app")).filter((f) => f.name === "web").map((f) => [f.name, f.amount, f.size]), [["web", 2, "S"]]);
    assert.deepEqual((await client.Containers.availableSizes()).map((s) => s.name), ["S", "M", "L", "XL", "2XL"]);
    const op = await client.Containers.restart("web-app", "web");
    assert.equal(op.status, "done");
    await client.Containers.scale("web-app", [{ name: "web", amount: 1, size: "M" }]);
    const oneOff = await client.Containers.run("web-app", { command: "sleep 60", detached: true });
    await client.Containers.stop("web-app", (oneOff as unknown as { id: string }).id);
    const after = await client.Containers.processes("web-app");
    assert.ok(!after.some((c) => c.type === "one-off"), "the one-off was stopped");
    const logsUrl = await client.Apps.logsURL("web-app");
    const logs = await (await fetch(`${logsUrl}&n=20`)).text();
    assert.match(logs, /\[web-1\] /);
    assert.equal((await (await fetch(`${logsUrl}&n=1`)).text()).trimEnd().split("\n").length, 1);
    for (const bad of ["n=abc", "n=0", "n=-5", "n=2.5", "stream=maybe"]) {
      const res = await fetch(`${logsUrl}&${bad}`);
      assert.equal(res.status, 422, bad);
      assert.equal(((await res.json()) as { error: string }).error, "validation_failed", bad);
    }
    // A forged or altered token is refused as such, whatever its bytes.
    const u = new URL(logsUrl);
    const [exp, sig] = (u.searchParams.get("token") ?? "").split(".") as [string, string];
    for (const token of [`${exp}.${sig}x`, `${exp}.${sig.slice(0, -1)}`, `${exp}.é${sig.slice(2)}`, `${Number(exp) + 1}.${sig}`, "9999999999.%C3%A9", ""]) {
      u.searchParams.set("token", token);
      const res = await fetch(u);
      assert.equal(res.status, 401, token);
      assert.equal(((await res.json()) as { error: string }).error, "token_invalid", token);
    }
  });

  it("refuses bad scale requests with the catalogue's errors", async () => {
    for (const [arg, pattern] of [["web:-1", /whole number from 0 to 20/], ["web:1000", /whole number from 0 to 20/], ["web:1:XXL", /unknown size "XXL"/], ["nope:1", /unknown process type "nope"/]] as const) {
      const res = await p.quai(["--app", "web-app", "scale", arg]);
      assert.equal(res.code, 65, `${arg}: ${res.stderr}`);
      assert.match(res.stderr, pattern);
    }
    const bad = await p.quai(["--app", "web-app", "scale", "web:2:M:extra"]);
    assert.equal(bad.code, 64, bad.stderr);
    // A fraction is an amount that is wrong, not a size.
    const fraction = await p.quai(["--app", "web-app", "scale", "web:1.5"]);
    assert.equal(fraction.code, 64, fraction.stderr);
    assert.match(fraction.stderr, /amount "1\.5" is not a whole number/);
    // The same type twice is ambiguous: refused, and the formation is left as it was.
    const before = await json<{ formation: { name: string; amount: number }[] }>(["--app", "web-app", "ps"]);
    const twice = await p.quai(["--app", "web-app", "scale", "web:2:M", "web:3"]);
    assert.equal(twice.code, 65, twice.stderr);
    assert.match(twice.stderr, /web is named twice/);
    assert.deepEqual((await json<{ formation: { name: string; amount: number }[] }>(["--app", "web-app", "ps"])).formation, before.formation);
    // Before a first deployment there are no process types to check against: the row is kept,
    // and ps says that nothing of it runs.
    assert.equal((await p.quai(["create", "undeployed-app"])).code, 0);
    assert.equal((await p.quai(["--app", "undeployed-app", "scale", "wbe:2"])).code, 0);
    assert.match((await p.quai(["--app", "undeployed-app", "ps"])).stdout, /^wbe +2 +M +\(not in the current release: none run\)$/m);
    // But only a name a Procfile could have.
    const token = await bearer(p.url, p.token);
    const post = (path: string, body: unknown) => fetch(`${p.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    for (const name of ["", "one-off", "a b"]) {
      const res = await post("/v1/apps/undeployed-app/scale", { containers: [{ name, amount: 1 }] });
      assert.equal(res.status, 422, name);
      assert.equal(((await res.json()) as { error: string }).error, "formation_invalid", name);
    }
    // A rollback to a version no integer column holds is a release that does not exist.
    for (const version of [2_147_483_648, 1e300, -1, 0, 1.5]) {
      const res = await post("/v1/apps/web-app/rollback", { version });
      assert.equal(res.status, 404, String(version));
      assert.equal(((await res.json()) as { error: string }).error, "release_not_found", String(version));
    }
  });

  it("runs one-off commands as argv, keeps their exit code, and records who ran what", async () => {
    const ok = await p.quai(["--app", "web-app", "run", "python3", "-c", "import os,sys; print(os.environ['CONTAINER'], sys.argv[1:])", "$(id)", ";", "ls"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /one-off-\d+ \['\$\(id\)', ';', 'ls'\]/);
    const failing = await p.quai(["--app", "web-app", "run", "sh", "-c", "echo oops >&2; exit 7"]);
    assert.equal(failing.code, 7);
    assert.match(failing.stderr, /oops/);
    const withInput = await p.quai(["--app", "web-app", "run", "--env", "X=42", "sh", "-c", "read line; echo \"$X:$line\""], "hello\n");
    assert.equal(withInput.stdout.trim(), "42:hello");
    // Outside the app's work tree, in a scratch directory the run removes.
    const upload = join(await scratchDir("quai-upload-"), "dump.sql");
    await writeFile(upload, "INSERT INTO t VALUES (1);\n");
    const withFile = await p.quai(["--app", "web-app", "run", "--file", upload, "sh", "-c", "cat /tmp/uploads/*.sql"]);
    assert.equal(withFile.code, 0, withFile.stderr);
    assert.equal(withFile.stdout, "INSERT INTO t VALUES (1);\n");
    const badName = await p.quai(["--app", "web-app", "run", "--file", join(dir, "missing.sql"), "true"]);
    assert.equal(badName.code, 64);
    assert.match(badName.stderr, /missing\.sql: no such file/);
    // An empty program, as a shell line or as argv, is refused before any container starts.
    for (const argv of [[""], ["  "], ["", "-c", "true"]]) {
      const empty = await p.quai(["--app", "web-app", "run", ...argv]);
      assert.equal(empty.code, 65, `${JSON.stringify(argv)}: ${empty.stderr}`);
      assert.match(empty.stderr, /the command is empty/);
    }
    const events = await json<{ type: string; type_data: { command: unknown } }[]>(["--app", "web-app", "events"]);
    assert.ok(events.some((e) => e.type === "run" && JSON.stringify(e.type_data.command).includes("exit 7")));
    // The table says who ran what too, the command quoted as it could be typed again.
    assert.match((await p.quai(["--app", "web-app", "events"])).stdout, /run +web-app +\S+ +one-off-\d+: sh -c 'echo oops >&2; exit 7'\n/);
  });

  it("gives a one-off a terminal with --tty, and Ctrl-C reaches the command", async () => {
    const tty = await p.quai(["--app", "web-app", "run", "--tty", "python3", "-c", "import sys; print(sys.stdin.isatty(), sys.stdout.isatty())"]);
    assert.equal(tty.code, 0, tty.stderr);
    assert.match(tty.stdout, /True True/);
    const child = spawn(process.execPath, [QUAI_BIN, "--app", "web-app", "run", "--tty", "python3", "-c", "import time; print('ready', flush=True); time.sleep(60)"], { env: { ...process.env, ...p.env }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) child.stdin.write("\x03");
    });
    const [code] = (await once(child, "exit")) as [number];
    assert.equal(code, 130, "SIGINT's exit code comes back");
    assert.match(out, /KeyboardInterrupt/);
  });

  it("serves the run WebSocket strictly: a bad path or input, a client gone and a stop leave nothing behind", async () => {
    const u = new URL(p.url);
    // An upgrade nobody serves, or with an app name that does not decode, is answered and closed:
    // it once stopped the control plane (an exception in the server's upgrade event).
    for (const [path, status] of [["/v1/apps/%E0%A4%A/run/attach", "400"], ["/v1/nothing/here", "404"]] as const) {
      const line = await new Promise<string>((resolve, reject) => {
        const sock = connect(Number(u.port), u.hostname, () => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`));
        sock.setTimeout(5000, () => reject(new Error(`${path}: no answer in 5 s`)));
        sock.once("data", (b) => resolve(b.toString().split("\r\n")[0] as string));
        sock.on("error", reject);
      });
      assert.match(line, new RegExp(`^HTTP/1.1 ${status} `), path);
    }
    assert.equal((await p.quai(["apps"])).code, 0, "the control plane still answers");

    const token = await bearer(p.url, p.token);
    /** Opens an attach, authenticates, sends `start`; resolves with the messages until the socket closes. */
    const attach = (start: Record<string, unknown>, onMessage: (m: { type: string }, ws: WebSocket) => void = () => {}) =>
      new Promise<{ type: string; code?: number; error?: string; data?: string }[]>((resolve, reject) => {
        const ws = new WebSocket(`ws://${u.host}/v1/apps/web-app/run/attach`);
        const got: { type: string }[] = [];
        ws.on("open", () => ws.send(JSON.stringify({ type: "auth", data: { token } })));
        ws.on("message", (data) => {
          const m = JSON.parse(String(data)) as { type: string };
          got.push(m);
          if (m.type === "ready") ws.send(JSON.stringify({ type: "start", ...start }));
          onMessage(m, ws);
        });
        ws.on("close", () => resolve(got));
        ws.on("error", reject);
      });
    const oneOffs = async () => (await json<{ containers: { label: string }[] }>(["--app", "web-app", "ps"])).containers.filter((c) => c.label.startsWith("one-off-"));
    // Values must be strings; a terminal size out of range is left to the pty's default.
    const bad = await attach({ command: ["true"], env: { FOO: {} } });
    assert.deepEqual(bad.filter((m) => m.type === "error").map((m) => m.error), ["validation_failed"]);
    const odd = await attach({ command: ["sh", "-c", "stty size"], tty: true, cols: 70_000, rows: -1 });
    assert.equal(odd.find((m) => m.type === "exit")?.code, 0);
    assert.match(odd.filter((m) => m.type === "stdout").map((m) => Buffer.from(m.data as string, "base64").toString()).join(""), /^24 80\s*$/);
    // The terminal follows the client's window during the session; a size out of range is ignored.
    let shown = "";
    const resized = await attach({ command: ["sh", "-c", "stty size; read x; stty size"], tty: true, cols: 90, rows: 20 }, (m, ws) => {
      if (m.type !== "stdout") return;
      const before = shown;
      shown += Buffer.from((m as { type: string; data?: string }).data ?? "", "base64").toString();
      if (!before.includes("20 90") && shown.includes("20 90")) {
        ws.send(JSON.stringify({ type: "resize", cols: 0, rows: 10 }));
        ws.send(JSON.stringify({ type: "resize", cols: 120, rows: 40 }));
        ws.send(JSON.stringify({ type: "stdin", data: Buffer.from("go\n").toString("base64") }));
      }
    });
    assert.equal(resized.find((m) => m.type === "exit")?.code, 0, shown);
    assert.match(shown, /^20 90\s+go\s+40 120\s*$/);
    // A client that goes away: its one-off goes too.
    await attach({ command: ["sleep", "60"] }, (m, ws) => m.type === "started" && ws.close());
    await waitUntil(async () => (await oneOffs()).length === 0, "the one-off of a client gone is removed", 15_000);
    // Stopped through the API: the command is killed, and the client told so.
    const stopped = await attach({ command: ["sh", "-c", "sleep 20; echo still-ran"] }, (m) => {
      const label = (m as { container?: string }).container;
      if (m.type === "started") void fetch(`${p.url}/v1/apps/web-app/containers/${label}/stop`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    });
    assert.deepEqual(stopped.filter((m) => m.type === "exit").map((m) => m.code), [137]);
    assert.ok(!stopped.some((m) => m.type === "stdout"), "the command did not run on");
    await waitUntil(async () => (await oneOffs()).length === 0, "the stopped one-off is removed", 15_000);
  });

  it("keeps serving when the control plane is killed, and re-adopts the containers", async () => {
    const before = await json<{ containers: { label: string; created_at: string }[] }>(["--app", "web-app", "ps"]);
    await p.restart(true);
    assert.equal((await p.get("web-app")).body, "v2", "the app answers while the server is down");
    const after = await json<{ containers: { label: string; created_at: string; state: string; restarts: number }[] }>(["--app", "web-app", "ps"]);
    assert.deepEqual(after.containers.map((c) => [c.label, c.created_at, c.state, c.restarts]), before.containers.map((c) => [c.label, c.created_at, "running", 0]));
    assert.equal((await p.get("web-app")).body, "v2");
  });

  it("rolls back to an earlier release through the same zero-downtime path", async () => {
    const rb = await p.quai(["--app", "web-app", "rollback", "v1"]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stderr, /databases are not rolled back/);
    assert.equal((await p.get("web-app")).body, "v1");
    const releases = await json<{ version: number; current: boolean; description: string }[]>(["--app", "web-app", "releases"]);
    assert.equal(releases[0]!.description, "Rollback to v1");
    assert.ok(releases[0]!.current);
  });

  it("a config change makes a release and restarts the app with its new variables", async () => {
    const before = await json<{ version: number }[]>(["--app", "web-app", "releases"]);
    assert.equal((await p.quai(["--app", "web-app", "env-set", "FEATURE_X=on"])).code, 0);
    let releases = before;
    for (let i = 0; i < 100 && releases.length === before.length; i++) {
      await new Promise((r) => setTimeout(r, 100));
      releases = await json<{ version: number; description: string }[]>(["--app", "web-app", "releases"]);
    }
    const top = releases[0] as unknown as { version: number; description: string };
    assert.equal(top.description, "Config change");
    for (let i = 0; i < 100 && !/^FEATURE_X=on$/m.test((await p.get("web-app", "/env")).body); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match((await p.get("web-app", "/env")).body, /^FEATURE_X=on$/m);
    assert.equal((await p.get("web-app")).body, "v1", "same code: the slug of the current release");
  });

  it("restarts a crashed container with backoff and shows the crash", async () => {
    const kill = await p.quai(["--app", "web-app", "run", "true"]);
    assert.equal(kill.code, 0);
    // Kill the web process from the host, as an OOM kill or a bug would.
    const ps = await json<{ containers: { id: string; label: string }[] }>(["--app", "web-app", "ps"]);
    const web = ps.containers.find((c) => c.label === "web-1")!;
    const { readFile } = await import("node:fs/promises");
    const state = JSON.parse(await readFile(join(p.home, "runtime", "state", web.id, "state.json"), "utf8")) as { pid: number };
    process.kill(state.pid, "SIGKILL");
    let seen: { state: string; restarts: number; last_exit: string | null } | undefined;
    for (let i = 0; i < 100; i++) {
      const now = await json<{ containers: { label: string; state: string; restarts: number; last_exit: string | null }[] }>(["--app", "web-app", "ps"]);
      seen = now.containers.find((c) => c.label === "web-1");
      if (seen && seen.restarts >= 1 && seen.state === "running") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen?.restarts, 1);
    assert.equal(seen?.state, "running");
    assert.ok(seen?.last_exit);
    const events = await json<{ type: string }[]>(["--app", "web-app", "events"]);
    assert.ok(events.some((e) => e.type === "crash"), "the crash is an event");
    assert.match((await p.quai(["--app", "web-app", "events"])).stdout, /crash +web-app +- +web-1 exited \(.+\), restart #1\n/);
    for (let i = 0; i < 50 && (await p.get("web-app")).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await p.get("web-app")).status, 200);
  });

  it("shows container output and router access lines in the app's logs", async () => {
    const logs = await p.quai(["--app", "web-app", "logs", "-n", "200"]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /\[web-1\] listening on \d+/);
    assert.match(logs.stdout, /\[router\] .*host=web-app\.localhost status=200/);
    const detached = await p.quai(["--app", "web-app", "run", "--detached", "sh", "-c", "echo detached-output"]);
    assert.equal(detached.code, 0, detached.stderr);
    const label = /Started (one-off-\d+)/.exec(detached.stdout)![1]!;
    let lines = "";
    for (let i = 0; i < 50 && !lines.includes("detached-output"); i++) {
      await new Promise((r) => setTimeout(r, 200));
      lines = (await p.quai(["--app", "web-app", "logs", "--filter", label])).stdout;
    }
    assert.match(lines, new RegExp(`\\[${label}\\] detached-output`));
    const web = await p.quai(["--app", "web-app", "logs", "--filter", "router", "-n", "5"]);
    assert.doesNotMatch(web.stdout, /\[web-1\]/);
    assert.equal(web.stderr, "");
    // A filter that matches nothing (a typo) says so rather than printing nothing.
    const typo = await p.quai(["--app", "web-app", "logs", "--filter", "wbe"]);
    assert.equal(typo.code, 0, typo.stderr);
    assert.equal(typo.stdout, "");
    assert.match(typo.stderr, /no log lines from "wbe"/);
  });

  it("skips lines for a log follower that does not read, and tells it how many, rather than buffering them", async () => {
    const client = await clientFromToken(p.token, { apiUrl: p.url, authApiUrl: p.url });
    const url = new URL(`${await client.Apps.logsURL("web-app")}&n=1&stream=true`);
    // A reader that takes nothing for now: its socket fills, then the server's buffer for it.
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, resolve).on("error", reject));
    res.pause();
    // About 24 MB of lines, shipped into the stream at its pace.
    const flood = await p.quai(["--app", "web-app", "run", "--detached", "sh", "-c", "i=0; while [ $i -lt 200 ]; do head -c 120000 /dev/zero | tr '\\0' x | fold -w 119; i=$((i+1)); done"]);
    assert.equal(flood.code, 0, flood.stderr);
    const label = /Started (one-off-\d+)/.exec(flood.stdout)![1]!;
    await waitUntil(async () => !(await json<{ containers: { label: string }[] }>(["--app", "web-app", "ps"])).containers.some((c) => c.label === label), "the flood ends", 60_000);
    await new Promise((r) => setTimeout(r, 3000));
    // Now read what was kept for it.
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    res.resume();
    // The next line it gets (a request's access line) comes after the count of those skipped.
    await waitUntil(async () => {
      await p.get("web-app");
      return /lines skipped: this reader did not keep up/.test(text);
    }, "the follower is told lines were skipped", 30_000);
    res.destroy();
    const skipped = Number(/quai: (\d+) lines skipped/.exec(text)?.[1]);
    assert.ok(skipped > 0);
    assert.ok(text.length < 16 * 1024 * 1024, `${text.length} bytes were held for the reader`);
  });

  it("stops with a log follower and an attached run open: it ends them rather than wait for them", async () => {
    const client = await clientFromToken(p.token, { apiUrl: p.url, authApiUrl: p.url });
    const logsUrl = `${await client.Apps.logsURL("web-app")}&n=1&stream=true`;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(logsUrl, resolve).on("error", reject));
    res.resume();
    const ended = once(res, "close");
    const run = spawn(process.execPath, [QUAI_BIN, "--app", "web-app", "run", "sleep", "600"], { env: { ...process.env, ...p.env }, stdio: "ignore" });
    const runEnded = once(run, "exit");
    await waitUntil(async () => (await json<{ containers: { label: string }[] }>(["--app", "web-app", "ps"])).containers.some((c) => c.label.startsWith("one-off-")), "the run starts", 30_000);
    const started = Date.now();
    await p.restart(false);
    assert.ok(Date.now() - started < 20_000, `the stop took ${Date.now() - started} ms`);
    await ended;
    await runEnded;
    assert.equal((await p.get("web-app")).status, 200, "the app kept serving");
  });
});
