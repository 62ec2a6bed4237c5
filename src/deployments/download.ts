// Downloads the archive of `POST /v1/apps/:app/deployments` (source_url). The control plane makes
// this request on a user's behalf, so it never connects to a link-local address (where clouds
// serve instance metadata and credentials), an unspecified or a multicast one: checked on every
// address a name resolves to, at connect time, and again after each redirect (ADR 0033).
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import type { Readable } from "node:stream";
import { QuaiError } from "../core/errors.ts";

const MAX_REDIRECTS = 5;
/** No byte for this long (connecting, waiting for headers, or mid-body): the download fails. */
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

function refused(host: string, address: string): QuaiError {
  return new QuaiError("deployment_source_invalid", `source_url's host ${host} is ${address === host ? "" : `at ${address}, `}a link-local, unspecified, multicast or cloud metadata address: Quai does not download from those`);
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

function get(url: URL): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === "https:" ? https : http).get(url, { lookup: guardedLookup as unknown as typeof dnsLookup }, resolve);
    req.on("error", reject);
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
  });
}

function parse(raw: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    throw new QuaiError("deployment_source_invalid", `source_url ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new QuaiError("deployment_source_invalid", base ? `source_url redirects to ${url.protocol} (only http:// and https://)` : "source_url must be an http:// or https:// URL");
  // A literal address is never looked up: check it here (URL gives IPv6 in its compressed form).
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host) && forbiddenAddress(host)) throw refused(host, host);
  return url;
}

/** Downloads `raw` (http or https, up to 5 redirects) as a stream; anything but a final 200 is an error. */
export async function fetchArchive(raw: string): Promise<Readable> {
  let url = parse(raw);
  for (let hop = 0; ; hop++) {
    const where = `${url.origin}${url.pathname}`;
    let res: http.IncomingMessage;
    try {
      res = await get(url);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { address?: string };
      if (e.code === FORBIDDEN) throw refused(url.hostname, e.address ?? "");
      throw new QuaiError("deployment_source_unreachable", `could not download ${where}: ${e.code ?? e.message}`);
    }
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new QuaiError("deployment_source_unreachable", `downloading ${where}: more than ${MAX_REDIRECTS} redirects`);
      url = parse(res.headers.location, url);
      continue;
    }
    if (status !== 200) {
      res.resume();
      throw new QuaiError("deployment_source_unreachable", `downloading ${where} answered ${status}`);
    }
    return res;
  }
}
