// The local driver against the shared runtime conformance suite, and its sweep of what one-off
// processes of a dead control plane left.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRuntimeSuite } from "../../test/conformance/runtime.suite.ts";
import type { Cgroups } from "./cgroups.ts";
import { LocalRuntime } from "./local.ts";

const stateDir = mkdtempSync(join(tmpdir(), "quai-rt-state-"));
after(() => rmSync(stateDir, { recursive: true, force: true }));
runRuntimeSuite("local", async () => new LocalRuntime({ stateDir }));

describe("LocalRuntime.sweep", () => {
  /** Groups by id: when made, and the pids in each; `removed` records what the sweep took. */
  function fakeCgroups(groups: Record<string, { ageMs: number; pids: number[] }>): { cgroups: Cgroups; removed: string[] } {
    const removed: string[] = [];
    const now = Date.now();
    const cgroups = {
      version: 1,
      list: async () => Object.entries(groups).map(([id, g]) => ({ id, createdMs: now - g.ageMs })),
      pids: async (id: string) => groups[id]?.pids ?? [],
      remove: async (id: string) => void removed.push(id),
    } as unknown as Cgroups;
    return { cgroups, removed };
  }

  it("removes the empty cgroups of one-off processes older than a minute, and nothing else", async () => {
    const { cgroups, removed } = fakeCgroups({
      "web-app-postdeploy-3-ab12.exec-0123abcd": { ageMs: 3_600_000, pids: [] },
      "web-app-web-1-cd34.exec-89abcdef": { ageMs: 120_000, pids: [] },
      // Just made by a control plane setting up an exec, its process not in yet.
      "other-web-1-ef56.exec-00112233": { ageMs: 2_000, pids: [] },
      // Still running: a control plane on the same host is using it.
      "other-postdeploy-1-aa11.exec-44556677": { ageMs: 3_600_000, pids: [4242] },
      // Containers' own groups, empty or not, are the supervisor's business.
      "web-app-web-1-cd34": { ageMs: 3_600_000, pids: [] },
      "addon-0c0e7682": { ageMs: 3_600_000, pids: [] },
      "web-app-web-1-cd34.exec-xyz": { ageMs: 3_600_000, pids: [] },
    });
    const swept = await new LocalRuntime({ stateDir, cgroups }).sweep();
    assert.deepEqual(swept, ["web-app-postdeploy-3-ab12.exec-0123abcd", "web-app-web-1-cd34.exec-89abcdef"]);
    assert.deepEqual(removed, swept);
  });

  it("takes an age limit", async () => {
    const { cgroups, removed } = fakeCgroups({ "web-1.exec-0123abcd": { ageMs: 2_000, pids: [] } });
    const runtime = new LocalRuntime({ stateDir, cgroups });
    assert.deepEqual(await runtime.sweep(5_000), []);
    assert.deepEqual(await runtime.sweep(1_000), ["web-1.exec-0123abcd"]);
    assert.deepEqual(removed, ["web-1.exec-0123abcd"]);
  });
});
