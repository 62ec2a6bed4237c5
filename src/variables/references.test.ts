import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { assertNoCycle, referencesOf, resolveAll } from "./references.ts";
import { QuaiError } from "../core/errors.ts";

const vars = (o: Record<string, string>) => new Map(Object.entries(o));

describe("variable references", () => {
  it("finds $NAME and ${NAME} references, ignoring $$", () => {
    assert.deepEqual(referencesOf("postgres://$USER:${PASS}@host/$$notref"), ["USER", "PASS"]);
    assert.deepEqual(referencesOf("no references, just $ and $1"), []);
  });

  it("resolves chains and leaves literal dollars", () => {
    const out = resolveAll(vars({ DATABASE_URL: "$SCALINGO_POSTGRESQL_URL", SCALINGO_POSTGRESQL_URL: "postgres://${HOST}/db", HOST: "db.local", PRICE: "5$$", ALONE: "a $ b" }));
    assert.equal(out.get("DATABASE_URL"), "postgres://db.local/db");
    assert.equal(out.get("PRICE"), "5$");
    assert.equal(out.get("ALONE"), "a $ b");
  });

  it("reports a reference to a missing variable instead of an empty string", () => {
    assert.throws(() => resolveAll(vars({ DATABASE_URL: "$SCALINGO_POSTGRESQL_URL" })), (err: unknown) => {
      assert.ok(err instanceof QuaiError);
      assert.equal(err.code, "variable_reference_missing");
      assert.match(err.message, /DATABASE_URL refers to \$SCALINGO_POSTGRESQL_URL/);
      return true;
    });
  });

  it("refuses cycles, naming them", () => {
    for (const set of [{ A: "$B", B: "$A" }, { A: "${A}" }, { A: "x$B", B: "$C", C: "$A" }] as Record<string, string>[]) {
      assert.throws(() => assertNoCycle(vars(set)), (err: unknown) => err instanceof QuaiError && err.code === "variable_reference_cycle" && /\$A/.test(err.message));
    }
  });

  it("accepts a diamond, which is not a cycle", () => {
    const out = resolveAll(vars({ A: "$B-$C", B: "$D", C: "$D", D: "d" }));
    assert.equal(out.get("A"), "d-d");
  });
});
