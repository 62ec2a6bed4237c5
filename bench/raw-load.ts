// A lean HTTP/1.1 load generator for the router benchmarks: N keep-alive connections, each sending
// one GET and reading its response before the next, like `wrk` with one request in flight per
// connection. It reads only what it must (status line, Content-Length or chunked framing,
// Connection: close) and sends a request prepared once, so its own CPU per request stays a small
// part of the machine's. With node:http's client, the load generator and the backend took about
// four fifths of a router run's CPU, and nginx measured at 0.78× the direct backend instead of the
// 0.5× that wrk measures here (ADR 0015, ADR 0022).
import net from "node:net";
import type { LoadResult } from "./load.ts";
import { answerInWorker, runInWorker } from "./worker.ts";

/** One measured run of GET requests. */
export interface RawLoadSpec {
  /** http://127.0.0.1:port */
  origin: string;
  path: string;
  /** Requests sent (and not measured) first. */
  warmup: number;
  /** Requests measured. */
  requests: number;
  /** Connections, each with one request in flight. */
  concurrency: number;
}

/** Where a response ends, read from its head; `error` says why it cannot be read. */
type Framing = { status: number; headEnd: number; length: number; close: boolean } | { status: number; headEnd: number; chunked: true; close: boolean } | { error: string };

const CRLF2 = Buffer.from("\r\n\r\n");

/** Parses a response head in `buf` (undefined while incomplete). */
export function parseHead(buf: Buffer): Framing | undefined {
  const end = buf.indexOf(CRLF2);
  if (end < 0) return buf.length > 65_536 ? { error: "response head larger than 64 KiB" } : undefined;
  const head = buf.toString("latin1", 0, end);
  const lines = head.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) return { error: `not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}` };
  const status = Number(m[1]);
  let length: number | undefined;
  let chunked = false;
  let close = lines[0]?.startsWith("HTTP/1.0") ?? false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === "content-length") length = Number(value);
    else if (name === "transfer-encoding") chunked = value.split(",").some((v) => v.trim() === "chunked");
    else if (name === "connection") close = value.split(",").some((v) => v.trim() === "close");
  }
  const headEnd = end + 4;
  if (chunked) return { status, headEnd, chunked: true, close };
  if (length === undefined || !Number.isSafeInteger(length) || length < 0) return { error: "response without a Content-Length or chunked body" };
  return { status, headEnd, length, close };
}

/** Length of a complete chunked body starting at `from` (undefined while incomplete). */
export function chunkedEnd(buf: Buffer, from: number): number | undefined {
  let at = from;
  for (;;) {
    const eol = buf.indexOf("\r\n", at);
    if (eol < 0) return undefined;
    const size = Number.parseInt(buf.toString("latin1", at, eol).split(";")[0] as string, 16);
    if (!Number.isFinite(size)) throw new Error("malformed chunk size");
    at = eol + 2;
    if (size === 0) {
      // Trailers end with an empty line.
      const end = buf.indexOf(CRLF2, at - 2);
      return end < 0 ? undefined : end + 4;
    }
    if (buf.length < at + size + 2) return undefined;
    at += size + 2;
  }
}

/** One connection sending `take()`'s requests one after the other; reconnects when the server closes. */
function client(origin: URL, request: Buffer, take: () => boolean, latenciesMs: number[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    let buf: Buffer = Buffer.alloc(0);
    let t0 = 0;
    let framing: Framing | undefined;
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(err);
    };
    const next = () => {
      if (!take()) {
        done = true;
        socket.end();
        resolve();
        return;
      }
      t0 = performance.now();
      socket.write(request);
    };
    const connect = (first: boolean) => {
      buf = Buffer.alloc(0);
      framing = undefined;
      socket = net.connect({ host: origin.hostname, port: Number(origin.port), noDelay: true });
      socket.on("error", (err) => fail(new Error(`GET ${origin.href}: ${err.message}`)));
      socket.on("close", () => {
        if (!done) fail(new Error(`GET ${origin.href}: the server closed the connection before a whole response`));
      });
      socket.on("data", (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        framing ??= parseHead(buf);
        if (framing === undefined) return;
        if ("error" in framing) return fail(new Error(`GET ${origin.href}: ${framing.error}`));
        let end: number | undefined;
        try {
          end = "chunked" in framing ? chunkedEnd(buf, framing.headEnd) : buf.length >= framing.headEnd + framing.length ? framing.headEnd + framing.length : undefined;
        } catch (err) {
          return fail(err as Error);
        }
        if (end === undefined) return;
        if (framing.status !== 200) return fail(new Error(`GET ${origin.href}: HTTP ${framing.status}: ${buf.toString("utf8", framing.headEnd, Math.min(end, framing.headEnd + 300))}`));
        if (end !== buf.length) return fail(new Error(`GET ${origin.href}: bytes after the response`));
        latenciesMs.push(performance.now() - t0);
        if (framing.close) {
          // The server ends this connection (its keep-alive limit): the next request opens another.
          socket.removeAllListeners("close");
          socket.removeAllListeners("data");
          socket.on("close", () => {
            if (!done) connect(false);
          });
          socket.end();
          return;
        }
        buf = Buffer.alloc(0);
        framing = undefined;
        next();
      });
      // After a close, the next request is written at once: its latency includes the connect.
      if (first) socket.once("connect", next);
      else next();
    };
    connect(true);
  });
}

/** Sends `count` requests over `concurrency` connections; returns each one's latency. */
async function phase(spec: RawLoadSpec, count: number): Promise<LoadResult> {
  const origin = new URL(spec.origin);
  const request = Buffer.from(`GET ${spec.path} HTTP/1.1\r\nHost: ${origin.host}\r\nUser-Agent: quai-bench\r\nAccept: */*\r\n\r\n`, "latin1");
  const latenciesMs: number[] = [];
  let sent = 0;
  let failed = false;
  const take = () => {
    if (failed || sent === count) return false;
    sent++;
    return true;
  };
  const t0 = performance.now();
  // One client's failure ends the others at their next request.
  const stopOthers = (err: unknown) => {
    failed = true;
    throw err;
  };
  await Promise.all(Array.from({ length: spec.concurrency }, () => client(origin, request, take, latenciesMs).catch(stopOthers)));
  return { latenciesMs, wallMs: performance.now() - t0 };
}

/** Runs the warm-up, then the measured requests, in this thread. */
export async function runRawLoad(spec: RawLoadSpec): Promise<LoadResult> {
  await phase(spec, spec.warmup);
  return phase(spec, spec.requests);
}

/** Runs `runRawLoad` in a worker thread of its own. */
export function runRawLoadInWorker(spec: RawLoadSpec): Promise<LoadResult> {
  return runInWorker(import.meta.url, spec);
}

answerInWorker(import.meta.url, runRawLoad);
