// The error catalogue and its generated page: docs/errors.md must be what the generator writes
// today, and every entry must carry a usable HTTP status and CLI exit code.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { catalogue, type ErrorSpec } from "./errors.ts";
import { ERROR_DOCS_FILE, renderErrorDocs } from "../../scripts/gen-error-docs.ts";

describe("error catalogue", () => {
  it("docs/errors.md matches the catalogue", () => {
    const onDisk = readFileSync(ERROR_DOCS_FILE, "utf8");
    assert.equal(onDisk, renderErrorDocs(), "docs/errors.md is out of date: run `npm run docs:errors`");
  });

  it("gives every code an HTTP error status (400-599) and a CLI exit code (1-125)", () => {
    for (const [code, spec] of Object.entries(catalogue) as [string, ErrorSpec][]) {
      assert.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, `${code}: HTTP status ${spec.status} is not 400-599`);
      assert.ok(Number.isInteger(spec.exit) && spec.exit >= 1 && spec.exit <= 125, `${code}: exit code ${spec.exit} is not 1-125`);
    }
  });

  it("describes every code", () => {
    for (const [code, spec] of Object.entries(catalogue) as [string, ErrorSpec][]) {
      assert.ok(spec.description.trim().length > 0, `${code} has no description`);
    }
  });
});
