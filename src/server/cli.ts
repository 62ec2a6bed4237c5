// CLI: `quai server` (foreground) and `quai demo` (a server with a demo app, for the quick start).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { loadServerConfig } from "../core/config.ts";
import { QuaiError } from "../core/errors.ts";
import { parseFlags, type Command, type CliContext } from "../cli/command.ts";
import { ApiClient, readCredentials, saveCredentials, credentialsFile } from "../cli/client.ts";
import { createApiToken, ensureUser } from "../auth/service.ts";
import { followDeployment } from "../deployments/cli.ts";
import { startServer, type RunningServer } from "./main.ts";
import { logStrayRejections } from "./rejections.ts";

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

/** Stops `server` on SIGINT/SIGTERM and resolves when it has stopped. */
function untilSignal(server: RunningServer): Promise<void> {
  return new Promise((resolvePromise) => {
    let stopping = false;
    const onSignal = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log(`server: ${sig} received, stopping`);
      void server.stop().then(resolvePromise);
    };
    process.once("SIGINT", () => onSignal("SIGINT"));
    process.once("SIGTERM", () => onSignal("SIGTERM"));
  });
}

async function start(ctx: CliContext, args: string[]): Promise<RunningServer> {
  const { flags } = parseFlags(args, [], ["listen"], 0);
  const config = loadServerConfig(ctx.env, { listen: flags.listen as string | undefined });
  logStrayRejections(log);
  const server = await startServer(config, log);
  ctx.out(`Quai is up.`);
  ctx.out(`  API:   ${server.apiUrl}`);
  ctx.out(`  Home:  ${config.home}`);
  if (server.bootstrapToken) {
    ctx.out(`  Owner API token (shown once, keep it safe): ${server.bootstrapToken}`);
    ctx.out(`  Log in: quai login --url ${server.apiUrl} --api-token ${server.bootstrapToken}`);
  }
  return server;
}

const server: Command = {
  name: "server",
  summary: "Run the Quai control plane in the foreground (Ctrl-C stops it)",
  usage: "[--listen HOST:PORT]",
  example: "QUAI_HOME=~/.quai quai server --listen 127.0.0.1:8080",
  async run(ctx, args) {
    await untilSignal(await start(ctx, args));
  },
};

const demo: Command = {
  name: "demo",
  summary: "Run Quai with a demo app and log the CLI in to it (the quick start)",
  usage: "[--listen HOST:PORT]",
  example: "quai demo",
  async run(ctx, args) {
    const running = await start(ctx, args);
    const { user } = await ensureUser(running.db, "demo@example.org", "owner");
    const { token } = await createApiToken(running.db, user, "demo");
    const client = new ApiClient(running.apiUrl, token);
    const apps = await client.request<{ apps: { name: string }[] }>("GET", "/v1/apps");
    if (!apps.apps.some((a) => a.name === "demo")) {
      await client.request("POST", "/v1/apps", { app: { name: "demo" } });
      await client.request("PUT", "/v1/apps/demo/variables", {
        variables: [
          { name: "APP_ENV", value: "demo" },
          { name: "GREETING", value: "Bonjour from Quai" },
          { name: "MESSAGE", value: "${GREETING}, running in $APP_ENV" },
        ],
      });
    }
    await deployDemo(ctx, client);
    const saved = await readCredentials(ctx.env);
    if (!saved || saved.url === running.apiUrl || !(await reachable(saved.url))) {
      await saveCredentials(ctx.env, { url: running.apiUrl, token });
      ctx.out(`  The CLI is logged in as demo@example.org (${credentialsFile(ctx.env)}).`);
    } else {
      ctx.out(`  To use this server: export QUAI_URL=${running.apiUrl} QUAI_TOKEN=${token}`);
    }
    ctx.out("");
    const { app } = await client.request<{ app: { url: string } }>("GET", "/v1/apps/demo");
    ctx.out(`Demo app \`demo\` is live at ${app.url} (curl ${app.url}). In another terminal, try:`);
    ctx.out("  npx quai apps");
    ctx.out("  npx quai --app demo ps");
    ctx.out("  npx quai --app demo logs -n 20");
    ctx.out("  npx quai --app demo run node -e 'console.log(process.env.MESSAGE)'");
    ctx.out("  npx quai --app demo env --resolved");
    ctx.out("  npx quai --app demo env-set FEATURE_X=on");
    ctx.out("  npx quai --app demo events");
    ctx.out("Ctrl-C stops Quai; its state stays in QUAI_HOME for the next start.");
    await untilSignal(running);
  },
};

/** Deploys examples/demo to the app `demo` unless it already runs a release. */
async function deployDemo(ctx: CliContext, client: ApiClient): Promise<void> {
  const { deployments } = await client.request<{ deployments: { status: string }[] }>("GET", "/v1/apps/demo/deployments?per_page=1");
  if (deployments[0]?.status === "success") return;
  ctx.out("Deploying the demo app (examples/demo, Node.js buildpack)...");
  const dir = fileURLToPath(new URL("../../examples", import.meta.url));
  const tar = spawn("tar", ["-czf", "-", "-C", dir, "demo"], { stdio: ["ignore", "pipe", "inherit"] });
  const chunks: Buffer[] = [];
  tar.stdout.on("data", (b: Buffer) => chunks.push(b));
  const [code] = (await once(tar, "close")) as [number | null];
  if (code !== 0) throw new Error("packing examples/demo failed");
  const res = await client.stream("POST", "/v1/apps/demo/deployments/upload?git_ref=demo", { data: Buffer.concat(chunks), contentType: "application/gzip" });
  const { deployment } = (await res.json()) as { deployment: { id: string } };
  const status = await followDeployment(client, "demo", deployment.id);
  if (status !== "success") throw new QuaiError("cli_deployment_failed", `the demo deployment ended ${status}`);
}

async function reachable(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

export const serverCommands: Command[] = [server, demo];
