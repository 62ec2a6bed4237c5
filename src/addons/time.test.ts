import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseRestoreTime, platformClock } from "./time.ts";
import { QuaiError } from "../core/errors.ts";

describe("restore times", () => {
  it("reads a time without zone as Europe/Paris, in winter and in summer", () => {
    assert.equal(parseRestoreTime("2026-11-22 14:03:00").toISOString(), "2026-11-22T13:03:00.000Z");
    assert.equal(parseRestoreTime("2026-07-01 14:03").toISOString(), "2026-07-01T12:03:00.000Z");
  });
  it("honours Z, offsets and zone names", () => {
    assert.equal(parseRestoreTime("2026-11-22T13:03:00Z").toISOString(), "2026-11-22T13:03:00.000Z");
    assert.equal(parseRestoreTime("2026-11-22 14:03:00+01:00").toISOString(), "2026-11-22T13:03:00.000Z");
    assert.equal(parseRestoreTime("2026-11-22 14:03:00 -0330").toISOString(), "2026-11-22T17:33:00.000Z");
    assert.equal(parseRestoreTime("2026-11-22 14:03:00 UTC").toISOString(), "2026-11-22T14:03:00.000Z");
    assert.equal(parseRestoreTime("2026-11-22 14:03:00.250 America/New_York").toISOString(), "2026-11-22T19:03:00.250Z");
    // Zone names with digits are zone names too (Etc/GMT+5 is five hours behind UTC).
    assert.equal(parseRestoreTime("2026-11-22 14:03:00 Etc/GMT+5").toISOString(), "2026-11-22T19:03:00.000Z");
    assert.equal(parseRestoreTime("2026-11-22 14:03:00 EST5EDT").toISOString(), "2026-11-22T19:03:00.000Z");
  });
  for (const bad of ["0099-01-01T00:00Z", "yesterday", "2026-13-01 10:00", "2026-02-30 10:00", "2026-11-22 24:00", "2026-11-22 14:03:00 Mars/Olympus", "2026-11-22 14:03:00+25:00", "2026-11-22", "14:03", "2026-11-22 14:03:00; DROP TABLE"]) {
    it(`refuses ${JSON.stringify(bad)} with pitr_time_invalid`, () => {
      assert.throws(() => parseRestoreTime(bad), (err: unknown) => err instanceof QuaiError && err.code === "pitr_time_invalid");
    });
  }
  it("tells the hour and day on the platform clock", () => {
    assert.deepEqual(platformClock(new Date("2026-11-22T23:30:00Z")), { hour: 0, day: "2026-11-23" });
  });
});
