// Automatic TLS certificates from an ACME CA (Let's Encrypt or any RFC 8555 server) by HTTP-01:
// one call registers or finds the account, proves control of each name through the caller's
// challenge store, and returns the certificate with its key. Retrying and scheduling renewals
// are the caller's; this module makes one attempt and says clearly what failed.
import { request as httpRequest } from "node:http";
import { Agent, request as httpsRequest } from "node:https";
import { rootCertificates } from "node:tls";
import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import acme, { type Authorization, type Client, type Order } from "acme-client";

/** Where the caller serves HTTP-01 answers: `GET /.well-known/acme-challenge/<token>` → keyAuthorization. */
export interface ChallengeStore {
  set(token: string, keyAuthorization: string): Promise<void>;
  remove(token: string): Promise<void>;
}

/** Options of `issueCertificate`. */
export interface IssueOptions {
  /** The CA's ACME directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`. */
  directoryUrl: string;
  /** PEM private key of the ACME account; a new P-256 key is made when absent (and returned). */
  accountKeyPem?: string;
  /** Contact address the CA may write to about expiry or problems. */
  email?: string;
  /** Names the certificate covers; the first is also its common name. */
  domains: string[];
  challenge: ChallengeStore;
  /** An extra CA to trust, with the system's roots, for the ACME server's own HTTPS (e.g. a test CA). */
  caCertPem?: string;
  log?: (line: string) => void;
}

/** A certificate issued by `issueCertificate`. */
export interface IssuedCertificate {
  /** The leaf certificate alone. */
  certPem: string;
  /** Its private key (PKCS#8 PEM). */
  keyPem: string;
  /** The intermediates the CA sent after the leaf (may be empty); serve `certPem + chainPem`. */
  chainPem: string;
  notBefore: Date;
  notAfter: Date;
  /** The account key used: the one given, or the one made; keep it for the next issuance. */
  accountKeyPem: string;
  /** The account's URL at the CA (the same for every issuance with the same key). */
  accountUrl: string;
}

/** What a certificate says about itself. */
export interface CertificateInfo {
  /** DNS names of the subject alternative name (the subject's CN when there are none). */
  names: string[];
  notBefore: Date;
  notAfter: Date;
  /** The issuer's distinguished name, e.g. `CN=Pebble Intermediate CA 4d8b3e`. */
  issuer: string;
}

/** No single request to the CA may hang an issuance. */
const REQUEST_TIMEOUT_MS = 30_000;

/**
 * Issues a certificate for `domains` by HTTP-01. Calling it means the operator accepts the CA's
 * terms of service. Throws an Error naming the step that failed: the directory
 * ("ACME directory unreachable at ..."), the account, the order, a challenge
 * ("challenge for <name> failed: <CA's detail>"), or the finalization.
 */
export async function issueCertificate(opts: IssueOptions): Promise<IssuedCertificate> {
  const log = opts.log ?? (() => {});
  const domains = checkDomains(opts.domains);
  const accountKeyPem = opts.accountKeyPem ?? newPrivateKeyPem();
  try {
    createPrivateKey(accountKeyPem);
  } catch (err) {
    throw new Error(`ACME account key is not a usable private key: ${detailOf(err)}`, { cause: err });
  }

  const client = new acme.Client({
    directoryUrl: opts.directoryUrl,
    accountKey: accountKeyPem,
    // Polls of a challenge or an order start at once and slow down; ~50 s in all before giving up.
    backoffAttempts: 15,
    backoffMin: 250,
    backoffMax: 5000,
  });
  const route = openRoute(opts.directoryUrl, opts.caCertPem);
  try {
    await checkDirectory(opts.directoryUrl, route.agent);

    let accountUrl: string;
    try {
      accountUrl = await ensureAccount(client, opts.accountKeyPem !== undefined, opts.email);
    } catch (err) {
      throw new Error(`ACME account registration at ${opts.directoryUrl} failed: ${detailOf(err)}`, { cause: err });
    }
    log(`acme: account ${accountUrl}`);

    let order: Order;
    let authorizations: Authorization[];
    try {
      order = await client.createOrder({ identifiers: domains.map((value) => ({ type: "dns", value })) });
      authorizations = await client.getAuthorizations(order);
    } catch (err) {
      throw new Error(`ACME order for ${domains.join(", ")} failed: ${detailOf(err)}`, { cause: err });
    }
    log(`acme: order for ${domains.join(", ")} placed`);

    // Every name is proved at once; all of them settle (and clean up) before any failure is thrown.
    const proofs = await Promise.allSettled(authorizations.map((authz) => prove(client, authz, opts.challenge, log)));
    const failure = proofs.find((p): p is PromiseRejectedResult => p.status === "rejected");
    if (failure) throw failure.reason;

    const keyPem = newPrivateKeyPem();
    let fullChain: string;
    try {
      const [, csr] = await acme.crypto.createCsr({ commonName: domains[0], altNames: domains }, keyPem);
      const finalized = await client.finalizeOrder(order, csr);
      fullChain = await client.getCertificate(finalized);
    } catch (err) {
      throw new Error(`ACME finalization for ${domains.join(", ")} failed: ${detailOf(err)}`, { cause: err });
    }

    const [certPem, ...chain] = splitPem(fullChain);
    if (!certPem) throw new Error(`ACME server at ${opts.directoryUrl} returned no certificate for ${domains.join(", ")}`);
    const leaf = new X509Certificate(certPem);
    // A CA handing back someone else's certificate would otherwise go unnoticed until a browser complains.
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`ACME server at ${opts.directoryUrl} returned a certificate for another key`);
    const info = certificateInfo(certPem);
    const missing = domains.filter((d) => !info.names.includes(d));
    if (missing.length > 0) throw new Error(`ACME server at ${opts.directoryUrl} returned a certificate without ${missing.join(", ")}`);
    log(`acme: certificate for ${domains.join(", ")} issued by ${info.issuer}, valid until ${info.notAfter.toISOString()}`);
    return { certPem, keyPem, chainPem: chain.join(""), notBefore: info.notBefore, notAfter: info.notAfter, accountKeyPem, accountUrl };
  } finally {
    route.close();
  }
}

/** Reads names, validity and issuer from a PEM certificate (the first one if several). */
export function certificateInfo(certPem: string): CertificateInfo {
  const cert = new X509Certificate(certPem);
  let names = sanEntries(cert.subjectAltName ?? "")
    .filter((e) => e.kind === "DNS")
    .map((e) => e.value.toLowerCase());
  if (names.length === 0) {
    const cn = cert.subject.split("\n").find((l) => l.startsWith("CN="));
    names = cn ? [cn.slice(3).toLowerCase()] : [];
  }
  return { names, notBefore: cert.validFromDate, notAfter: cert.validToDate, issuer: cert.issuer.split("\n").join(", ") };
}

/** Whether a certificate expiring at `notAfter` is within `daysBefore` days of expiry at `now` (or past it). */
export function renewalDue(notAfter: Date, now = new Date(), daysBefore = 30): boolean {
  return notAfter.getTime() - now.getTime() <= daysBefore * 86_400_000;
}

/**
 * Finds the account of the client's key, or registers it. A known key is looked up first
 * because acme-client, finding an existing account on registration, re-sends the registration
 * fields as an update, which servers refuse when there is nothing to update.
 */
async function ensureAccount(client: Client, keyGiven: boolean, email: string | undefined): Promise<string> {
  const contact = email ? [`mailto:${email}`] : undefined;
  if (keyGiven) {
    let existing: { contact?: string[] } | undefined;
    try {
      existing = await client.createAccount({ onlyReturnExisting: true });
    } catch {
      // No account with this key yet (or the lookup failed: registering below says why).
    }
    if (existing) {
      if (contact && (existing.contact ?? []).join() !== contact.join()) await client.updateAccount({ contact });
      return client.getAccountUrl();
    }
  }
  await client.createAccount({ termsOfServiceAgreed: true, ...(contact ? { contact } : {}) });
  return client.getAccountUrl();
}

/** Fetches the ACME directory: a clear first error when the CA is down, untrusted or not an ACME server. */
async function checkDirectory(url: string, agent: Agent | undefined): Promise<void> {
  let body: string;
  try {
    body = await new Promise<string>((resolvePromise, reject) => {
      const get = url.startsWith("https:") ? httpsRequest : httpRequest;
      const req = get(url, { method: "GET", timeout: REQUEST_TIMEOUT_MS, ...(agent ? { agent } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          if (res.statusCode === 200) resolvePromise(Buffer.concat(chunks).toString("utf8"));
          else reject(new Error(`HTTP ${res.statusCode}`));
        });
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
      req.on("error", reject);
      req.end();
    });
  } catch (err) {
    throw new Error(`ACME directory unreachable at ${url}: ${detailOf(err)}`, { cause: err });
  }
  let dir: Record<string, unknown> | undefined;
  try {
    dir = JSON.parse(body) as Record<string, unknown>;
  } catch {
    dir = undefined;
  }
  if (!dir || typeof dir.newAccount !== "string" || typeof dir.newOrder !== "string" || typeof dir.newNonce !== "string") {
    throw new Error(`ACME directory at ${url} is not an ACME directory (no newNonce, newAccount and newOrder URLs)`);
  }
}

/** Proves control of one authorization's name by HTTP-01. */
async function prove(client: Client, authz: Authorization, store: ChallengeStore, log: (line: string) => void): Promise<void> {
  const name = authz.identifier.value;
  if (authz.status === "valid") {
    log(`acme: ${name} already proved`);
    return;
  }
  const challenge = authz.challenges.find((c) => c.type === "http-01");
  if (!challenge) {
    throw new Error(`challenge for ${name} failed: the CA offers no http-01 challenge (offered: ${authz.challenges.map((c) => c.type).join(", ") || "none"})`);
  }
  let submitted = false;
  try {
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
    await store.set(challenge.token, keyAuthorization);
    try {
      await client.completeChallenge(challenge);
      submitted = true;
      await client.waitForValidStatus(challenge);
    } finally {
      await store.remove(challenge.token).catch((err: unknown) => log(`acme: removing the challenge answer for ${name}: ${detailOf(err)}`));
    }
    log(`acme: ${name} proved`);
  } catch (err) {
    // A pending authorization the CA never got to validate counts against its limits; give it back.
    if (!submitted) await client.deactivateAuthorization(authz).catch(() => {});
    throw new Error(`challenge for ${name} failed: ${detailOf(err)}`, { cause: err });
  }
}

function checkDomains(domains: string[]): string[] {
  const out = [...new Set(domains.map((d) => d.trim().toLowerCase().replace(/\.$/, "")))];
  if (out.length === 0 || out.some((d) => d === "")) throw new Error("a certificate needs at least one domain, and no empty ones");
  const wildcard = out.find((d) => d.includes("*"));
  if (wildcard) throw new Error(`${wildcard}: HTTP-01 cannot prove a wildcard name`);
  return out;
}

function newPrivateKeyPem(): string {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

function splitPem(pem: string): string[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => `${b}\n`);
}

/** Entries of Node's `subjectAltName` text, e.g. `DNS:a.test, DNS:"b,c", IP Address:127.0.0.1`. */
function sanEntries(san: string): { kind: string; value: string }[] {
  const out: { kind: string; value: string }[] = [];
  // Node quotes a value (JSON style) when it holds a comma or other characters that would make the list ambiguous.
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = re.exec(san); m && m[0] !== ""; m = re.exec(san)) {
    const raw = m[2] ?? "";
    out.push({ kind: m[1] ?? "", value: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw });
  }
  return out;
}

/** The most useful words of an error from acme-client, axios or a challenge store. */
function detailOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(detailOf).join("; ");
  // acme-client's axios wrapper loses a request that got no response (refused, reset, timed
  // out) and throws this TypeError instead; say what it means.
  if (err instanceof TypeError && err.message.includes("reading 'config'")) return "no response from the ACME server (connection failed or timed out)";
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err.message) return err.message;
    if (code) return code;
  }
  return String(err);
}

// acme-client sends every request through one shared axios instance. Each issuance registers
// its CA's origin here for its duration, and one interceptor gives that origin's requests the
// trust, timeout and retry policy of the issuance, leaving requests to other origins alone.
interface Route {
  agent: Agent | undefined;
}
const routes = new Map<string, Route[]>();
let interceptorInstalled = false;

function openRoute(directoryUrl: string, caCertPem: string | undefined): Route & { close(): void } {
  let origin: string;
  try {
    origin = new URL(directoryUrl).origin;
  } catch {
    throw new Error(`ACME directory unreachable at ${directoryUrl}: not a URL`);
  }
  installInterceptor();
  // An agent of our own even without an extra CA, so that its kept-alive sockets end with the issuance.
  const route: Route = {
    agent: origin.startsWith("https:") ? new Agent({ keepAlive: true, ...(caCertPem ? { ca: [...rootCertificates, caCertPem] } : {}) }) : undefined,
  };
  routes.set(origin, [...(routes.get(origin) ?? []), route]);
  return {
    agent: route.agent,
    close() {
      const left = (routes.get(origin) ?? []).filter((r) => r !== route);
      if (left.length > 0) routes.set(origin, left);
      else routes.delete(origin);
      route.agent?.destroy();
    },
  };
}

function installInterceptor(): void {
  if (interceptorInstalled) return;
  interceptorInstalled = true;
  acme.axios.interceptors.request.use((config) => {
    let origin: string;
    try {
      origin = new URL(config.url ?? "").origin;
    } catch {
      return config;
    }
    const route = routes.get(origin)?.at(-1);
    if (!route) return config;
    if (route.agent) config.httpsAgent = route.agent;
    config.timeout = REQUEST_TIMEOUT_MS;
    // acme-client's axios instance retries a failed request up to 5 times, waiting 5, 10, ... 25 s
    // (75 s in all); retrying is our caller's, so every request counts as already at its last
    // attempt. (Nonce renewals after `badNonce` are separate and still happen: they are part of
    // the protocol.)
    (config as typeof config & { retryAttempt?: number }).retryAttempt = Number.MAX_SAFE_INTEGER;
    return config;
  });
}
