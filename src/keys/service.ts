// SSH public keys per user: parsed and checked with the ssh2 package's key parser, stored by
// their blob so the SSH front finds the user from the key a client offers.
import { recordEvent } from "../events/service.ts";
import { createHash } from "node:crypto";
import ssh2 from "ssh2";
import type { Db } from "../store/db.ts";
import type { Actor } from "../auth/service.ts";
import { QuaiError } from "../core/errors.ts";
import { isUuid } from "../core/ids.ts";

const allowedTypes = new Set(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]);

/** A key as the API shows it (Scalingo's shape). */
export interface KeyJson {
  id: string;
  name: string;
  content: string;
  fingerprint: string;
  created_at: string;
}

/** SHA256 fingerprint as OpenSSH prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Parses an authorized_keys-style line; throws `ssh_key_invalid`. */
export function parsePublicKey(content: string): { type: string; blob: Buffer } {
  const line = content.trim();
  if (line.includes("PRIVATE KEY")) throw new QuaiError("ssh_key_invalid", "this is a PRIVATE key: give the .pub file, and keep this one secret");
  if (line.includes("\n")) throw new QuaiError("ssh_key_invalid", "give one public key, on one line");
  const parsed = ssh2.utils.parseKey(line);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new QuaiError("ssh_key_invalid", `not an SSH public key: ${parsed instanceof Error ? parsed.message : "several keys"}`);
  if (parsed.isPrivateKey()) throw new QuaiError("ssh_key_invalid", "this is a PRIVATE key: give the .pub file, and keep this one secret");
  if (!allowedTypes.has(parsed.type)) throw new QuaiError("ssh_key_invalid", `key type ${parsed.type} is not accepted: use ssh-ed25519, ecdsa or ssh-rsa`);
  const blob = parsed.getPublicSSH();
  if (parsed.type === "ssh-rsa") {
    // The modulus is the third field of the blob: its length gives the key size.
    const eLen = blob.readUInt32BE(11);
    const nLen = blob.readUInt32BE(15 + eLen);
    const bits = (nLen - (blob[19 + eLen] === 0 ? 1 : 0)) * 8;
    if (bits < 2048) throw new QuaiError("ssh_key_invalid", `RSA keys must have at least 2048 bits, this one has ${bits}`);
  }
  return { type: parsed.type, blob };
}

function keyJson(r: { id: string; name: string; key_type: string; key_data: Buffer; fingerprint: string; created_at: Date }): KeyJson {
  return { id: r.id, name: r.name, content: `${r.key_type} ${r.key_data.toString("base64")} ${r.name}`, fingerprint: r.fingerprint, created_at: r.created_at.toISOString() };
}

export async function listKeys(db: Db, actor: Actor): Promise<KeyJson[]> {
  const rows = await db.selectFrom("ssh_keys").selectAll().where("user_id", "=", actor.id).orderBy("created_at").execute();
  return rows.map(keyJson);
}

export async function addKey(db: Db, actor: Actor, name: string, content: string): Promise<KeyJson> {
  const { type, blob } = parsePublicKey(content);
  if (!/^[\w .@+-]{1,100}$/.test(name)) throw new QuaiError("ssh_key_invalid", "key names are 1 to 100 letters, digits, spaces and . @ + - _");
  const row = await db.insertInto("ssh_keys").values({ user_id: actor.id, name, key_type: type, key_data: blob, fingerprint: fingerprint(blob) }).onConflict((oc) => oc.column("key_data").doNothing()).returningAll().executeTakeFirst();
  if (!row) throw new QuaiError("ssh_key_taken", "this key is already registered");
  await recordEvent(db, { actor, type: "new_key", data: { name, fingerprint: row.fingerprint } });
  return keyJson(row);
}

export async function removeKey(db: Db, actor: Actor, id: string): Promise<void> {
  const res = isUuid(id) ? await db.deleteFrom("ssh_keys").where("id", "=", id).where("user_id", "=", actor.id).executeTakeFirst() : undefined;
  if (!res || Number(res.numDeletedRows) === 0) throw new QuaiError("ssh_key_not_found", `no key ${id} among your keys`);
}

/** The user owning a key blob, if any. */
export async function actorForKey(db: Db, blob: Buffer): Promise<(Actor & { keyType: string; keyData: Buffer }) | undefined> {
  const row = await db.selectFrom("ssh_keys").innerJoin("users", "users.id", "ssh_keys.user_id").select(["users.id", "users.email", "users.username", "users.role", "ssh_keys.key_type", "ssh_keys.key_data"]).where("ssh_keys.key_data", "=", blob).executeTakeFirst();
  return row ? { id: row.id, email: row.email, username: row.username, role: row.role, keyType: row.key_type, keyData: row.key_data } : undefined;
}
