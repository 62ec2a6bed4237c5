import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { assertAppName } from "./names.ts";
import { QuaiError } from "../core/errors.ts";

function rejects(name: unknown, why: RegExp) {
  assert.throws(() => assertAppName(name), (err: unknown) => {
    assert.ok(err instanceof QuaiError);
    assert.equal(err.code, "app_name_invalid");
    assert.match(err.message, why);
    assert.match(err.message, /3 to 48 characters/, "the message names the rule");
    return true;
  });
}

describe("app names", () => {
  it("accepts DNS labels of 3 to 48 lowercase letters, digits and dashes", () => {
    for (const ok of ["abc", "histologe", "rdv-solidarites", "dialog-pr42", "a1b", "a".repeat(48), "0ab"]) assertAppName(ok);
  });

  it("refuses too short and too long names", () => {
    rejects("ab", /shorter than 3/);
    rejects("a".repeat(49), /49 characters/);
    rejects("", /shorter than 3/);
  });

  it("refuses path traversal, spaces and shell metacharacters", () => {
    for (const bad of ["../etc", "my app", "app;rm -rf /", "$(id)-app", "app`id`", "a|b-c", "app/../x", "app\nname", "app.name"]) {
      rejects(bad, /characters outside/);
    }
  });

  it("refuses unicode look-alikes (a Cyrillic а is not an a)", () => {
    rejects("histologе", /non-ASCII/); // the last letter is U+0435
    rejects("ａpp", /non-ASCII/);
  });

  it("refuses internationalised-name labels, which browsers show as other letters", () => {
    rejects("xn--hstologe-6nf", /3rd and 4th characters are dashes/);
    rejects("ab--cd", /3rd and 4th characters are dashes/);
    assertAppName("histologe--staging");
    assertAppName("abc--d");
  });

  it("refuses uppercase and leading or trailing dashes", () => {
    rejects("Histologe", /uppercase/);
    rejects("-app", /starts or ends with a dash/);
    rejects("app-", /starts or ends with a dash/);
  });

  it("refuses values that are not strings", () => {
    rejects(42, /must be a string/);
    rejects(null, /must be a string/);
  });
});
