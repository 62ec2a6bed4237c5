import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { run } from "./run.ts";

describe("run", () => {
  it("a program that exits without reading its stdin does not crash the caller (EPIPE, regression)", async () => {
    // 4 MiB is more than a pipe holds: the write fails once `true` has exited.
    const res = await run("true", [], { input: "x".repeat(4 * 1024 * 1024) });
    assert.equal(res.code, 0);
  });

  it("passes arguments as argv, never through a shell", async () => {
    const res = await run("printf", ["%s|", "$(id)", "a b", ";ls"]);
    assert.equal(res.stdout, "$(id)|a b|;ls|");
  });
});
