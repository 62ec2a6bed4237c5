// Review-app manifests: golden files (manifest + parent → plan, or the error) and the rules that
// matter most, each as its own test.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { QuaiError } from "../core/errors.ts";
import { newSecret, parseManifest, planReviewApp, readManifest, type Manifest, type ManifestFile, type PlanInput, type ReviewAppPlan } from "./manifest.ts";

const testdata = new URL("./testdata/manifests/", import.meta.url).pathname;
const update = process.env.UPDATE_GOLDEN === "1";

/** A golden case: the repository's root files and the parent app; what is left out takes `defaults`. */
interface GoldenInput {
  description: string;
  /** File name → its text, or a JSON value written out with two-space indentation. */
  files: Partial<Record<ManifestFile, unknown>>;
  parent: { vars: Record<string, string>; formation: PlanInput["parentFormation"]; addonVariables: string[]; addons?: { provider: string; plan: string }[] };
  maxSize?: string;
  prNumber?: number;
}

const plans = (id: string) => ["sandbox", "starter-512", "starter-1024", "starter-2048", "starter-4096"].map((s) => `${id}-${s}`);
const providers: PlanInput["providers"] = {
  postgresql: { plans: plans("postgresql"), defaultPlan: "postgresql-sandbox" },
  mysql: { plans: plans("mysql"), defaultPlan: "mysql-sandbox" },
  redis: { plans: plans("redis"), defaultPlan: "redis-sandbox" },
};

/** Planner input with a deterministic `random`: secret-1, secret-2, ... */
function planInput(parent: GoldenInput["parent"], over: Partial<PlanInput> = {}): PlanInput {
  let n = 0;
  return {
    parentVars: parent.vars,
    parentFormation: parent.formation,
    appUrl: "https://shop-pr42.quai.example.fr",
    appName: "shop-pr42",
    maxSize: "M",
    providers,
    addonVariable: (name) => parent.addonVariables.includes(name),
    random: () => `secret-${++n}`,
    parentAddons: parent.addons ?? [],
    ...over,
  };
}

function runCase(input: GoldenInput): ReviewAppPlan | { code: string; error: string[] } {
  const files: Partial<Record<ManifestFile, string>> = {};
  for (const [file, content] of Object.entries(input.files)) files[file as ManifestFile] = typeof content === "string" ? content : JSON.stringify(content, null, 2);
  try {
    const manifest = readManifest(files);
    const over: Partial<PlanInput> = { ...(input.maxSize !== undefined ? { maxSize: input.maxSize } : {}), ...(input.prNumber !== undefined ? { prNumber: input.prNumber } : {}) };
    return planReviewApp(manifest, planInput(input.parent, over));
  } catch (err) {
    if (!(err instanceof QuaiError)) throw err;
    return { code: err.code, error: err.message.split("\n") };
  }
}

const load = (name: string) => JSON.parse(readFileSync(join(testdata, `${name}.input.json`), "utf8")) as GoldenInput;

describe("review-app manifest golden files (UPDATE_GOLDEN=1 rewrites them)", () => {
  const cases = readdirSync(testdata)
    .filter((f) => f.endsWith(".input.json"))
    .map((f) => f.slice(0, -".input.json".length))
    .sort();
  assert.ok(cases.length >= 12);
  for (const name of cases) {
    it(`${name}: ${load(name).description}`, () => {
      const got = JSON.stringify(runCase(load(name)), null, 2) + "\n";
      const file = join(testdata, `${name}.plan.json`);
      if (update) writeFileSync(file, got);
      assert.equal(got, readFileSync(file, "utf8"));
    });
  }
});

// ----- rules ----------------------------------------------------------------------------------------

const parent = {
  vars: { RAILS_ENV: "staging", SECRET_KEY_BASE: "staging-secret", SCALINGO_POSTGRESQL_URL: "postgres://staging-db", DATABASE_URL: "$SCALINGO_POSTGRESQL_URL" },
  formation: [{ name: "web", amount: 2, size: "L" }],
  addonVariables: ["SCALINGO_POSTGRESQL_URL"],
};
const plan = (m: Manifest | undefined, over: Partial<PlanInput> = {}) => planReviewApp(m, planInput(parent, over));
const scalingo = (doc: unknown) => parseManifest(JSON.stringify(doc), "scalingo.json");
const appJson = (doc: unknown) => parseManifest(JSON.stringify(doc), "app.json");
const envOf = (p: ReviewAppPlan) => Object.fromEntries(p.env.map((e) => [e.name, e.value]));

/** Asserts `fn` throws scm_manifest_invalid and returns its lines. */
function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof QuaiError, String(err));
    assert.equal(err.code, "scm_manifest_invalid");
    assert.equal(err.status, 422);
    return err.message.split("\n");
  }
  assert.fail("expected scm_manifest_invalid");
}

describe("planReviewApp: variables", () => {
  it("never copies a variable an add-on of the parent set, listed or not, inherit or not", () => {
    for (const m of [undefined, scalingo({}), scalingo({ env: { SCALINGO_POSTGRESQL_URL: {} } }), scalingo({ env: { SCALINGO_POSTGRESQL_URL: { inherit: true } } })]) {
      const p = plan(m);
      assert.equal(envOf(p).SCALINGO_POSTGRESQL_URL, undefined);
      assert.ok(p.notes.some((n) => n.includes("SCALINGO_POSTGRESQL_URL")), p.notes.join("\n"));
    }
    // The reference to it is copied as stored: it follows the review app's own add-on.
    assert.equal(envOf(plan(undefined)).DATABASE_URL, "$SCALINGO_POSTGRESQL_URL");
  });

  it("uses the manifest's value for an add-on variable when it gives one", () => {
    assert.equal(envOf(plan(scalingo({ env: { SCALINGO_POSTGRESQL_URL: { value: "postgres://fixture" } } }))).SCALINGO_POSTGRESQL_URL, "postgres://fixture");
  });

  it("calls random once per secret, so two secrets differ", () => {
    const p = plan(scalingo({ env: { A: { generator: "secret" }, B: { generator: "secret" } } }));
    assert.deepEqual(
      p.env.filter((e) => e.source === "generated"),
      [{ name: "A", value: "secret-1", source: "generated" }, { name: "B", value: "secret-2", source: "generated" }],
    );
    const real = () => envOf(plan(scalingo({ env: { A: { generator: "secret" } } }), { random: newSecret })).A;
    assert.notEqual(real(), real());
  });

  it("makes secrets of 64 hex digits, fresh on every call", () => {
    const seen = new Set(Array.from({ length: 100 }, () => newSecret()));
    assert.equal(seen.size, 100);
    for (const s of seen) assert.match(s, /^[0-9a-f]{64}$/);
  });

  it("never puts a value in a note or an error", () => {
    const secretParent = { ...parent, vars: { ...parent.vars, API_TOKEN: "tok-4f1c9e", OLD: "old-7d2b" } };
    const m = scalingo({ inherit: false, env: { API_TOKEN: { value: "manifest-9a8b" }, SECRET_KEY_BASE: { generator: "secret" }, OLD: { value: null } } });
    const p = planReviewApp(m, planInput(secretParent));
    for (const value of ["tok-4f1c9e", "old-7d2b", "manifest-9a8b", "secret-1", "staging-secret", "postgres://staging-db"]) {
      assert.ok(!p.notes.some((n) => n.includes(value)), `${value} leaked into ${p.notes.join(" | ")}`);
    }
    const lines = problems(() => planReviewApp(scalingo({ env: { NEEDED: { required: true, description: "a token" } } }), planInput(secretParent)));
    assert.ok(!lines.some((l) => /tok-4f1c9e|staging-secret/.test(l)));
  });

  it("copies unlisted variables unless the top-level inherit is false", () => {
    assert.equal(envOf(plan(scalingo({}))).RAILS_ENV, "staging");
    const p = plan(scalingo({ inherit: false, env: { SECRET_KEY_BASE: {} } }));
    assert.deepEqual(envOf(p), { SECRET_KEY_BASE: "staging-secret" });
  });

  it("reads a required variable from the parent, and names it with its description when nobody has it", () => {
    assert.equal(envOf(plan(scalingo({ env: { SECRET_KEY_BASE: { required: true } } }))).SECRET_KEY_BASE, "staging-secret");
    const lines = problems(() => plan(scalingo({ env: { SMTP_PASSWORD: { required: true, description: "SMTP relay password" } } })));
    assert.deepEqual(lines, ['scalingo.json: env.SMTP_PASSWORD ("SMTP relay password"): required, but the manifest gives no value and the parent app has none']);
  });

  it("makes env entries required by default in app.json (Heroku) and optional in scalingo.json", () => {
    assert.equal(appJson({ env: { X: {} } }).env.X?.required, true);
    assert.equal(scalingo({ env: { X: {} } }).env.X?.required, false);
    problems(() => plan(appJson({ env: { MISSING: { description: "nobody has it" } } })));
    assert.ok(plan(scalingo({ env: { MISSING: {} } })).notes.includes("MISSING not set: the manifest gives no value and the parent app has none"));
  });

  it("reads an empty value as a removal in scalingo.json and as an empty value in app.json", () => {
    assert.equal(envOf(plan(scalingo({ env: { RAILS_ENV: { value: "" } } }))).RAILS_ENV, undefined);
    assert.equal(envOf(plan(scalingo({ env: { RAILS_ENV: "" } }))).RAILS_ENV, undefined);
    assert.equal(envOf(plan(appJson({ env: { RAILS_ENV: "" } }))).RAILS_ENV, "");
    assert.equal(envOf(plan(appJson({ env: { RAILS_ENV: { value: null } } }))).RAILS_ENV, undefined);
  });

  it("fills %URL%, %APP% and %PR_NUMBER%, and refuses %PR_NUMBER% without a pull request", () => {
    const m = scalingo({ env: { A: { generator: "template", template: "%APP% #%PR_NUMBER% at %URL%/x" }, B: { generator: "url" } } });
    assert.deepEqual(envOf(plan(m, { prNumber: 42 })).A, "shop-pr42 #42 at https://shop-pr42.quai.example.fr/x");
    assert.equal(envOf(plan(m, { prNumber: 42 })).B, "https://shop-pr42.quai.example.fr");
    assert.match(problems(() => plan(m)).join("\n"), /env\.A: the template uses %PR_NUMBER%/);
    // "$&" in the URL is copied, not read as a replacement pattern.
    assert.equal(envOf(plan(m, { prNumber: 1, appUrl: "https://a$&b" })).B, "https://a$&b");
  });

  it("accepts a value of exactly 64 KiB and refuses one byte more", () => {
    const big = "é".repeat(32 * 1024);
    assert.equal(envOf(plan(scalingo({ env: { BIG: big } }))).BIG, big);
    assert.match(problems(() => scalingo({ env: { BIG: { value: big + "x" } } }))[0] ?? "", /env\.BIG\.value: value is 65537 bytes; the limit is 65536/);
  });

  it("keeps __proto__ and constructor as plain names, never as object machinery", () => {
    const m = parseManifest('{ "env": { "__proto__": { "value": "p" }, "constructor": { "value": "c" } } }', "scalingo.json");
    assert.deepEqual(Object.keys(m.env).sort(), ["__proto__", "constructor"]);
    const p = plan(m);
    assert.equal(p.env.find((e) => e.name === "__proto__")?.value, "p");
    assert.equal(Object.getPrototypeOf(m.env), Object.prototype);
    const lines = problems(() => plan(scalingo({ addons: ["constructor", "hasownproperty"] })));
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? "", /addons\[0\] \("constructor"\): unknown add-on provider "constructor"/);
    assert.match(lines[1] ?? "", /unknown add-on provider "hasownproperty"/);
  });

  it("notes a copied reference to a variable the review app will not have", () => {
    const p = plan(scalingo({ env: { CACHE_URL: { value: "$REDIS_URL/0" } } }));
    assert.ok(p.notes.includes("CACHE_URL refers to $REDIS_URL, which the review app will not have"));
    assert.ok(p.notes.includes("DATABASE_URL refers to $SCALINGO_POSTGRESQL_URL, set by an add-on: the review app's own add-on must provide it"));
  });
});

describe("planReviewApp: add-ons, formation, scripts", () => {
  it("maps Heroku add-ons to Quai's providers and unknown Heroku plans to the default plan", () => {
    const p = plan(appJson({ addons: ["heroku-postgresql:essential-0", "jawsdb", { plan: "heroku-redis:premium-0" }] }));
    assert.deepEqual(p.addons, [
      { provider: "postgresql", plan: "postgresql-sandbox" },
      { provider: "mysql", plan: "mysql-sandbox" },
      { provider: "redis", plan: "redis-sandbox" },
    ]);
  });

  it("refuses a Quai-named plan that does not exist, but reads a plan without its provider prefix", () => {
    assert.match(problems(() => plan(scalingo({ addons: ["postgresql:postgresql-huge"] })))[0] ?? "", /postgresql has no plan "postgresql-huge"; plans: postgresql-sandbox/);
    assert.deepEqual(plan(scalingo({ addons: ["redis:starter-512"] })).addons, [{ provider: "redis", plan: "redis-starter-512" }]);
  });

  it("refuses two add-ons of one provider, even under different names", () => {
    assert.match(problems(() => scalingo({ addons: ["postgresql", "scalingo-postgresql:postgresql-sandbox"] }))[0] ?? "", /postgresql is listed 2 times/);
  });

  it("caps every size at the review-app limit, the parent's formation included", () => {
    assert.deepEqual(plan(undefined, { maxSize: "S" }).formation, [{ name: "web", amount: 2, size: "S" }]);
    assert.deepEqual(plan(undefined, { maxSize: "2XL" }).formation, [{ name: "web", amount: 2, size: "L" }]);
    assert.deepEqual(plan(scalingo({ formation: { web: { amount: 1, size: "2XL" } } }), { maxSize: "L" }).formation, [{ name: "web", amount: 1, size: "L" }]);
  });

  it("takes the parent's size for a process without one, else M, and defaults the amount to 1", () => {
    assert.deepEqual(plan(scalingo({ formation: { web: {}, worker: { amount: 0 } } }), { maxSize: "2XL" }).formation, [
      { name: "web", amount: 1, size: "L" },
      { name: "worker", amount: 0, size: "M" },
    ]);
  });

  it("maps Heroku dyno sizes by memory", () => {
    const f = plan(appJson({ formation: { a: { size: "eco" }, b: { size: "Standard-2X" }, c: { size: "performance-m" }, d: { size: "L" } } }), { maxSize: "2XL" }).formation;
    assert.deepEqual(f.map((x) => x.size), ["M", "L", "2XL", "L"]);
  });

  it("refuses amounts that are not whole numbers from 0 to 20", () => {
    for (const amount of [-1, 21, 1.5, "2", null]) {
      assert.match(problems(() => scalingo({ formation: { web: { amount } } }))[0] ?? "", /formation\.web\.amount: must be a whole number from 0 to 20/);
    }
  });

  it("gives Heroku's postdeploy first-deploy meaning, and keeps Scalingo's postdeploy", () => {
    assert.deepEqual(plan(appJson({ scripts: { postdeploy: "rake db:seed", "pr-predestroy": "rake cleanup" } })).scripts, { firstDeploy: "rake db:seed", prPredestroy: "rake cleanup" });
    assert.deepEqual(plan(scalingo({ scripts: { "first-deploy": "a", postdeploy: "b", "pr-predestroy": "c" } })).scripts, { firstDeploy: "a", postdeploy: "b", prPredestroy: "c" });
    assert.deepEqual(appJson({ scripts: { postdeploy: { command: "rake db:seed", size: "performance-l" } } }).scripts, { firstDeploy: "rake db:seed" });
    assert.match(problems(() => scalingo({ scripts: { postdeploy: { command: "x" } } }))[0] ?? "", /scripts\.postdeploy: must be a command string, not an object/);
  });

  it("refuses a size limit that is not a container size", () => {
    assert.throws(() => plan(undefined, { maxSize: "XXL" }), (err: unknown) => err instanceof QuaiError && err.code === "config_invalid");
  });

  it("does not change its inputs and gives the same plan twice", () => {
    const m = scalingo({ env: { A: { value: "1" } }, formation: { web: { amount: 1, size: "XL" } } });
    const frozen = JSON.stringify({ m, parent });
    assert.deepEqual(plan(m), plan(m));
    assert.equal(JSON.stringify({ m, parent }), frozen);
  });
});

describe("parseManifest and readManifest", () => {
  it("prefers scalingo.json and does not even read app.json then", () => {
    const m = readManifest({ "app.json": "{ not json", "scalingo.json": '{ "env": { "A": "1" } }' });
    assert.equal(m?.file, "scalingo.json");
    assert.deepEqual(m?.notes, ["app.json ignored: scalingo.json takes precedence"]);
    assert.equal(readManifest({})?.file, undefined);
    assert.equal(readManifest({ "app.json": "{}" })?.file, "app.json");
  });

  it("lists every problem, one per line, each naming where", () => {
    const lines = problems(() =>
      scalingo({ nam: "x", inherit: "yes", env: { "1BAD": "x", FOO: { genrator: "secret", value: 5 } }, formation: { web: { quantity: 1, size: "XXL" } }, scripts: { predeploy: "x" } }),
    );
    assert.deepEqual(lines, [
      'scalingo.json: nam: unknown key (did you mean "name"?); allowed here: $schema, name, description, logo, repository, website, keywords, stack, env, addons, formation, scripts, inherit, ref, copy_parent_database_urls',
      'scalingo.json: inherit: must be true or false, not a string ("yes")',
      "scalingo.json: env.1BAD: invalid variable name: it starts with a digit; names match [A-Za-z_][A-Za-z0-9_]* (at most 255 characters)",
      'scalingo.json: env.FOO.genrator: unknown key (did you mean "generator"?); allowed here: description, value, generator, template, required, inherit',
      'scalingo.json: env.FOO.value: must be a string, not a number (5): write "5"',
      "scalingo.json: formation.web.quantity: unknown key (scalingo.json counts containers with amount); allowed here: amount, size",
      'scalingo.json: formation.web.size: unknown size "XXL"; sizes: S, M, L, XL, 2XL',
      "scalingo.json: scripts.predeploy: unknown key; allowed here: first-deploy, postdeploy, pr-predestroy",
    ]);
  });

  it("locates JSON syntax errors by line and column, and accepts a byte-order mark", () => {
    assert.deepEqual(problems(() => parseManifest('{\n  "env": {\n    "A": "1",\n  }\n}', "app.json")), ['app.json: not valid JSON at line 4, column 3: a comma before "}": JSON allows no trailing comma']);
    assert.deepEqual(problems(() => parseManifest('{ "a": 1 } x', "app.json")), ['app.json: not valid JSON at line 1, column 12: unexpected "x" after the end of the JSON value']);
    assert.deepEqual(problems(() => parseManifest("", "app.json")), ["app.json: not valid JSON at line 1, column 1: expected a value, found the end of the file"]);
    assert.deepEqual(problems(() => parseManifest("[1,]", "app.json")), ['app.json: not valid JSON at line 1, column 4: a comma before "]": JSON allows no trailing comma']);
    assert.deepEqual(problems(() => parseManifest("{'a': 1}", "app.json")), ['app.json: not valid JSON at line 1, column 2: expected a property name in double quotes, found "\'"']);
    assert.equal(parseManifest("\uFEFF{}", "app.json").file, "app.json");
  });

  it("accepts exactly what JSON.parse accepts", () => {
    for (const text of ['{"a":"\\u00e9\\n\\/"}', "[-0.5e+3, 0, true, false, null]", ' \t\r\n{"x": [ [] , {} ]} ']) {
      const parsed = (() => {
        try {
          parseManifest(text, "app.json");
          return "ok";
        } catch (err) {
          return (err as Error).message;
        }
      })();
      // Arrays and scalars are valid JSON but not manifests: the error must be about the shape, not the syntax.
      assert.doesNotMatch(parsed, /not valid JSON/, text);
    }
    for (const text of ["{", '{"a" 1}', '{"a":01}', '"\\x"', '"a\tb"', "tru", "{} {}", "[1 2]"]) {
      assert.throws(() => JSON.parse(text));
      assert.match(problems(() => parseManifest(text, "app.json"))[0] ?? "", /not valid JSON at line \d+, column \d+/, text);
    }
  });

  it("agrees with JSON.parse on thousands of damaged manifests", () => {
    const valid = JSON.stringify(load("scalingo-full").files["scalingo.json"], null, 2);
    let seed = 7;
    const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const alphabet = '{}[]",:0-.eE\\ utn\n\t\u0001';
    for (let k = 0; k < 3000; k++) {
      let text = valid;
      for (let edits = 1 + rand(3); edits > 0; edits--) {
        const at = rand(text.length + 1);
        text = rand(2) === 0 ? text.slice(0, at) + text.slice(at + 1) : text.slice(0, at) + alphabet[rand(alphabet.length)] + text.slice(at);
      }
      let parses = true;
      try {
        JSON.parse(text);
      } catch {
        parses = false;
      }
      let syntaxError = false;
      try {
        parseManifest(text, "scalingo.json");
      } catch (err) {
        syntaxError = err instanceof QuaiError && /not valid JSON at line \d+, column \d+|given twice/.test(err.message);
        if (/given twice/.test((err as Error).message)) continue;
      }
      assert.equal(syntaxError, !parses, JSON.stringify(text));
    }
  });

  it("reports keys given twice instead of keeping the last silently", () => {
    assert.deepEqual(problems(() => parseManifest('{ "env": { "A": "1", "A": "2" } }', "scalingo.json")), ["scalingo.json: env.A: given twice (JSON keeps only the last one)"]);
  });

  it("survives deep nesting and refuses it", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    assert.match(problems(() => parseManifest(deep, "app.json"))[0] ?? "", /nested more than 64 levels deep/);
  });

  it("merges environments.review over the base of app.json and ignores other environments", () => {
    const m = appJson({
      env: { A: "base", B: "base" },
      addons: ["heroku-redis"],
      formation: { web: { quantity: 1 }, worker: { quantity: 1 } },
      scripts: { postdeploy: "base", "pr-predestroy": "base" },
      environments: { review: { env: { B: "review" }, addons: [], formation: [{ type: "worker", quantity: 0 }], scripts: { postdeploy: "review" } }, test: { scripts: { test: "rake" } } },
    });
    assert.deepEqual(Object.fromEntries(Object.entries(m.env).map(([k, v]) => [k, v.value])), { A: "base", B: "review" });
    assert.deepEqual(m.addons, []);
    assert.deepEqual(m.formation, { web: { amount: 1, size: undefined }, worker: { amount: 0, size: undefined } });
    assert.deepEqual(m.scripts, { firstDeploy: "review", prPredestroy: "base" });
    assert.ok(m.notes?.includes("environments.test ignored: a review app follows environments.review"));
  });

  it("refuses copy_parent_database_urls: true and Heroku's attachment names", () => {
    assert.match(problems(() => scalingo({ copy_parent_database_urls: true }))[0] ?? "", /never gives a review app its parent's databases/);
    assert.equal(scalingo({ copy_parent_database_urls: "false" }).file, "scalingo.json");
    assert.match(problems(() => appJson({ addons: [{ plan: "heroku-postgresql", as: "MAIN_DB" }] }))[0] ?? "", /addons\[0\]\.as: unknown key \(Heroku's attachment names are not supported/);
  });

  it("refuses a manifest that is not an object", () => {
    assert.deepEqual(problems(() => parseManifest("[]", "scalingo.json")), ["scalingo.json: must be a JSON object { ... }, not an array"]);
  });
});
