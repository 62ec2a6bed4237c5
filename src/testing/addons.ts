// Test helper for add-on engines: instances of an engine under a throwaway directory, each
// remembered with its latest server process so that `close` stops and removes every one of them,
// whatever state the tests left it in.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { randomUUID } from "node:crypto";
import { LocalBlobStore } from "../blobs/store.ts";
import type { AddonEngine, Credentials, EngineContext, Instance, PlanSpec, ServerProcess } from "../addons/engine.ts";
import { serverAlive } from "../addons/process.ts";
import { addonPortRange, freePort } from "../core/net.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An instance record with a fixed id, dir and port, for tests of rendered config files (nothing runs). */
export function fixedInstance(plan: PlanSpec, credentials: Credentials): Instance {
  return { id: "3f2c9a4e-0000-4000-8000-000000000001", dir: "/srv/quai/addons/3f2c9a4e", port: 15001, plan, credentials };
}

/** An engine under test and the instances the tests made with it (or with other engines). */
export class EngineHarness<E extends AddonEngine = AddonEngine> {
  readonly engine: E;
  /** Where instances go, unless a test names another directory. */
  readonly root: string;
  readonly ctx: EngineContext;
  private readonly made: { inst: Instance; proc: ServerProcess | undefined; engine: AddonEngine }[] = [];

  constructor(engine: E, root: string, ctx: EngineContext) {
    this.engine = engine;
    this.root = root;
    this.ctx = ctx;
  }

  /**
   * A fresh temporary directory (`prefix` starts its name) with a blob store in it, and the
   * engine `newEngine` makes for that context. `log` receives the engine's messages.
   */
  static async open<E extends AddonEngine>(prefix: string, newEngine: (ctx: EngineContext) => E, log: (line: string) => void = () => {}): Promise<EngineHarness<E>> {
    const root = await mkdtemp(join(tmpdir(), prefix));
    const ctx: EngineContext = { blobs: new LocalBlobStore(join(root, "blobs")), log };
    return new EngineHarness(newEngine(ctx), root, ctx);
  }

  /** An instance record on a free port with new credentials, not provisioned yet. */
  async newInstance(opts: { plan?: number; engine?: AddonEngine; dir?: string } = {}): Promise<Instance> {
    const engine = opts.engine ?? this.engine;
    const id = randomUUID();
    const inst: Instance = {
      id,
      dir: opts.dir ?? join(this.root, id),
      port: await freePort("127.0.0.1", addonPortRange),
      plan: engine.provider.plans[opts.plan ?? 0]!,
      credentials: engine.newCredentials(),
    };
    this.made.push({ inst, proc: undefined, engine });
    return inst;
  }

  /** Records `proc` as the server of `inst` (destroyed at `close`) and returns it. */
  track(inst: Instance, proc: ServerProcess): ServerProcess {
    const entry = this.made.find((m) => m.inst.id === inst.id);
    if (entry) entry.proc = proc;
    return proc;
  }

  /** Provisions and starts `inst` with the harness's engine. */
  async provisionAndStart(inst: Instance): Promise<ServerProcess> {
    await this.engine.provision(inst);
    return this.track(inst, await this.engine.start(inst));
  }

  /** A new instance of `plan`, provisioned and started. */
  async running(plan = 0): Promise<{ inst: Instance; proc: ServerProcess }> {
    const inst = await this.newInstance({ plan });
    return { inst, proc: await this.provisionAndStart(inst) };
  }

  /** `running`, timed: how long the provision and the start each took, in whole milliseconds. */
  async timedRunning(plan = 0): Promise<{ inst: Instance; proc: ServerProcess; provisionMs: number; startMs: number }> {
    const inst = await this.newInstance({ plan });
    const t0 = performance.now();
    await this.engine.provision(inst);
    const t1 = performance.now();
    const proc = this.track(inst, await this.engine.start(inst));
    const t2 = performance.now();
    return { inst, proc, provisionMs: Math.round(t1 - t0), startMs: Math.round(t2 - t1) };
  }

  /** The URL the app gets (`SCALINGO_<prefix>_URL`). */
  urlOf(inst: Instance): string {
    return this.engine.env(inst)[`SCALINGO_${this.engine.provider.envPrefix}_URL`] as string;
  }

  /** A whole backup of `inst`, in memory (small test data only). */
  async backupOf(inst: Instance): Promise<Buffer> {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (c: Buffer) => chunks.push(c));
    await this.engine.backup(inst, out);
    out.end();
    return Buffer.concat(chunks);
  }

  /** SIGKILLs a server and waits until it is gone. */
  async kill(proc: ServerProcess): Promise<void> {
    process.kill(proc.pid, "SIGKILL");
    while (serverAlive(proc)) await sleep(20);
  }

  /** Destroys every instance made, each with the engine that made it; failures are ignored. */
  async destroyAll(): Promise<void> {
    for (const m of this.made) await m.engine.destroy(m.inst, m.proc).catch(() => undefined);
  }

  /** Destroys every instance, then the temporary directory. */
  async close(): Promise<void> {
    await this.destroyAll();
    await rm(this.root, { recursive: true, force: true });
  }
}
