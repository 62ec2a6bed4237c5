// The local driver against the shared runtime conformance suite.
import { after } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRuntimeSuite } from "../../test/conformance/runtime.suite.ts";
import { LocalRuntime } from "./local.ts";

const stateDir = mkdtempSync(join(tmpdir(), "quai-rt-state-"));
after(() => rmSync(stateDir, { recursive: true, force: true }));
runRuntimeSuite("local", async () => new LocalRuntime({ stateDir }));
