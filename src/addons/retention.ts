// Which backups to keep, as Scalingo does: the newest of each of the last 7 days, of each of the
// last 8 weeks and of each of the last 12 months. Manual and scheduled backups are judged
// together; the final backup taken before a removal is kept 30 days; failed attempts 30 days.
import { platformClock } from "./time.ts";

/** How many days, weeks and months keep a backup (configurable per platform). */
export interface RetentionPolicy {
  days: number;
  weeks: number;
  months: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { days: 7, weeks: 8, months: 12 };

/** What retention needs of a backup. */
export interface RetainedBackup {
  id: string;
  kind: string;
  status: string;
  created_at: Date;
}

const DAY = 86_400_000;

/** ISO week of a YYYY-MM-DD day, as "YYYY-Www". */
function isoWeek(day: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  const weekday = (d.getUTCDay() + 6) % 7;
  d.setUTCDate(d.getUTCDate() - weekday + 3);
  const firstThursday = new Date(Date.UTC(d.getUTCFullYear(), 0, 4));
  const week = 1 + Math.round((d.getTime() - firstThursday.getTime()) / DAY / 7 - ((firstThursday.getUTCDay() + 6) % 7 - 3) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

/** Ids of the backups `policy` no longer keeps at `now`. */
export function expiredBackups(backups: RetainedBackup[], now: Date, policy: RetentionPolicy = DEFAULT_RETENTION): string[] {
  const keep = new Set<string>();
  const done = backups.filter((b) => b.status === "done" && b.kind !== "final").sort((a, b) => b.created_at.getTime() - a.created_at.getTime());
  const dayAgo = (n: number) => platformClock(new Date(now.getTime() - n * DAY)).day;
  const thisMonth = platformClock(now).day.slice(0, 7);
  const [y, m] = thisMonth.split("-").map(Number) as [number, number];
  const firstMonth = new Date(Date.UTC(y, m - 1 - (policy.months - 1), 1)).toISOString().slice(0, 7);
  // Newest backup of each period inside the window: days, ISO weeks, calendar months.
  const levels: { inWindow: (day: string) => boolean; period: (day: string) => string }[] = [
    { inWindow: (d) => d > dayAgo(policy.days), period: (d) => d },
    { inWindow: (d) => d > dayAgo(policy.weeks * 7), period: isoWeek },
    { inWindow: (d) => d.slice(0, 7) >= firstMonth, period: (d) => d.slice(0, 7) },
  ];
  for (const level of levels) {
    const seen = new Set<string>();
    for (const b of done) {
      const day = platformClock(b.created_at).day;
      if (!level.inWindow(day)) continue;
      const period = level.period(day);
      if (seen.has(period)) continue;
      seen.add(period);
      keep.add(b.id);
    }
  }
  const expired: string[] = [];
  for (const b of backups) {
    if (b.status === "running" || b.status === "scheduled") continue;
    const age = now.getTime() - b.created_at.getTime();
    if (b.kind === "final" || b.status === "error") {
      if (age > 30 * DAY) expired.push(b.id);
      continue;
    }
    if (!keep.has(b.id)) expired.push(b.id);
  }
  return expired;
}
