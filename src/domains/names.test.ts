import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { QuaiError } from "../core/errors.ts";
import { normaliseDomain } from "./names.ts";

describe("domain names", () => {
  it("stores names in ASCII and shows them in Unicode", () => {
    assert.deepEqual(normaliseDomain("WWW.Example.FR.", "quai.test"), { ascii: "www.example.fr", unicode: "www.example.fr" });
    assert.deepEqual(normaliseDomain("café.example", "quai.test"), { ascii: "xn--caf-dma.example", unicode: "café.example" });
    // A Cyrillic "а" in a Latin-looking name: stored as punycode, so nobody mistakes it.
    const homograph = normaliseDomain("pаypal.fr", "quai.test");
    assert.equal(homograph.ascii, "xn--pypal-4ve.fr");
    assert.equal(homograph.unicode, "pаypal.fr");
  });
  const refused: [string, RegExp][] = [
    ["localhost", /two labels/],
    ["app.localhost", /localhost/],
    ["127.0.0.1", /IP address/],
    ["[::1]", /IP address/],
    ["*.example.org", /wildcard/],
    ["ex*ample.org", /wildcard/],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}.${"e".repeat(50)}.org`, /at most 253/],
    [`${"a".repeat(64)}.org`, /label/],
    ["-bad.example.org", /label/],
    ["exa mple.org", /not a valid|label/],
    ["example.123", /numeric|not a valid/],
    ["shop.quai.test", /platform/],
    ["quai.test", /platform/],
    ["", /empty/],
  ];
  for (const [name, why] of refused) {
    it(`refuses ${JSON.stringify(name.length > 40 ? name.slice(0, 40) + "…" : name)}`, () => {
      assert.throws(() => normaliseDomain(name, "quai.test"), (err: unknown) => err instanceof QuaiError && err.code === "domain_invalid" && why.test(err.message));
    });
  }
});
