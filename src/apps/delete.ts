// Deleting an app with everything that runs it: add-on servers, containers, the router entry,
// the build cache and the git repository. Used by DELETE /v1/apps/:app and by review apps.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Actor } from "../auth/service.ts";
import type { ApiDeps } from "../server/api.ts";
import { destroyApp, type AppRecord } from "./service.ts";

/** What deleting an app needs of the server around it. */
export type AppDeleteDeps = Pick<ApiDeps, "db" | "addons" | "pipeline">;

/** Deletes `app` (`currentName` must repeat its name) and takes down what ran it. */
export async function deleteApp(deps: AppDeleteDeps, actor: Actor, app: AppRecord, currentName: unknown): Promise<void> {
  const containers = deps.pipeline ? await deps.db.selectFrom("containers").select("id").where("app_id", "=", app.id).execute() : [];
  const addonTeardown = await deps.addons?.appTeardown(app);
  await destroyApp(deps.db, actor, app, currentName);
  await addonTeardown?.();
  // The app is gone from the store: stop what ran it and take it off the router.
  const p = deps.pipeline;
  if (p) {
    await Promise.all(containers.map((c) => p.supervisor.destroy(c.id, 5000)));
    await p.supervisor.syncRouter();
    await rm(join(p.cachesDir, app.id), { recursive: true, force: true });
    if (p.git) await rm(join(p.git.reposDir, `${app.id}.git`), { recursive: true, force: true });
  }
}
