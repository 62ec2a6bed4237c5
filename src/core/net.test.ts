import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BROWSER_BLOCKED_PORTS, freePort, portIsFree, servicePortRange } from "./net.ts";

describe("ports chosen at run time", () => {
  it("never a port browsers and fetch() refuse, such as 10080 in the service range", async () => {
    assert.ok(BROWSER_BLOCKED_PORTS.has(10080));
    assert.ok(servicePortRange.min <= 10080 && 10080 < servicePortRange.max, "the service range holds one");
    await assert.rejects(freePort("127.0.0.1", { min: 10080, max: 10081 }), /no free port in 10080-10080/);
    // 10079 and 10081 are drawn (once each: see below), 10080 never.
    const drawn = [await freePort("127.0.0.1", { min: 10079, max: 10082 }), await freePort("127.0.0.1", { min: 10079, max: 10082 })];
    assert.deepEqual(drawn.sort(), [10079, 10081]);
    await assert.rejects(freePort("127.0.0.1", { min: 10079, max: 10082 }), /no free port/);
  });

  it("never the same port twice before its taker could bind it, even from draws at the same time", async () => {
    // Three free ports to draw from: three concurrent draws must get all three, a fourth none.
    let min = 14000;
    while (!(await portIsFree(min)) || !(await portIsFree(min + 1)) || !(await portIsFree(min + 2))) min += 3;
    const range = { min, max: min + 3 };
    const ports = await Promise.all([freePort("127.0.0.1", range), freePort("127.0.0.1", range), freePort("127.0.0.1", range)]);
    assert.deepEqual([...ports].sort(), [min, min + 1, min + 2]);
    await assert.rejects(freePort("127.0.0.1", range), /no free port/);
  });

  it("fetch() indeed refuses such a port, before any connection", async () => {
    await assert.rejects(fetch("http://127.0.0.1:10080/"), (err: Error & { cause?: Error }) => /bad port/.test(String(err.cause?.message)));
  });
});
