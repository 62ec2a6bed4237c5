// `quai server`: starts the store (embedded PostgreSQL unless QUAI_DATABASE_URL), migrates,
// starts the job workers, creates the first owner, and serves the API until told to stop.
import { join } from "node:path";
import { chmod, mkdir, readFile, rm } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import type { PgBoss } from "pg-boss";
import { storeInfoFile, type ServerConfig } from "../core/config.ts";
import { ensurePrivateDir, writeFileAtomic } from "../core/files.ts";
import { EmbeddedPostgres } from "../store/embedded-postgres.ts";
import { migrate, openDb, type Db } from "../store/db.ts";
import { startJobs } from "../store/jobs.ts";
import { Keyring } from "../variables/keyring.ts";
import { bootstrapOwner } from "../auth/service.ts";
import { VERSION } from "../core/version.ts";
import type { PlatformInfo } from "../platform/routes.ts";
import { buildApi, type PipelineApi } from "./api.ts";
import { startPipeline } from "./pipeline.ts";
import { bindPort } from "../core/net.ts";
import { Addons } from "../addons/service.ts";
import { defaultEngines } from "../addons/registry.ts";
import { LocalBlobStore } from "../blobs/store.ts";
import { Maintenance } from "../maintenance/service.ts";
import { Scm } from "../scm/service.ts";
import { BranchDeploys } from "../scm/deploys.ts";
import { ReviewApps } from "../scm/review-apps.ts";
import type { ContainerSize } from "../runtime/types.ts";
import { CertificateIssuer } from "../tls/issuer.ts";
import { closeSpawner, useSpawner } from "../core/spawner.ts";

/** A running server. */
export interface RunningServer {
  apiUrl: string;
  db: Db;
  /** Token of the owner created at this start (first start only). */
  bootstrapToken: string | undefined;
  stop(): Promise<void>;
}

/** Starts everything; resolves once the API is listening and healthy. */
export async function startServer(config: ServerConfig, log: (line: string) => void): Promise<RunningServer> {
  // First, while this process is small: the programs the server starts are forked by it.
  useSpawner(log);
  await ensurePrivateDir(config.home);
  // Sandboxes reach the runtime directory through QUAI_HOME: searchable (x), not listable; every
  // entry inside keeps its own private mode.
  if (config.runtime) await chmod(config.home, 0o711);
  let pgServer: EmbeddedPostgres | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    pgServer = new EmbeddedPostgres({ dir: join(config.home, "postgres"), log, durable: process.env.QUAI_PG_FSYNC !== "off" });
    databaseUrl = await pgServer.start();
    log(`store: embedded PostgreSQL on 127.0.0.1 (pid ${pgServer.pid}, data in ${pgServer.dataDir})`);
  } else {
    log("store: external PostgreSQL from QUAI_DATABASE_URL");
  }
  await writeFileAtomic(storeInfoFile(config.home), JSON.stringify({ databaseUrl, keyFile: config.keyFile }) + "\n");

  const db = openDb(databaseUrl);
  let boss: PgBoss | undefined;
  let api: FastifyInstance | undefined;
  let stopPipeline: (() => Promise<void>) | undefined;
  let addons: Addons | undefined;
  let maintenance: Maintenance | undefined;
  let certificates: CertificateIssuer | undefined;
  let scm: Scm | undefined;
  const stop = async () => {
    // Requests under way get a few seconds to end (a push's stream, a download); then their
    // connections are cut, or a client that never ends one would keep the server from stopping.
    const cut = setTimeout(() => api?.server.closeAllConnections(), 5_000);
    await api?.close().catch(() => {});
    clearTimeout(cut);
    await scm?.close().catch(() => {});
    maintenance?.close();
    certificates?.close();
    await addons?.close().catch(() => {});
    await stopPipeline?.().catch(() => {});
    await boss?.stop({ graceful: true, timeout: 5000 }).catch(() => {});
    await db.destroy().catch(() => {});
    await pgServer?.stop();
    await rm(storeInfoFile(config.home), { force: true });
    closeSpawner();
  };
  try {
    const applied = await migrate(db);
    if (applied.length > 0) log(`store: applied migrations ${applied.join(", ")}`);
    const keyring = await Keyring.open(config.keyFile);
    // Hourly, five past: the add-ons whose backup hour it is get their daily backup.
    boss = await startJobs(databaseUrl, db, log, config.addons ? [{ name: "addon-schedule", cron: "5 * * * *", work: async () => void (await addons?.runSchedule()) }] : []);
    const owner = await bootstrapOwner(db, process.env.QUAI_OWNER_EMAIL || `admin@${config.domain.includes(".") ? config.domain : "example.org"}`);

    let apiUrl = "";
    let routerUrl: string | undefined;
    let routerHttpsUrl: string | undefined;
    let sshUrl: string | undefined;
    const platform = (): PlatformInfo => ({
      version: VERSION,
      domain: config.domain,
      api_url: apiUrl,
      router: { http: routerUrl ?? null, https: routerHttpsUrl ?? null },
      git: { http: pipeline ? apiUrl : null, ssh: sshUrl ?? null },
    });
    let pipeline: PipelineApi | undefined;
    if (config.runtime) {
      const started = await startPipeline(config, db, keyring, () => apiUrl, log);
      pipeline = started.api;
      routerUrl = `http://${config.routerHost}:${started.router.httpPort}`;
      routerHttpsUrl = `https://${config.routerHost}:${started.router.httpsPort}`;
      if (config.acme) {
        const sup = started.api.supervisor;
        certificates = new CertificateIssuer({
          db,
          keyring,
          directoryUrl: config.acme.directoryUrl,
          email: config.acme.email,
          caCertPem: config.acme.caFile ? await readFile(config.acme.caFile, "utf8") : undefined,
          acmeRoot: started.router.acmeRoot,
          accountFile: join(config.home, "keys", "acme-account.json"),
          syncRouter: () => sup.syncRouter(),
          log,
          retryMs: config.acme.retrySeconds * 1000,
          checkMs: config.acme.checkSeconds * 1000,
          publicAddresses: config.acme.publicIps,
          dnsServers: config.acme.dnsServers,
        });
        certificates.start();
        log(`tls: automatic certificates from ${config.acme.directoryUrl}`);
      }
      sshUrl = `ssh://git@${config.sshListen.host}:${started.sshPort}`;
      stopPipeline = started.stop;
    }
    if (config.addons) {
      const blobs = pipeline?.ctx.blobs ?? new LocalBlobStore(join(config.home, "blobs"));
      const deployments = pipeline?.deployments;
      addons = new Addons({
        db,
        keyring,
        blobs,
        engines: defaultEngines({ blobs, log }),
        dir: join(config.home, "addons"),
        log,
        ...(deployments
          ? {
              configRelease: async (actor, app) => {
                const id = await deployments.configRelease(actor, app);
                // Live means the old containers (which still hold the old URL) have stopped too.
                return id
                  ? async () => {
                      if ((await deployments.waitFinished(id)) !== "success") return false;
                      await deployments.waitRetired(app.id);
                      return true;
                    }
                  : undefined;
              },
            }
          : {}),
      });
      await addons.recover();
      addons.startMonitor();
    }
    const supervisor = pipeline?.supervisor;
    const deploymentsForConfig = pipeline?.deployments;
    maintenance = new Maintenance({
      db,
      keyring,
      log,
      ...(supervisor ? { syncRouter: () => supervisor.syncRouter() } : {}),
      ...(deploymentsForConfig ? { configRelease: (actor, app) => deploymentsForConfig.configRelease(actor, app) } : {}),
    });
    if (supervisor) {
      const m = maintenance;
      supervisor.maintenanceRoutes = () => m.routes();
    }
    // Applies the router if a window is active (the supervisor's recovery applied it without them).
    await maintenance.tick();
    maintenance.start();
    scm = new Scm({
      db,
      keyring,
      log,
      apiUrl: () => config.scm.publicApiUrl ?? apiUrl,
      tickMs: config.scm.tickSeconds * 1000,
      forgeTimeoutMs: config.scm.forgeTimeoutMs,
      forgeAttempts: config.scm.forgeAttempts,
      forgeBackoffMs: config.scm.forgeBackoffMs,
    });
    if (pipeline && routerUrl) {
      const routerPort = Number(new URL(routerUrl).port) || 80;
      const appUrl = (name: string) => `http://${name}.${config.domain}${routerPort === 80 ? "" : `:${routerPort}`}`;
      scm.deploys = new BranchDeploys(scm, { deployments: pipeline.deployments, appUrl });
      const workDir = join(config.home, "tmp");
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      scm.reviewApps = new ReviewApps(scm, {
        deleteDeps: { db, addons, pipeline },
        pipeline,
        deployments: pipeline.deployments,
        addons,
        appUrls: () => ({ domain: config.domain, routerPort, gitBase: apiUrl }),
        appUrl,
        maxSize: config.scm.reviewAppMaxSize as ContainerSize,
        workDir,
        retryBaseMs: config.scm.retrySeconds * 1000,
      });
    }
    api = await buildApi({ db, keyring, domain: config.domain, bearerTtlSeconds: config.bearerTtlSeconds, bodyLimitBytes: config.bodyLimitBytes, platform, log, pipeline, addons, maintenance, certificates, scm });
    const server = api;
    const address = await bindPort(config.listen.host, config.listen.port, (port) => server.listen({ host: config.listen.host, port }));
    apiUrl = address;
    scm.start();
    if (routerUrl) log(`router: apps answer at http://<app>.${config.domain}:${new URL(routerUrl).port}`);
    return { apiUrl, db, bootstrapToken: owner?.token, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
