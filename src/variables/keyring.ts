// Master keys that encrypt variable values at rest (AES-256-GCM). The key file lives in
// QUAI_HOME with mode 0600; rotation adds a key, re-encrypts every value, then drops old keys.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { writeFileAtomic } from "../core/files.ts";
import { QuaiError } from "../core/errors.ts";

interface KeyEntry {
  id: string;
  key: string; // base64, 32 bytes
  created_at: string;
}

interface KeyFile {
  /** The key new values are encrypted with. */
  active: string;
  keys: KeyEntry[];
}

/** An encrypted value and the key it needs. */
export interface Sealed {
  keyId: string;
  data: Buffer;
}

/** Loaded master keys. */
export class Keyring {
  readonly file: string;
  private content: KeyFile;
  /** KeyObjects, not Buffers: building one per cipher was a tenth of a variable write's CPU. */
  private readonly keys = new Map<string, KeyObject>();
  /** The key file's text as last read, to notice a rotation by another process. */
  private seen = "";

  private constructor(file: string, content: KeyFile) {
    this.file = file;
    this.content = content;
    this.index();
    this.seen = this.fileText();
  }

  /** Loads the key file, creating it with one fresh key on first use. Refuses a file others can read. */
  static async open(file: string): Promise<Keyring> {
    if (!existsSync(file)) {
      const ring = new Keyring(file, { active: "", keys: [] });
      ring.addKey();
      await ring.save();
      return ring;
    }
    const mode = (await stat(file)).mode & 0o777;
    if (mode & 0o077) {
      throw new QuaiError("config_invalid", `master key file ${file} has mode ${mode.toString(8)}; it must be 600 (chmod 600 ${file})`);
    }
    const content = JSON.parse(await readFile(file, "utf8")) as KeyFile;
    if (!content.keys?.some((k) => k.id === content.active)) throw new QuaiError("config_invalid", `master key file ${file} names no active key`);
    return new Keyring(file, content);
  }

  get activeKeyId(): string {
    return this.content.active;
  }

  get keyIds(): string[] {
    return this.content.keys.map((k) => k.id);
  }

  /**
   * Encrypts `plaintext` with the active key; `context` (app id and variable name) is bound to it
   * as additional data. Call `refresh` first where a rotation by another process must be seen.
   */
  seal(plaintext: string, context: string): Sealed {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key(this.activeKeyId), iv);
    cipher.setAAD(Buffer.from(context, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return { keyId: this.activeKeyId, data: Buffer.concat([iv, cipher.getAuthTag(), body]) };
  }

  /** Decrypts what `seal` made with the same `context`; throws if it was tampered with. */
  open(sealed: Sealed, context: string): string {
    const iv = sealed.data.subarray(0, 12);
    const tag = sealed.data.subarray(12, 28);
    const decipher = createDecipheriv("aes-256-gcm", this.key(sealed.keyId), iv);
    decipher.setAAD(Buffer.from(context, "utf8"));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(sealed.data.subarray(28)), decipher.final()]).toString("utf8");
  }

  /** Adds a new key and makes it active (call `save` after). */
  addKey(): string {
    const id = `k${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
    this.content.keys.push({ id, key: randomBytes(32).toString("base64"), created_at: new Date().toISOString() });
    this.content.active = id;
    this.index();
    return id;
  }

  /** Drops every key but the active one (after all values were re-encrypted). */
  dropInactive(): void {
    this.content.keys = this.content.keys.filter((k) => k.id === this.content.active);
    this.index();
  }

  /** Writes the key file atomically with mode 0600. */
  async save(): Promise<void> {
    const text = JSON.stringify(this.content, null, 2) + "\n";
    await writeFileAtomic(this.file, text);
    this.seen = text;
  }

  private fileText(): string {
    try {
      return readFileSync(this.file, "utf8");
    } catch {
      return "";
    }
  }

  /**
   * Re-reads the key file if its content changed since it was read (`quai admin rotate-key` ran).
   * Content, not inode and mtime: two rotations within a millisecond can leave those equal.
   */
  refresh(): void {
    const now = this.fileText();
    if (now === "" || now === this.seen) return;
    this.content = JSON.parse(now) as KeyFile;
    this.index();
    this.seen = now;
  }

  private key(id: string): KeyObject {
    if (!this.keys.has(id)) this.refresh();
    const key = this.keys.get(id);
    if (!key) throw new Error(`master key ${id} is not in ${this.file}: was the key file replaced?`);
    return key;
  }

  private index(): void {
    this.keys.clear();
    for (const k of this.content.keys) this.keys.set(k.id, createSecretKey(Buffer.from(k.key, "base64")));
  }
}
