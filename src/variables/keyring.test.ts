import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keyring } from "./keyring.ts";

describe("keyring", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-keyring-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("creates a key file with mode 0600 and round-trips values", async () => {
    const file = join(dir, "a", "master.json");
    const ring = await Keyring.open(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const sealed = ring.seal("s3cr3t-välue", "app1:SECRET");
    assert.ok(!sealed.data.includes(Buffer.from("s3cr3t")), "ciphertext does not contain the plaintext");
    assert.equal(ring.open(sealed, "app1:SECRET"), "s3cr3t-välue");
    const again = await Keyring.open(file);
    assert.equal(again.open(sealed, "app1:SECRET"), "s3cr3t-välue", "a reopened key file decrypts");
  });

  it("refuses a value moved to another app or name, and a tampered one", async () => {
    const ring = await Keyring.open(join(dir, "b.json"));
    const sealed = ring.seal("value", "app1:A");
    assert.throws(() => ring.open(sealed, "app2:A"));
    assert.throws(() => ring.open(sealed, "app1:B"));
    const tampered = Buffer.from(sealed.data);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
    assert.throws(() => ring.open({ keyId: sealed.keyId, data: tampered }, "app1:A"));
  });

  it("refuses a key file others can read", async () => {
    const file = join(dir, "c.json");
    await Keyring.open(file);
    await chmod(file, 0o644);
    await assert.rejects(Keyring.open(file), /mode 644; it must be 600/);
  });

  it("keeps old keys until dropped, and another process sees a rotation", async () => {
    const file = join(dir, "d.json");
    const server = await Keyring.open(file);
    const old = server.seal("v1", "x:A");
    const admin = await Keyring.open(file);
    const newId = admin.addKey();
    await admin.save();
    const fresh = admin.seal("v2", "x:A");
    assert.equal(fresh.keyId, newId);
    assert.equal(server.open(fresh, "x:A"), "v2", "the server re-reads the key file on an unknown key id");
    server.refresh();
    assert.equal(server.seal("v3", "x:A").keyId, newId, "after refresh it seals with the new active key");
    assert.equal(admin.open(old, "x:A"), "v1");
    admin.dropInactive();
    await admin.save();
    assert.deepEqual(JSON.parse(await readFile(file, "utf8")).keys.map((k: { id: string }) => k.id), [newId]);
  });
});
