// One-off runs are numbered per app (one-off-1, one-off-2, ...) and recorded as events with who
// ran what, before they start.
import { recordEvent } from "../events/service.ts";
import { sql } from "kysely";
import type { Actor } from "../auth/service.ts";
import type { AppRecord } from "../apps/service.ts";
import type { PipelineContext } from "../pipeline/context.ts";

/** Records the run event and returns the run's number. */
export async function recordRun(ctx: PipelineContext, app: AppRecord, actor: Actor, command: string | string[]): Promise<number> {
  const res = await sql<{ n: number }>`SELECT count(*)::int + 1 AS n FROM events WHERE app_id = ${app.id} AND type = 'run'`.execute(ctx.db);
  const n = res.rows[0]?.n ?? 1;
  await recordEvent(ctx.db, { actor, app, type: "run", data: { command, number: n } });
  return n;
}
