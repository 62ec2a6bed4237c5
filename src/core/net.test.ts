import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BROWSER_BLOCKED_PORTS, freePort, servicePortRange } from "./net.ts";

describe("ports chosen at run time", () => {
  it("never a port browsers and fetch() refuse, such as 10080 in the service range", async () => {
    assert.ok(BROWSER_BLOCKED_PORTS.has(10080));
    assert.ok(servicePortRange.min <= 10080 && 10080 < servicePortRange.max, "the service range holds one");
    await assert.rejects(freePort("127.0.0.1", { min: 10080, max: 10081 }), /no free port in 10080-10080/);
    for (let i = 0; i < 20; i++) assert.notEqual(await freePort("127.0.0.1", { min: 10079, max: 10082 }), 10080);
  });

  it("fetch() indeed refuses such a port, before any connection", async () => {
    await assert.rejects(fetch("http://127.0.0.1:10080/"), (err: Error & { cause?: Error }) => /bad port/.test(String(err.cause?.message)));
  });
});
