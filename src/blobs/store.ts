// Content-addressed storage for slugs, source archives and (later) backups: the `BlobStore`
// interface, and the default driver that keeps blobs in a local directory.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform, type Readable } from "node:stream";

/** A stored blob: its key is the SHA-256 of its content, in hex. */
export interface BlobInfo {
  key: string;
  size: number;
}

/** Where blobs live. Keys are content hashes, so a put of the same bytes twice stores them once. */
export interface BlobStore {
  /** Streams `source` in (never whole in memory); resolves with its key and size. */
  put(source: Readable, opts?: { maxBytes?: number }): Promise<BlobInfo>;
  /** A stream of the blob (from byte `start`, for resumed downloads); throws `BlobNotFound` if absent. */
  get(key: string, opts?: { start?: number }): Promise<Readable>;
  has(key: string): Promise<boolean>;
  size(key: string): Promise<number | undefined>;
  delete(key: string): Promise<void>;
  /** Every key, for garbage collection. */
  list(): Promise<string[]>;
  /** When the blob was stored (undefined if absent). */
  storedAt(key: string): Promise<Date | undefined>;
  /** A local file holding the blob, when the driver has one (lets `tar` read it directly). */
  localPath?(key: string): string;
}

/** Raised when a key is not in the store. */
export class BlobNotFound extends Error {
  constructor(key: string) {
    super(`blob ${key} not found`);
  }
}

/** Raised when a put exceeds its `maxBytes`. */
export class BlobTooLarge extends Error {
  readonly maxBytes: number;
  constructor(max: number) {
    super(`blob larger than ${max} bytes`);
    this.maxBytes = max;
  }
}

const keyPattern = /^[0-9a-f]{64}$/;

function assertKey(key: string): void {
  if (!keyPattern.test(key)) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
}

/** Blobs as files `<dir>/sha256/<2 hex>/<64 hex>`, written through a temporary file and a rename. */
export class LocalBlobStore implements BlobStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  localPath(key: string): string {
    assertKey(key);
    return join(this.dir, "sha256", key.slice(0, 2), key);
  }

  async put(source: Readable, opts: { maxBytes?: number } = {}): Promise<BlobInfo> {
    const tmpDir = join(this.dir, "tmp");
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const tmp = join(tmpDir, randomBytes(8).toString("hex"));
    const hash = createHash("sha256");
    let size = 0;
    const max = opts.maxBytes ?? Infinity;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > max) return done(new BlobTooLarge(max));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp, { mode: 0o600 }));
      const key = hash.digest("hex");
      const dest = this.localPath(key);
      await mkdir(join(this.dir, "sha256", key.slice(0, 2)), { recursive: true, mode: 0o700 });
      await rename(tmp, dest);
      return { key, size };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async get(key: string, opts: { start?: number } = {}): Promise<Readable> {
    if (!(await this.has(key))) throw new BlobNotFound(key);
    return createReadStream(this.localPath(key), { start: opts.start ?? 0 });
  }

  async has(key: string): Promise<boolean> {
    return (await this.size(key)) !== undefined;
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await stat(this.localPath(key))).size;
    } catch {
      return undefined;
    }
  }

  async storedAt(key: string): Promise<Date | undefined> {
    try {
      return (await stat(this.localPath(key))).mtime;
    } catch {
      return undefined;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.localPath(key), { force: true });
  }

  async list(): Promise<string[]> {
    const root = join(this.dir, "sha256");
    const out: string[] = [];
    let prefixes: string[];
    try {
      prefixes = await readdir(root);
    } catch {
      return out;
    }
    for (const p of prefixes) {
      for (const f of await readdir(join(root, p))) if (keyPattern.test(f)) out.push(f);
    }
    return out;
  }
}
