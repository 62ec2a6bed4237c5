import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { expiredBackups, type RetainedBackup } from "./retention.ts";

const DAY = 86_400_000;
const now = new Date("2026-11-22T12:00:00Z");

/** One scheduled backup a day at 02:00 UTC for `days` days back. */
function daily(days: number): RetainedBackup[] {
  return Array.from({ length: days }, (_, i) => ({ id: `d${i}`, kind: "scheduled", status: "done", created_at: new Date(Date.UTC(2026, 10, 22, 2) - i * DAY) }));
}

describe("backup retention", () => {
  it("keeps 7 daily, 8 weekly and 12 monthly backups out of two years of dailies", () => {
    const all = daily(730);
    const expired = new Set(expiredBackups(all, now));
    const kept = all.filter((b) => !expired.has(b.id));
    // The last 7 days are all kept.
    for (let i = 0; i < 7; i++) assert.ok(kept.some((b) => b.id === `d${i}`), `day ${i} kept`);
    assert.ok(expired.has("d8") || expired.has("d9"), "an 8-9 day old daily is only kept if it is its week's newest");
    // Nothing older than 12 months is kept.
    assert.ok(kept.every((b) => now.getTime() - b.created_at.getTime() < 366 * DAY));
    // 7 days + up to 8 weeks + 12 months, overlapping: between 19 and 27 backups.
    assert.ok(kept.length >= 19 && kept.length <= 27, `kept ${kept.length}`);
    // One per month for the months beyond the weekly window.
    const months = new Set(kept.map((b) => b.created_at.toISOString().slice(0, 7)));
    assert.equal(months.size, 12);
  });

  it("never expires a running backup; keeps final backups and failures 30 days", () => {
    const backups: RetainedBackup[] = [
      { id: "running", kind: "manual", status: "running", created_at: new Date(now.getTime() - 400 * DAY) },
      { id: "final-new", kind: "final", status: "done", created_at: new Date(now.getTime() - 10 * DAY) },
      { id: "final-old", kind: "final", status: "done", created_at: new Date(now.getTime() - 31 * DAY) },
      { id: "err-new", kind: "scheduled", status: "error", created_at: new Date(now.getTime() - 2 * DAY) },
      { id: "err-old", kind: "scheduled", status: "error", created_at: new Date(now.getTime() - 40 * DAY) },
    ];
    assert.deepEqual(expiredBackups(backups, now).sort(), ["err-old", "final-old"]);
  });

  it("follows a configured policy", () => {
    const expired = new Set(expiredBackups(daily(10), now, { days: 2, weeks: 0, months: 0 }));
    assert.deepEqual(daily(10).filter((b) => !expired.has(b.id)).map((b) => b.id), ["d0", "d1"]);
  });
});
