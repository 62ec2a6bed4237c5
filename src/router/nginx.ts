// The nginx router driver: Quai's own nginx master under its own prefix, fed the whole desired state
// (render → nginx -t → atomic rename → SIGHUP → wait until the new generation is live). The master
// is detached so it outlives the control plane; a restarted control plane re-attaches to it.
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { chmod, lstat, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import { createHash } from "node:crypto";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { writeFileAtomic } from "../core/files.ts";
import { freePort } from "../core/net.ts";
import { run } from "../core/run.ts";
import { RouterError } from "./errors.ts";
import { errorPages, GENERATION_PATH, maintenancePage, renderNginxConf, type RenderSettings } from "./render.ts";
import type { RouterDriver, RouterState } from "./types.ts";

/** Options of `NginxRouter`. */
export interface NginxRouterOptions {
  /** Directory owned by this router (e.g. `$QUAI_HOME/router`): conf/, logs/, run/, html/, temp/, router.json. */
  prefix: string;
  /** HTTP port; 0 (default) picks a free port on first start and remembers it in the prefix. */
  httpPort?: number;
  /** HTTPS port, chosen the same way. */
  httpsPort?: number;
  /** Address apps are served on (default 127.0.0.1; "0.0.0.0" to serve the network). */
  host?: string;
  /** Platform domain of the empty state rendered at start; afterwards `RouterState.domain` rules. */
  domain?: string;
  /** nginx binary (default /usr/sbin/nginx). */
  nginx?: string;
  /** `worker_processes` (default: `defaultRouterWorkers()`, one per CPU). */
  workers?: number;
  /** Where supervision messages go. */
  log?: (line: string) => void;
}

/** What the prefix remembers between control-plane processes. */
interface Saved {
  httpPort: number;
  httpsPort?: number;
  statusPort: number;
  generation: number;
  /** Last state that went live, re-rendered on re-attach if the config template or options changed. */
  state?: RouterState;
}

/**
 * nginx workers the router runs unless told otherwise (QUAI_ROUTER_WORKERS): one per CPU, as
 * nginx's own `auto`, at most 64. One worker per two CPUs, leaving CPUs to the apps, was measured
 * and brought nothing the noise did not swallow (ADR 0034).
 */
export function defaultRouterWorkers(cpus: number = availableParallelism()): number {
  return Math.min(64, Math.max(1, cpus));
}

/** Unprivileged account of the workers when the master runs as root (nginx's own default). */
const WORKER_USER = "nobody";
const WORKER_GROUPS = ["nogroup", "nobody"];
const START_TIMEOUT_MS = 10_000;
const RELOAD_TIMEOUT_MS = 10_000;
/** Graceful quit waits for open requests; nginx itself cuts them at worker_shutdown_timeout (30 s). */
const QUIT_TIMEOUT_MS = 35_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Replaces `file` with `text` (through a rename) unless it already holds exactly that: every
 * apply passes the whole state, and most of it has not changed.
 */
async function writeIfChanged(file: string, text: string, mode: number): Promise<void> {
  if ((await readFile(file, "utf8").catch(() => undefined)) === text) return;
  await writeFile(`${file}.tmp`, text, { mode });
  await rename(`${file}.tmp`, file);
}

/** True when `pid` is a live process (a zombie is not: it has exited but is not reaped yet). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Kills a master and its workers at once. Workers are found first: once their master is gone
 * they belong to init, and would hold the listening sockets on.
 */
function killMaster(pid: number): void {
  for (const worker of childrenOf(pid)) {
    try {
      process.kill(worker, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** PIDs of the children of `pid` (nginx's workers, when `pid` is a master). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN: scan every process's parent instead.
    const out: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(entry));
      } catch {
        // Gone in between.
      }
    }
    return out;
  }
}

/**
 * Whether an nginx worker may still accept connections: alive and not yet retitled "worker process
 * is shutting down" (which a worker does just before closing its listening sockets).
 */
function stillAccepting(pid: number): boolean {
  try {
    return alive(pid) && !readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("shutting down");
  } catch {
    return false;
  }
}

/** uid or gid of `name` in an /etc/passwd-style file. */
function lookupId(file: string, name: string): number | undefined {
  try {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
    }
  } catch {
    // No such file: no such account.
  }
  return undefined;
}

/** GET on a fresh connection (a kept-alive one could stay on a worker of the previous config). */
function probe(port: number, path: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, timeout: timeoutMs, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => (res.statusCode === 200 ? resolvePromise(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

/** Lines of nginx output worth showing a person, without nginx's "nginx: " prefix and the test verdict. */
function nginxMessage(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.replace(/^nginx: /, "").trim())
    .filter((l) => l && !/configuration file .* test failed/.test(l));
  return lines.join("; ") || "(no output)";
}

/** Quai's nginx, driven from the whole routing state. */
export class NginxRouter implements RouterDriver {
  readonly name = "nginx";
  readonly prefix: string;
  private readonly opts: NginxRouterOptions;
  private readonly nginx: string;
  private readonly workers: number;
  private readonly host: string;
  private readonly log: (line: string) => void;
  private readonly confFile: string;
  private readonly pidFile: string;
  private readonly savedFile: string;
  private readonly errorLog: string;
  private readonly startupLog: string;
  /** Where workers read error pages and write temp files: the prefix, or a fallback they can reach. */
  private workerRoot = "";
  private fallbackRoot: string | undefined;
  private user: { user: string; group: string } | undefined;
  private pid: number | undefined;
  private port = 0;
  private tlsPort = 0;
  private statusPort = 0;
  private gen = 0;
  private state: RouterState | undefined;
  private reload: { firstAnswerMs: number; liveMs: number } | undefined;
  // apply() queue: one apply runs at a time; calls arriving meanwhile coalesce into the next one.
  private running: Promise<void> | undefined;
  private pending: { state: RouterState; waiters: { resolve: () => void; reject: (e: unknown) => void }[] } | undefined;

  constructor(opts: NginxRouterOptions) {
    this.opts = opts;
    this.prefix = resolve(opts.prefix);
    this.nginx = opts.nginx ?? "/usr/sbin/nginx";
    this.workers = opts.workers ?? defaultRouterWorkers();
    this.host = opts.host ?? "127.0.0.1";
    this.log = opts.log ?? (() => {});
    this.confFile = join(this.prefix, "conf", "nginx.conf");
    this.pidFile = join(this.prefix, "run", "nginx.pid");
    this.savedFile = join(this.prefix, "router.json");
    this.errorLog = join(this.prefix, "logs", "error.log");
    this.startupLog = join(this.prefix, "logs", "startup.log");
  }

  /** Port apps are served on (valid once `start` resolved). */
  get httpPort(): number {
    return this.port;
  }

  /** Port apps are served on over HTTPS. */
  get httpsPort(): number {
    return this.tlsPort;
  }

  /** Directory whose `.well-known/acme-challenge/` the router serves over HTTP (ACME HTTP-01). */
  get acmeRoot(): string {
    return join(this.workerRoot, "html", "acme");
  }

  private get tlsDir(): string {
    return join(this.prefix, "tls");
  }

  /** Generation number of the config now live. */
  get generation(): number {
    return this.gen;
  }

  /**
   * Timing of the last apply's reload, from SIGHUP: until a new worker first answered, and until
   * it was live (no old worker accepting any more): what `apply` waits for.
   */
  get lastReload(): { firstAnswerMs: number; liveMs: number } | undefined {
    return this.reload;
  }

  /** PID of the nginx master, once started or re-attached. */
  get masterPid(): number | undefined {
    return this.pid;
  }

  /** Starts nginx, or re-attaches to the master a previous control-plane process left running. */
  async start(): Promise<void> {
    await this.prepareDirs();
    await this.prepareTls();
    const saved = await this.readSaved();
    const running = this.runningMaster();
    if (running !== undefined) {
      if (saved && (await this.attach(running, saved))) return;
      // Ours but unusable (no router.json, or deaf): a second master on this prefix would fight it.
      await this.terminate(running);
    }
    await this.freshStart(saved);
  }

  /**
   * Renders `state`, validates it with `nginx -t`, swaps it in and reloads; resolves once the new
   * config is live: it answers, and no worker of the old config accepts connections any more (old
   * workers still finish the requests they hold, so retire old backends after a grace period).
   * Throws a `RouterError` and keeps the old config serving if anything refuses.
   * Calls made while one runs are coalesced: only the latest state is applied, and all of them
   * settle with its outcome.
   */
  apply(state: RouterState): Promise<void> {
    return new Promise((resolvePromise, reject) => {
      if (this.pending) {
        this.pending.state = state;
        this.pending.waiters.push({ resolve: resolvePromise, reject });
      } else {
        this.pending = { state, waiters: [{ resolve: resolvePromise, reject }] };
      }
      if (!this.running) this.running = this.drain();
    });
  }

  logFiles(): string[] {
    return [join(this.prefix, "logs", "access.log"), this.errorLog];
  }

  /**
   * Reopens the log files after they were renamed (log rotation). A reload rather than nginx's
   * SIGUSR1: on USR1 the workers reopen the files themselves, as nobody, and cannot when the logs
   * live in a private directory; on a reload the root master opens them and the workers inherit.
   */
  async reopenLogs(): Promise<void> {
    if (!this.state) throw new RouterError("not-running", "the router is not running: call start() first");
    await this.apply(this.state);
  }

  /** Graceful quit: open requests finish, then the master exits. */
  async stop(): Promise<void> {
    await this.running;
    const pid = this.pid ?? this.runningMaster();
    this.pid = undefined;
    if (pid === undefined || !alive(pid)) return;
    process.kill(pid, "SIGQUIT");
    if (!(await this.waitExit(pid, QUIT_TIMEOUT_MS))) {
      this.log(`router: nginx (pid ${pid}) still running ${QUIT_TIMEOUT_MS / 1000} s after SIGQUIT; terminating it`);
      process.kill(pid, "SIGTERM");
      if (!(await this.waitExit(pid, 5000))) killMaster(pid);
    }
    if (this.fallbackRoot) await rm(this.fallbackRoot, { recursive: true, force: true });
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const { state, waiters } = this.pending;
      this.pending = undefined;
      try {
        await this.applyNow(state);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.running = undefined;
  }

  private settings(generation: number): RenderSettings {
    return {
      prefix: this.prefix,
      listen: { host: this.host, port: this.port },
      statusPort: this.statusPort,
      workers: this.workers,
      generation,
      errorPagesDir: join(this.workerRoot, "html"),
      pidFile: this.pidFile,
      errorLog: this.errorLog,
      accessLog: join(this.prefix, "logs", "access.log"),
      tempDir: join(this.workerRoot, "temp"),
      user: this.user,
      https: {
        port: this.tlsPort,
        publicPort: this.tlsPort,
        fallbackCert: join(this.tlsDir, "fallback.crt"),
        fallbackKey: join(this.tlsDir, "fallback.key"),
        certDir: join(this.tlsDir, "apps"),
        acmeRoot: this.acmeRoot,
      },
    };
  }

  private async applyNow(state: RouterState): Promise<void> {
    const pid = this.pid;
    if (pid === undefined || !alive(pid)) throw new RouterError("not-running", "the router is not running: call start() first");
    const generation = this.gen + 1;
    const conf = renderNginxConf(state, this.settings(generation));
    // nginx opens access logs itself and will not create their directories.
    for (const dir of new Set(state.apps.map((a) => dirname(a.accessLog)))) await mkdir(dir, { recursive: true, mode: 0o700 });
    await this.writeMaintenancePages(state);
    await this.writeCertificates(state);
    const next = await this.validate(conf);
    const previous = await readFile(this.confFile, "utf8").catch(() => undefined);
    await rename(next, this.confFile);
    const logOffset = await this.errorLogSize();
    const oldWorkers = childrenOf(pid);
    const t0 = performance.now();
    process.kill(pid, "SIGHUP");
    const servedAt = await this.waitForGeneration(pid, generation, logOffset, RELOAD_TIMEOUT_MS, oldWorkers).catch(async (err: unknown) => {
      // The master kept the old config in memory; put its file back so a restart runs it too.
      if (previous !== undefined) await writeFileAtomic(this.confFile, previous);
      throw err;
    });
    this.reload = { firstAnswerMs: servedAt - t0, liveMs: performance.now() - t0 };
    this.gen = generation;
    this.state = state;
    await this.save();
  }

  /** Writes `conf` beside the live config and runs `nginx -t` on it; returns its path. */
  private async validate(conf: string): Promise<string> {
    const next = `${this.confFile}.next`;
    await writeFile(next, conf, { mode: 0o600 });
    const res = await run(this.nginx, ["-t", "-q", "-p", `${this.prefix}/`, "-c", next], { cwd: "/" });
    if (res.code !== 0) {
      await rm(next, { force: true });
      throw new RouterError("config-rejected", `nginx rejected the new configuration, the previous one keeps serving: ${nginxMessage(res.stderr + res.stdout)}`);
    }
    return next;
  }

  private async prepareDirs(): Promise<void> {
    const root = process.getuid?.() === 0;
    await mkdir(this.prefix, { recursive: true });
    // Workers (nobody) must traverse the prefix to reach html/ and temp/; conf/, logs/, run/ stay private.
    await chmod(this.prefix, root ? 0o711 : 0o700);
    for (const d of ["conf", "logs", "run"]) await mkdir(join(this.prefix, d), { recursive: true, mode: 0o700 });
    this.user = undefined;
    this.workerRoot = this.prefix;
    this.fallbackRoot = undefined;
    if (root) {
      const uid = lookupId("/etc/passwd", WORKER_USER);
      const group = WORKER_GROUPS.find((g) => lookupId("/etc/group", g) !== undefined);
      const gid = group === undefined ? undefined : lookupId("/etc/group", group);
      if (uid === undefined || group === undefined || gid === undefined) {
        throw new RouterError("not-running", `nginx workers must not run as root, and this system has no "${WORKER_USER}" user or "${WORKER_GROUPS.join('" / "')}" group`);
      }
      this.user = { user: WORKER_USER, group };
      if (!(await this.reachable(this.prefix, uid, gid))) {
        // A prefix inside a private home (/root is 0700) is out of the workers' reach: give them a
        // directory of their own instead, and say so.
        const fallback = join(tmpdir(), `quai-router-${createHash("sha256").update(this.prefix).digest("hex").slice(0, 12)}`);
        await this.ownedDir(fallback);
        if (!(await this.reachable(fallback, uid, gid))) {
          throw new RouterError("not-running", `nginx workers (${WORKER_USER}) can reach neither ${this.prefix} nor ${fallback}: make a parent directory traversable (chmod o+x)`);
        }
        this.log(`router: nginx workers (${WORKER_USER}) cannot reach ${this.prefix}; their error pages and temp files go to ${fallback}`);
        this.workerRoot = fallback;
        this.fallbackRoot = fallback;
      }
    }
    await mkdir(join(this.workerRoot, "temp"), { recursive: true, mode: 0o711 });
    const html = join(this.workerRoot, "html");
    await mkdir(html, { recursive: true, mode: 0o755 });
    await chmod(html, 0o755);
    for (const [file, text] of Object.entries(errorPages())) {
      await writeFile(join(html, `${file}.tmp`), text, { mode: 0o644 });
      await rename(join(html, `${file}.tmp`), join(html, file));
    }
  }

  /**
   * The platform's certificate, for names that have none of their own (self-signed, made once);
   * the directories of apps' certificates (master only) and of ACME challenges (workers read).
   */
  private async prepareTls(): Promise<void> {
    await mkdir(join(this.tlsDir, "apps"), { recursive: true, mode: 0o700 });
    await mkdir(join(this.acmeRoot, ".well-known", "acme-challenge"), { recursive: true, mode: 0o755 });
    if (existsSync(join(this.tlsDir, "fallback.crt")) && existsSync(join(this.tlsDir, "fallback.key"))) return;
    const res = await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650", "-subj", "/CN=quai-router", "-keyout", join(this.tlsDir, "fallback.key.tmp"), "-out", join(this.tlsDir, "fallback.crt.tmp")]);
    if (res.code !== 0) throw new RouterError("not-running", `could not make the router's fallback certificate: ${res.stderr.trim()}`);
    await rename(join(this.tlsDir, "fallback.key.tmp"), join(this.tlsDir, "fallback.key"));
    await rename(join(this.tlsDir, "fallback.crt.tmp"), join(this.tlsDir, "fallback.crt"));
  }

  /** Writes each app's certificates (key 0600, read by the master only) and drops stale ones. */
  private async writeCertificates(state: RouterState): Promise<void> {
    const dir = join(this.tlsDir, "apps");
    const wanted = new Set<string>();
    for (const app of state.apps) {
      for (const c of app.certificates ?? []) {
        for (const [ext, text] of [["crt", c.certPem], ["key", c.keyPem]] as const) {
          const file = `${c.hostname}.${ext}`;
          wanted.add(file);
          await writeIfChanged(join(dir, file), text, 0o600);
        }
      }
    }
    for (const file of readdirSync(dir)) if (!wanted.has(file)) await rm(join(dir, file), { force: true });
  }

  /** Writes the maintenance page of each app in maintenance (read by workers), and drops stale ones. */
  private async writeMaintenancePages(state: RouterState): Promise<void> {
    const html = join(this.workerRoot, "html");
    const wanted = new Map(state.apps.filter((a) => a.maintenance).map((a) => [maintenancePage(a.name), a.maintenance?.html ?? ""]));
    for (const [file, text] of wanted) await writeIfChanged(join(html, file), text, 0o644);
    for (const file of readdirSync(html)) {
      if (/^maintenance-.*\.html$/.test(file) && !wanted.has(file)) await rm(join(html, file), { force: true });
    }
  }

  /** Whether `uid`/`gid` can traverse to `dir` (asks the kernel: modes, ACLs, every parent). */
  private async reachable(dir: string, uid: number, gid: number): Promise<boolean> {
    const res = await run("/usr/bin/test", ["-x", dir], { uid, gid, cwd: "/" });
    return res.code === 0;
  }

  /** Creates `dir` owned by us, refusing one someone else made first (it is in a shared /tmp). */
  private async ownedDir(dir: string): Promise<void> {
    await mkdir(dir, { mode: 0o711 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw err;
    });
    const st = await lstat(dir);
    if (!st.isDirectory() || st.uid !== process.getuid?.()) {
      throw new RouterError("not-running", `${dir} exists but is not a directory owned by Quai's user: remove it`);
    }
    await chmod(dir, 0o711);
  }

  private async readSaved(): Promise<Saved | undefined> {
    try {
      return JSON.parse(await readFile(this.savedFile, "utf8")) as Saved;
    } catch {
      return undefined;
    }
  }

  private async save(): Promise<void> {
    const saved: Saved = { httpPort: this.port, httpsPort: this.tlsPort, statusPort: this.statusPort, generation: this.gen, state: this.state };
    await writeFileAtomic(this.savedFile, JSON.stringify(saved) + "\n");
  }

  /** PID of a live nginx master running this prefix's config, from the pid file. */
  private runningMaster(): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, "utf8").trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return undefined;
    try {
      // PIDs are reused: only a master started with our config file is ours.
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.startsWith("nginx: master process") && cmdline.includes(` -c ${this.confFile} `)) return pid;
    } catch {
      // Gone in between.
    }
    return undefined;
  }

  /** Re-attaches to a running master; false if it does not answer its status port. */
  private async attach(pid: number, saved: Saved): Promise<boolean> {
    let live: number;
    try {
      live = Number((await probe(saved.statusPort, GENERATION_PATH, 2000)).trim());
    } catch (err) {
      this.log(`router: nginx (pid ${pid}) left running does not answer its status port (${(err as Error).message}); restarting it`);
      return false;
    }
    this.pid = pid;
    this.port = this.opts.httpPort || saved.httpPort;
    this.tlsPort = this.opts.httpsPort || saved.httpsPort || (await freePort(this.host));
    this.statusPort = saved.statusPort;
    this.gen = Math.max(live, saved.generation);
    this.state = saved.state;
    this.log(`router: re-attached to nginx (pid ${pid}) on port ${saved.httpPort}, generation ${live}`);
    // Options or Quai's template may have changed since that config was rendered: re-apply if so.
    const state = saved.state ?? { domain: this.opts.domain ?? "localhost", apps: [] };
    const current = await readFile(this.confFile, "utf8").catch(() => "");
    let wanted: string;
    try {
      wanted = renderNginxConf(state, this.settings(live));
    } catch {
      wanted = "";
    }
    if (wanted !== current || live !== saved.generation) {
      // The running config stays if this fails: the control plane's next apply will say why.
      await this.apply(state).catch((err: unknown) => this.log(`router: re-applying the last state after re-attach failed: ${(err as Error).message}`));
    }
    return true;
  }

  private async freshStart(saved: Saved | undefined): Promise<void> {
    const state: RouterState = { domain: this.opts.domain ?? "localhost", apps: [] };
    this.gen = (saved?.generation ?? 0) + 1;
    for (let attempt = 1; ; attempt++) {
      // A remembered port is reused so the address stays the same; a new one only if it is taken.
      this.port = this.opts.httpPort || (attempt === 1 && saved?.httpPort) || (await freePort(this.host));
      this.tlsPort = this.opts.httpsPort || (attempt === 1 && saved?.httpsPort) || (await freePort(this.host));
      this.statusPort = (attempt === 1 && saved?.statusPort) || (await freePort());
      try {
        const conf = renderNginxConf(state, this.settings(this.gen));
        await rename(await this.validate(conf), this.confFile);
        await this.spawnMaster();
        break;
      } catch (err) {
        const portBusy = err instanceof RouterError && /Address already in use/.test(err.message);
        if (!portBusy || attempt >= 3) throw err;
        this.log(`router: ${err.message}; retrying on other ports`);
      }
    }
    this.state = state;
    await this.save();
  }

  private async spawnMaster(): Promise<void> {
    await rm(this.pidFile, { force: true });
    const errFd = openSync(this.startupLog, "w", 0o600);
    const logOffset = await this.errorLogSize();
    // Detached (own session) and unreferenced: the master must outlive this process, even a SIGKILL.
    const child = spawn(this.nginx, ["-p", `${this.prefix}/`, "-c", this.confFile, "-g", "daemon off;"], {
      detached: true,
      stdio: ["ignore", "ignore", errFd],
      cwd: "/",
    });
    closeSync(errFd);
    child.unref();
    const spawnError = new Promise<Error>((r) => child.once("error", r));
    const pid = child.pid;
    if (pid === undefined) throw new RouterError("not-running", `could not start ${this.nginx}: ${(await spawnError).message}`);
    try {
      await this.waitForGeneration(pid, this.gen, logOffset, START_TIMEOUT_MS);
    } catch (err) {
      if (alive(pid)) killMaster(pid);
      const startup = await readFile(this.startupLog, "utf8").catch(() => "");
      const detail = startup.trim() ? nginxMessage(startup) : (err as Error).message;
      throw new RouterError("not-running", `nginx did not start: ${detail}`);
    }
    this.pid = pid;
    this.log(`router: nginx started (pid ${pid}) on ${this.host}:${this.port}, status on 127.0.0.1:${this.statusPort}`);
  }

  /**
   * Waits until `generation` is live: the status listener serves it and none of `oldWorkers` still
   * accepts connections. The second part matters: the master lets old workers accept for another
   * 100 ms after the new ones start (a fixed ngx_msleep(100) in nginx), so "the new config answered
   * once" is not yet "every new request gets the new config". Fails fast on [emerg] or a dead master.
   * Resolves with the time the new generation first answered.
   */
  private async waitForGeneration(pid: number, generation: number, logOffset: number, timeoutMs: number, oldWorkers: number[] = []): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let servedAt = 0;
    for (let i = 0; ; i++) {
      if (!servedAt && Number((await probe(this.statusPort, GENERATION_PATH, 500).catch(() => "")).trim()) === generation) servedAt = performance.now();
      if (servedAt && !oldWorkers.some(stillAccepting)) return servedAt;
      // The error log is read every 20 ms rather than on every poll: a reload that failed is seen
      // soon enough, and a reload in progress shares the CPU with what it routes to.
      if (i % 4 !== 3 && alive(pid)) {
        await sleep(5);
        continue;
      }
      const emerg = (await this.errorLogSince(logOffset)).split("\n").filter((l) => l.includes("[emerg]"));
      if (emerg.length > 0) {
        throw new RouterError("reload-failed", `nginx did not load the new configuration, the previous one keeps serving: ${emerg.map((l) => l.replace(/^.*?\[emerg\] \d+#\d+: /, "")).join("; ")}`);
      }
      if (!alive(pid)) {
        const said = (await this.errorLogSince(logOffset)).trim().split("\n").slice(-5).join(" | ");
        throw new RouterError("not-running", `nginx (pid ${pid}) exited${said ? `; its error log: ${said}` : ""}`);
      }
      if (performance.now() > deadline) throw new RouterError("reload-failed", `nginx did not serve configuration generation ${generation} within ${timeoutMs / 1000} s`);
      await sleep(5);
    }
  }

  private async errorLogSize(): Promise<number> {
    return stat(this.errorLog).then((s) => s.size, () => 0);
  }

  /** What nginx logged after `offset` (only that part is read: the log grows over months). */
  private async errorLogSince(offset: number): Promise<string> {
    const fh = await open(this.errorLog, "r").catch(() => undefined);
    if (!fh) return "";
    try {
      const size = (await fh.stat()).size;
      if (size <= offset) return "";
      const buf = Buffer.alloc(Math.min(size - offset, 1024 * 1024));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead).toString("utf8");
    } finally {
      await fh.close();
    }
  }

  /** Stops a master quickly (open requests get 5 s): used on one we cannot drive. */
  private async terminate(pid: number): Promise<void> {
    process.kill(pid, "SIGQUIT");
    if (!(await this.waitExit(pid, 5000))) killMaster(pid);
    await this.waitExit(pid, 5000);
  }

  private async waitExit(pid: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (alive(pid)) {
      if (performance.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  }
}
