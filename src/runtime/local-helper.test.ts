// The local driver against the shared runtime conformance suite, its containers started by the
// spawn helper (as the server starts them: see src/core/spawner.ts).
import { after } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRuntimeSuite } from "../../test/conformance/runtime.suite.ts";
import { closeSpawner, useSpawner } from "../core/spawner.ts";
import { LocalRuntime } from "./local.ts";

const stateDir = mkdtempSync(join(tmpdir(), "quai-rt-state-"));
after(() => {
  closeSpawner();
  rmSync(stateDir, { recursive: true, force: true });
});
useSpawner();
runRuntimeSuite("local, through the spawn helper", async () => new LocalRuntime({ stateDir }));
