// HTTP load generator for the benchmarks: N keep-alive clients send a fixed number of requests
// and time each one. It runs in a worker thread so its own work never delays the server's loop.
import http from "node:http";
import { answerInWorker, runInWorker } from "./worker.ts";

/** What each request is. */
export type Scenario =
  | { kind: "get"; path: string; bearer?: string }
  /** PUT /v1/apps/:app/variables, the apps taken in turn, every request with new values. */
  | { kind: "put-variables"; apps: string[]; variables: string[]; bearer: string };

/** One measured run. */
export interface LoadSpec {
  /** http://127.0.0.1:port */
  origin: string;
  scenario: Scenario;
  /** Requests sent (and not measured) first, to fill the connection and statement caches. */
  warmup: number;
  /** Requests measured. */
  requests: number;
  /** Concurrent clients, each with its own kept-alive connection. */
  concurrency: number;
}

/** Latencies of the measured requests (milliseconds, in completion order) and the wall time. */
export interface LoadResult {
  latenciesMs: number[];
  wallMs: number;
}

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function requestFor(s: Scenario, i: number): Request {
  if (s.kind === "get") return { method: "GET", path: s.path, headers: s.bearer ? { authorization: `Bearer ${s.bearer}` } : {} };
  const app = s.apps[i % s.apps.length] as string;
  const body = JSON.stringify({ variables: s.variables.map((name, k) => ({ name, value: `${name.toLowerCase()}-${i}-${k}-${Math.random().toString(36).slice(2)}` })) });
  return {
    method: "PUT",
    path: `/v1/apps/${app}/variables`,
    headers: { authorization: `Bearer ${s.bearer}`, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) },
    body,
  };
}

function send(agent: http.Agent, origin: URL, r: Request): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host: origin.hostname, port: origin.port, method: r.method, path: r.path, headers: r.headers }, (res) => {
      const chunks: Buffer[] = [];
      const ok = res.statusCode === 200;
      // Read the whole body (the response is not complete before), keep it only to report a failure.
      res.on("data", (c: Buffer) => {
        if (!ok) chunks.push(c);
      });
      res.on("end", () => {
        if (ok) resolve();
        else reject(new Error(`${r.method} ${r.path}: HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString("utf8").slice(0, 300)}`));
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(r.body);
  });
}

/** Sends `count` requests from `concurrency` clients; returns each one's latency. */
async function phase(agent: http.Agent, spec: LoadSpec, first: number, count: number): Promise<LoadResult> {
  const origin = new URL(spec.origin);
  const latenciesMs: number[] = [];
  let next = 0;
  const client = async () => {
    while (next < count) {
      const i = first + next++;
      const r = requestFor(spec.scenario, i);
      const t0 = performance.now();
      await send(agent, origin, r);
      latenciesMs.push(performance.now() - t0);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: spec.concurrency }, client));
  return { latenciesMs, wallMs: performance.now() - t0 };
}

/** Runs the warm-up, then the measured requests, in this thread. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency, maxFreeSockets: spec.concurrency });
  try {
    await phase(agent, spec, 0, spec.warmup);
    return await phase(agent, spec, spec.warmup, spec.requests);
  } finally {
    agent.destroy();
  }
}

/** Runs `runLoad` in a worker thread of its own. */
export function runLoadInWorker(spec: LoadSpec): Promise<LoadResult> {
  return runInWorker(import.meta.url, spec);
}

answerInWorker(import.meta.url, runLoad);
