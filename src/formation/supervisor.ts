// The supervisor: turns releases and the formation into running containers, keeps them running
// (restart with backoff, crash visible on the app), tells the router which web containers serve,
// ships container output to the app's log stream, and re-adopts everything after a restart.
import { recordEvent } from "../events/service.ts";
import { chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { portIsFree } from "../core/net.ts";
import { certificateKey } from "../domains/service.ts";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { sql } from "kysely";
import { run } from "../core/run.ts";
import type { ContainerSize, ContainerSpec, ContainerState } from "../runtime/types.ts";
import type { RouteMaintenance, RouterDriver, RouterState } from "../router/types.ts";
import type { PipelineContext } from "../pipeline/context.ts";
import { loadRelease, type Release } from "../pipeline/release.ts";
import { slugDirFor } from "../pipeline/slug.ts";
import { platformEnv } from "../variables/platform.ts";
import { AppLogs, SpoolReader, type LogLine } from "../logs/store.ts";
import type { Selectable } from "kysely";
import type { ContainersTable } from "../store/schema.ts";

/** Size of each of the router's own log files before it is rotated (QUAI_ROUTER_LOG_BYTES). */
const ROUTER_LOG_BYTES = Number(process.env.QUAI_ROUTER_LOG_BYTES) || 10 * 1024 * 1024;

/** A container row. */
export type ContainerRow = Selectable<ContainersTable>;

/** Minimal app facts the supervisor needs. */
export interface AppRef {
  id: string;
  name: string;
  uid: number;
}

/** Ports given to apps: below the ephemeral range (32768–60999), so no outgoing connection holds one. */
export const appPortRange = { min: 20000, max: 32000 } as const;

/** Supervisor settings. */
export interface SupervisorOptions {
  /** SIGTERM → SIGKILL grace when retiring containers (default 30 s). */
  graceMs: number;
  /** How long a new web container may take to accept connections. */
  startTimeoutMs: number;
  /** Longest backoff between crash restarts. */
  maxBackoffMs: number;
}

/** Why a container did not become ready. */
export type ReadyOutcome = { ok: true } | { ok: false; reason: "crashed" | "timeout"; detail: string };

export class Supervisor {
  private readonly ctx: PipelineContext;
  private readonly router: RouterDriver | undefined;
  readonly logs: AppLogs;
  private readonly opts: SupervisorOptions;
  /** A container's backlog beyond what its app's stream keeps is skipped, not shipped. */
  private readonly spools: SpoolReader;
  /** Containers whose exit we are waiting for (id → abort of the wait). */
  private readonly watched = new Map<string, AbortController>();
  /** Containers being stopped on purpose: their exit is not a crash. */
  private readonly stopping = new Set<string>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  /** Quick crashes in a row of each container (see `onExit`). */
  private readonly crashStreaks = new Map<string, number>();
  private shipTimer: NodeJS.Timeout | undefined;
  private rotateTimer: NodeJS.Timeout | undefined;
  private routerChain: Promise<void> = Promise.resolve();
  /** Web ports of deployments whose containers are booting, routed ahead (`routeIncoming`), by app id. */
  private readonly incoming = new Map<string, number[]>();
  /** Apps in maintenance now, by app id (set by the maintenance capability). */
  maintenanceRoutes: (() => Promise<Map<string, RouteMaintenance>>) | undefined;
  private closed = false;

  constructor(ctx: PipelineContext, router: RouterDriver | undefined, logs: AppLogs, opts: Partial<SupervisorOptions> = {}) {
    this.ctx = ctx;
    this.router = router;
    this.logs = logs;
    this.spools = new SpoolReader(undefined, logs.maxBytes);
    this.opts = { graceMs: opts.graceMs ?? 30_000, startTimeoutMs: opts.startTimeoutMs ?? 60_000, maxBackoffMs: opts.maxBackoffMs ?? 60_000 };
  }

  /** Re-adopts containers started by an earlier control plane; restarts the ones that died meanwhile. */
  async recover(): Promise<void> {
    const rows = await this.ctx.db.selectFrom("containers").selectAll().execute();
    const cutShort: string[] = [];
    const retiring: string[] = [];
    /** Containers with a spec: their directories stay. */
    const kept = new Set<string>();
    for (const c of rows) {
      const spec = await this.readSpec(c.id);
      if (!spec) {
        // An attached one-off or a hook of the control plane that died: gone with it.
        await this.ctx.db.deleteFrom("containers").where("id", "=", c.id).execute();
        continue;
      }
      kept.add(c.id);
      const state = await this.ctx.runtime.recover(spec).catch(() => undefined);
      if (c.state === "starting") {
        // A deployment was cut short by the restart; its pipeline record says so. Its containers
        // go, once the router no longer tries them (it may have, routed ahead of the switch).
        cutShort.push(c.id);
        continue;
      }
      if (c.state === "stopping") {
        // Retiring when the control plane stopped: its grace period starts again.
        retiring.push(c.id);
      } else if (state?.status === "running") {
        this.watch(c);
      } else if (c.state === "crashed") {
        // Its crash was counted before the stop, and its restart was due: not a second crash.
        this.restartLater(c.id, 1000);
      } else if (c.state === "running") {
        await this.onExit(c.id, state);
      } else {
        await this.destroy(c.id, 0);
      }
    }
    // What no container row names any more (a one-off or hook cut short with the control plane):
    // its layer, temporary files and uploads.
    for (const entry of await readdir(this.ctx.paths.containers, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory() || kept.has(entry.name)) continue;
      await this.ctx.runtime.remove(entry.name).catch(() => {});
      await rm(this.dir(entry.name), { recursive: true, force: true }).catch(() => {});
    }
    // One-off processes (hooks, `run`) of the control plane that died went with it; their traces go now.
    const swept = await (this.ctx.runtime.sweep?.() ?? Promise.resolve([])).catch((err: unknown) => {
      this.ctx.log(`supervisor: clearing what earlier one-off processes left failed: ${String(err)}`);
      return [];
    });
    if (swept.length > 0) this.ctx.log(`supervisor: cleared ${swept.length} cgroup(s) left by one-off processes of an earlier control plane: ${swept.join(", ")}`);
    this.shipTimer = setInterval(() => void this.shipLogs(), 250);
    this.rotateTimer = setInterval(() => void this.rotateRouterLogs().catch((err: unknown) => this.ctx.log(`supervisor: rotating the router's logs: ${String(err)}`)), 60_000);
    this.rotateTimer.unref();
    await this.syncRouter();
    for (const id of cutShort) await this.destroy(id, 1000);
    for (const id of retiring) void this.destroy(id).catch((err: unknown) => this.ctx.log(`supervisor: retiring ${id}: ${String(err)}`));
  }

  /** Stops watching (containers keep running: they outlive the control plane). */
  close(): void {
    this.closed = true;
    if (this.shipTimer) clearInterval(this.shipTimer);
    if (this.rotateTimer) clearInterval(this.rotateTimer);
    for (const t of this.restartTimers.values()) clearTimeout(t);
    for (const a of this.watched.values()) a.abort();
    this.watched.clear();
  }

  /** Directory of the container's files (spec, /app copy, spool). */
  private dir(id: string): string {
    return join(this.ctx.paths.containers, id);
  }

  private async readSpec(id: string): Promise<ContainerSpec | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir(id), "spec.json"), "utf8")) as ContainerSpec;
    } catch {
      return undefined;
    }
  }

  /** The environment a container of `release` sees. */
  containerEnv(app: AppRef, release: Release, name: string, size: ContainerSize, port: number | null): Record<string, string> {
    return {
      ...release.config,
      LANG: release.config.LANG ?? "C.UTF-8",
      ...platformEnv({ app: app.name, name, size, version: release.version, gitRef: release.gitRef, port }),
    };
  }

  /**
   * Prepares /app for a container: an overlay of the release's unpacked slug (never written)
   * under a layer of the container's own, so nothing is copied per container. The app may add
   * and change files anywhere in /app, as before: a slug its own build left is its tree already;
   * under a slug unpacked from the blob (root's), the layer starts with the slug's directories,
   * made the app's (only directories are made: copying files cost tens of milliseconds per
   * container).
   */
  async prepareAppDir(app: AppRef, release: Release, dir: string, fresh: boolean): Promise<{ appDir: string; appLayers: NonNullable<ContainerSpec["appLayers"]> }> {
    const slug = await slugDirFor(this.ctx, release.slugKey, app.uid);
    const appDir = join(dir, "app");
    const upper = join(dir, "layer");
    const work = join(dir, "layer-work");
    if (!fresh) await Promise.all([appDir, upper, work].map((d) => rm(d, { recursive: true, force: true })));
    if (slug.appOwned) {
      await Promise.all([mkdir(appDir, { mode: 0o755 }), mkdir(upper, { mode: 0o755 }).then(() => chown(upper, app.uid, app.uid)), mkdir(work, { mode: 0o700 })]);
    } else {
      // One shell for every step (a process start costs milliseconds); paths and owner are
      // arguments, never script text. tar carries the directories' modes over.
      const script = [
        'set -e; mkdir -m 0755 -- "$2"; mkdir -m 0700 -- "$4"; mkdir -m 0755 -- "$3"',
        'cd -- "$1"; find . -mindepth 1 -type d -print0 | tar -c --null --no-recursion -T - -f - | tar -x -C "$3" -f -',
        'chown -R -- "$5" "$3"',
      ].join("\n");
      const prep = await run("/bin/sh", ["-c", script, "sh", slug.dir, appDir, upper, work, `${app.uid}:${app.uid}`]);
      if (prep.code !== 0) throw new Error(`preparing /app from the slug failed: ${prep.stderr.trim()}`);
    }
    return { appDir, appLayers: { lower: slug.dir, upper, work } };
  }

  /** A spec for a container or one-off of `release`. */
  async specFor(app: AppRef, release: Release, id: string, name: string, size: ContainerSize, command: string[], port: number | null, extraEnv: Record<string, string> = {}): Promise<ContainerSpec> {
    const dir = this.dir(id);
    // A directory made now holds nothing from an earlier container of this id to clear first.
    const fresh = (await mkdir(dir, { recursive: true, mode: 0o711 })) !== undefined;
    const tmp = join(dir, "tmp");
    const [{ appDir, appLayers }] = await Promise.all([
      this.prepareAppDir(app, release, dir, fresh),
      mkdir(tmp, { mode: 0o700 })
        .catch(() => {})
        .then(() => chown(tmp, app.uid, app.uid)),
    ]);
    return {
      id,
      app: app.name,
      uid: app.uid,
      gid: app.uid,
      appDir,
      appLayers,
      appWritable: true,
      binds: [
        { source: this.ctx.paths.bin, target: "/quai/bin", writable: false },
        // Language runtimes of the stack (slugs may link to them, as the Node.js buildpack does).
        { source: this.ctx.paths.runtimes, target: "/quai/runtimes", writable: false },
      ],
      command,
      env: { ...this.containerEnv(app, release, name, size, port), ...extraEnv },
      cwd: "/app",
      size,
      network: "host",
      logFile: join(dir, "output.log"),
    };
  }

  /**
   * Reserves a container of a process type: its row, in state `starting`, with a free port. It
   * runs once `startReserved` is called; `destroy` removes it either way.
   */
  async reserveContainer(app: AppRef, release: Release, type: string, index: number, size: ContainerSize): Promise<ContainerRow> {
    if (!Object.hasOwn(release.processTypes, type)) throw new Error(`release v${release.version} has no process type ${type}`);
    const id = `${app.name}-${type}-${index}-${Math.random().toString(36).slice(2, 8)}`;
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = appPortRange.min + Math.floor(Math.random() * (appPortRange.max - appPortRange.min));
      if (!(await portIsFree(port))) continue;
      const res = await sql<ContainerRow>`INSERT INTO containers (id, app_id, release_id, type, index, size, port, state) VALUES (${id}, ${app.id}, ${release.id}, ${type}, ${index}, ${size}, ${port}, 'starting') ON CONFLICT DO NOTHING RETURNING *`.execute(this.ctx.db);
      if (res.rows[0]) return res.rows[0];
    }
    throw new Error("no free port for the container");
  }

  /** Starts a reserved container (see `reserveContainer`); it is not routed until its release is switched to. */
  async startReserved(app: AppRef, release: Release, c: ContainerRow): Promise<void> {
    const command = release.processTypes[c.type] as string;
    const spec = await this.specFor(app, release, c.id, `${c.type}-${c.index}`, c.size as ContainerSize, ["/quai/bin/launch", "--shell", command], c.port);
    await writeFile(join(this.dir(c.id), "spec.json"), JSON.stringify(spec), { mode: 0o600 });
    await this.ctx.runtime.start(spec);
    this.watch(c);
  }

  /** Reserves and starts one container; if it cannot start, nothing of it is left. */
  async startContainer(app: AppRef, release: Release, type: string, index: number, size: ContainerSize): Promise<ContainerRow> {
    const row = await this.reserveContainer(app, release, type, index, size);
    try {
      await this.startReserved(app, release, row);
    } catch (err) {
      await this.destroy(row.id, 0).catch(() => {});
      throw err;
    }
    return row;
  }

  /** Waits until the container accepts TCP connections on its port, or exits, or the timeout passes. */
  async waitReady(c: ContainerRow, timeoutMs = this.opts.startTimeoutMs, healthPath?: string | null, signal?: AbortSignal): Promise<ReadyOutcome> {
    const deadline = Date.now() + timeoutMs;
    let lastHealth = "";
    for (;;) {
      // A cancelled deployment does not wait out the start timeout.
      signal?.throwIfAborted();
      const state = await this.ctx.runtime.inspect(c.id);
      if (!state || state.status !== "running") return { ok: false, reason: "crashed", detail: exitText(state) };
      if (c.type !== "web" || c.port === null) {
        // Not a web process (it gets a PORT, but need not listen): ready if it stays up a moment.
        if (Date.now() > deadline - timeoutMs + 1500) return { ok: true };
      } else if (await canConnect(c.port)) {
        if (!healthPath) return { ok: true };
        const status = await httpStatus(c.port, healthPath);
        if (status >= 200 && status < 400) return { ok: true };
        lastHealth = status ? `answered ${status} on ${healthPath}` : `did not answer on ${healthPath}`;
      }
      if (Date.now() > deadline) return { ok: false, reason: "timeout", detail: lastHealth ? `${lastHealth} within ${Math.round(timeoutMs / 1000)} s` : `did not accept connections on $PORT within ${Math.round(timeoutMs / 1000)} s` };
      // Most apps listen within a second: look often then (a deploy waits on this), calmly after.
      await sleep(Date.now() < deadline - timeoutMs + 3000 ? 10 : 50);
    }
  }

  /** Follows a container's exit; an exit nobody asked for is a crash. */
  private watch(c: ContainerRow): void {
    if (this.watched.has(c.id)) return;
    const abort = new AbortController();
    this.watched.set(c.id, abort);
    this.ctx.runtime.wait(c.id, abort.signal).then(
      (state) => {
        this.watched.delete(c.id);
        if (!abort.signal.aborted && !this.closed) void this.onExit(c.id, state);
      },
      () => this.watched.delete(c.id),
    );
  }

  private async onExit(id: string, state: ContainerState | undefined): Promise<void> {
    if (this.stopping.has(id) || this.closed) return;
    const c = await this.ctx.db.selectFrom("containers").selectAll().where("id", "=", id).executeTakeFirst();
    if (!c || c.state === "stopping") return;
    await this.shipLogs();
    const exit = exitText(state);
    if (c.type === "one-off") {
      // A detached one-off that ended (possibly while the control plane was down): it is done.
      await this.destroy(id, 0);
      return;
    }
    if (c.state === "starting") {
      // The deployment waiting on it reports the crash.
      await this.ctx.db.updateTable("containers").set({ state: "crashed", last_exit: exit, updated_at: new Date() }).where("id", "=", id).execute();
      return;
    }
    const restarts = c.restarts + 1;
    // The backoff doubles with each quick crash in a row; a run of over a minute starts it again.
    const ranLong = state?.finishedAt && Date.parse(state.finishedAt) - c.updated_at.getTime() > 60_000;
    const streak = ranLong ? 0 : (this.crashStreaks.get(id) ?? Math.min(c.restarts, 6));
    this.crashStreaks.set(id, streak + 1);
    const delay = Math.min(this.opts.maxBackoffMs, 1000 * 2 ** Math.min(streak, 6));
    await this.ctx.db.updateTable("containers").set({ state: "crashed", restarts, last_exit: exit, updated_at: new Date() }).where("id", "=", id).execute();
    await this.ctx.db.updateTable("apps").set({ status: "crashed" }).where("id", "=", c.app_id).execute();
    const app = await this.ctx.db.selectFrom("apps").select(["id", "name"]).where("id", "=", c.app_id).executeTakeFirst();
    if (app) {
      await this.logs.append(app.id, [{ at: new Date(), source: `${c.type}-${c.index}`, text: `container exited (${exit}); restart #${restarts} in ${Math.round(delay / 1000)} s` }]);
      await recordEvent(this.ctx.db, { actor: null, app, type: "crash", data: { container: `${c.type}-${c.index}`, exit, restarts } });
    }
    await this.syncRouter();
    this.restartLater(id, delay);
  }

  /**
   * The router's own logs (requests for hosts no app claims, its error log) are not an app's
   * stream: past `ROUTER_LOG_BYTES` each is renamed to `.1` (the one before is dropped) and the
   * router writes a new one. Returns the files rotated.
   */
  async rotateRouterLogs(maxBytes = ROUTER_LOG_BYTES): Promise<string[]> {
    const router = this.router;
    if (!router?.logFiles || !router.reopenLogs) return [];
    const full: string[] = [];
    for (const file of router.logFiles()) {
      const st = await stat(file).catch(() => undefined);
      if (st && st.size > maxBytes) full.push(file);
    }
    if (full.length === 0) return [];
    for (const file of full) await rename(file, `${file}.1`);
    await router.reopenLogs();
    return full;
  }

  /** Starts a crashed container again in `delay` ms; a start that fails is tried again later. */
  private restartLater(id: string, delay: number): void {
    const timer = setTimeout(() => {
      this.restartTimers.delete(id);
      void this.restartInPlace(id).catch((err: unknown) => {
        const next = Math.min(this.opts.maxBackoffMs, Math.max(1000, delay * 2));
        this.ctx.log(`supervisor: restart of ${id} failed (trying again in ${Math.round(next / 1000)} s): ${String(err)}`);
        if (!this.closed) this.restartLater(id, next);
      });
    }, delay);
    timer.unref();
    this.restartTimers.set(id, timer);
  }

  /** Starts a crashed container again with the same spec (same name, port and files). */
  private async restartInPlace(id: string): Promise<void> {
    if (this.closed) return;
    const c = await this.ctx.db.selectFrom("containers").selectAll().where("id", "=", id).executeTakeFirst();
    const spec = await this.readSpec(id);
    if (!c || !spec || c.state !== "crashed") return;
    await this.ctx.runtime.remove(id).catch(() => {});
    await this.ctx.runtime.start(spec);
    await this.ctx.db.updateTable("containers").set({ state: "running", updated_at: new Date() }).where("id", "=", id).execute();
    this.watch(c);
    if (c.port !== null) {
      const ready = await this.waitReady(c, this.opts.startTimeoutMs);
      if (!ready.ok) return;
    }
    const crashed = await this.ctx.db.selectFrom("containers").select("id").where("app_id", "=", c.app_id).where("state", "=", "crashed").executeTakeFirst();
    if (!crashed) await this.ctx.db.updateTable("apps").set({ status: "running" }).where("id", "=", c.app_id).where("status", "=", "crashed").execute();
    await this.syncRouter();
  }

  /** Marks containers as serving (after a deployment's switch). */
  async markRunning(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const marked = await this.ctx.db.updateTable("containers").set({ state: "running", updated_at: new Date() }).where("id", "in", ids).where("state", "=", "starting").returning("id").execute();
    // One that exited since its deployment last looked was left to the deployment (`onExit`):
    // from now on it is a crash like any other, restarted with backoff.
    for (const id of ids) if (!marked.some((m) => m.id === id)) void this.ctx.runtime.inspect(id).then((state) => this.onExit(id, state)).catch(() => {});
  }

  /** Stops a container (SIGTERM, then SIGKILL after `graceMs`) and forgets it. */
  async destroy(id: string, graceMs = this.opts.graceMs): Promise<void> {
    this.stopping.add(id);
    const timer = this.restartTimers.get(id);
    if (timer) clearTimeout(timer);
    this.restartTimers.delete(id);
    this.crashStreaks.delete(id);
    try {
      const row = await this.ctx.db.updateTable("containers").set({ state: "stopping", updated_at: new Date() }).where("id", "=", id).returning(["id", "app_id", "type", "index"]).executeTakeFirst();
      this.watched.get(id)?.abort();
      await this.ctx.runtime.stop(id, graceMs).catch(() => {});
      // What it wrote last and was not shipped yet, to its end (a round ships 1 MiB): a
      // one-off's last output, before its spool goes.
      if (row) for (let round = 0; round < 64 && (await this.shipContainerLogs(row)); round++);
      await this.ctx.runtime.remove(id).catch(() => {});
      await this.ctx.db.deleteFrom("containers").where("id", "=", id).execute();
      this.spools.forget(join(this.dir(id), "output.log"));
      await rm(this.dir(id), { recursive: true, force: true });
    } finally {
      this.stopping.delete(id);
    }
  }

  /**
   * Retires containers after the router stopped sending them traffic: waits (up to `graceMs`)
   * for connections to their port to end, so in-flight requests finish, then stops them.
   */
  async retire(rows: ContainerRow[]): Promise<void> {
    await Promise.all(rows.map(async (c) => {
      if (c.port !== null) {
        const until = Date.now() + Math.min(this.opts.graceMs, 10_000);
        while (Date.now() < until && (await hasEstablished(c.port))) await sleep(50);
      }
      await this.destroy(c.id);
    }));
  }

  /**
   * Routes `ports` (web containers of a deployment, still booting) ahead of the switch: the router
   * tries them first and falls back to the app's serving containers while they refuse connections,
   * so traffic moves the moment they listen. Resolves once that table is live. Only for
   * deployments whose readiness is "accepts connections" (no postdeploy hook, no health check).
   */
  routeIncoming(appId: string, ports: number[]): Promise<void> {
    this.incoming.set(appId, ports);
    return this.syncRouter();
  }

  /** Ends `routeIncoming` (the switch happened or the deployment failed); call `syncRouter` after. */
  forgetIncoming(appId: string): void {
    this.incoming.delete(appId);
  }

  /** Renders the routing table from the store and applies it (serialised, last state wins). */
  syncRouter(): Promise<void> {
    const router = this.router;
    if (!router) return Promise.resolve();
    const next = this.routerChain.then(async () => {
      const rows = await sql<{ name: string; id: string; port: number | null; force_https: boolean; canonical_domain: string | null }>`
        SELECT a.name, a.id, c.port, a.force_https, a.canonical_domain FROM apps a
        LEFT JOIN containers c ON c.app_id = a.id AND c.release_id = a.current_release_id AND c.type = 'web' AND c.state = 'running'
        ORDER BY a.name, c.port`.execute(this.ctx.db);
      const apps = new Map<string, RouterState["apps"][number]>();
      const canonical = new Map<string, string>();
      for (const r of rows.rows) {
        let a = apps.get(r.id);
        if (!a) {
          apps.set(r.id, (a = { name: r.name, hostnames: [], backends: [], accessLog: this.routerLog(r.id), ...(r.force_https ? { forceHttps: true } : {}) }));
          if (r.canonical_domain) canonical.set(r.id, r.canonical_domain);
        }
        if (r.port !== null) a.backends.push({ host: "127.0.0.1", port: r.port });
      }
      for (const [appId, ports] of this.incoming) {
        const a = apps.get(appId);
        if (!a) continue;
        a.backends = [
          ...[...ports].sort((x, y) => x - y).map((port) => ({ host: "127.0.0.1", port, role: "incoming" as const })),
          ...a.backends.map((b) => ({ ...b, role: "backup" as const })),
        ];
      }
      // Custom domains, their certificates, and the canonical one the others redirect to.
      const domains = await this.ctx.db.selectFrom("domains").select(["id", "app_id", "name", "tls_cert", "tls_key_enc", "tls_key_id"]).orderBy("name").execute();
      for (const d of domains) {
        const a = apps.get(d.app_id);
        if (!a) continue;
        a.hostnames.push(d.name);
        if (canonical.get(d.app_id) === d.name) a.canonical = d.name;
        const keyPem = d.tls_cert ? certificateKey(this.ctx.keyring, d) : undefined;
        if (d.tls_cert && keyPem) (a.certificates ??= []).push({ hostname: d.name, certPem: d.tls_cert, keyPem });
      }
      for (const [appId, m] of (await this.maintenanceRoutes?.()) ?? []) {
        const a = apps.get(appId);
        if (a) a.maintenance = m;
      }
      await router.apply({ domain: this.ctx.settings.domain, apps: [...apps.values()] });
    });
    this.routerChain = next.catch((err: unknown) => this.ctx.log(`router: ${String(err)}`));
    return next;
  }

  /**
   * Moves one round (1 MiB) of a container's new output into its app's log stream now (a crash
   * report shows its last lines); whether there was any.
   */
  async shipContainerLogs(c: { id: string; app_id: string; type: string; index: number }): Promise<boolean> {
    const text = await this.spools.drain(join(this.dir(c.id), "output.log"));
    if (text) await this.logs.append(c.app_id, toLines(text, `${c.type}-${c.index}`));
    return text !== "";
  }

  /** Where the router writes each app's access log, which `shipLogs` moves into its stream. */
  private get routerDir(): string {
    return join(this.ctx.paths.logs, "router");
  }

  private routerLog(appId: string): string {
    return join(this.routerDir, `${appId}.log`);
  }

  /** The app is deleted and off the router: its router spool and its log stream go. */
  async forgetApp(appId: string): Promise<void> {
    await this.spools.remove(this.routerLog(appId));
    await this.logs.remove(appId);
  }

  /** Moves new container output and router access lines into the apps' log streams. */
  async shipLogs(): Promise<void> {
    const rows = await this.ctx.db.selectFrom("containers").select(["id", "app_id", "type", "index"]).execute().catch(() => []);
    for (const c of rows) await this.shipContainerLogs(c);
    const routerDir = this.routerDir;
    for (const f of await readdir(routerDir).catch(() => [] as string[])) {
      if (!f.endsWith(".log")) continue;
      const text = await this.spools.drain(join(routerDir, f));
      if (text) await this.logs.append(f.slice(0, -4), toLines(text, "router"));
    }
  }

  /** Loads a release (for callers outside the pipeline). */
  release(id: string): Promise<Release> {
    return loadRelease(this.ctx.db, this.ctx.keyring, id);
  }
}

function toLines(text: string, source: string): LogLine[] {
  const at = new Date();
  return text.split("\n").filter((l) => l !== "").map((l) => ({ at, source, text: l }));
}

/** "exit code 1", "killed by SIGKILL (out of memory)", ... */
export function exitText(state: ContainerState | undefined): string {
  if (!state) return "lost";
  if (state.oomKilled) return "out of memory (killed)";
  if (state.signal) return `killed by ${state.signal}`;
  if (state.exitCode !== undefined && state.exitCode !== null) return `exit code ${state.exitCode}`;
  return state.status;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Status of GET `path` on 127.0.0.1:`port` (0 when it fails), within 2 s. */
function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method: "GET", timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
    req.end();
  });
}

/** Whether a TCP connection to 127.0.0.1:`port` is established (from /proc/net/tcp). */
async function hasEstablished(port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  const text = await readFile("/proc/net/tcp", "utf8").catch(() => "");
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // local_address is f[1] ("0100007F:4E20"), state f[3] ("01" = ESTABLISHED)
    if (f[1]?.endsWith(`:${hex}`) && f[3] === "01") return true;
  }
  return false;
}
