// Parsing of what the kernel and bwrap report about processes.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isAlive, parseProcStat, procStat } from "./proc.ts";
import { parseBwrapStatus } from "./local.ts";

describe("parseProcStat", () => {
  it("reads state, ppid and start time even when the command name holds spaces and parentheses", () => {
    const line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    assert.deepEqual(parseProcStat(line), { state: "S", ppid: 1, startTicks: 987654 });
  });

  it("knows this process is alive, and not under another start time", () => {
    const me = procStat(process.pid);
    assert.ok(me);
    assert.equal(isAlive(process.pid, me.startTicks), true);
    assert.equal(isAlive(process.pid, me.startTicks + 1), false);
  });
});

describe("parseBwrapStatus", () => {
  it("takes the child pid and the exit code from bwrap's JSON lines, ignoring a half-written one", () => {
    const text = '{ "child-pid": 123, "pid-namespace": 4026532181 }\n{ "exit-code": 143 }\n{ "exit-co';
    assert.deepEqual(parseBwrapStatus(text), { childPid: 123, exitCode: 143 });
    assert.deepEqual(parseBwrapStatus(""), {});
  });
});
