// Deleting an app with everything that runs it: its deployments under way, add-on servers,
// containers, the router entry, the build cache, the git repository, its log stream and its
// deployments' output. Used by DELETE /v1/apps/:app and by review apps.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Actor } from "../auth/service.ts";
import { removeCache } from "../pipeline/slug.ts";
import type { ApiDeps } from "../server/api.ts";
import { confirm, destroyApp, type AppRecord } from "./service.ts";

/** What deleting an app needs of the server around it. */
export type AppDeleteDeps = Pick<ApiDeps, "db" | "addons" | "pipeline">;

/** Deletes `app` (`currentName` must repeat its name) and takes down what ran it. */
export async function deleteApp(deps: AppDeleteDeps, actor: Actor, app: AppRecord, currentName: unknown): Promise<void> {
  confirm(app, currentName);
  const p = deps.pipeline;
  // A build or a start under way would go on for an app that no longer exists: stop it first.
  if (p) await p.deployments.abortForDeletion(actor, app.id);
  // What goes with the rows, noted while they exist: their processes and files go after.
  const [deployments, containers] = p
    ? await Promise.all([deps.db.selectFrom("deployments").select("id").where("app_id", "=", app.id).execute(), deps.db.selectFrom("containers").select("id").where("app_id", "=", app.id).execute()])
    : [[], []];
  const addonTeardown = await deps.addons?.appTeardown(app);
  await destroyApp(deps.db, actor, app, currentName);
  // One that started in between (a push) fails on the missing app: end it now too.
  await p?.deployments.abortForDeletion(actor, app.id);
  await addonTeardown?.();
  // The app is gone from the store: stop what ran it and take it off the router.
  if (p) {
    await Promise.all(containers.map((c) => p.supervisor.destroy(c.id, 5000)));
    await p.supervisor.syncRouter();
    await removeCache(p.ctx, app.id);
    if (p.git) await rm(join(p.git.reposDir, `${app.id}.git`), { recursive: true, force: true });
    await p.supervisor.forgetApp(app.id);
    for (const d of deployments) await p.outputs.remove(d.id);
  }
}
