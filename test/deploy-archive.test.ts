// Archive deploys (`quai deploy`, POST /deployments with source_url, the `scalingo` client), the
// per-app queue, cancellation, a pusher who disconnects, and bad input on the deploy endpoints.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { clientFromToken, type Client } from "scalingo";
import { run } from "../src/core/run.ts";
import { commitAll, gitApp, pythonWebApp, startPlatform, traversableTempDir, until, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;
let files: Server;
let filesUrl = "";
let work = "";
let client: Client;

/** Makes `<name>.tar.gz` with one top folder holding `content`. */
async function tarball(name: string, content: Record<string, string>): Promise<string> {
  const top = join(work, name, "app");
  await mkdir(top, { recursive: true });
  for (const [f, c] of Object.entries(content)) await writeFile(join(top, f), c);
  const out = join(work, `${name}.tar.gz`);
  const res = await run("tar", ["-czf", out, "-C", join(work, name), "app"]);
  assert.equal(res.code, 0, res.stderr);
  return out;
}

async function deployment(app: string, id: string): Promise<{ status: string; started_at: string | null; finished_at: string | null; error: string | null }> {
  return (await client.Deployments.find(app, id)) as unknown as { status: string; started_at: string | null; finished_at: string | null; error: string | null };
}

/** A buildpack on the host that waits `seconds` before doing nothing, then lets the Procfile run. */
/** Sources the server unpacked as they were received and no build has taken yet. */
async function unpackedOnReceipt(): Promise<string[]> {
  return (await readdir(join(p.home, "runtime", "builds"))).filter((n) => n.startsWith(".src-"));
}

/** The app's deployments, newest first, as `quai deployments --json` lists them. */
async function deploymentsOf(app: string): Promise<{ id: string; status: string }[]> {
  return JSON.parse((await p.quai(["--app", app, "deployments", "--json"])).stdout) as { id: string; status: string }[];
}

async function slowBuildpack(seconds: number): Promise<string> {
  const dir = join(work, `slow-${seconds}`);
  await mkdir(join(dir, "bin"), { recursive: true });
  await writeFile(join(dir, "bin", "detect"), "#!/bin/sh\necho Slow\n");
  await writeFile(join(dir, "bin", "compile"), `#!/bin/sh\necho "-----> Taking ${seconds} s"\nsleep ${seconds}\necho "       done"\n`);
  for (const f of ["detect", "compile"]) await chmod(join(dir, "bin", f), 0o755);
  return dir;
}

describe("archive deploys and the deployment queue", () => {
  before(async () => {
    work = await traversableTempDir("quai-archives-");
    p = await startPlatform({ QUAI_BUILDPACK_DIRS: work });
    files = createServer(async (req, res) => {
      try {
        const body = await readFile(join(work, (req.url ?? "/").slice(1)));
        res.writeHead(200, { "content-type": "application/gzip" }).end(body);
      } catch {
        res.writeHead(404).end("not found");
      }
    });
    await new Promise<void>((r) => files.listen(0, "127.0.0.1", r));
    filesUrl = `http://127.0.0.1:${(files.address() as { port: number }).port}`;
    client = await clientFromToken(p.token, { apiUrl: p.url, authApiUrl: p.url });
    for (const app of ["archive-app", "queue-app", "push-app"]) assert.equal((await p.quai(["create", app])).code, 0);
  });
  after(async () => {
    files?.close();
    await p?.close();
  });

  it("`quai deploy` uploads a local tarball with one top folder and follows the build", async () => {
    const file = await tarball("v1", pythonWebApp("archive v1"));
    const res = await p.quai(["--app", "archive-app", "deploy", file]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /-----> Switched traffic to v1/);
    assert.equal((await p.get("archive-app")).body, "archive v1");
  });

  it("the scalingo client deploys from a source_url, finds it, reads its output and hears its statuses", async () => {
    await tarball("v2", pythonWebApp("archive v2"));
    const { app } = await (await fetch(`${p.url}/v1/apps/archive-app`, { headers: { authorization: `Bearer ${(client as unknown as { _token: string })._token}` } })).json() as { app: { id: string; links: { deployments_stream: string } } };
    assert.match(app.links.deployments_stream, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/apps\/archive-app\/deployments\/stream$/);
    const statuses: string[] = [];
    // The client's own deployment listener (not re-exported by its index, imported by path).
    const { default: Listener } = (await import("scalingo/lib/Deployments/listener.js" as string)) as { default: new (c: Client, url: string) => { onStatus(fn: (e: { status: string }) => void): void; close(): void } };
    const listener = new Listener(client, app.links.deployments_stream);
    listener.onStatus((e) => statuses.push(e.status));
    await new Promise((r) => setTimeout(r, 300));
    const d = await client.Deployments.create("archive-app", { source_url: `${filesUrl}/v2.tar.gz`, git_ref: "v2" });
    assert.equal(d.status, "queued");
    assert.equal(d.git_ref, "v2");
    const done = await until("success", async () => {
      const found = await client.Deployments.find("archive-app", d.id);
      return ["success", "build-error", "crashed-error", "timeout-error", "hook-error", "aborted"].includes(found.status) ? found : undefined;
    });
    assert.equal(done.status, "success");
    const output = await client.Deployments.logs("archive-app", d.id);
    assert.match(String(output), /Release v2 created/);
    assert.equal((await p.get("archive-app")).body, "archive v2");
    listener.close();
    assert.deepEqual(statuses.filter((s, i) => statuses.indexOf(s) === i), ["queued", "building", "pushing", "starting", "success"]);
  });

  it("refuses bad sources with catalogue errors and leaves the app serving", async () => {
    const post = (body: unknown) => fetch(`${p.url}/v1/apps/archive-app/deployments`, { method: "POST", headers: { authorization: `Bearer ${(client as unknown as { _token: string })._token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    const ftp = await post({ deployment: { source_url: "ftp://127.0.0.1/x.tar.gz" } });
    assert.equal(ftp.status, 422);
    assert.equal(((await ftp.json()) as { error: string }).error, "deployment_source_invalid");
    // The control plane downloads on the user's behalf: never from where cloud metadata lives.
    const metadata = await post({ deployment: { source_url: "http://169.254.169.254/latest/meta-data/" } });
    assert.equal(metadata.status, 422);
    assert.equal(((await metadata.json()) as { error: string }).error, "deployment_source_invalid");
    const missing = await post({ deployment: { source_url: `${filesUrl}/nope.tar.gz` } });
    assert.equal(missing.status, 422);
    assert.equal(((await missing.json()) as { error: string }).error, "deployment_source_unreachable");
    const ref = await post({ deployment: { source_url: `${filesUrl}/v2.tar.gz`, git_ref: "main; rm -rf /" } });
    assert.equal(ref.status, 422);
    assert.equal(((await ref.json()) as { error: string }).error, "git_ref_invalid");
    // Garbage that starts like gzip gets past the CLI: the server refuses it and cleans up.
    await writeFile(join(work, "garbage.tar.gz"), Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.from("this is not a tarball")]));
    const garbage = await p.quai(["--app", "archive-app", "deploy", join(work, "garbage.tar.gz")]);
    assert.notEqual(garbage.code, 0);
    assert.match(garbage.stdout + garbage.stderr, /could not be unpacked/);
    assert.deepEqual(await unpackedOnReceipt(), [], "what tar made of the garbage is gone");
    // A file that is not gzip at all, or a URL Quai does not download, never makes a deployment.
    const deployments = async () => (JSON.parse((await p.quai(["--app", "archive-app", "deployments", "--json"])).stdout) as unknown[]).length;
    const before = await deployments();
    await writeFile(join(work, "notes.txt"), "this is not a tarball");
    const text = await p.quai(["--app", "archive-app", "deploy", join(work, "notes.txt")]);
    assert.equal(text.code, 65, text.stderr);
    assert.match(text.stderr, /notes\.txt is not a gzipped tar archive/);
    const ftpCli = await p.quai(["--app", "archive-app", "deploy", "ftp://127.0.0.1/x.tar.gz"]);
    assert.equal(ftpCli.code, 65, ftpCli.stderr);
    assert.match(ftpCli.stderr, /http and https URLs only/);
    assert.equal(await deployments(), before);
    const none = await p.quai(["--app", "archive-app", "deploy", join(work, "absent.tar.gz")]);
    assert.equal(none.code, 64);
    assert.match(none.stderr, /absent\.tar\.gz: no such file/);
    assert.equal((await p.get("archive-app")).body, "archive v2");
  });

  it("an upload cut off midway starts no deployment and leaves nothing behind", async () => {
    const token = (client as unknown as { _token: string })._token;
    const count = async () => (JSON.parse((await p.quai(["--app", "archive-app", "deployments", "--json"])).stdout) as unknown[]).length;
    const before = await count();
    // A real archive, big enough to be cut: a file of random bytes does not compress.
    const file = await tarball("cut", { ...pythonWebApp("cut"), "noise.bin": randomBytes(512 * 1024).toString("base64") });
    const bytes = await readFile(file);
    const url = new URL(`${p.url}/v1/apps/archive-app/deployments/upload`);
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip", "content-length": String(bytes.length) } });
    req.on("error", () => {});
    req.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    await until("the cut upload is cleaned up", async () => ((await unpackedOnReceipt()).length === 0 ? true : undefined), 10_000);
    assert.equal(await count(), before, "no deployment was recorded");
    assert.deepEqual(await readdir(join(p.home, "blobs", "tmp")), [], "no half-stored blob");
    assert.equal((await p.get("archive-app")).body, "archive v2");
  });

  it("runs one deployment at a time per app: a second one waits in queued, then runs", async () => {
    assert.equal((await p.quai(["--app", "queue-app", "env-set", `BUILDPACK_URL=${await slowBuildpack(4)}`])).code, 0);
    await tarball("q1", pythonWebApp("q1"));
    await tarball("q2", pythonWebApp("q2"));
    const first = await client.Deployments.create("queue-app", { source_url: `${filesUrl}/q1.tar.gz` });
    const second = await client.Deployments.create("queue-app", { source_url: `${filesUrl}/q2.tar.gz` });
    await until("first building", async () => ((await deployment("queue-app", first.id)).status === "building" ? true : undefined));
    assert.equal((await deployment("queue-app", second.id)).status, "queued");
    const a = await until("first done", async () => { const d = await deployment("queue-app", first.id); return d.finished_at ? d : undefined; });
    const b = await until("second done", async () => { const d = await deployment("queue-app", second.id); return d.finished_at ? d : undefined; });
    assert.equal(a.status, "success");
    assert.equal(b.status, "success");
    assert.ok(Date.parse(b.started_at!) >= Date.parse(a.finished_at!), "the second started after the first ended");
    assert.equal((await p.get("queue-app")).body, "q2");
  });

  it("cancels a queued deployment (aborted) without touching the running one", async () => {
    const first = await client.Deployments.create("queue-app", { source_url: `${filesUrl}/q1.tar.gz` });
    const second = await client.Deployments.create("queue-app", { source_url: `${filesUrl}/q2.tar.gz` });
    // The queued deployment's source was unpacked as it was received, ready for its build.
    assert.ok((await unpackedOnReceipt()).length >= 1, "the queued source is unpacked already");
    const cancel = await p.quai(["--app", "queue-app", "deployment-cancel", second.id]);
    assert.equal(cancel.code, 0, cancel.stderr);
    const b = await deployment("queue-app", second.id);
    assert.equal(b.status, "aborted");
    const a = await until("first done", async () => { const d = await deployment("queue-app", first.id); return d.finished_at ? d : undefined; });
    assert.equal(a.status, "success");
    await until("no unpacked source left", async () => ((await unpackedOnReceipt()).length === 0 ? true : undefined), 5000);
    const again = await p.quai(["--app", "queue-app", "deployment-cancel", second.id]);
    assert.equal(again.code, 65, "cancelling a finished deployment is refused");
  });

  it("deploys a 100 MB repository pushed over HTTP", async () => {
    assert.equal((await p.quai(["create", "big-app"])).code, 0);
    const dir = await gitApp(pythonWebApp("big"));
    // Incompressible data: git, the archive and the slug all carry the full 100 MB.
    const res = await run("sh", ["-c", 'mkdir -p "$1/assets" && for i in 1 2 3 4; do head -c 26214400 /dev/urandom > "$1/assets/blob$i.bin"; done', "sh", dir]);
    assert.equal(res.code, 0, res.stderr);
    await commitAll(dir, "big");
    const started = Date.now();
    const push = await p.push("big-app", dir);
    assert.equal(push.code, 0, push.stderr.slice(-2000));
    assert.equal((await p.get("big-app")).body, "big");
    const [d] = JSON.parse((await p.quai(["--app", "big-app", "deployments", "--json"])).stdout) as { image_size: number }[];
    assert.ok(d!.image_size > 100 * 1024 * 1024, `slug of ${d!.image_size} bytes`);
    console.log(`100 MB push to live: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  it("refuses buildpacks from host paths outside QUAI_BUILDPACK_DIRS, such as another app's repository", async () => {
    assert.equal((await p.quai(["create", "nosy-app"])).code, 0);
    const victim = JSON.parse((await p.quai(["--app", "archive-app", "app-info", "--json"])).stdout) as { id: string };
    for (const ref of [`file://${p.home}/git/${victim.id}.git`, "/etc", `${work}/../../etc`]) {
      assert.equal((await p.quai(["--app", "nosy-app", "env-set", `BUILDPACK_URL=${ref}`])).code, 0);
      const file = await tarball("nosy", pythonWebApp("nosy"));
      const res = await p.quai(["--app", "nosy-app", "deploy", file]);
      assert.notEqual(res.code, 0);
      assert.match(res.stdout, /outside the directories this platform allows buildpacks from \(QUAI_BUILDPACK_DIRS: /);
    }
  });

  it("finishes a deployment whose pusher disconnected mid-build", async () => {
    assert.equal((await p.quai(["--app", "push-app", "env-set", `BUILDPACK_URL=${await slowBuildpack(3)}`])).code, 0);
    const dir = await gitApp(pythonWebApp("pushed"));
    await commitAll(dir, "go");
    const u = new URL(p.url);
    const git = spawn("git", ["-C", dir, "push", `http://user:${p.token}@${u.host}/push-app.git`, "HEAD:main"], { stdio: "ignore" });
    const d = await until("deployment building", async () => {
      const res = await deploymentsOf("push-app");
      return res[0]?.status === "building" ? res[0] : undefined;
    });
    git.kill("SIGKILL");
    const done = await until("deployment done", async () => { const x = await deployment("push-app", d.id); return x.finished_at ? x : undefined; });
    assert.equal(done.status, "success");
    assert.equal((await p.get("push-app")).body, "pushed");
  });

  it("deleting an app stops its build, ends its deployments and leaves none of its files", async () => {
    assert.equal((await p.quai(["create", "doomed-app"])).code, 0);
    const { id: appId } = JSON.parse((await p.quai(["--app", "doomed-app", "app-info", "--json"])).stdout) as { id: string };
    const live = await client.Deployments.create("doomed-app", { source_url: `${filesUrl}/${(await tarball("doomed", pythonWebApp("doomed"))).slice(work.length + 1)}` });
    assert.equal((await until("first deployment done", async () => { const d = await deployment("doomed-app", live.id); return d.finished_at ? d : undefined; })).status, "success");
    assert.equal((await p.get("doomed-app")).body, "doomed");
    // A build that would take 47 s, pushed over git, and a deployment queued behind it.
    assert.equal((await p.quai(["--app", "doomed-app", "env-set", `BUILDPACK_URL=${await slowBuildpack(47)}`])).code, 0);
    await until("the config change is released", async () => {
      const [d] = await deploymentsOf("doomed-app");
      return d?.status === "success" ? true : undefined;
    });
    const dir = await gitApp(pythonWebApp("never"));
    await commitAll(dir, "never");
    const pushing = p.push("doomed-app", dir, "HEAD:main");
    const building = await until("the push's build runs", async () => {
      const [d] = await deploymentsOf("doomed-app");
      return d?.status === "building" ? d : undefined;
    });
    const queued = await client.Deployments.create("doomed-app", { source_url: `${filesUrl}/q1.tar.gz` });
    assert.equal((await deployment("doomed-app", queued.id)).status, "queued");

    const following = p.quai(["--app", "doomed-app", "logs", "-f"]);
    await new Promise((r) => setTimeout(r, 1000));
    const destroy = await p.quai(["--app", "doomed-app", "destroy", "--force"]);
    assert.equal(destroy.code, 0, destroy.stderr);
    // `logs -f` ends with the app, and says why.
    const followed = await Promise.race([following, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))]);
    assert.ok(followed, "logs -f ended");
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /\[router\] /, "it showed the app's lines first");
    assert.match(followed.stderr, /the log stream of doomed-app ended: the app was deleted, or the server stopped/);
    const push = await pushing;
    assert.notEqual(push.code, 0, "the push is refused");
    assert.match(push.stderr, /the app was deleted by [^\s]+@[^\s]+\s/);
    assert.match(push.stderr, /Deployment aborted\./);
    assert.doesNotMatch(push.stderr, /previous release keeps serving|violates|foreign key/);
    // The build's sandbox is stopped, not left sleeping out its 47 s.
    const sleeping = [];
    for (const pid of (await readdir("/proc")).filter((n) => /^\d+$/.test(n))) {
      const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (cmd === "sleep\u000047\u0000") sleeping.push(pid);
    }
    assert.deepEqual(sleeping, [], "no build process is left");
    // Nothing on disk is named after the app, its containers or its deployments (the store's own
    // files aside: the database keeps the events).
    const names = [appId, "doomed-app", live.id, building.id, queued.id];
    const left: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
        const path = join(d, e.name);
        if (names.some((n) => e.name.includes(n))) left.push(path);
        if (e.isDirectory() && path !== join(p.home, "postgres")) await walk(path);
      }
    };
    // (An aborted build's work directory goes in the background.)
    await until("no file of the app left", async () => {
      left.length = 0;
      await walk(p.home);
      return left.length === 0 ? true : undefined;
    }, 10_000).catch(() => assert.deepEqual(left, []));
    for (const controller of await readdir("/sys/fs/cgroup").catch(() => [])) {
      const mine = (await readdir(join("/sys/fs/cgroup", controller, "quai")).catch(() => [])).filter((n) => n.startsWith("doomed-app-"));
      assert.deepEqual(mine, [], `no ${controller} cgroup of the app`);
    }
    assert.equal((await p.quai(["--app", "doomed-app", "deployments"])).code, 66);
    assert.equal((await p.get("archive-app")).body, "archive v2", "other apps keep serving");
  });
});

describe("a source archive over QUAI_SOURCE_LIMIT", () => {
  let small: TestPlatform;
  before(async () => {
    small = await startPlatform({ QUAI_SOURCE_LIMIT: "200000" });
    assert.equal((await small.quai(["create", "big-source"])).code, 0);
  });
  after(async () => {
    await small?.close();
  });

  it("is refused with a catalogue error, and neither its blob nor its unpacked tree is kept", async () => {
    const dir = await traversableTempDir("quai-big-source-");
    await mkdir(join(dir, "app"));
    for (const [f, c] of Object.entries(pythonWebApp("too big"))) await writeFile(join(dir, "app", f), c);
    await writeFile(join(dir, "app", "noise.txt"), randomBytes(1024 * 1024).toString("base64"));
    assert.equal((await run("tar", ["-czf", join(dir, "big.tar.gz"), "-C", dir, "app"])).code, 0);
    const res = await small.quai(["--app", "big-source", "deploy", join(dir, "big.tar.gz")]);
    assert.equal(res.code, 65, res.stdout + res.stderr);
    assert.match(res.stderr, /larger than 200000 bytes \[deployment_source_too_large\]/);
    await until("the unpack is stopped and removed", async () => ((await readdir(join(small.home, "runtime", "builds"))).length === 0 ? true : undefined), 5000);
    assert.deepEqual(await readdir(join(small.home, "blobs", "tmp")), []);
    assert.equal((JSON.parse((await small.quai(["--app", "big-source", "deployments", "--json"])).stdout) as unknown[]).length, 0);
  });
});
