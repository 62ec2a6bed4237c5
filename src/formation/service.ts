// Formation: how many containers of each process type run, at which size; scaling and rolling
// restarts converge the current release's containers to it with no gap in service.
import { sql } from "kysely";
import { QuaiError } from "../core/errors.ts";
import { containerSizes, type ContainerSize } from "../runtime/types.ts";
import type { PipelineContext } from "../pipeline/context.ts";
import { ONE_OFF, runnableTypes } from "../pipeline/procfile.ts";
import type { Release } from "../pipeline/release.ts";
import type { AppRef, ContainerRow, Supervisor } from "./supervisor.ts";

/** One line of a scale request. */
export interface ScaleInput {
  name: string;
  amount?: number;
  size?: string;
}

/** Most containers of one type (QUAI_MAX_CONTAINERS). */
export const maxContainersPerType = Number(process.env.QUAI_MAX_CONTAINERS) || 20;

/** Per-app chain so scale, restart and deploy switches of one app do not interleave in this process. */
const chains = new Map<string, Promise<unknown>>();
export function serialized<T>(appId: string, fn: () => Promise<T>): Promise<T> {
  const prev = chains.get(appId) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  chains.set(appId, next.catch(() => {}));
  return next;
}

/** Checks a scale request against the release's process types and the size list. */
export function validateScale(input: ScaleInput[], release: Release | undefined): void {
  if (input.length === 0) throw new QuaiError("formation_invalid", "name at least one process type to scale");
  const types = release ? runnableTypes(release.processTypes) : undefined;
  const seen = new Set<string>();
  for (const c of input) {
    if (seen.has(c.name)) throw new QuaiError("formation_invalid", `${c.name} is named twice: give each process type once (for example web:2:M)`);
    seen.add(c.name);
    // Before the first release any type may be scaled (there is no Procfile to check against),
    // but only a name a Procfile could have.
    if (!types && (!/^[A-Za-z0-9_-]{1,63}$/.test(c.name) || c.name === ONE_OFF)) throw new QuaiError("formation_invalid", `${JSON.stringify(c.name)} cannot name a process type: letters, digits, "-" and "_", and not ${ONE_OFF}`);
    if (types && !types.includes(c.name)) throw new QuaiError("formation_invalid", `unknown process type "${c.name}": the current release has ${types.join(", ") || "none"}`);
    if (c.amount !== undefined && (!Number.isInteger(c.amount) || c.amount < 0 || c.amount > maxContainersPerType)) {
      throw new QuaiError("formation_invalid", `amount of ${c.name} must be a whole number from 0 to ${maxContainersPerType}, got ${c.amount}`);
    }
    if (c.size !== undefined && !Object.hasOwn(containerSizes, c.size)) throw new QuaiError("formation_invalid", `unknown size "${c.size}": sizes are ${Object.keys(containerSizes).join(", ")}`);
  }
}

/** Formation to run: the stored one, completed with web:1:M for a new web type, others 0. */
export async function formationFor(ctx: PipelineContext, appId: string, release: Release): Promise<{ type: string; amount: number; size: ContainerSize }[]> {
  const stored = await ctx.db.selectFrom("formation").selectAll().where("app_id", "=", appId).execute();
  const out: { type: string; amount: number; size: ContainerSize }[] = [];
  for (const type of runnableTypes(release.processTypes)) {
    const row = stored.find((r) => r.type === type);
    const size = (row && Object.hasOwn(containerSizes, row.size) ? row.size : "M") as ContainerSize;
    const amount = row ? row.amount : type === "web" ? 1 : 0;
    if (!row) await ctx.db.insertInto("formation").values({ app_id: appId, type, amount, size }).onConflict((oc) => oc.doNothing()).execute();
    out.push({ type, amount, size });
  }
  return out;
}

/** The current release of an app, if it has one. */
export async function currentRelease(ctx: PipelineContext, sup: Supervisor, appId: string): Promise<Release | undefined> {
  const row = await ctx.db.selectFrom("apps").select("current_release_id").where("id", "=", appId).executeTakeFirst();
  return row?.current_release_id ? sup.release(row.current_release_id) : undefined;
}

/** Stores the formation and makes the running containers match it. */
export async function scale(ctx: PipelineContext, sup: Supervisor, app: AppRef, input: ScaleInput[]): Promise<{ name: string; amount: number; size: string }[]> {
  validateScale(input, await currentRelease(ctx, sup, app.id));
  return serialized(app.id, async () => {
    // Read in turn: a deployment's switch just before makes its release the one to converge.
    const release = await currentRelease(ctx, sup, app.id);
    for (const c of input) {
      const existing = await ctx.db.selectFrom("formation").selectAll().where("app_id", "=", app.id).where("type", "=", c.name).executeTakeFirst();
      const amount = c.amount ?? existing?.amount ?? 1;
      const size = c.size ?? existing?.size ?? "M";
      await ctx.db.insertInto("formation").values({ app_id: app.id, type: c.name, amount, size }).onConflict((oc) => oc.columns(["app_id", "type"]).doUpdateSet({ amount, size })).execute();
    }
    if (release) await converge(ctx, sup, app, release, []);
    const rows = await ctx.db.selectFrom("formation").selectAll().where("app_id", "=", app.id).orderBy("type").execute();
    return rows.map((r) => ({ name: r.type, amount: r.amount, size: r.size }));
  });
}

/** Replaces the containers of `types` (all when empty) one batch at a time: new ones up first. */
export async function restart(ctx: PipelineContext, sup: Supervisor, app: AppRef, types: string[]): Promise<void> {
  const release = await currentRelease(ctx, sup, app.id);
  if (!release) throw new QuaiError("no_release", "the app has no release yet: deploy it first");
  const known = runnableTypes(release.processTypes);
  for (const t of types) if (!known.includes(t)) throw new QuaiError("formation_invalid", `unknown process type "${t}": the current release has ${known.join(", ")}`);
  await serialized(app.id, async () => {
    const now = (await currentRelease(ctx, sup, app.id)) ?? release;
    await converge(ctx, sup, app, now, types.length ? [...new Set(types)] : runnableTypes(now.processTypes));
  });
}

/**
 * Brings the current release's containers to the formation. Types in `replace` are renewed
 * entirely. New containers must be ready before the router sees them and before old ones go.
 */
export async function converge(ctx: PipelineContext, sup: Supervisor, app: AppRef, release: Release, replace: string[]): Promise<void> {
  const formation = await formationFor(ctx, app.id, release);
  const rows = await ctx.db.selectFrom("containers").selectAll().where("app_id", "=", app.id).where("release_id", "=", release.id).where("state", "in", ["running", "crashed"]).execute();
  const started: ContainerRow[] = [];
  const retire: ContainerRow[] = [];
  try {
    for (const f of formation) {
      const mine = rows.filter((r) => r.type === f.type).sort((a, b) => a.index - b.index);
      const renew = replace.includes(f.type) || mine.some((r) => r.size !== f.size);
      const keep = renew ? [] : mine.slice(0, f.amount);
      retire.push(...(renew ? mine : mine.slice(f.amount)));
      const used = new Set(keep.map((r) => r.index));
      for (let i = 1; keep.length + started.filter((s) => s.type === f.type).length < f.amount; i++) {
        if (used.has(i)) continue;
        started.push(await sup.startContainer(app, release, f.type, i, f.size as ContainerSize));
      }
    }
  } catch (err) {
    // A start that failed: those that did start go too, and the running ones stay.
    await Promise.all(started.map((s) => sup.destroy(s.id, 2000)));
    throw err;
  }
  for (const c of started) {
    const r = await sup.waitReady(c);
    if (!r.ok) {
      await Promise.all(started.map((s) => sup.destroy(s.id, 2000)));
      throw new QuaiError("formation_invalid", `${c.type}-${c.index} ${r.detail}; the running containers were kept`);
    }
  }
  await sup.markRunning(started.map((c) => c.id));
  if (retire.length > 0) {
    await ctx.db.updateTable("containers").set({ state: "stopping" }).where("id", "in", retire.map((r) => r.id)).execute();
  }
  await sup.syncRouter();
  await sup.retire(retire);
  await sql`UPDATE apps SET status = 'running' WHERE id = ${app.id} AND status = 'crashed' AND NOT EXISTS (SELECT 1 FROM containers WHERE app_id = ${app.id} AND state = 'crashed')`.execute(ctx.db);
}
