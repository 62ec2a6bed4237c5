// Times users type for restores (`quai pitr-restore --to '2026-11-22 14:03:00'`) and the
// Europe/Paris clock backups are scheduled on. A time without a zone is Europe/Paris time, as
// our users read their clocks; an offset, `Z` or a zone name makes it explicit.
import { QuaiError } from "../core/errors.ts";

/** The zone of backup hours and of restore times given without one. */
export const PLATFORM_ZONE = "Europe/Paris";

const PATTERN = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(?:\s*(Z|[+-]\d{2}:?\d{2})|\s+([A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*))?$/;

function validZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** The wall-clock fields of `ms` in `zone`. */
function wallClock(ms: number, zone: string): number {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(new Date(ms));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
}

/** The instant whose wall clock in `zone` reads `wall` (ms as if UTC). */
function fromWallClock(wall: number, zone: string): number {
  // The zone's offset at a first guess, then again at the result (DST changes between the two).
  const offset = (ms: number) => wallClock(ms, zone) - Math.floor(ms / 1000) * 1000;
  const guess = wall - offset(wall);
  return wall - offset(guess);
}

/** Parses a restore time; throws `pitr_time_invalid` naming what is wrong. */
export function parseRestoreTime(text: string): Date {
  return parsePlatformTime(text, "pitr_time_invalid", "a time Quai can restore to");
}

/**
 * Parses a time a user typed (see the forms above; `HH:MM` alone is today on the platform's
 * clock when `today` is given); throws `code` naming what is wrong.
 */
export function parsePlatformTime(text: string, code: "pitr_time_invalid" | "maintenance_time_invalid", what: string, today?: Date): Date {
  const clock = /^(\d{2}):(\d{2})$/.exec(text.trim());
  if (clock && today) return parsePlatformTime(`${platformClock(today).day} ${text.trim()}`, code, what);
  const m = PATTERN.exec(text.trim());
  const invalid = (why: string) => new QuaiError(code, `${JSON.stringify(text)} is not ${what}: ${why}. Write it as 2026-11-22 14:03:00 (Europe/Paris)${today ? ", 14:00 (today)" : ""}, 2026-11-22T13:03:00Z or 2026-11-22 14:03:00+01:00`);
  if (!m) throw invalid("the format is not recognised");
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number];
  const second = m[6] ? Number(m[6]) : 0;
  const millis = m[7] ? Number(m[7].padEnd(3, "0")) : 0;
  // (Before 1970 is no time Quai has anything of; Date.UTC would also read 0099 as 1999.)
  if (year < 1970 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) throw invalid("a field is out of range");
  const wall = Date.UTC(year, month - 1, day, hour, minute, second, millis);
  if (new Date(wall).getUTCDate() !== day) throw invalid(`${year}-${m[2]} has no day ${day}`);
  const offset = m[8];
  const zone = m[9];
  if (offset) {
    if (offset === "Z") return new Date(wall);
    const om = /^([+-])(\d{2}):?(\d{2})$/.exec(offset) as RegExpExecArray;
    const minutes = Number(om[2]) * 60 + Number(om[3]);
    if (Number(om[2]) > 14 || Number(om[3]) > 59) throw invalid(`offset ${offset} does not exist`);
    return new Date(wall - (om[1] === "-" ? -1 : 1) * minutes * 60_000);
  }
  const tz = zone ?? PLATFORM_ZONE;
  if (!validZone(tz)) throw invalid(`unknown time zone ${JSON.stringify(tz)}`);
  return new Date(fromWallClock(wall, tz));
}

/** The hour (0-23) and calendar day (YYYY-MM-DD) of `at` on the platform's clock. */
export function platformClock(at: Date): { hour: number; day: string } {
  const wall = new Date(wallClock(at.getTime(), PLATFORM_ZONE));
  return { hour: wall.getUTCHours(), day: wall.toISOString().slice(0, 10) };
}
