// The git front over SSH (the ssh2 package): users authenticate with the public keys they
// registered; `git push ssh://git@host:port/<app>.git` runs git-receive-pack with the same
// pre-receive hook as the HTTP front, so the build streams to the pusher the same way.
import { spawnStreaming } from "../core/spawner.ts";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { timingSafeEqual } from "node:crypto";
import ssh2 from "ssh2";
import type { Connection, ServerChannel } from "ssh2";
import { writeFileAtomic } from "../core/files.ts";
import { bindPort } from "../core/net.ts";
import { QuaiError } from "../core/errors.ts";
import { findApp } from "../apps/service.ts";
import { actorForKey } from "../keys/service.ts";
import type { Actor } from "../auth/service.ts";
import { ensureRepo, grantPush, pushTurn, type GitFrontDeps } from "./front.ts";

/** A running SSH front. */
export interface SshFront {
  port: number;
  close(): Promise<void>;
}

/** `git-receive-pack '/app.git'` and friends, strictly: anything else is refused. */
export function parseGitCommand(command: string): { service: "git-receive-pack" | "git-upload-pack"; app: string } | undefined {
  const m = /^(git-receive-pack|git-upload-pack) '\/?([a-z0-9][a-z0-9-]{1,46}[a-z0-9])(?:\.git)?'$/.exec(command.trim());
  return m ? { service: m[1] as "git-receive-pack" | "git-upload-pack", app: m[2] as string } : undefined;
}

/**
 * Loads the host key from `file`, creating an ed25519 key on first start. ssh2's generator
 * writes a key its own parser refuses about once in 170 tries, so a key is kept only once it
 * parses (and a stored one that does not is replaced).
 */
async function hostKey(file: string): Promise<string> {
  if (existsSync(file)) {
    const stored = await readFile(file, "utf8");
    if (!(ssh2.utils.parseKey(stored) instanceof Error)) return stored;
  }
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519");
    if (ssh2.utils.parseKey(pair.private) instanceof Error) continue;
    await writeFileAtomic(file, pair.private);
    return pair.private;
  }
}

/** Starts the SSH front on `host:port` (port 0: a free one). */
export async function startSshFront(deps: GitFrontDeps, opts: { host: string; port: number; hostKeyFile: string }): Promise<SshFront> {
  const server = new ssh2.Server({ hostKeys: [await hostKey(opts.hostKeyFile)], banner: undefined }, (client: Connection) => {
    let actor: Actor | undefined;
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey") return ctx.reject(["publickey"]);
      void actorForKey(deps.db, ctx.key.data).then((found) => {
        if (!found || found.keyType !== ctx.key.algo.replace(/^rsa-sha2-(256|512)$/, "ssh-rsa")) return ctx.reject(["publickey"]);
        if (!ctx.signature || !ctx.blob) return ctx.accept(); // the client asks whether the key would do
        const key = ssh2.utils.parseKey(`${found.keyType} ${found.keyData.toString("base64")}`);
        if (key instanceof Error || Array.isArray(key)) return ctx.reject(["publickey"]);
        const stored = key.getPublicSSH();
        if (stored.length !== ctx.key.data.length || !timingSafeEqual(stored, ctx.key.data) || key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(["publickey"]);
        actor = found;
        ctx.accept();
      }, () => ctx.reject(["publickey"]));
    });
    client.on("ready", () => {
      client.on("session", (accept) => {
        const session = accept();
        session.on("exec", (acceptExec, reject, info) => {
          const parsed = parseGitCommand(info.command);
          if (!parsed || !actor) return reject();
          const channel = acceptExec();
          void serve(deps, actor, parsed, channel).catch((err: unknown) => {
            channel.stderr.write(`Quai: ${err instanceof QuaiError ? err.message : "internal error"}\n`);
            if (!(err instanceof QuaiError)) deps.log(`ssh: ${String(err)}`);
            channel.exit(1);
            channel.end();
          });
        });
        session.on("shell", (_accept, reject) => reject());
        session.on("pty", (_accept, reject) => reject?.());
      });
    });
    client.on("error", () => {});
  });
  await bindPort(opts.host, opts.port, (port) => new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  }));
  const address = server.address() as { port: number };
  return { port: address.port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function serve(deps: GitFrontDeps, actor: Actor, cmd: { service: string; app: string }, channel: ServerChannel): Promise<void> {
  const app = await findApp(deps.db, actor, cmd.app);
  const repo = await ensureRepo(deps.reposDir, app.id);
  const endTurn = cmd.service === "git-receive-pack" ? await pushTurn(app.id) : () => {};
  // A push: the build runner of the deployment it may make starts now, beside the transfer.
  const deploymentId = cmd.service === "git-receive-pack" ? deps.deployments().prestart(app) : undefined;
  const { token, env } = grantPush(deps, { actor, app, deploymentId });
  const child = spawnStreaming("git", [cmd.service.replace(/^git-/, ""), repo], { env: { PATH: process.env.PATH, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  channel.pipe(child.stdin!);
  child.stdout!.pipe(channel, { end: false });
  child.stderr!.pipe(channel.stderr, { end: false });
  child.stdin!.on("error", () => {});
  child.on("error", (err: Error) => {
    endTurn();
    deps.log(`git: ${cmd.service} could not start: ${err.message}`);
  });
  channel.on("close", () => {
    if (child.exitCode === null) child.kill("SIGTERM");
  });
  child.on("close", (code) => {
    endTurn();
    deps.grants.delete(token);
    if (deploymentId) deps.deployments().dropPrestart(deploymentId);
    channel.exit(code ?? 1);
    channel.end();
  });
}
