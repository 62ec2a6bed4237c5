// Custom domains of apps: add, list, remove, each change an event and a router update; the
// canonical domain is an app setting (apps/service.ts) that must name one of them.
import type { Selectable } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";
import type { Db } from "../store/db.ts";
import type { DomainsTable } from "../store/schema.ts";
import type { Actor } from "../auth/service.ts";
import { findApp, type AppRecord } from "../apps/service.ts";
import { recordEvent } from "../events/service.ts";
import { normaliseDomain } from "./names.ts";
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { domainToUnicode } from "node:url";
import type { Keyring } from "../variables/keyring.ts";
import { createSecureContext } from "node:tls";

export type DomainRow = Selectable<DomainsTable>;

/** A domain in Scalingo's JSON shape (TLS fields honest until certificates land). */
export function domainJson(d: DomainRow, app: AppRecord): Record<string, unknown> {
  const unicode = domainToUnicode(d.name);
  return {
    id: d.id,
    app_id: d.app_id,
    name: d.name,
    name_unicode: unicode,
    canonical: app.canonical_domain === d.name,
    ssl: d.tls_cert !== null,
    ssl_status: d.tls_cert === null ? "none" : d.tls_not_after && d.tls_not_after.getTime() < Date.now() ? "expired" : d.tls_status,
    validity: d.tls_not_after?.toISOString() ?? null,
    tls_source: d.tls_source,
    letsencrypt: d.tls_source !== "upload",
    letsencrypt_status: d.tls_source === "upload" ? "disabled" : d.tls_status === "active" ? "created" : d.tls_status === "error" ? "error" : d.tls_status === "pending_dns" ? "pending_dns" : "new",
    tls_error: d.tls_error,
    acme_dns_fqdn: null,
    created_at: d.created_at.toISOString(),
  };
}

export async function listDomains(db: Db, actor: Actor, appRef: string): Promise<{ app: AppRecord; domains: DomainRow[] }> {
  const app = await findApp(db, actor, appRef);
  return { app, domains: await db.selectFrom("domains").selectAll().where("app_id", "=", app.id).orderBy("name").execute() };
}

export async function addDomain(db: Db, actor: Actor, appRef: string, name: unknown, platformDomain: string): Promise<{ app: AppRecord; domain: DomainRow }> {
  const app = await findApp(db, actor, appRef);
  const { ascii, unicode } = normaliseDomain(name, platformDomain);
  try {
    return await db.transaction().execute(async (trx) => {
      const domain = await trx.insertInto("domains").values({ app_id: app.id, name: ascii }).returningAll().executeTakeFirstOrThrow();
      await recordEvent(trx, { actor, app, type: "new_domain", data: { domain_id: domain.id, name: ascii, name_unicode: unicode } });
      return { app, domain };
    });
  } catch (err) {
    if ((err as { code?: string }).code === "23505") {
      const shown = `${ascii}${unicode !== ascii ? ` (${unicode})` : ""}`;
      // Which other app holds it is not said: the caller may not be allowed to see that app.
      const own = await db.selectFrom("domains").select("id").where("app_id", "=", app.id).where("name", "=", ascii).executeTakeFirst();
      throw new QuaiError("domain_taken", own ? `${shown} is already a domain of ${app.name}` : `${shown} already belongs to another app`);
    }
    throw err;
  }
}

export async function findDomain(db: Db, app: AppRecord, ref: string, platformDomain: string): Promise<DomainRow> {
  let q = db.selectFrom("domains").selectAll().where("app_id", "=", app.id);
  if (isUuid(ref)) q = q.where("id", "=", ref);
  else {
    let ascii: string;
    try {
      ascii = normaliseDomain(ref, platformDomain).ascii;
    } catch {
      throw new QuaiError("domain_not_found", `app ${app.name} has no domain ${JSON.stringify(ref)}`);
    }
    q = q.where("name", "=", ascii);
  }
  const row = await q.executeTakeFirst();
  if (!row) throw new QuaiError("domain_not_found", `app ${app.name} has no domain ${JSON.stringify(ref)}`);
  return row;
}

/**
 * Sets the domain's certificate from an upload (chain PEM, leaf first, and its key), after
 * checking that the key matches, the certificate covers the domain and has not expired; or
 * removes it (`pems` null).
 */
export async function setCertificate(db: Db, keyring: Keyring, actor: Actor, appRef: string, ref: string, pems: { certPem: string; keyPem: string } | null, platformDomain: string, now = new Date()): Promise<{ app: AppRecord; domain: DomainRow }> {
  const app = await findApp(db, actor, appRef);
  const domain = await findDomain(db, app, ref, platformDomain);
  if (pems === null) {
    const updated = await db.updateTable("domains").set({ tls_cert: null, tls_key_enc: null, tls_key_id: null, tls_source: null, tls_not_after: null, tls_status: "none", tls_error: null }).where("id", "=", domain.id).returningAll().executeTakeFirstOrThrow();
    await recordEvent(db, { actor, app, type: "edit_domain", data: { domain_id: domain.id, name: domain.name, ssl: false } });
    return { app, domain: updated };
  }
  const invalid = (why: string) => new QuaiError("domain_certificate_invalid", `the certificate for ${domain.name} cannot be used: ${why}`);
  // Every block of the chain is parsed, and only what parsed is stored (as PEM written anew):
  // nginx loads the whole file, and one bad block would have it refuse every app's routes.
  const blocks = pems.certPem.match(/-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid("it is not a PEM certificate");
  if (pems.certPem.replace(/-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g, "").trim() !== "") throw invalid("the file holds something else than PEM certificates (a chain is the certificates one after the other, the domain's first)");
  let chain: X509Certificate[];
  try {
    chain = blocks.map((b) => new X509Certificate(b));
  } catch {
    throw invalid(blocks.length > 1 ? "a certificate of the chain is not a valid PEM certificate" : "it is not a PEM certificate");
  }
  const cert = chain[0] as X509Certificate;
  let key: KeyObject;
  try {
    key = createPrivateKey(pems.keyPem);
  } catch {
    throw invalid("the key is not a PEM private key (without a passphrase)");
  }
  if (!cert.checkPrivateKey(key)) throw invalid("the key does not match the certificate");
  // Loaded as the router's OpenSSL would (security level 2): a key it finds too small or a
  // signature too weak would have nginx refuse every app's routes.
  try {
    createSecureContext({ cert: pems.certPem, key: pems.keyPem, ciphers: "DEFAULT@SECLEVEL=2" });
  } catch (err) {
    throw invalid(`TLS refuses it (${(err as Error).message.replace(/^error:[^:]*:/, "").trim()}): use an RSA key of 2048 bits or more, or an ECDSA key, signed with SHA-256 or better`);
  }
  if (cert.checkHost(domain.name) === undefined) throw invalid(`it covers ${cert.subjectAltName ?? cert.subject}, not ${domain.name}`);
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= now.getTime()) throw invalid(`it expired on ${notAfter.toISOString()}`);
  if (new Date(cert.validFrom).getTime() > now.getTime() + 86_400_000) throw invalid(`it is not valid before ${new Date(cert.validFrom).toISOString()}`);
  const sealed = keyring.seal(key.export({ type: "pkcs8", format: "pem" }) as string, `domain-key:${domain.id}`);
  const updated = await db.transaction().execute(async (trx) => {
    const row = await trx.updateTable("domains").set({ tls_cert: chain.map((c) => c.toString().trim() + "\n").join(""), tls_key_enc: sealed.data, tls_key_id: sealed.keyId, tls_source: "upload", tls_not_after: notAfter, tls_status: "active", tls_error: null }).where("id", "=", domain.id).returningAll().executeTakeFirstOrThrow();
    await recordEvent(trx, { actor, app, type: "edit_domain", data: { domain_id: domain.id, name: domain.name, ssl: true, source: "upload", not_after: notAfter.toISOString() } });
    return row;
  });
  return { app, domain: updated };
}

/** The key of a domain's certificate, for the router. */
export function certificateKey(keyring: Keyring, d: { id: string; tls_key_enc: Buffer | null; tls_key_id: string | null }): string | undefined {
  if (!d.tls_key_enc || !d.tls_key_id) return undefined;
  return keyring.open({ keyId: d.tls_key_id, data: d.tls_key_enc }, `domain-key:${d.id}`);
}

/** Removes a domain (and the canonical setting if it named it). */
export async function removeDomain(db: Db, actor: Actor, appRef: string, ref: string, platformDomain: string): Promise<void> {
  const app = await findApp(db, actor, appRef);
  const domain = await findDomain(db, app, ref, platformDomain);
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom("domains").where("id", "=", domain.id).execute();
    if (app.canonical_domain === domain.name) await trx.updateTable("apps").set({ canonical_domain: null }).where("id", "=", app.id).execute();
    await recordEvent(trx, { actor, app, type: "delete_domain", data: { domain_id: domain.id, name: domain.name } });
  });
}
