// Deploy: a release goes live with zero downtime. New containers start beside the old ones; web
// containers must accept connections on $PORT; the Procfile `postdeploy` hook runs in a one-off
// container of the new release; only then the router switches and the old containers retire.
import type { Supervisor, AppRef, ContainerRow } from "../formation/supervisor.ts";
import type { PipelineContext } from "./context.ts";
import type { Release } from "./release.ts";
import { converge, formationFor, serialized } from "../formation/service.ts";

/** How a deploy ended when it did not succeed (Scalingo's outcome words). */
export class DeployError extends Error {
  readonly outcome: "crashed-error" | "timeout-error" | "hook-error";
  constructor(outcome: "crashed-error" | "timeout-error" | "hook-error", message: string) {
    super(message);
    this.outcome = outcome;
  }
}

/**
 * What a switch to release `releaseId` retires: the app's containers of other releases not already
 * stopping, but its one-offs (a `run` ends when its command does, whatever is deployed).
 */
export function replacedContainers(ctx: PipelineContext, appId: string, releaseId: string): Promise<ContainerRow[]> {
  return ctx.db.selectFrom("containers").selectAll().where("app_id", "=", appId).where("release_id", "!=", releaseId).where("type", "!=", "one-off").where("state", "!=", "stopping").execute();
}

/**
 * Runs `release` in place of what runs now. On failure the new containers are stopped and the
 * old ones keep serving; the error says which outcome it was.
 */
export async function deployRelease(ctx: PipelineContext, sup: Supervisor, app: AppRef, release: Release, out: (text: string) => void, opts: { postdeploy?: string; signal?: AbortSignal } = {}): Promise<void> {
  // Containers start once the formation is read and their rows made: the runtime readies itself meanwhile.
  ctx.runtime.warm?.();
  const [formation, settings] = await Promise.all([formationFor(ctx, app.id, release), ctx.db.selectFrom("apps").select("health_check_path").where("id", "=", app.id).executeTakeFirst()]);
  const started: ContainerRow[] = [];
  const hook = opts.postdeploy ?? release.processTypes.postdeploy;
  const healthPath = settings?.health_check_path ?? null;
  /** Whether the router tries the new web containers ahead of the switch (see `routeIncoming`). */
  let routedAhead: Promise<boolean> | undefined;
  /** Stops what was started of the new release; the router goes back to the old one first. */
  const discard = async () => {
    if (routedAhead) {
      sup.forgetIncoming(app.id);
      await sup.syncRouter().catch((err: unknown) => ctx.log(`deploy: routing ${app.name} back to its previous release: ${String(err)}`));
    }
    await Promise.all(started.map((c) => sup.destroy(c.id, 2000)));
  };
  try {
    await bootRelease();
  } catch (err) {
    // A failure, a cancel or anything unforeseen before the switch: nothing of the new release stays.
    await discard();
    throw err;
  }

  // The switch: the new release becomes current, its web containers get the traffic. It takes
  // its turn with the app's scale and restart, which may have run while the release booted: what
  // they started of the previous release retires with the rest, and a formation changed meanwhile
  // is applied to the new release.
  await serialized(app.id, async () => {
    await sup.markRunning(started.map((c) => c.id));
    await ctx.db.updateTable("apps").set({ current_release_id: release.id, status: "running" }).where("id", "=", app.id).execute();
    const ahead = (await routedAhead) === true;
    sup.forgetIncoming(app.id);
    const old = await replacedContainers(ctx, app.id, release.id);
    // Routed ahead: every new web container listens and is every request's first choice, so the
    // traffic has moved; the table without the old containers follows in the background.
    const routed = sup.syncRouter();
    if (!ahead) await routed;
    out(`-----> Switched traffic to v${release.version}\n`);
    const live = routed.catch((err: unknown) => ctx.log(`deploy: routing ${app.name} to v${release.version} only: ${String(err)}`));
    if (old.length > 0) {
      // Retire in the background of the deployment's success, once no router worker may still
      // pick them: requests in flight finish first.
      void live.then(() => sup.retire(old)).catch((err: unknown) => ctx.log(`deploy: retiring old containers of ${app.name}: ${String(err)}`));
    }
    const now = await formationFor(ctx, app.id, release);
    if (now.some((f) => !formation.some((g) => g.type === f.type && g.amount === f.amount && g.size === f.size))) {
      out(`-----> The formation changed during the deployment: ${now.map((f) => `${f.type}:${f.amount}:${f.size}`).join(", ")}\n`);
      // The release is live whatever comes of it: a failure here is said, not a failed deployment.
      await converge(ctx, sup, app, release, []).catch((err: unknown) => out(`       It could not be applied: ${err instanceof Error ? err.message : String(err)}\n`));
    }
  });

  /** Says why a new container is not up (`detail`), with its last lines of output. */
  async function showExit(c: { id: string; app_id: string; type: string; index: number }, detail: string): Promise<void> {
    await sup.shipContainerLogs(c);
    const tail = (await sup.logs.tail(app.id, 20, `${c.type}-${c.index}`)).map((l) => `       ${l}\n`).join("");
    out(`       ${c.type}-${c.index} ${detail}\n${tail}`);
  }

  /** Starts the new containers, waits until they are ready, runs the postdeploy hook. */
  async function bootRelease(): Promise<void> {
    out(`-----> Starting ${formation.filter((f) => f.amount > 0).map((f) => `${f.type}:${f.amount}:${f.size}`).join(", ") || "no containers (formation is empty)"}\n`);
    // Rows and ports first, so the router can take the new web containers while they start.
    for (const f of formation) {
      for (let i = 1; i <= f.amount; i++) started.push(await sup.reserveContainer(app, release, f.type, i, f.size));
    }
    const webPorts = started.filter((c) => c.type === "web" && c.port !== null).map((c) => c.port as number);
    if (!hook && !healthPath && webPorts.length > 0) {
      // Ready means "accepts connections", which the router can test itself on every request: it
      // gets the new containers now, as first choice with the serving ones behind, and traffic
      // moves the moment they listen, without waiting for a reload then (nginx: about 0.13 s).
      routedAhead = sup.routeIncoming(app.id, webPorts).then(
        () => true,
        (err: unknown) => {
          ctx.log(`deploy: routing ${app.name}'s new containers ahead of the switch: ${String(err)}`);
          return false;
        },
      );
    }
    // All at once; every start has ended (started or failed) before a failure is handled.
    const starts = await Promise.allSettled(started.map((c) => sup.startReserved(app, release, c)));
    const failed = starts.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    if (healthPath) out(`       Waiting for ${healthPath} to answer 2xx or 3xx\n`);
    const ready = await Promise.all(started.map(async (c) => ({ c, r: await sup.waitReady(c, undefined, c.type === "web" ? healthPath : null, opts.signal) })));
    for (const { c, r } of ready) {
      if (!r.ok) {
        await showExit(c, r.detail);
        throw new DeployError(r.reason === "timeout" ? "timeout-error" : "crashed-error", `${c.type}-${c.index} ${r.detail}`);
      }
    }
    if (started.length > 0) out(`       ${started.length} container${started.length > 1 ? "s" : ""} up\n`);
    cancelled();

    if (hook) {
      out(`-----> Running the postdeploy hook: ${hook}\n`);
      const id = `${app.name}-postdeploy-${release.version}-${Math.random().toString(36).slice(2, 6)}`;
      const spec = await sup.specFor(app, release, id, "postdeploy-1", "M", ["/quai/bin/launch", "--shell", hook], null);
      let res;
      try {
        res = await ctx.runtime.exec(spec, {
          onStdout: (b) => out(indent(b.toString("utf8"))),
          onStderr: (b) => out(indent(b.toString("utf8"))),
          signal: opts.signal,
          timeoutMs: 15 * 60_000,
        });
      } catch (err) {
        // Cancelled while the hook ran: its container goes too.
        await sup.destroy(id, 0).catch(() => {});
        throw err;
      }
      await sup.destroy(id, 0).catch(() => {});
      if (res.exitCode !== 0) {
        out(`       postdeploy failed (${res.oomKilled ? "out of memory" : res.signal ? `killed by ${res.signal}` : `exit code ${res.exitCode}`}); the previous release keeps serving\n`);
        throw new DeployError("hook-error", `postdeploy hook failed with ${res.exitCode ?? res.signal}`);
      }
      // A container that was ready may have exited while the hook ran: the release does not
      // hold, and the previous one keeps serving.
      const down = await ctx.db.selectFrom("containers").select(["id", "app_id", "type", "index", "last_exit"]).where("id", "in", started.map((c) => c.id)).where("state", "!=", "starting").execute();
      for (const c of down) await showExit(c, `exited (${c.last_exit ?? "unknown"}) while the postdeploy hook ran`);
      if (down[0]) throw new DeployError("crashed-error", `${down[0].type}-${down[0].index} exited (${down[0].last_exit ?? "unknown"}) while the postdeploy hook ran`);
    }
    cancelled();
  }

  function cancelled(): void {
    if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error("aborted");
  }
}

function indent(text: string): string {
  return text.replace(/^(?=.)/gm, "       ");
}
