import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseProcfile, parseReleaseYaml, runnableTypes } from "./procfile.ts";
import { QuaiError } from "../core/errors.ts";

describe("parseProcfile", () => {
  it("reads types, commands with colons, comments and blank lines", () => {
    const types = parseProcfile("# app\nweb: node server.js --bind 127.0.0.1:$PORT\n\nworker:bin/work\r\npostdeploy: php bin/console doctrine:migrations:migrate -n\n");
    assert.deepEqual(types, {
      web: "node server.js --bind 127.0.0.1:$PORT",
      worker: "bin/work",
      postdeploy: "php bin/console doctrine:migrations:migrate -n",
    });
    assert.deepEqual(runnableTypes(types), ["web", "worker"]);
  });

  it("refuses an empty command, naming the line and type", () => {
    assert.throws(() => parseProcfile("web: npm start\nworker:   \n"), (e: unknown) => e instanceof QuaiError && e.code === "procfile_invalid" && /line 2.*"worker".*empty command/.test(e.message));
  });

  it("refuses a line without a colon and a bad type name", () => {
    assert.throws(() => parseProcfile("just a command\n"), /line 1 is not "type: command"/);
    assert.throws(() => parseProcfile("we$b: x\n"), /process type "we\$b"/);
    assert.throws(() => parseProcfile("web: a\nweb: b\n"), /defined twice/);
  });

  it("takes type names that objects have as properties, once each, and refuses __proto__", () => {
    assert.deepEqual(Object.entries(parseProcfile("web: a\nconstructor: b\ntoString: c\n")), [["web", "a"], ["constructor", "b"], ["toString", "c"]]);
    assert.throws(() => parseProcfile("constructor: a\nconstructor: b\n"), /line 2: process type "constructor" is defined twice/);
    assert.throws(() => parseProcfile("web: a\n__proto__: b\n"), /line 2: "__proto__" cannot name a process type/);
  });

  it("refuses the type one-off, which `quai run` containers have", () => {
    assert.throws(() => parseProcfile("web: a\none-off: b\n"), /line 2: process type "one-off" is the name of the containers `quai run` starts/);
  });
});

describe("parseReleaseYaml", () => {
  it("reads default_process_types as buildpacks print them", () => {
    const yaml = "---\naddons: []\ndefault_process_types:\n  web: npm start\n  worker: \"node worker.js\"\nconfig_vars:\n  A: b\n";
    assert.deepEqual(parseReleaseYaml(yaml), { web: "npm start", worker: "node worker.js" });
    assert.deepEqual(parseReleaseYaml("---\ndefault_process_types: {}\n"), {});
    assert.deepEqual(parseReleaseYaml(""), {});
  });
});
