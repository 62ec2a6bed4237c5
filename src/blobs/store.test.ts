import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { text } from "node:stream/consumers";
import { BlobNotFound, BlobTooLarge, LocalBlobStore } from "./store.ts";
import { scratchDir } from "../testing/scratch.ts";

describe("LocalBlobStore", () => {
  it("stores by content hash, once, and streams it back", async () => {
    const store = new LocalBlobStore(await scratchDir("quai-blobs-"));
    const a = await store.put(Readable.from(["hello ", "slug"]));
    assert.equal(a.key, createHash("sha256").update("hello slug").digest("hex"));
    assert.equal(a.size, 10);
    const b = await store.put(Readable.from(["hello slug"]));
    assert.equal(b.key, a.key);
    assert.deepEqual(await store.list(), [a.key]);
    assert.equal(await text(await store.get(a.key)), "hello slug");
    await store.delete(a.key);
    await assert.rejects(store.get(a.key), BlobNotFound);
  });

  it("refuses a blob over its size limit and leaves no partial file", async () => {
    const dir = await scratchDir("quai-blobs-");
    const store = new LocalBlobStore(dir);
    await assert.rejects(store.put(Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), { maxBytes: 1000 }), BlobTooLarge);
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
    assert.deepEqual(await store.list(), []);
  });

  it("rejects keys that are not hashes (no path traversal)", async () => {
    const store = new LocalBlobStore(await scratchDir("quai-blobs-"));
    await assert.rejects(store.get("../../etc/passwd"));
  });
});
