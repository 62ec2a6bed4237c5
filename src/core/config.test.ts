import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadServerConfig } from "./config.ts";
import { QuaiError } from "./errors.ts";

describe("server settings", () => {
  const base = { QUAI_HOME: "/tmp/quai-config-test" };

  it("takes the router's worker count from QUAI_ROUTER_WORKERS, or leaves it to the router", () => {
    assert.equal(loadServerConfig(base).routerWorkers, undefined);
    assert.equal(loadServerConfig({ ...base, QUAI_ROUTER_WORKERS: "3" }).routerWorkers, 3);
  });

  it("refuses a worker count that is not a whole number from 1 to 64", () => {
    for (const raw of ["0", "-1", "two", "1.5", "65"]) {
      assert.throws(
        () => loadServerConfig({ ...base, QUAI_ROUTER_WORKERS: raw }),
        (err: unknown) => err instanceof QuaiError && err.code === "config_invalid" && err.message.includes("QUAI_ROUTER_WORKERS") && err.message.includes(`"${raw}"`),
        raw,
      );
    }
  });
});
