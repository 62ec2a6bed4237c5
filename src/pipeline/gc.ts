// Garbage collection of the pipeline's blobs and unpacked slugs: a slug no release refers to, and
// the source archive of a deployment that has ended, are deleted. Fresh blobs are left alone, so
// a build that has stored its slug but not yet made its release never loses it. Add-on backups,
// base backups and WAL share the store and are kept while a row names them.
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { sql } from "kysely";
import type { PipelineContext } from "./context.ts";
import { SLUG_DIR } from "./slug.ts";

/** What one collection removed. */
export interface GcResult {
  blobs: number;
  bytes: number;
  slugDirs: number;
}

/** Deletes unreferenced blobs older than `minAgeMs`, and unpacked slugs of vanished releases. */
export async function collectGarbage(ctx: PipelineContext, minAgeMs = 60 * 60_000): Promise<GcResult> {
  const live = await sql<{ key: string }>`
    SELECT slug_blob AS key FROM releases
    UNION SELECT source_blob FROM deployments WHERE source_blob IS NOT NULL AND status IN ('queued', 'building', 'pushing', 'starting')
    UNION SELECT slug_blob FROM deployments WHERE slug_blob IS NOT NULL AND status IN ('building', 'pushing', 'starting')
    UNION SELECT blob_key FROM addon_backups WHERE blob_key IS NOT NULL
    UNION SELECT blob_key FROM addon_base_backups
    UNION SELECT blob_key FROM addon_wal_segments`.execute(ctx.db);
  const keep = new Set(live.rows.map((r) => r.key));
  const result: GcResult = { blobs: 0, bytes: 0, slugDirs: 0 };
  const now = Date.now();
  for (const key of await ctx.blobs.list()) {
    if (keep.has(key)) continue;
    const at = await ctx.blobs.storedAt(key);
    if (!at || now - at.getTime() < minAgeMs) continue;
    result.bytes += (await ctx.blobs.size(key)) ?? 0;
    await ctx.blobs.delete(key);
    result.blobs++;
  }
  const slugs = new Set((await sql<{ key: string }>`SELECT DISTINCT slug_blob AS key FROM releases`.execute(ctx.db)).rows.map((r) => r.key));
  for (const dir of await readdir(ctx.paths.slugs).catch(() => [] as string[])) {
    const key = SLUG_DIR.exec(dir)?.[1];
    if (key === undefined || slugs.has(key)) continue;
    const st = await stat(join(ctx.paths.slugs, dir)).catch(() => undefined);
    if (!st || now - st.mtimeMs < minAgeMs) continue;
    await rm(join(ctx.paths.slugs, dir), { recursive: true, force: true });
    result.slugDirs++;
  }
  // Source archives of deployments that have ended are no longer needed: forget the reference too.
  await ctx.db.updateTable("deployments").set({ source_blob: null }).where("source_blob", "is not", null).where("status", "not in", ["queued", "building", "pushing", "starting"]).where("finished_at", "<", new Date(now - minAgeMs)).execute();
  return result;
}
