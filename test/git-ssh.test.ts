// git push over SSH: keys per user, the same pre-receive pipeline as over HTTP, and refusals.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "../src/core/run.ts";
import { bearer, gitApp, pythonWebApp, startPlatform, traversableTempDir, type TestPlatform } from "../src/testing/platform.ts";
import { parseGitCommand } from "../src/git/ssh.ts";

let p: TestPlatform;
let keys = "";
let sshPort = 0;

const sshCommand = (key: string) => `ssh -i ${key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;

describe("git over SSH", () => {
  before(async () => {
    p = await startPlatform();
    keys = await traversableTempDir("quai-keys-");
    for (const name of ["laptop", "stranger"]) {
      const res = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${name}@example.org`, "-f", join(keys, name)]);
      assert.equal(res.code, 0, res.stderr);
    }
    const token = await bearer(p.url, p.token);
    const { platform } = (await (await fetch(`${p.url}/v1/platform`, { headers: { authorization: `Bearer ${token}` } })).json()) as { platform: { git: { ssh: string } } };
    sshPort = Number(new URL(platform.git.ssh).port);
    assert.equal((await p.quai(["create", "ssh-app"])).code, 0);
  });
  after(async () => {
    await p?.close();
  });

  it("registers a key and deploys a push over SSH, streaming the build", async () => {
    const add = await p.quai(["keys-add", "laptop", join(keys, "laptop.pub")]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /Key laptop added \(SHA256:/);
    const dir = await gitApp(pythonWebApp("over ssh"));
    const push = await run("git", ["-C", dir, "push", `ssh://git@127.0.0.1:${sshPort}/ssh-app.git`, "HEAD:main"], { env: { ...process.env, GIT_SSH_COMMAND: sshCommand(join(keys, "laptop")) } });
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /remote: -----> Procfile app detected/);
    assert.match(push.stderr, /ssh-app is live at/);
    assert.equal((await p.get("ssh-app")).body, "over ssh");
  });

  it("refuses an unknown key, a key twice, a private key, and commands other than git's", async () => {
    const dir = await gitApp(pythonWebApp("stranger"));
    const push = await run("git", ["-C", dir, "push", `ssh://git@127.0.0.1:${sshPort}/ssh-app.git`, "HEAD:main"], { env: { ...process.env, GIT_SSH_COMMAND: sshCommand(join(keys, "stranger")) } });
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /Permission denied \(publickey\)/);
    const again = await p.quai(["keys-add", "again", join(keys, "laptop.pub")]);
    assert.equal(again.code, 73);
    const priv = await p.quai(["keys-add", "oops", join(keys, "laptop")]);
    assert.equal(priv.code, 65);
    assert.match(priv.stderr, /PRIVATE key/);
    const shell = await run("ssh", [...sshCommand(join(keys, "laptop")).split(" ").slice(1), "-p", String(sshPort), "git@127.0.0.1", "cat /etc/passwd"]);
    assert.notEqual(shell.code, 0);
    assert.doesNotMatch(shell.stdout, /root:/);
    assert.equal(parseGitCommand("git-receive-pack '/ssh-app.git'")?.app, "ssh-app");
    assert.equal(parseGitCommand("git-receive-pack '/ssh-app.git'; rm -rf /"), undefined);
    assert.equal(parseGitCommand("git-upload-pack '../../etc.git'"), undefined);
  });

  it("lists and removes keys; a removed key no longer pushes", async () => {
    const list = JSON.parse((await p.quai(["keys", "--json"])).stdout) as { id: string; name: string }[];
    assert.deepEqual(list.map((k) => k.name), ["laptop"]);
    assert.equal((await p.quai(["keys-remove", list[0]!.id])).code, 0);
    const dir = await gitApp(pythonWebApp("after removal"));
    const push = await run("git", ["-C", dir, "push", `ssh://git@127.0.0.1:${sshPort}/ssh-app.git`, "HEAD:main"], { env: { ...process.env, GIT_SSH_COMMAND: sshCommand(join(keys, "laptop")) } });
    assert.notEqual(push.code, 0);
    assert.equal((await p.get("ssh-app")).body, "over ssh");
  });
});
