// Starts the deploy pipeline's parts for `quai server`: runtime root, blob store, runtime and
// router drivers, supervisor (re-adopting running containers), deployment queue and git front.
import { join } from "node:path";
import { createHash } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { QuaiError } from "../core/errors.ts";
import type { ServerConfig } from "../core/config.ts";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import { LocalBlobStore } from "../blobs/store.ts";
import { LocalRuntime } from "../runtime/local.ts";
import { NginxRouter } from "../router/nginx.ts";
import { runtimePaths, type PipelineContext } from "../pipeline/context.ts";
import { prepareRuntime } from "../pipeline/setup.ts";
import { collectGarbage } from "../pipeline/gc.ts";
import { startSshFront } from "../git/ssh.ts";
import { DeploymentOutputs } from "../pipeline/output.ts";
import { Supervisor } from "../formation/supervisor.ts";
import { Deployments } from "../deployments/service.ts";
import { AppLogs } from "../logs/store.ts";
import type { PipelineApi } from "./api.ts";
import type { AppRecord } from "../apps/service.ts";

/** Starts everything the pipeline needs; `stop` leaves containers and the router running. */
export async function startPipeline(config: ServerConfig, db: Db, keyring: Keyring, apiUrl: () => string, log: (line: string) => void): Promise<{ api: PipelineApi; router: NginxRouter; sshPort: number; stop: () => Promise<void> }> {
  let paths = runtimePaths(config.runtimeDir);
  try {
    await prepareRuntime(paths);
  } catch (err) {
    // QUAI_HOME under a private home directory (/root is 0700): app uids cannot reach it, so the
    // runtime tree goes to /var/lib/quai, one directory per QUAI_HOME.
    if (!(err instanceof QuaiError) || err.code !== "config_invalid" || process.env.QUAI_RUNTIME_DIR) throw err;
    const alt = join("/var/lib/quai", createHash("sha256").update(config.home).digest("hex").slice(0, 12));
    log(`runtime: ${config.runtimeDir} is not reachable by app users; using ${alt} (set QUAI_RUNTIME_DIR to choose)`);
    await rm(paths.root, { recursive: true, force: true }).catch(() => {});
    paths = runtimePaths(alt);
    await mkdir("/var/lib/quai", { recursive: true, mode: 0o711 });
    await prepareRuntime(paths);
  }
  const router = new NginxRouter({ prefix: join(config.home, "router"), httpPort: config.routerPort, httpsPort: config.routerHttpsPort, host: config.routerHost, workers: config.routerWorkers, domain: config.domain, log });
  await router.start();
  const runtime = new LocalRuntime({ stateDir: join(paths.root, "state") });
  const outputs = new DeploymentOutputs(join(config.home, "deployments"));
  const ctx: PipelineContext = {
    db,
    keyring,
    blobs: new LocalBlobStore(join(config.home, "blobs")),
    runtime,
    outputs,
    paths,
    settings: { domain: config.domain, buildTimeoutMs: config.buildTimeoutSeconds * 1000, buildSize: "L", sourceLimitBytes: config.sourceLimitBytes, slugLimitBytes: config.slugLimitBytes, buildpackDirs: config.buildpackDirs, sharedNpmBytes: config.sharedNpmMb * 1024 * 1024 },
    log,
  };
  const logs = new AppLogs(join(config.home, "logs"), config.logBytesPerApp);
  const supervisor = new Supervisor(ctx, router, logs, { graceMs: config.stopGraceSeconds * 1000, startTimeoutMs: config.startTimeoutSeconds * 1000 });
  await supervisor.recover();
  const deployments = new Deployments(ctx, supervisor);
  await deployments.recover();
  const appUrl = (app: AppRecord) => `http://${app.name}.${config.domain}${router.httpPort === 80 ? "" : `:${router.httpPort}`}`;
  const git = { db, reposDir: join(config.home, "git"), deployments: () => deployments, outputs, apiUrl, appUrl, log, grants: new Map() };
  const ssh = await startSshFront(git, { host: config.sshListen.host, port: config.sshListen.port, hostKeyFile: join(config.home, "keys", "ssh_host_ed25519") });
  log(`git: SSH front on ssh://git@${config.sshListen.host}:${ssh.port}/<app>.git`);
  const api: PipelineApi = {
    ctx,
    deployments,
    outputs,
    supervisor,
    cachesDir: paths.caches,
    onNewDeployment: (fn) => deployments.onNew(fn),
    git,
  };
  // Hourly: slugs no release refers to, and sources of ended deployments, are deleted.
  const gc = setInterval(() => {
    collectGarbage(ctx).then(
      (r) => r.blobs + r.slugDirs > 0 && log(`gc: removed ${r.blobs} blobs (${Math.round(r.bytes / 1024 / 1024)} MB) and ${r.slugDirs} unpacked slugs`),
      (err: unknown) => log(`gc: ${String(err)}`),
    );
  }, 60 * 60_000);
  gc.unref();
  return {
    api,
    router,
    sshPort: ssh.port,
    stop: async () => {
      await ssh.close();
      clearInterval(gc);
      deployments.close();
      supervisor.close();
    },
  };
}
