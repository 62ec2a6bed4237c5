// Automatic certificates: every custom domain without an uploaded certificate gets one through
// ACME (HTTP-01, answered by the router from files written here), renewed when a third of its
// life is left (at most 30 days before expiry), retried with backoff when issuance fails (the
// certificate in place keeps serving), each outcome an event. Nothing is ordered for a domain
// that does not resolve to the platform: it waits, "pending_dns", and is looked up again at each
// check. The ACME account key is sealed with the keyring at rest.
import { mkdir, readFile, rm, writeFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import { recordEvent } from "../events/service.ts";
import { writeFileAtomic } from "../core/files.ts";
import { issueCertificate } from "./acme.ts";
import { AddressSet, checkDomainDns, defaultPublicAddresses, dnsResolver, type DnsCheck, type DnsResolver } from "./dns.ts";

export interface IssuerOptions {
  db: Db;
  keyring: Keyring;
  directoryUrl: string;
  email?: string | undefined;
  /** Extra CA trusted for the ACME server's own HTTPS (a private or test CA). */
  caCertPem?: string | undefined;
  /** Where the router serves `/.well-known/acme-challenge/` from. */
  acmeRoot: string;
  /** The sealed account key's file. */
  accountFile: string;
  /** Applies the router after a certificate changed. */
  syncRouter: () => Promise<void>;
  log: (line: string) => void;
  /** First retry delay (doubles up to 6 hours). */
  retryMs?: number;
  /** How often due domains are looked for (and domains waiting for their DNS looked up again). */
  checkMs?: number;
  /**
   * The platform's public addresses, IPs or CIDR networks (`QUAI_PUBLIC_IPS`): a domain is ordered
   * only when every A/AAAA record it has is one of them. Default: the addresses of this machine's
   * interfaces, and loopback.
   */
  publicAddresses?: string[] | undefined;
  /** DNS servers domains are resolved with, "ip" or "ip:port" (`QUAI_ACME_DNS_SERVERS`); default: the system's. */
  dnsServers?: string[] | undefined;
  /** Resolves domains instead of a resolver on `dnsServers` (tests). */
  resolver?: DnsResolver | undefined;
}

/** `tls_status` of a domain with no certificate yet whose DNS does not point at the platform (Scalingo's `letsencrypt_status` word). */
export const PENDING_DNS = "pending_dns";

/** When a certificate from notBefore to notAfter should be renewed: a third of its life left, at most 30 days. */
export function renewAt(notBefore: Date, notAfter: Date): Date {
  const life = notAfter.getTime() - notBefore.getTime();
  return new Date(notAfter.getTime() - Math.min(30 * 86_400_000, life / 3));
}

export class CertificateIssuer {
  private readonly o: IssuerOptions;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  /** Failed domains: attempts so far and when the next may run. */
  private readonly backoff = new Map<string, { attempts: number; next: number }>();
  private closed = false;
  /** A check waiting for its turn in the queue (not started yet). */
  private queuedCheck: Promise<void> | undefined;
  private readonly resolver: DnsResolver;
  /** The configured addresses; undefined: this machine's, read again at each check (they change). */
  private readonly configured: AddressSet | undefined;

  /** Throws when `publicAddresses` or `dnsServers` holds something that is not an address. */
  constructor(opts: IssuerOptions) {
    this.o = opts;
    this.configured = opts.publicAddresses && opts.publicAddresses.length > 0 ? new AddressSet(opts.publicAddresses) : undefined;
    this.resolver = opts.resolver ?? dnsResolver(opts.dnsServers);
  }

  /** Starts the periodic check (and runs one now). */
  start(): void {
    this.timer = setInterval(() => void this.check().catch(this.failed("check")), this.o.checkMs ?? 60_000);
    this.timer.unref();
    void this.check().catch(this.failed("check"));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Asks for a certificate for a domain now (after it was added). */
  request(domainId: string): void {
    this.backoff.delete(domainId);
    void this.serial(() => this.issue(domainId)).catch(this.failed(`certificate of domain ${domainId}`));
  }

  /** Logs a check or an order that failed; the next check tries again. */
  private failed(what: string): (err: unknown) => void {
    return (err) => this.o.log(`tls: ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  /**
   * Issues or renews what is due; one at a time. A check called while another still waits its turn
   * joins that one: with slow DNS answers or a slow CA a check can outlast the interval, and
   * checks must not pile up behind each other.
   */
  check(at?: Date): Promise<void> {
    if (this.queuedCheck) return this.queuedCheck;
    const queued = this.serial(async () => {
      this.queuedCheck = undefined;
      if (this.closed) return;
      const now = at ?? new Date();
      const rows = await this.o.db.selectFrom("domains").select(["id", "tls_source", "tls_status", "tls_cert", "tls_not_after"]).where((eb) => eb.or([eb("tls_source", "is", null), eb("tls_source", "=", "acme")])).execute();
      for (const r of rows) {
        const wait = this.backoff.get(r.id);
        if (wait && wait.next > now.getTime()) continue;
        let due = r.tls_cert === null;
        if (!due && r.tls_cert) {
          const cert = new X509Certificate(r.tls_cert);
          due = renewAt(cert.validFromDate, cert.validToDate).getTime() <= now.getTime();
        }
        if (due) await this.issue(r.id);
      }
    });
    this.queuedCheck = queued;
    return queued;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.catch(() => {}).then(fn);
    this.chain = next.catch(() => {});
    return next;
  }

  private async accountKey(): Promise<string | undefined> {
    const text = await readFile(this.o.accountFile, "utf8").catch(() => undefined);
    if (!text) return undefined;
    const { keyId, data } = JSON.parse(text) as { keyId: string; data: string };
    return this.o.keyring.open({ keyId, data: Buffer.from(data, "base64") }, "acme-account");
  }

  private async saveAccountKey(pem: string): Promise<void> {
    const sealed = this.o.keyring.seal(pem, "acme-account");
    await mkdir(join(this.o.accountFile, ".."), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.o.accountFile, JSON.stringify({ keyId: sealed.keyId, data: sealed.data.toString("base64") }) + "\n");
  }

  /**
   * Leaves a domain that does not point at the platform for the next check: no order, no backoff
   * (a DNS change is cheap to see and should be seen within a check). The event and the log line
   * come once per situation, when the reason changes, not at every check.
   */
  private async waitForDns(d: { id: string; name: string; tls_status: string; tls_error: string | null; app_id: string; app_name: string }, renewing: boolean, dns: DnsCheck, platform: AddressSet): Promise<void> {
    this.backoff.delete(d.id);
    const reason = dns.reason ?? "the domain does not resolve to this platform";
    // A certificate in place keeps serving while it lasts: only its error is recorded.
    const status = renewing ? "active" : PENDING_DNS;
    if (d.tls_error === reason && d.tls_status === status) return;
    await this.o.db
      .updateTable("domains")
      .set({ tls_status: status, tls_error: reason })
      .where("id", "=", d.id)
      .where((eb) => eb.or([eb("tls_source", "is", null), eb("tls_source", "=", "acme")]))
      .execute();
    if (d.tls_error === reason) return;
    const recheck = Math.round((this.o.checkMs ?? 60_000) / 1000);
    await recordEvent(this.o.db, {
      actor: null,
      app: { id: d.app_id, name: d.app_name },
      type: "certificate_failed",
      data: { domain: d.name, error: reason, dns: { resolves_to: dns.addresses, not_platform: dns.foreign }, expected: platform.entries, recheck_in_s: recheck },
    });
    this.o.log(`tls: no certificate ordered for ${d.name} yet: ${reason}; looking again every ${recheck} s (QUAI_PUBLIC_IPS sets the platform's addresses when they are not on this machine's interfaces)`);
  }

  /** One issuance attempt for a domain. */
  private async issue(domainId: string): Promise<void> {
    const d = await this.o.db.selectFrom("domains as d").innerJoin("apps as a", "a.id", "d.app_id").select(["d.id", "d.name", "d.tls_source", "d.tls_cert", "d.tls_status", "d.tls_error", "a.id as app_id", "a.name as app_name"]).where("d.id", "=", domainId).executeTakeFirst();
    if (!d || (d.tls_source !== null && d.tls_source !== "acme")) return;
    const renewing = d.tls_cert !== null;
    const platform = this.configured ?? new AddressSet(defaultPublicAddresses());
    const dns = await checkDomainDns(d.name, this.resolver, platform);
    if (!dns.ok) {
      await this.waitForDns(d, renewing, dns, platform);
      return;
    }
    const dir = join(this.o.acmeRoot, ".well-known", "acme-challenge");
    if (!renewing) await this.o.db.updateTable("domains").set({ tls_status: "pending" }).where("id", "=", d.id).execute();
    try {
      const accountKeyPem = await this.accountKey();
      const issued = await issueCertificate({
        directoryUrl: this.o.directoryUrl,
        ...(accountKeyPem ? { accountKeyPem } : {}),
        ...(this.o.email ? { email: this.o.email } : {}),
        ...(this.o.caCertPem ? { caCertPem: this.o.caCertPem } : {}),
        domains: [d.name],
        challenge: {
          set: async (token, keyAuthorization) => {
            await mkdir(dir, { recursive: true, mode: 0o755 });
            await writeFile(join(dir, `${token}.tmp`), keyAuthorization, { mode: 0o644 });
            await rename(join(dir, `${token}.tmp`), join(dir, token));
          },
          remove: async (token) => {
            await rm(join(dir, token), { force: true });
          },
        },
        log: this.o.log,
      });
      if (!accountKeyPem) await this.saveAccountKey(issued.accountKeyPem);
      const sealed = this.o.keyring.seal(issued.keyPem, `domain-key:${d.id}`);
      const changed = await this.o.db
        .updateTable("domains")
        .set({ tls_cert: issued.certPem.trim() + "\n" + issued.chainPem.trim() + "\n", tls_key_enc: sealed.data, tls_key_id: sealed.keyId, tls_source: "acme", tls_not_after: issued.notAfter, tls_status: "active", tls_error: null })
        .where("id", "=", d.id)
        // An upload that arrived meanwhile wins.
        .where((eb) => eb.or([eb("tls_source", "is", null), eb("tls_source", "=", "acme")]))
        .executeTakeFirst();
      this.backoff.delete(d.id);
      if (Number(changed.numUpdatedRows) === 0) return;
      await recordEvent(this.o.db, { actor: null, app: { id: d.app_id, name: d.app_name }, type: renewing ? "certificate_renewed" : "certificate_issued", data: { domain: d.name, not_after: issued.notAfter.toISOString() } });
      this.o.log(`tls: ${renewing ? "renewed" : "issued"} the certificate of ${d.name} (until ${issued.notAfter.toISOString()})`);
      await this.o.syncRouter().catch((err: unknown) => this.o.log(`tls: applying the router failed: ${String(err)}`));
    } catch (err) {
      const reason = (err as Error).message.split("\n")[0] ?? "unknown error";
      const prev = this.backoff.get(d.id)?.attempts ?? 0;
      const delay = Math.min(6 * 3600_000, (this.o.retryMs ?? 60_000) * 2 ** prev);
      this.backoff.set(d.id, { attempts: prev + 1, next: Date.now() + delay });
      // A certificate in place keeps serving: only its error is recorded.
      await this.o.db.updateTable("domains").set({ tls_status: renewing ? "active" : "error", tls_error: reason }).where("id", "=", d.id).execute();
      await recordEvent(this.o.db, { actor: null, app: { id: d.app_id, name: d.app_name }, type: "certificate_failed", data: { domain: d.name, error: reason, attempt: prev + 1, retry_in_s: Math.round(delay / 1000) } });
      this.o.log(`tls: certificate of ${d.name} failed (${reason}); retrying in ${Math.round(delay / 1000)} s`);
    }
  }
}
