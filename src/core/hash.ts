// Content hashes of streams.
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/** The SHA-256 of everything `source` gives, in hex. */
export async function sha256Hex(source: Readable): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(source, hash);
  return hash.digest("hex");
}
