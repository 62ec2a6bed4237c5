// Test helpers for the whole platform: a `quai server` with its runtime and router in a
// throwaway home, pushes with the real git client, requests through the router, and a cleanup
// that stops what a server leaves running on purpose (containers, nginx).
import { chmod, mkdir, writeFile, readdir, readFile, readlink, rm } from "node:fs/promises";
import { join, dirname } from "node:path";
import { Agent, request } from "node:http";
import { run, type RunResult } from "../core/run.ts";
import { spawnServer, quai, type ServerProcess } from "./cli.ts";
import { scratchDir } from "./scratch.ts";
import { trackReuse } from "./reuse.ts";
import { LocalRuntime } from "../runtime/local.ts";
import { detectCgroups } from "../runtime/cgroups.ts";
import { cgroupName } from "../addons/process.ts";

/** A running platform for end-to-end tests. */
export interface TestPlatform {
  server: ServerProcess;
  home: string;
  url: string;
  token: string;
  routerPort: number;
  env: NodeJS.ProcessEnv;
  quai(args: string[], input?: string): Promise<RunResult>;
  /** `git push` of `dir` (a git work tree) to the app; returns git's output and exit code. */
  push(app: string, dir: string, refspec?: string): Promise<RunResult>;
  /** GET through the router with Host `<app>.localhost`. */
  get(app: string, path?: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  /** Restarts the server process (SIGKILL when `kill`), keeping containers and router. */
  restart(kill: boolean): Promise<void>;
  /** Stops the server, then every container, add-on server and the router it left running; removes its files. */
  close(): Promise<void>;
}

/** A temp directory every app uid can traverse (sandboxes bind paths under it). */
export async function traversableTempDir(prefix: string): Promise<string> {
  const dir = await scratchDir(prefix);
  await chmod(dir, 0o711);
  return dir;
}

/** Starts `quai server` with the runtime on, in a fresh home. */
export async function startPlatform(extraEnv: NodeJS.ProcessEnv = {}): Promise<TestPlatform> {
  const root = await traversableTempDir("quai-e2e-");
  const home = join(root, "home");
  const env: NodeJS.ProcessEnv = { QUAI_HOME: home, QUAI_RUNTIME: "on", QUAI_STOP_GRACE: "3", QUAI_START_TIMEOUT: "20", ...extraEnv };
  let server = await spawnServer(env);
  const token = server.token as string;
  const cliEnv: NodeJS.ProcessEnv = { QUAI_CONFIG_DIR: join(root, "cli"), QUAI_URL: server.url, QUAI_TOKEN: token, QUAI_APP: "" };
  // A setup that fails from here stops its server: a test file whose before() failed has no
  // platform to close, and a server left running would keep the file from ever ending.
  let platform: { router: { http: string } };
  try {
    const res = await fetch(`${server.url}/v1/platform`, { headers: { authorization: `Bearer ${await bearer(server.url, token)}` } });
    ({ platform } = (await res.json()) as { platform: { router: { http: string } } });
  } catch (err) {
    await server.stop();
    await rm(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }).catch(() => {});
    throw err;
  }
  const routerPort = Number(new URL(platform.router.http).port);
  const p: TestPlatform = {
    get server() {
      return server;
    },
    home,
    get url() {
      return server.url;
    },
    token,
    routerPort,
    get env() {
      return { ...cliEnv, QUAI_URL: server.url };
    },
    quai: (args, input) => quai(args, { ...cliEnv, QUAI_URL: server.url }, input),
    push: (app, dir, refspec = "HEAD:main") => {
      const u = new URL(server.url);
      return run("git", ["-C", dir, "push", "--porcelain", `http://user:${token}@${u.host}/${app}.git`, refspec], { env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
    },
    get: (app, path = "/") => httpGet(routerPort, `${app}.localhost`, path),
    async restart(kill) {
      if (kill) {
        server.proc.kill("SIGKILL");
        await new Promise((r) => server.proc.once("exit", r));
      } else await server.stop();
      server = await spawnServer({ ...env, QUAI_LISTEN: new URL(server.url).host });
    },
    async close() {
      await server.stop();
      await stopLeftovers(home, env.QUAI_RUNTIME_DIR ?? join(home, "runtime"));
      await rm(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
  return p;
}

/** A bearer token for `token` (POST /v1/tokens/exchange). */
export async function bearer(url: string, token: string): Promise<string> {
  const res = await fetch(`${url}/v1/tokens/exchange`, { method: "POST", headers: { authorization: `Basic ${Buffer.from(":" + token).toString("base64")}` } });
  return ((await res.json()) as { token: string }).token;
}

/** GET with a Host header, over a fresh connection. */
export function httpGet(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { ...headers, host }, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Polls `fn` until it returns something other than undefined; throws naming `what` after `ms`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000, everyMs = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** What constant load through the router saw. */
export interface LoadResult {
  ok: number;
  failures: string[];
  /** Distinct bodies of the successful answers. */
  bodies: Set<string>;
}

/**
 * Sends GET `path` with Host `host` through the router from `clients` keep-alive clients, one
 * request after another, until `stop()` resolves with what they saw. A request on a reused
 * connection that closes first is retried once, as browsers do for idempotent requests.
 */
export function startLoad(routerPort: number, host: string, clients = 2, path = "/"): { stop(): Promise<LoadResult> } {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const result: LoadResult = { ok: 0, failures: [], bodies: new Set() };
  let stopping = false;
  // The retry goes on a new connection, as browsers do: another pooled socket may be closing too.
  const one = (fresh = false): Promise<{ status: number; body: string }> =>
    new Promise((resolvePromise, reject) => {
      const req = request({ host: "127.0.0.1", port: routerPort, path, headers: { host }, agent: fresh ? false : agent }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body }));
      });
      const reused = trackReuse(req);
      req.on("error", (err) => reject(Object.assign(err, { reused: reused() })));
      req.end();
    });
  const client = async () => {
    while (!stopping) {
      try {
        const r = await one().catch((err: unknown) => {
          if (!(err as { reused?: boolean }).reused) throw err;
          return one(true);
        });
        if (r.status === 200) {
          result.ok++;
          result.bodies.add(r.body);
        } else result.failures.push(`status ${r.status}: ${r.body.slice(0, 200)}`);
      } catch (err) {
        result.failures.push(String(err));
      }
    }
  };
  const running = Array.from({ length: clients }, () => client());
  return {
    async stop() {
      stopping = true;
      await Promise.all(running);
      agent.destroy();
      return result;
    },
  };
}

/** Stops the containers and the nginx a test server left running (they outlive it by design). */
export async function stopLeftovers(home: string, runtimeDir: string): Promise<void> {
  const stateDir = join(runtimeDir, "state");
  const runtime = new LocalRuntime({ stateDir });
  for (const id of await readdir(stateDir).catch(() => [] as string[])) {
    await runtime.stop(id, 0).catch(() => {});
    await runtime.remove(id).catch(() => {});
  }
  // The groups of one-off processes a killed server lost. Ten seconds old at least: an exec of a
  // server still running (tests run side by side) is never empty that long.
  await runtime.sweep(10_000).catch(() => {});
  await stopAddonServers(home);
  const pid = Number(await readFile(join(home, "router", "run", "nginx.pid"), "utf8").catch(() => ""));
  if (pid > 0) {
    try {
      process.kill(pid, "SIGQUIT");
    } catch {
      // already gone
    }
  }
}

/**
 * SIGKILLs the add-on servers a test server left running (they outlive it by design): every
 * process whose working directory is an instance directory under `<home>/addons`.
 */
export function stopAddonServers(home: string): Promise<void> {
  return stopServersUnder(join(home, "addons"));
}

/**
 * SIGKILLs every process whose working directory is below `dir` (a directory of add-on instance
 * directories), then removes those instances' cgroups: a server stopped by the platform has its
 * group removed, these were not, and an empty group would outlive the test.
 */
export async function stopServersUnder(dir: string): Promise<void> {
  for (const { pid } of await serversUnder(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  if (process.getuid?.() !== 0) return;
  const cgroups = detectCgroups();
  for (const instance of await readdir(dir).catch(() => [] as string[])) {
    const group = cgroupName({ id: instance });
    if (cgroups.exists(group)) await cgroups.remove(group).catch(() => {});
  }
}

/** Processes running in an instance directory under `<home>/addons`, with that instance's id. */
export function addonServers(home: string): Promise<{ pid: number; instance: string }[]> {
  return serversUnder(join(home, "addons"));
}

/** Processes whose working directory is below `dir`, with the first path segment under it. */
export async function serversUnder(dir: string): Promise<{ pid: number; instance: string }[]> {
  const root = dir + "/";
  const found: { pid: number; instance: string }[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => "");
    if (cwd.startsWith(root)) found.push({ pid: Number(entry), instance: cwd.slice(root.length).split("/")[0] as string });
  }
  return found;
}

/** Writes `files` into a new git work tree with one commit; returns its path. */
export async function gitApp(files: Record<string, string>, opts: { executable?: string[] } = {}): Promise<string> {
  const dir = await scratchDir("quai-app-");
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), content, { mode: opts.executable?.includes(name) ? 0o755 : 0o644 });
  }
  await git(dir, ["init", "-q", "-b", "main"]);
  await commitAll(dir, "initial");
  return dir;
}

/** Commits everything in `dir`. */
export async function commitAll(dir: string, message: string): Promise<void> {
  await git(dir, ["add", "-A"]);
  await git(dir, ["-c", "user.email=dev@example.org", "-c", "user.name=Dev", "commit", "-q", "--allow-empty", "-m", message]);
}

async function git(dir: string, args: string[]): Promise<void> {
  const res = await run("git", ["-C", dir, ...args]);
  if (res.code !== 0) throw new Error(`git ${args.join(" ")}: ${res.stderr}`);
}

/**
 * A tiny web app for the Procfile-only buildpack: Python's standard library, no dependencies,
 * answers `body` (or what VERSION says), finishes requests in flight on SIGTERM.
 */
export function pythonWebApp(body: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    Procfile: "web: python3 server.py\n",
    "server.py": `import os, signal, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
BODY = ${JSON.stringify(body)}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        code = 200
        if self.path == "/env":
            data = "\\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())).encode()
        elif self.path == "/headers":
            data = "\\n".join(f"{k.lower()}: {v}" for k, v in self.headers.items()).encode()
        elif self.path == "/health":
            code = int(os.environ.get("HEALTH_STATUS", "200"))
            data = b"health"
        else:
            data = BODY.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, fmt, *args):
        sys.stdout.write("request %s\\n" % (fmt % args)); sys.stdout.flush()
srv = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
print("listening on", os.environ["PORT"], flush=True)
srv.serve_forever()
`,
    ...extra,
  };
}
