// TLS benchmark: Quai's NginxRouter serving a custom domain with its own certificate, against a
// hand-written minimal nginx TLS proxy (same certificate, protocols, ciphers, listen flags, upstream
// keep-alive, access logging and required request headers), in interleaved rounds. Two figures: new TLS handshakes per second
// (each a fresh connection with no session to resume, plus one small GET) and HTTPS requests per
// second over keep-alive connections. The one that matters is Quai ÷ hand-written (target ≥ 0.95).
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { runChecked } from "../src/core/run.ts";
import { NginxRouter } from "../src/router/nginx.ts";
import { answers200, benchRouterWorkers, startBenchBackend, startHandWrittenNginx } from "./backend.ts";

/** Knobs of `benchTls`. */
export interface TlsBenchOptions {
  /** Concurrent clients (default 32). */
  concurrency?: number;
  /** Measured seconds per variant, figure and round (default 1.5). */
  seconds?: number;
  /**
   * Interleaved rounds (default 15). On a shared 2-CPU machine the noise between runs is larger
   * than the difference measured, so the ratio is taken within each round (the two variants back
   * to back, the first one alternating) and the median of those ratios is reported: many short
   * rounds give the median more pairs, and each pair less time for the machine to change.
   */
  rounds?: number;
  /** nginx binary (default /usr/sbin/nginx). */
  nginx?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

type Variant = "quai-nginx" | "hand-nginx";
type Figure = "handshake TLS 1.3" | "handshake TLS 1.2" | "keep-alive HTTPS";

/** One sample: one variant, one figure, one round. */
interface Sample {
  perSecond: number;
  p50: number;
  p99: number;
  /** CPU time the nginx workers spent per operation (µs): the server's own cost, less noisy than rates. */
  cpuUs: number;
}

/** What `benchTls` measured: per figure, medians over rounds and the paired ratios. */
export interface TlsBenchResult {
  rows: { figure: Figure; variant: Variant; perSecond: number; p50: number; p99: number; cpuUs: number }[];
  /** Per figure: Quai ÷ hand-written, median of per-round ratios (rate: higher is better; CPU: lower is better). */
  ratios: { figure: Figure; rate: number; cpu: number }[];
  target: number;
  pass: boolean;
}

const TARGET = 0.95;
const WORKERS = benchRouterWorkers();
const HOST = "bench.quai.test";
/** Unmeasured time before each sample: the keep-alive connections open, nginx's upstream ones too. */
const WARMUP_MS = 300;

// ---------------------------------------------------------------------------------------------
// Load generator: runs in a worker thread (this same module) so its TLS work never shares the
// event loop with the backend.

interface LoadSpec {
  kind: "quai-tls-bench-load";
  mode: "handshake" | "keepalive";
  port: number;
  /** For handshakes: the only version offered (so both variants negotiate the same one). */
  version?: "TLSv1.2" | "TLSv1.3";
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

interface LoadResult {
  completed: number;
  wallMs: number;
  latenciesMs: number[];
  /** Connections that resumed a session: must stay 0 for handshakes to be full ones. */
  resumed: number;
  /** Negotiated protocol and ALPN of one connection (to check like is compared with like). */
  protocol: string | null;
  alpn: string | false;
}

const REQUEST = `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`;

/** A fresh TLS connection (never a resumed session: no `session` is passed), one GET, closed. */
function handshakeOnce(spec: LoadSpec): Promise<{ ms: number; resumed: boolean; protocol: string | null; alpn: string | false }> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const sock = tls.connect({
      host: "127.0.0.1",
      port: spec.port,
      servername: HOST,
      // Plain HTTP/1.1 on both sides: the router listens with http2 too, and so does the hand-written
      // config, but a client offering h2 would compare HTTP/2 framing, not TLS.
      ALPNProtocols: ["http/1.1"],
      // The certificate is checked once before measuring; a browser's chain walk is the client's cost.
      rejectUnauthorized: false,
      ...(spec.version ? { minVersion: spec.version, maxVersion: spec.version } : {}),
    });
    let head = "";
    let info: { resumed: boolean; protocol: string | null; alpn: string | false } | undefined;
    sock.setNoDelay(true);
    sock.once("secureConnect", () => {
      info = { resumed: sock.isSessionReused(), protocol: sock.getProtocol(), alpn: sock.alpnProtocol ?? false };
      sock.write(REQUEST);
    });
    sock.on("data", (c: Buffer) => {
      if (head.length < 16) head += c.toString("latin1");
    });
    sock.once("end", () => {
      sock.destroy();
      if (!head.startsWith("HTTP/1.1 200") || !info) reject(new Error(`unexpected answer: ${JSON.stringify(head.slice(0, 40))}`));
      else resolvePromise({ ms: performance.now() - t0, ...info });
    });
    sock.once("error", reject);
  });
}

function keepAliveOnce(agent: https.Agent, port: number): Promise<{ ms: number; protocol: string | null; alpn: string | false }> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const req = https.request(
      { agent, host: "127.0.0.1", port, path: "/", servername: HOST, headers: { host: HOST }, rejectUnauthorized: false },
      (res) => {
        const sock = res.socket as tls.TLSSocket;
        const info = { protocol: sock.getProtocol(), alpn: sock.alpnProtocol ?? false };
        res.resume();
        res.once("end", () => (res.statusCode === 200 ? resolvePromise({ ms: performance.now() - t0, ...info }) : reject(new Error(`HTTP ${res.statusCode}`))));
        res.once("error", reject);
      },
    );
    req.once("error", reject);
    req.end();
  });
}

/** `concurrency` clients repeat `op` until the deadline; only operations finished by then count. */
async function runFor(concurrency: number, ms: number, op: () => Promise<number>): Promise<{ latenciesMs: number[]; wallMs: number }> {
  const latenciesMs: number[] = [];
  const t0 = performance.now();
  const end = t0 + ms;
  const client = async () => {
    while (performance.now() < end) {
      const took = await op();
      if (performance.now() <= end) latenciesMs.push(took);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  return { latenciesMs, wallMs: ms };
}

/** Tells the main thread the measured phase starts or ends (it reads nginx's CPU time then). */
const mark = (phase: "start" | "end") => parentPort?.postMessage({ phase });

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  if (spec.mode === "handshake") {
    let resumed = 0;
    let last: { protocol: string | null; alpn: string | false } = { protocol: null, alpn: false };
    const op = async () => {
      const r = await handshakeOnce(spec);
      if (r.resumed) resumed++;
      last = r;
      return r.ms;
    };
    await runFor(spec.concurrency, spec.warmupMs, op);
    resumed = 0;
    mark("start");
    const r = await runFor(spec.concurrency, spec.durationMs, op);
    mark("end");
    return { completed: r.latenciesMs.length, ...r, resumed, ...last };
  }
  // No session cache on the agent: the rare reconnections (nginx closes a connection after 1,000
  // requests) are full handshakes for both variants alike.
  const agent = new https.Agent({ keepAlive: true, maxSockets: spec.concurrency, maxFreeSockets: spec.concurrency, maxCachedSessions: 0, ALPNProtocols: ["http/1.1"] });
  try {
    let last: { protocol: string | null; alpn: string | false } = { protocol: null, alpn: false };
    const op = async () => {
      const r = await keepAliveOnce(agent, spec.port);
      last = r;
      return r.ms;
    };
    await runFor(spec.concurrency, spec.warmupMs, op);
    mark("start");
    const r = await runFor(spec.concurrency, spec.durationMs, op);
    mark("end");
    return { completed: r.latenciesMs.length, ...r, resumed: 0, ...last };
  } finally {
    agent.destroy();
  }
}

/** Runs `runLoad` in a worker thread; `onPhase` is called when the measured phase starts and ends. */
function runLoadInWorker(spec: LoadSpec, onPhase: (phase: "start" | "end") => void): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: spec });
    let result: LoadResult | undefined;
    worker.on("message", (m: { phase: "start" | "end" } | { ok: true; result: LoadResult } | { ok: false; error: string }) => {
      if ("phase" in m) onPhase(m.phase);
      else if (m.ok) result = m.result;
      else reject(new Error(m.error));
    });
    worker.once("error", reject);
    worker.once("exit", (code) => (result ? resolvePromise(result) : reject(new Error(`TLS load worker exited with code ${code} and no result`))));
  });
}

if (!isMainThread && parentPort && (workerData as Partial<LoadSpec> | undefined)?.kind === "quai-tls-bench-load") {
  const port = parentPort;
  runLoad(workerData as LoadSpec).then(
    (result) => port.postMessage({ ok: true, result }),
    (err: unknown) => port.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
}

// ---------------------------------------------------------------------------------------------
// The two servers.

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? NaN;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Worker PIDs of an nginx master. */
function workersOf(master: number): number[] {
  try {
    return readFileSync(`/proc/${master}/task/${master}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** CPU time (user + system, in clock ticks) of the workers of an nginx master. */
function workerTicks(master: number): number {
  let ticks = 0;
  for (const pid of workersOf(master)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime and stime: fields 14 and 15 of /proc/<pid>/stat, 12 and 13 after the command name.
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // A worker that left (none should during a run) counts for nothing.
    }
  }
  return ticks;
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times. */
const TICKS_PER_SECOND = 100;

/**
 * The comparison point: what an operator would write by hand to put one app behind TLS. Same
 * certificate and key, same protocols (TLS 1.2 and 1.3), nginx's default ciphers like the router,
 * the same listen flags (ssl http2), the same upstream keep-alive and access log, and the request
 * headers the router is required to set (a request id, X-Forwarded-For/Proto/Port: behind TLS the
 * app must learn the request was HTTPS); nothing else. bench/router.ts shows the cost of those
 * headers alone against a bare proxy.
 */
function handWrittenConf(dir: string, port: number, backendPort: number, cert: string, key: string): string {
  return `worker_processes ${WORKERS};
pid "${dir}/nginx.pid";
error_log "${dir}/error.log" warn;
events {
  worker_connections 4096;
}
http {
  client_body_temp_path "${dir}/client_body";
  proxy_temp_path "${dir}/proxy";
  fastcgi_temp_path "${dir}/fastcgi";
  uwsgi_temp_path "${dir}/uwsgi";
  scgi_temp_path "${dir}/scgi";
  log_format bench '$time_iso8601 request_id=$request_id client=$remote_addr method=$request_method path="$request_uri" host=$host status=$status bytes=$body_bytes_sent duration=$request_time upstream="$upstream_addr" upstream_duration="$upstream_response_time"';
  access_log "${dir}/access.log" bench;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port} ssl http2;
    server_name ${HOST};
    ssl_certificate "${cert}";
    ssl_certificate_key "${key}";
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
    }
  }
}
`;
}

/** The certificate both servers present, checked by a client that trusts only it. */
function checkCertificate(port: number, certPem: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port, servername: HOST, ca: certPem, ALPNProtocols: ["http/1.1"] }, () => {
      const ok = sock.authorized && sock.alpnProtocol === "http/1.1";
      sock.destroy();
      if (ok) resolvePromise();
      else reject(new Error(`port ${port}: certificate not trusted (${String(sock.authorizationError)}) or ALPN ${String(sock.alpnProtocol)}`));
    });
    sock.once("error", reject);
  });
}

function startHandWritten(nginx: string, dir: string, backendPort: number, cert: string, key: string): Promise<{ port: number; child: ChildProcess }> {
  return startHandWrittenNginx(nginx, dir, (port) => handWrittenConf(dir, port, backendPort, cert, key), (port) =>
    answers200((cb) => https.get({ host: "127.0.0.1", port, path: "/", servername: HOST, headers: { host: HOST }, rejectUnauthorized: false, agent: false }, cb)),
  );
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Runs the TLS benchmark, prints its table and returns the figures. */
export async function benchTls(opts: TlsBenchOptions = {}): Promise<TlsBenchResult> {
  const concurrency = opts.concurrency ?? 32;
  const seconds = opts.seconds ?? 1.5;
  const rounds = opts.rounds ?? 15;
  const nginx = opts.nginx ?? "/usr/sbin/nginx";
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));

  const dir = await mkdtemp(join(tmpdir(), "quai-bench-tls-"));
  // nginx workers run as nobody when we are root: they must traverse to their temp directories.
  await chmod(dir, 0o711);
  const body = "hello from the backend\n";
  const backend = await startBenchBackend(body);
  const backendPort = backend.port;

  const router = new NginxRouter({ prefix: join(dir, "quai"), workers: WORKERS, log });
  let hand: { port: number; child: ChildProcess } | undefined;
  // Both nginx masters are detached and would outlive an interrupted run: end them, by PID, on exit.
  const killOnExit = () => {
    for (const pid of [router.masterPid, hand?.child.pid]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
  };
  process.once("exit", killOnExit);
  try {
    // A P-256 certificate like the ones ACME issues, made for this run.
    const cert = join(dir, "bench.crt");
    const key = join(dir, "bench.key");
    await runChecked("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", `/CN=${HOST}`, "-addext", `subjectAltName=DNS:${HOST}`, "-keyout", key, "-out", cert]);
    const certPem = await readFile(cert, "utf8");
    const keyPem = await readFile(key, "utf8");

    await router.start();
    await router.apply({
      domain: "localhost",
      apps: [{ name: "bench", hostnames: [HOST], backends: [{ host: "127.0.0.1", port: backendPort }], accessLog: join(dir, "logs", "bench.log"), certificates: [{ hostname: HOST, certPem, keyPem }] }],
    });
    hand = await startHandWritten(nginx, join(dir, "hand"), backendPort, cert, key);
    const ports: Record<Variant, number> = { "quai-nginx": router.httpsPort, "hand-nginx": hand.port };
    const masters: Record<Variant, number> = { "quai-nginx": router.masterPid as number, "hand-nginx": hand.child.pid as number };
    for (const v of Object.keys(ports) as Variant[]) await checkCertificate(ports[v], certPem);

    const figures: { figure: Figure; mode: LoadSpec["mode"]; version?: LoadSpec["version"] }[] = [
      { figure: "handshake TLS 1.3", mode: "handshake", version: "TLSv1.3" },
      { figure: "handshake TLS 1.2", mode: "handshake", version: "TLSv1.2" },
      { figure: "keep-alive HTTPS", mode: "keepalive" },
    ];
    const variants: Variant[] = ["quai-nginx", "hand-nginx"];
    const samples = new Map<string, Sample[]>();
    const key2 = (f: Figure, v: Variant) => `${f}|${v}`;
    for (let round = 0; round < rounds; round++) {
      for (const f of figures) {
        // Alternate which variant goes first, so neither always meets a warmer (or busier) machine.
        const order = round % 2 ? [...variants].reverse() : variants;
        for (const v of order) {
          const spec: LoadSpec = { kind: "quai-tls-bench-load", mode: f.mode, port: ports[v], concurrency, warmupMs: WARMUP_MS, durationMs: seconds * 1000, ...(f.version ? { version: f.version } : {}) };
          let ticks0 = 0;
          let ticks = 0;
          const r = await runLoadInWorker(spec, (phase) => {
            if (phase === "start") ticks0 = workerTicks(masters[v]);
            else ticks = workerTicks(masters[v]) - ticks0;
          });
          if (r.resumed > 0) throw new Error(`${v}: ${r.resumed} handshakes resumed a session; they must all be full handshakes`);
          if (f.version && r.protocol !== f.version) throw new Error(`${v}: negotiated ${r.protocol}, expected ${f.version}`);
          if (r.alpn !== "http/1.1") throw new Error(`${v}: negotiated ALPN ${String(r.alpn)}, expected http/1.1`);
          const sorted = [...r.latenciesMs].sort((a, b) => a - b);
          const perSecond = r.completed / (r.wallMs / 1000);
          const s: Sample = { perSecond, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), cpuUs: ((ticks / TICKS_PER_SECOND) * 1e6) / r.completed };
          samples.set(key2(f.figure, v), [...(samples.get(key2(f.figure, v)) ?? []), s]);
          log(`bench tls: round ${round + 1}/${rounds} ${f.figure} ${v}: ${perSecond.toFixed(0)}/s, p99 ${s.p99.toFixed(2)} ms, nginx CPU ${s.cpuUs.toFixed(0)} µs/op`);
        }
      }
    }

    const rows: TlsBenchResult["rows"] = [];
    const ratios: TlsBenchResult["ratios"] = [];
    for (const f of figures) {
      for (const v of variants) {
        const ss = samples.get(key2(f.figure, v)) ?? [];
        rows.push({ figure: f.figure, variant: v, perSecond: median(ss.map((s) => s.perSecond)), p50: median(ss.map((s) => s.p50)), p99: median(ss.map((s) => s.p99)), cpuUs: median(ss.map((s) => s.cpuUs)) });
      }
      const q = samples.get(key2(f.figure, "quai-nginx")) ?? [];
      const h = samples.get(key2(f.figure, "hand-nginx")) ?? [];
      ratios.push({ figure: f.figure, rate: median(q.map((s, i) => s.perSecond / (h[i]?.perSecond ?? NaN))), cpu: median(q.map((s, i) => s.cpuUs / (h[i]?.cpuUs ?? NaN))) });
    }
    const pass = ratios.every((r) => r.rate >= TARGET);

    console.log(
      `\nTLS at the router: ${concurrency} concurrent clients, ${seconds} s per variant, figure and round after ${WARMUP_MS / 1000} s warm-up, ${rounds} interleaved rounds` +
        `\n(handshakes: a new connection each, no session resumption, ALPN http/1.1, one GET; keep-alive: ${concurrency} kept-alive HTTPS connections, TLS 1.3);` +
        `\nfigures are medians over rounds, ratios the median of the ratios within each round; P-256 certificate, nginx ${WORKERS} worker${WORKERS === 1 ? "" : "s"} (as Quai's router here),` +
        `\nbackend node:http ${process.version} in the bench process, ${cpus().length} CPUs; load generator in a worker thread.\n`,
    );
    const ratioOf = (f: Figure) => ratios.find((r) => r.figure === f) as TlsBenchResult["ratios"][number];
    console.log(
      table(
        ["figure", "variant", "per s", "p50 ms", "p99 ms", "nginx CPU µs/op", "per s × hand", `≥ ${TARGET}x`],
        rows.map((r) => {
          const quai = r.variant === "quai-nginx";
          const ratio = ratioOf(r.figure).rate;
          return [r.figure, r.variant, r.perSecond.toFixed(0), r.p50.toFixed(2), r.p99.toFixed(2), r.cpuUs.toFixed(0), quai ? `${ratio.toFixed(3)}x` : "1.000x", quai ? (ratio >= TARGET ? "PASS" : "MISS") : ""];
        }),
      ),
    );
    console.log(
      `\nQuai ÷ hand-written nginx: ${ratios.map((r) => `${r.figure} ${r.rate.toFixed(3)}x per s (nginx CPU per op ${r.cpu.toFixed(3)}x)`).join("; ")}` +
        ` (target ≥ ${TARGET}x per s: ${pass ? "PASS" : "MISS"}).`,
    );
    return { rows, ratios, target: TARGET, pass };
  } finally {
    await router.stop().catch((err: unknown) => log(`bench tls: stopping Quai's nginx: ${(err as Error).message}`));
    if (hand && hand.child.exitCode === null) {
      hand.child.kill("SIGQUIT");
      await once(hand.child, "exit");
    }
    process.removeListener("exit", killOnExit);
    backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// `node bench/tls.ts` runs it alone; a MISS is reported, not an error (as in bench/run.ts).
if (isMainThread && process.argv[1] === fileURLToPath(import.meta.url)) {
  await benchTls();
  process.exit(0);
}
