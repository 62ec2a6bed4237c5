// The behaviour every AddonEngine must have: each engine's test file calls runAddonEngineSuite
// with the engine and a client adapter built on the real client library apps use (pg, mysql2,
// ioredis). Real servers, real dumps, no mocks.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { PassThrough } from "node:stream";
import { LocalBlobStore } from "../../src/blobs/store.ts";
import type { AddonEngine, BaseBackupInfo, EngineContext, Instance, ServerProcess } from "../../src/addons/engine.ts";
import { serverAlive } from "../../src/addons/process.ts";
import { portIsFree } from "../../src/core/net.ts";
import { EngineHarness } from "../../src/testing/addons.ts";

/** Reads and writes an app's data through the engine's real client library, from the app's URL. */
export interface EngineClient {
  /** Stores `items` (creating the table or keys on first use). */
  write(url: string, items: string[]): Promise<void>;
  /** Everything stored, sorted. */
  read(url: string): Promise<string[]>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers the conformance tests of an engine. */
export function runAddonEngineSuite(newEngine: (ctx: EngineContext) => AddonEngine, client: EngineClient): void {
  // Engines are cheap to construct: this one only tells the suite's name and what it supports.
  const probe = newEngine({ blobs: new LocalBlobStore(tmpdir()), log: () => {} });
  let h: EngineHarness;
  let engine: AddonEngine;
  const urlOf = (inst: Instance) => h.urlOf(inst);

  before(async () => {
    h = await EngineHarness.open("quai-addon-suite-", newEngine);
    engine = h.engine;
  });
  after(() => h.close());

  describe(`AddonEngine conformance: ${probe.provider.id}`, () => {
    let inst: Instance;
    let proc: ServerProcess;

    it("provisions a server that accepts the generated credentials, with both variables", async () => {
      inst = await h.newInstance();
      proc = await h.provisionAndStart(inst);
      assert.ok(serverAlive(proc));
      assert.equal(await engine.ping(inst), true);
      const env = engine.env(inst);
      const p = engine.provider.envPrefix;
      assert.deepEqual(Object.keys(env).sort(), [`QUAI_${p}_URL`, `SCALINGO_${p}_URL`]);
      assert.equal(env[`QUAI_${p}_URL`], env[`SCALINGO_${p}_URL`]);
      const url = new URL(urlOf(inst));
      assert.equal(url.hostname, "127.0.0.1");
      assert.equal(Number(url.port), inst.port);
      assert.ok(url.password.length >= 16, "a generated password");
      await client.write(urlOf(inst), ["a", "b"]);
      assert.deepEqual(await client.read(urlOf(inst)), ["a", "b"]);
    });

    it("refuses a wrong password", async () => {
      const url = new URL(urlOf(inst));
      url.password = "not-the-password";
      await assert.rejects(client.read(url.toString()));
    });

    it("backs up, and restores into a new instance exactly what was there at the backup", async () => {
      const out = new PassThrough();
      const stored = h.ctx.blobs.put(out);
      await engine.backup(inst, out);
      out.end();
      const blob = await stored;
      assert.ok(blob.size > 0);
      await client.write(urlOf(inst), ["c"]);

      const { inst: target, proc: started } = await h.running();
      h.track(target, await engine.restore(target, started, await h.ctx.blobs.get(blob.key)));
      assert.deepEqual(await client.read(urlOf(target)), ["a", "b"]);
      assert.deepEqual(await client.read(urlOf(inst)), ["a", "b", "c"], "the source is untouched");
      const summary = await engine.summarize(target);
      assert.equal(Object.values(summary).reduce((a, b) => a + b, 0), 2, `summary ${JSON.stringify(summary)}`);
    });

    it("restarts after a SIGKILL with its data", async () => {
      await h.kill(proc);
      await sleep(200);
      proc = h.track(inst, await engine.start(inst));
      assert.deepEqual(await client.read(urlOf(inst)), ["a", "b", "c"]);
    });

    it("has a log and reports the data's size", async () => {
      assert.ok((await engine.logs(inst, 20)).length > 0);
      assert.ok((await engine.dataBytes(inst)) > 0);
    });

    it("recovers to a point in time between two writes (engines with PITR)", { skip: probe.pitr ? false : "no point-in-time recovery" }, async () => {
      const pitr = engine.pitr!;
      const { inst: source } = await h.running();
      const base = new PassThrough();
      const baseStored = h.ctx.blobs.put(base);
      const info: BaseBackupInfo = await pitr.baseBackup(source, base);
      base.end();
      const baseBlob = await baseStored;
      await client.write(urlOf(source), ["before"]);
      await sleep(1100);
      const target = new Date();
      await sleep(1100);
      await client.write(urlOf(source), ["after"]);
      await pitr.switchWal(source);
      await sleep(300);
      const segments = await pitr.shipWal(source);
      assert.ok(segments.length > 0, "WAL archived to the blob store");
      assert.ok(info.restorableFrom.getTime() <= target.getTime());

      const restored = await h.newInstance();
      await engine.provision(restored);
      h.track(restored, await pitr.restoreToTime(restored, await h.ctx.blobs.get(baseBlob.key), segments, target));
      assert.deepEqual(await client.read(urlOf(restored)), ["before"]);
      await client.write(urlOf(restored), ["writable"]);
      assert.deepEqual(await client.read(urlOf(restored)), ["before", "writable"], "promoted: accepts writes");
    });

    it("destroys everything: no process, no port, no directory", async () => {
      await engine.destroy(inst, proc);
      assert.equal(serverAlive(proc), false);
      assert.equal(existsSync(inst.dir), false);
      assert.equal(await portIsFree(inst.port), true);
    });
  });
}
