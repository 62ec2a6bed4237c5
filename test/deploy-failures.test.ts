// Deployments that fail after the build: a postdeploy hook that fails, a release that crashes on
// boot, one that never listens, a Procfile with an empty command, a control plane killed during
// a deployment (in its hook, or while the router tries the new release ahead of its switch).
// Each leaves the previous release serving.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { SLUG_DIR } from "../src/pipeline/slug.ts";
import { bearer, commitAll, gitApp, pythonWebApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;

async function latest(app: string): Promise<{ id: string; status: string; error: string | null }> {
  const res = await p.quai(["--app", app, "deployments", "--json"]);
  return (JSON.parse(res.stdout) as { id: string; status: string; error: string | null }[])[0]!;
}

describe("failed deployments keep the previous release serving", () => {
  let dir: string;
  before(async () => {
    p = await startPlatform({ QUAI_START_TIMEOUT: "4" });
    assert.equal((await p.quai(["create", "steady"])).code, 0);
    dir = await gitApp(pythonWebApp("good"));
    const push = await p.push("steady", dir);
    assert.equal(push.code, 0, push.stderr);
  });
  after(async () => {
    await p?.close();
  });

  it("runs the postdeploy hook before the switch; a failing hook ends hook-error", async () => {
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\npostdeploy: python3 -c 'import sys; print(\"migrating\"); sys.exit(3)'\n");
    await writeFile(join(dir, "server.py"), pythonWebApp("bad-migration")["server.py"] as string);
    await commitAll(dir, "hook fails");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0, "the push is refused");
    assert.match(push.stderr, /Running the postdeploy hook/);
    assert.match(push.stderr, /migrating/);
    assert.match(push.stderr, /Deployment ended: hook-error/);
    assert.equal((await latest("steady")).status, "hook-error");
    assert.equal((await p.get("steady")).body, "good");
    const ps = JSON.parse((await p.quai(["--app", "steady", "ps", "--json"])).stdout) as { containers: { label: string }[] };
    assert.deepEqual(ps.containers.map((c) => c.label), ["web-1"], "the new containers were stopped");
  });

  it("a passing postdeploy hook sees the new release's code and variables", async () => {
    assert.equal((await p.quai(["--app", "steady", "env-set", "MIGRATION=ok"])).code, 0);
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\npostdeploy: sh -c 'echo \"migration $MIGRATION in $CONTAINER\"'\n");
    await writeFile(join(dir, "server.py"), pythonWebApp("migrated")["server.py"] as string);
    await commitAll(dir, "hook passes");
    const push = await p.push("steady", dir);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /migration ok in postdeploy-1/);
    assert.equal((await p.get("steady")).body, "migrated");
  });

  it("a release that crashes on boot ends crashed-error, with its output", async () => {
    await writeFile(join(dir, "Procfile"), "web: python3 -c 'import sys; print(\"boom at boot\"); sys.exit(1)'\n");
    await commitAll(dir, "crash");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /crashed-error/);
    assert.match(push.stderr, /boom at boot/);
    assert.equal((await latest("steady")).status, "crashed-error");
    assert.equal((await p.get("steady")).body, "migrated");
  });

  it("rollback goes back to the newest earlier release that went live, past failed ones", async () => {
    // v1 "good", v2 hook-error, v3 config change ("good"), v4 "migrated" (current), v5 crashed-error.
    const back = await p.quai(["--app", "steady", "rollback"]);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /Rolling back to v3 \(/);
    assert.equal((await p.get("steady")).body, "good");
    // From that rollback (v6), the way back is v4: v5 never served.
    const again = await p.quai(["--app", "steady", "rollback"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /Rolling back to v4 \(/);
    assert.equal((await p.get("steady")).body, "migrated");
  });

  it("a container that exits while the postdeploy hook runs fails the deployment: crashed-error", async () => {
    // Ready at once, gone after a second, while the hook still runs: the release does not hold.
    await writeFile(join(dir, "Procfile"), "web: python3 server.py & pid=$!; sleep 1; kill $pid; exit 3\npostdeploy: sleep 4\n");
    await commitAll(dir, "exits during the hook");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /web-1 exited \(.*\) while the postdeploy hook ran/);
    assert.equal((await latest("steady")).status, "crashed-error");
    assert.equal((await p.get("steady")).body, "migrated");
    const ps = JSON.parse((await p.quai(["--app", "steady", "ps", "--json"])).stdout) as { containers: { label: string; state: string; release: string }[] };
    assert.deepEqual(ps.containers.filter((c) => c.state !== "stopping").map((c) => [c.label, c.state, c.release]), [["web-1", "running", "v7"]]);
  });

  it("a release that never listens on $PORT ends timeout-error", async () => {
    await writeFile(join(dir, "Procfile"), "web: sleep 600\n");
    await commitAll(dir, "never listens");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /did not accept connections on \$PORT within 4 s/);
    assert.equal((await latest("steady")).status, "timeout-error");
    assert.equal((await p.get("steady")).body, "migrated");
  });

  it("waits for the health-check path: a release whose check fails never gets traffic", async () => {
    const token = await bearer(p.url, p.token);
    const patch = (path: string) => fetch(`${p.url}/v1/apps/steady`, { method: "PATCH", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ app: { health_check_path: path } }) });
    const bad = await patch("/with space");
    assert.equal(bad.status, 422);
    assert.equal(((await bad.json()) as { error: string }).error, "health_check_path_invalid");
    assert.equal((await patch("/health")).status, 200);
    assert.equal((await p.quai(["--app", "steady", "env-set", "HEALTH_STATUS=503"])).code, 0);
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\n");
    await writeFile(join(dir, "server.py"), pythonWebApp("unhealthy")["server.py"] as string);
    await commitAll(dir, "unhealthy");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /answered 503 on \/health within 4 s/);
    assert.equal((await latest("steady")).status, "timeout-error");
    assert.equal((await p.get("steady")).body, "migrated");
    assert.equal((await p.quai(["--app", "steady", "env-unset", "HEALTH_STATUS"])).code, 0);
    const cleared = await p.quai(["--app", "steady", "app-update", "--health-check-path", ""]);
    assert.equal(cleared.code, 0, cleared.stderr);
    const info = JSON.parse((await p.quai(["--app", "steady", "app-info", "--json"])).stdout) as { health_check_path: string | null };
    assert.equal(info.health_check_path, null);
  });

  it("a Procfile with an empty command is a build error naming the line", async () => {
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\nworker:\n");
    await commitAll(dir, "empty command");
    const push = await p.push("steady", dir);
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /Procfile line 2: process type "worker" has an empty command/);
    assert.equal((await latest("steady")).status, "build-error");
    assert.equal((await p.get("steady")).body, "migrated");
  });

  it("reads a Procfile or .buildpacks that links out of the app, or is a FIFO, never: a build error", async () => {
    // A root-only file of the host: the control plane (root) must not be led to read and show it.
    const host = await mkdtemp(join(tmpdir(), "quai-host-"));
    const secret = join(host, "secret");
    await writeFile(secret, "rootsecret: TOP-SECRET-5055\n", { mode: 0o600 });
    try {
      for (const name of ["Procfile", ".buildpacks"]) {
        for (const f of ["Procfile", ".buildpacks"]) await rm(join(dir, f), { force: true });
        // The other file is a plain one: .buildpacks names the buildpack, so no detection looks first.
        if (name === "Procfile") await writeFile(join(dir, ".buildpacks"), "procfile\n");
        else await writeFile(join(dir, "Procfile"), "web: python3 server.py\n");
        await symlink(secret, join(dir, name));
        await commitAll(dir, `${name} links out`);
        const push = await p.push("steady", dir);
        assert.notEqual(push.code, 0, name);
        assert.match(push.stderr, new RegExp(`${name.replace(".", "\\.")} is a symlink out of the app's tree`));
        assert.doesNotMatch(push.stderr, /TOP-SECRET/);
        assert.equal((await latest("steady")).status, "build-error");
        assert.doesNotMatch((await p.quai(["--app", "steady", "ps"])).stdout, /TOP-SECRET/);
      }
      for (const f of ["Procfile", ".buildpacks"]) await rm(join(dir, f), { force: true });
      // A FIFO (an archive can hold one) would have blocked a reader thread of the control plane.
      const tree = join(host, "tree");
      await mkdir(tree);
      await writeFile(join(tree, "server.py"), pythonWebApp("fifo")["server.py"] as string);
      await writeFile(join(tree, "Procfile"), "web: python3 server.py\n");
      execFileSync("mkfifo", [join(tree, ".buildpacks")]);
      execFileSync("tar", ["-czf", join(host, "fifo.tar.gz"), "-C", tree, "."]);
      const fifo = await p.quai(["--app", "steady", "deploy", join(host, "fifo.tar.gz")]);
      assert.notEqual(fifo.code, 0);
      assert.match(fifo.stdout + fifo.stderr, /\.buildpacks is not a regular file/);
      assert.equal((await latest("steady")).status, "build-error");
      // A link within the tree is the app's own file, and is read.
      await writeFile(join(dir, "Procfile.prod"), "web: python3 server.py\n");
      await writeFile(join(dir, "server.py"), pythonWebApp("migrated")["server.py"] as string);
      await symlink("Procfile.prod", join(dir, "Procfile"));
      await commitAll(dir, "Procfile links to Procfile.prod");
      const push = await p.push("steady", dir);
      assert.equal(push.code, 0, push.stderr);
      assert.equal((await p.get("steady")).body, "migrated");
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });

  it("a deployment cancelled while its containers start ends aborted; the old release serves", async () => {
    // A long hook: the cancel (a CLI call, slow on a loaded machine) must arrive while it runs.
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\npostdeploy: sleep 15\n");
    await writeFile(join(dir, "server.py"), pythonWebApp("cancelled")["server.py"] as string);
    await commitAll(dir, "to cancel");
    const u = new URL(p.url);
    const git = spawn("git", ["-C", dir, "push", `http://user:${p.token}@${u.host}/steady.git`, "HEAD:main"], { stdio: "ignore" });
    const gitExit = new Promise((r) => git.once("exit", () => r(true)));
    for (let i = 0; i < 200 && (await latest("steady")).status !== "starting"; i++) await new Promise((r) => setTimeout(r, 100));
    const cancel = await p.quai(["--app", "steady", "deployment-cancel"]);
    assert.equal(cancel.code, 0, cancel.stderr);
    const exited = await Promise.race([gitExit, new Promise((r) => setTimeout(() => r(false), 20_000))]);
    let d = await latest("steady");
    assert.ok(exited, `the push ended: ${JSON.stringify(d)} ${(await p.quai(["--app", "steady", "deployment-logs", d.id])).stdout}`);
    for (let i = 0; i < 100 && d.status === "starting"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      d = await latest("steady");
    }
    assert.equal(d.status, "aborted");
    assert.equal((await p.get("steady")).body, "migrated");
    const ps = JSON.parse((await p.quai(["--app", "steady", "ps", "--json"])).stdout) as { containers: { label: string }[] };
    assert.deepEqual(ps.containers.map((c) => c.label), ["web-1"]);
  });

  it("a control plane killed during a deployment: apps keep serving, the deployment ends aborted", async () => {
    await writeFile(join(dir, "Procfile"), "web: python3 server.py\npostdeploy: sleep 30\n");
    await writeFile(join(dir, "server.py"), pythonWebApp("never switched")["server.py"] as string);
    await commitAll(dir, "slow hook");
    const u = new URL(p.url);
    const git = spawn("git", ["-C", dir, "push", `http://user:${p.token}@${u.host}/steady.git`, "HEAD:main"], { stdio: "ignore" });
    for (let i = 0; i < 200 && (await latest("steady")).status !== "starting"; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    await p.restart(true);
    git.kill("SIGKILL");
    assert.equal((await p.get("steady")).body, "migrated");
    const d = await latest("steady");
    assert.equal(d.status, "aborted");
    assert.match(d.error ?? "", /control plane stopped/);
    const ps = JSON.parse((await p.quai(["--app", "steady", "ps", "--json"])).stdout) as { containers: { label: string; release: string }[] };
    assert.deepEqual(ps.containers.map((c) => c.label), ["web-1"], "the half-started containers were removed");
  });

  /**
   * Pushes a release routed ahead of its switch (no hook, no health check) whose web-1 listens at
   * once and whose web-2 never does; resolves once web-1 answered through the router.
   */
  async function pushHalfReady(label: string): Promise<{ git: ReturnType<typeof spawn>; pushed: Promise<{ code: number | null; stderr: string }> }> {
    await writeFile(join(dir, "Procfile"), "web: sh -c 'if [ \"$CONTAINER\" = web-2 ]; then exec sleep 60; fi; exec python3 server.py'\n");
    await writeFile(join(dir, "server.py"), pythonWebApp(label)["server.py"] as string);
    await commitAll(dir, label);
    const u = new URL(p.url);
    const git = spawn("git", ["-C", dir, "push", `http://user:${p.token}@${u.host}/steady.git`, "HEAD:main"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    git.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    const pushed = new Promise<{ code: number | null; stderr: string }>((r) => git.on("close", (code) => r({ code, stderr })));
    let body = "";
    for (let i = 0; i < 800 && body !== label; i++) {
      body = (await p.get("steady")).body;
      if (body !== label) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(body, label, "the new release's web-1 took traffic before the switch");
    return { git, pushed };
  }

  /** The previous release answers every request, and only its containers are left. */
  async function previousServes(): Promise<void> {
    for (let i = 0; i < 100 && (await p.get("steady")).body !== "migrated"; i++) await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 15; i++) {
      const r = await p.get("steady");
      assert.deepEqual([r.status, r.body], [200, "migrated"]);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ps = JSON.parse((await p.quai(["--app", "steady", "ps", "--json"])).stdout) as { containers: { label: string }[] };
    assert.deepEqual(ps.containers.map((c) => c.label).sort(), ["web-1", "web-2"]);
  }

  it("a release routed ahead of its switch whose second container never listens: timeout-error, and traffic goes back", async () => {
    assert.equal((await p.quai(["--app", "steady", "scale", "web:2"])).code, 0);
    const { pushed } = await pushHalfReady("half ready");
    const { code, stderr } = await pushed;
    assert.notEqual(code, 0);
    assert.match(stderr, /web-2 did not accept connections on \$PORT/);
    assert.match(stderr, /Deployment ended: timeout-error/);
    await previousServes();
  });

  it("a rollback whose slug is lost cannot start its container: the current release serves, and nothing of the new one is left", async () => {
    assert.equal((await p.quai(["create", "lost-slug"])).code, 0);
    const work = await gitApp(pythonWebApp("first"));
    const slugs = join(p.home, "runtime", "slugs");
    const before = new Set(await readdir(slugs));
    assert.equal((await p.push("lost-slug", work)).code, 0);
    const firstSlug = (await readdir(slugs)).filter((d) => !before.has(d) && SLUG_DIR.test(d));
    assert.equal(firstSlug.length, 1, "v1's slug directory");
    await writeFile(join(work, "server.py"), pythonWebApp("second")["server.py"] as string);
    await commitAll(work, "second");
    assert.equal((await p.push("lost-slug", work)).code, 0);
    // v1's slug is gone from the disk and from the blob store (a restore that missed them).
    const key = (SLUG_DIR.exec(firstSlug[0] as string) as RegExpExecArray)[1] as string;
    await rm(join(slugs, firstSlug[0] as string), { recursive: true });
    await rm(join(p.home, "blobs", "sha256", key.slice(0, 2), key));

    const res = await p.quai(["--app", "lost-slug", "rollback", "v1"]);
    assert.notEqual(res.code, 0, res.stdout);
    assert.equal((await p.get("lost-slug")).body, "second");
    const ps = JSON.parse((await p.quai(["--app", "lost-slug", "ps", "--json"])).stdout) as { containers: { label: string; state: string; release: string }[] };
    assert.deepEqual(ps.containers.filter((c) => c.state !== "stopping").map((c) => [c.label, c.state, c.release]), [["web-1", "running", "v2"]], "no container of the rollback is left, in any state");
  });

  it("a control plane killed while the router tries a release ahead of its switch: the previous one serves again", async () => {
    const { git } = await pushHalfReady("killed ahead");
    await p.restart(true);
    git.kill("SIGKILL");
    // The restarted control plane routes the app to its current release, then removes the
    // half-started containers. (A machine so slow that web-2's start timeout came first ends the
    // same way, through the deployment's own failure.)
    await previousServes();
    assert.ok(["aborted", "timeout-error"].includes((await latest("steady")).status));
  });
});
