// What the router benchmarks share: the backend they proxy to (a node:http server answering a
// small fixed body, keep-alive longer than nginx's, on 127.0.0.1 and a port chosen at run time),
// and the start of a hand-written nginx to compare with.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import http from "node:http";
import { join } from "node:path";
import { freePort } from "../src/core/net.ts";
import { defaultRouterWorkers } from "../src/router/nginx.ts";

/**
 * nginx workers of every config a router benchmark runs: as many as Quai's router would run on
 * this host (like with like, ADR 0034), QUAI_ROUTER_WORKERS when set, else one per CPU.
 */
export function benchRouterWorkers(): number {
  return Number(process.env.QUAI_ROUTER_WORKERS) || defaultRouterWorkers();
}

/** The machine's CPU time counters (/proc/stat, all CPUs, in clock ticks): total, idle (iowait included) and stolen. */
export async function cpuTicks(): Promise<{ total: number; idle: number; steal: number }> {
  const fields = ((await readFile("/proc/stat", "utf8")).split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already)
  return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), idle: (fields[3] ?? 0) + (fields[4] ?? 0), steal: fields[7] ?? 0 };
}

/** Share of CPU time spent working (neither idle nor stolen) between two `cpuTicks` readings. */
export function busyShare(before: { total: number; idle: number; steal: number }, after: { total: number; idle: number; steal: number }): number {
  const total = after.total - before.total;
  return total > 0 ? (total - (after.idle - before.idle) - (after.steal - before.steal)) / total : 0;
}

/** Share of CPU time a hypervisor took from this machine between two `cpuTicks` readings. */
export function stealShare(before: { total: number; steal: number }, after: { total: number; steal: number }): number {
  const total = after.total - before.total;
  return total > 0 ? (after.steal - before.steal) / total : 0;
}

/** The bench backend. */
export interface BenchBackend {
  server: http.Server;
  port: number;
  /** Connections it has accepted so far. */
  connections(): number;
  /** Resolves to the headers of the next request it serves (headers are not read otherwise). */
  nextHeaders(): Promise<http.IncomingHttpHeaders>;
  /** Ends its connections and stops it. */
  close(): void;
}

/** Starts the backend. */
export async function startBenchBackend(body: string): Promise<BenchBackend> {
  let waiting: ((h: http.IncomingHttpHeaders) => void) | undefined;
  const server = http.createServer((req, res) => {
    if (waiting) {
      waiting(req.headers);
      waiting = undefined;
    }
    res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  let connections = 0;
  server.on("connection", () => connections++);
  server.keepAliveTimeout = 65_000;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    server,
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    nextHeaders: () => new Promise((resolve) => (waiting = resolve)),
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/**
 * Starts nginx on `conf(port)` (a free port) in `dir`, until `answers(port)` says it serves.
 * Detached like Quai's master: a new session is a new scheduler autogroup, which changes how CPU
 * is shared with the load generator and the backend; both nginx must be on the same footing.
 */
export async function startHandWrittenNginx(nginx: string, dir: string, conf: (port: number) => string, answers: (port: number) => Promise<boolean>): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const file = join(dir, "nginx.conf");
  await mkdir(dir, { recursive: true });
  await writeFile(file, conf(port));
  const child = spawn(nginx, ["-p", `${dir}/`, "-c", file, "-g", "daemon off;"], { stdio: ["ignore", "ignore", "inherit"], detached: true });
  for (let i = 0; i < 200; i++) {
    if (await answers(port)) return { port, child };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGKILL");
  throw new Error("hand-written nginx did not start");
}

/** True when a GET / through `get` (http.get or https.get with its options) answers 200. */
export function answers200(get: (cb: (res: http.IncomingMessage) => void) => http.ClientRequest): Promise<boolean> {
  return new Promise((r) => {
    const req = get((res) => {
      res.resume();
      res.on("end", () => r(res.statusCode === 200));
    });
    req.on("error", () => r(false));
  });
}
