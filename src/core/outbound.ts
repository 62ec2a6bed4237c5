// Requests the control plane makes to a URL a user gave (a deployment's source_url, a maintenance
// page, a self-hosted forge's API): they never connect to a link-local address (where clouds serve instance metadata and
// credentials), an unspecified, a multicast or a cloud metadata one, checked on every address a
// name resolves to, at connect time, and again after each redirect (ADR 0033).
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { Readable } from "node:stream";
import { QuaiError, type ErrorCode } from "./errors.ts";

const MAX_REDIRECTS = 5;
const IDLE_TIMEOUT_MS = 60_000;
const FORBIDDEN = "QUAI_FORBIDDEN_ADDRESS";

/**
 * True for the addresses a download must not reach: link-local, unspecified, multicast (IPv4 and
 * IPv6), and fd00:ec2::254, the one metadata service outside link-local (AWS's over IPv6).
 */
export function forbiddenAddress(address: string): boolean {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/i.exec(address);
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return (a === 169 && b === 254) || a === 0 || a >= 224;
  }
  const x = address.toLowerCase();
  return /^::0*$/.test(x) || /^fe[89ab]/.test(x) || x.startsWith("ff") || x === "fd00:ec2::254";
}

/** How a request to a user's URL reports (the catalogue's codes for a URL not allowed and for one that cannot be fetched) and times out. */
export interface UrlErrors {
  /** What the URL is, in messages ("source_url", "the page URL"). */
  what: string;
  invalid: ErrorCode;
  unreachable: ErrorCode;
  /** No byte for this long (connecting, waiting for headers, or mid-body): the request fails (default 60 s). */
  idleTimeoutMs?: number;
}

function refused(e: Pick<UrlErrors, "what" | "invalid">, host: string, address: string): QuaiError {
  return new QuaiError(e.invalid, `${e.what}'s host ${host} is ${address === host ? "" : `at ${address}, `}a link-local, unspecified, multicast or cloud metadata address: Quai does not fetch from those`);
}

/** The host of `url` when it is a literal address (never looked up, so checked apart), else undefined. */
function literalHost(url: URL): string | undefined {
  // URL gives IPv6 in brackets, in its compressed form.
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return isIP(host) ? host : undefined;
}

type Resolve = (hostname: string, options: LookupOptions & { all: true }, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;
type Lookup = (hostname: string, options: LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => void;

/**
 * A lookup for http.get that resolves with `resolve` (dns.lookup) and fails, with the code
 * QUAI_FORBIDDEN_ADDRESS, when any address of the name is forbidden.
 */
export const guardLookup = (resolve: Resolve): Lookup => (hostname, options, callback) => {
  resolve(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => forbiddenAddress(a.address));
    if (bad) return callback(Object.assign(new Error(`${hostname} resolves to ${bad.address}`), { code: FORBIDDEN, address: bad.address }), []);
    const first = addresses[0];
    if (options.all) callback(null, addresses);
    else if (first) callback(null, first.address, first.family);
    else callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), []);
  });
};
const guardedLookup = guardLookup(dnsLookup as unknown as Resolve);

/** One request: its method, headers and body, and when to give up. */
interface Send {
  method: string;
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the request, before or during the body; it then fails with the signal's reason. */
  signal?: AbortSignal;
  /** No byte for this long (connecting, waiting for headers, or mid-body): it fails with ETIMEDOUT. */
  idleTimeoutMs?: number;
}

/**
 * Sends one request to `url` through the guarded lookup and resolves with the response (its body
 * still to read). A forbidden address, literal or looked up, rejects with `e.invalid`; any other
 * failure with the node error, or the signal's reason.
 */
function send(url: URL, o: Send, e: Pick<UrlErrors, "what" | "invalid">): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const literal = literalHost(url);
    if (literal && forbiddenAddress(literal)) return reject(refused(e, literal, literal));
    const signal = o.signal;
    if (signal?.aborted) return reject(signal.reason);
    let response: http.IncomingMessage | undefined;
    const onAbort = () => {
      req.destroy(signal?.reason);
      response?.destroy(signal?.reason);
    };
    const req = (url.protocol === "https:" ? https : http).request(url, { method: o.method, headers: o.headers, lookup: guardedLookup as unknown as typeof dnsLookup }, (res) => {
      response = res;
      res.once("close", () => signal?.removeEventListener("abort", onAbort));
      resolve(res);
    });
    signal?.addEventListener("abort", onAbort, { once: true });
    if (o.idleTimeoutMs) req.setTimeout(o.idleTimeoutMs, () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
    req.on("error", (err: NodeJS.ErrnoException & { address?: string }) => {
      signal?.removeEventListener("abort", onAbort);
      reject(err.code === FORBIDDEN ? refused(e, url.hostname, err.address ?? url.hostname) : err);
    });
    req.end(o.body);
  });
}

function parse(e: UrlErrors, raw: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    throw new QuaiError(e.invalid, `${e.what} ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new QuaiError(e.invalid, base ? `${e.what} redirects to ${url.protocol} (only http:// and https://)` : `${e.what} must be an http:// or https:// URL`);
  return url;
}

/** GETs `raw` (http or https, up to 5 redirects) and returns the body as a stream; anything but a final 200 is an error. */
export async function getUrl(raw: string, e: UrlErrors): Promise<Readable> {
  let url = parse(e, raw);
  for (let hop = 0; ; hop++) {
    const where = `${url.origin}${url.pathname}`;
    let res: http.IncomingMessage;
    try {
      res = await send(url, { method: "GET", idleTimeoutMs: e.idleTimeoutMs ?? IDLE_TIMEOUT_MS }, e);
    } catch (err) {
      if (err instanceof QuaiError) throw err;
      throw new QuaiError(e.unreachable, `could not fetch ${where}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new QuaiError(e.unreachable, `fetching ${where}: more than ${MAX_REDIRECTS} redirects`);
      url = parse(e, res.headers.location, url);
      continue;
    }
    if (status !== 200) {
      res.resume();
      throw new QuaiError(e.unreachable, `fetching ${where} answered ${status}`);
    }
    return res;
  }
}

/**
 * fetch() for a user's URL, made with node:http and the guarded lookup: the same Response, with
 * no redirect followed (the caller follows them, and each goes through here again). A forbidden
 * address throws `e.invalid`; a network failure rejects like fetch ("fetch failed", the node
 * error as its cause); an abort rejects with the signal's reason, before or during the body.
 */
export async function guardedFetch(url: URL, init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal }, e: Pick<UrlErrors, "what" | "invalid">): Promise<Response> {
  let res: http.IncomingMessage;
  try {
    res = await send(url, init, e);
  } catch (err) {
    throw err instanceof QuaiError || err === init.signal.reason ? err : new TypeError("fetch failed", { cause: err });
  }
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    try {
      headers.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
    } catch {
      // A header value fetch() would refuse too: left out.
    }
  }
  const status = res.statusCode ?? 0;
  const noBody = init.method === "HEAD" || [101, 204, 205, 304].includes(status);
  if (noBody) res.resume();
  return new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, headers });
}

/** A deployment's archive at `source_url`, as a stream. */
export const fetchArchive = (url: string): Promise<Readable> => getUrl(url, { what: "source_url", invalid: "deployment_source_invalid", unreachable: "deployment_source_unreachable" });
