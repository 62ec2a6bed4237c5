import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { PLATFORM_VARIABLES, platformEnv, platformVariableWarning } from "./platform.ts";

describe("variables Quai sets in containers", () => {
  const container = { app: "histologe", name: "web-1", size: "M", version: 12, gitRef: "abc123", port: 24001 };

  it("are the ones the warning knows, PORT only where there is a port", () => {
    assert.deepEqual(Object.keys(platformEnv(container)).sort(), [...PLATFORM_VARIABLES].sort());
    const oneOff = platformEnv({ ...container, name: "one-off-1", port: null });
    assert.equal(oneOff.PORT, undefined);
    assert.equal(oneOff.CONTAINER, "one-off-1");
    assert.equal(platformEnv(container).CONTAINER_VERSION, "v12");
    assert.equal(platformEnv({ ...container, gitRef: null }).SOURCE_VERSION, "");
  });

  it("warn about those names only", () => {
    assert.match(platformVariableWarning("PORT") ?? "", /web processes never see/);
    assert.match(platformVariableWarning("PATH") ?? "", /PATH is set by Quai in every container/);
    assert.equal(platformVariableWarning("DATABASE_URL"), undefined);
    assert.equal(platformVariableWarning("LANG"), undefined, "an app's LANG wins");
    assert.equal(platformVariableWarning("port"), undefined, "names are case-sensitive");
  });
});
