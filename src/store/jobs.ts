// Durable jobs and schedules, kept in the same PostgreSQL through pg-boss.
import { PgBoss } from "pg-boss";
import { sql } from "kysely";
import type { Db } from "./db.ts";

/** Names of the queues Quai uses. */
export const Queues = {
  purgeExpiredSessions: "purge-expired-sessions",
} as const;

/** A schedule a capability registers: a queue, a cron line (UTC) and its work. */
export interface Schedule {
  name: string;
  cron: string;
  work: () => Promise<void>;
}

/** Starts pg-boss on `url` and registers Quai's schedules and workers. */
export async function startJobs(url: string, db: Db, log: (line: string) => void, schedules: Schedule[] = []): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: url, max: 4 });
  boss.on("error", (err: Error) => log(`jobs: ${err.message}`));
  await boss.start();
  await boss.createQueue(Queues.purgeExpiredSessions);
  await boss.schedule(Queues.purgeExpiredSessions, "17 * * * *");
  await boss.work(Queues.purgeExpiredSessions, async () => {
    await purgeExpiredSessions(db);
  });
  for (const s of schedules) {
    await boss.createQueue(s.name);
    await boss.schedule(s.name, s.cron);
    await boss.work(s.name, async () => {
      try {
        await s.work();
      } catch (err) {
        log(`jobs: ${s.name}: ${String(err)}`);
        throw err;
      }
    });
  }
  return boss;
}

/** Deletes bearer sessions that expired more than a day ago. */
export async function purgeExpiredSessions(db: Db): Promise<number> {
  const res = await db.deleteFrom("sessions").where("expires_at", "<", sql<Date>`now() - interval '1 day'`).executeTakeFirst();
  return Number(res.numDeletedRows);
}
