// Review-app manifests: reads a repository's `scalingo.json` (Scalingo's format) or `app.json`
// (Heroku's), and plans what a review app gets from it and from its parent app. Pure functions:
// no I/O, no clock; the only randomness is the `random` the caller passes.
//
// QUAI'S RULES FOR REVIEW-APP MANIFESTS
//
// Which file. `scalingo.json` at the repository root, else `app.json`; when both exist,
// scalingo.json wins and app.json is not even read (Scalingo's rule). No file: see "No manifest".
//
// Validation. A manifest is accepted whole or refused whole: `parseManifest` collects every
// problem (one per line, each naming where: `env.FOO.genrator`, `addons[2].plan`) and throws
// `scm_manifest_invalid`, never a partial manifest, so a pull request gets one complete report
// instead of one fix per push. Unknown keys are errors, not ignored: a misspelt `generator`
// that silently copied the parent's production secret is the failure this guards against.
// Duplicate JSON keys are errors too (JSON.parse would keep the last one without a word).
//   - scalingo.json top level: $schema, name, description, logo, repository, ref, website,
//     keywords, stack, copy_parent_database_urls, env, addons, formation, scripts (Scalingo's
//     schema), plus Quai's `inherit`.
//   - app.json top level: $schema, name, description, keywords, website, repository, logo,
//     success_url, scripts, env, formation, image, addons, buildpacks, environments, stack
//     (Heroku's schema), plus Quai's `inherit`. `environments.review` (env, addons, formation,
//     scripts, and the ignored buildpacks/stack/image) is merged over the base: env and
//     formation per name, scripts per script, addons replaced as a list. Other environments
//     (test, ...) are ignored.
//   - name, description, logo, ...: strings (keywords: strings) that a review app does not use.
//     stack, ref, buildpacks and image are checked and ignored with a note: a review app builds
//     the pull request's code like its parent does.
//   - `copy_parent_database_urls: true` is refused: Quai never points a review app at its
//     parent's databases (a migration in a pull request would run against staging's data).
//
// Environment (`env`). Names match [A-Za-z_][A-Za-z0-9_]*, at most 255 characters; values,
// templates and scripts are at most 64 KiB. An entry is an object with description, value,
// generator, template, required and Quai's `inherit`; a bare string is Heroku's shorthand for
// `{ "value": ... }` (accepted in both files).
//   - `value` is a string (5 is refused: write "5"). `null` removes the variable (nothing is
//     copied from the parent), as Scalingo documents; so does "" in scalingo.json, while in
//     app.json "" is an empty value, as on Heroku.
//   - `generator`: "secret" (a fresh random value: 32 random bytes as 64 hex digits), "url" (the
//     review app's URL, or `template` with %URL% replaced), "template" (needs `template`).
//     Templates know %URL%, %APP% (the review app's name) and %PR_NUMBER%, Scalingo's
//     placeholders; any other %UPPERCASE% placeholder is refused as a probable typo. value and
//     generator are exclusive.
//   - no value and no generator: copied from the parent unless `inherit: false`.
//   - `required` is a boolean; it defaults to false in scalingo.json and to true in app.json
//     (Heroku's default since 2014, where such variables come from the pipeline: here, from the
//     parent). A required variable with no value anywhere fails the plan, naming it and its
//     description.
//
// Copying by default. Variables not in the manifest are copied from the parent unless the
// top-level `"inherit": false`. Teams coming from Scalingo expect a review app to behave like
// its parent (usually staging) without listing every variable, and a review app that boots
// without half its configuration is worse than useless. The variables a review app must not
// have are removed by name (`"FOO": { "value": null }` or `{ "inherit": false }`), or all at
// once with the top-level `"inherit": false`; pull requests from forks are refused upstream
// (`review_app_forbidden`), so a stranger's code never sees the copied values.
// Never copied, unless the manifest gives a value or a generator: variables an add-on of the
// parent set (its database URLs); the review app gets its own add-ons, so such a variable marked
// required is satisfied when the manifest provisions add-ons, and fails otherwise. Values
// copied are the parent's as stored, so `DATABASE_URL=$SCALINGO_POSTGRESQL_URL` follows the
// review app's own add-on.
//
// Add-ons. What the manifest lists is provisioned, each a fresh, empty instance; a manifest
// without an `addons` key (or no manifest) gets fresh add-ons of the parent's providers and plans,
// as on Scalingo; `"addons": []` gets none. Entries: "postgresql", "scalingo-postgresql",
// "postgresql:postgresql-starter-512", or `{ "plan": "...", "options": { "version": "..." } }`
// (version is noted and ignored: Quai runs one version of each engine). Heroku names map to
// Quai's providers: heroku-postgresql → postgresql; jawsdb, jawsdb-maria, cleardb → mysql;
// heroku-redis, rediscloud, redistogo, openredis → redis. A plan under a Heroku name that is not
// a Quai plan becomes the provider's default plan, with a note; a plan under a Quai name must
// exist ("postgresql:sandbox" is read as postgresql-sandbox). Unknown providers and plans fail
// the plan. Heroku's `as` (attachment name) is refused: variables keep their names; point your
// own name at them with a reference. One add-on per provider.
//
// Formation. scalingo.json: `{ "web": { "amount": 1, "size": "S" } }`; app.json:
// `{ "web": { "quantity": 1, "size": "standard-1x" } }` (or Heroku's list form `[{ "type":
// "web", "quantity": 1 }]`). Amounts are whole numbers 0..20 (default 1). Sizes are S, M, L, XL,
// 2XL; app.json may also use Heroku dyno sizes, mapped by memory to the smallest Quai size that
// holds the dyno's RAM (eco/basic/standard-1x 512 MB → M, standard-2x 1 GB → L, performance-m
// 2.5 GB → 2XL, larger → 2XL): the process was sized for that memory, and a smaller container
// would kill it. A process without a size takes the parent's size, else M. The manifest's
// formation replaces the parent's (types it does not list are not started, with a note); without
// one the parent's formation is used. Every size is then capped at the review-app limit
// (`maxSize`), with a note.
//
// Scripts. scalingo.json: "first-deploy" (once, after the first deploy), "postdeploy" (after every
// later deploy, Scalingo's meaning), "pr-predestroy" (before the review app is deleted).
// app.json: "postdeploy" runs once after the first deploy, because that is what it means on
// Heroku Review Apps (to run after every deploy, use a Procfile `postdeploy:` line), and
// "pr-predestroy". Scripts are non-empty strings; app.json also accepts `{ "command", "size" }`
// (the size is ignored with a note: scripts run in a one-off container of the review app's size).
//
// No manifest. Every parent variable except add-on ones, the parent's formation (capped), no
// add-ons, no scripts.
//
// Plans explain themselves in `notes`, which name variables but never carry their values.
import { randomBytes } from "node:crypto";
import { QuaiError } from "../core/errors.ts";
import { containerSizes, type ContainerSize } from "../runtime/types.ts";
import { referencesOf } from "../variables/references.ts";

/** The two manifest files, in order of precedence. */
export type ManifestFile = "scalingo.json" | "app.json";

/** The manifest files a review app looks for, the one that wins first. */
export const manifestFiles: readonly ManifestFile[] = ["scalingo.json", "app.json"];

/** How a variable's value is made when the manifest does not give it. */
export type EnvGenerator = "secret" | "url" | "template";

/** The generators Quai knows, in the order error messages list them. */
export const envGenerators: readonly EnvGenerator[] = ["secret", "url", "template"];

/** One `env` entry, normalised: defaults applied, a removal read as `inherit: false`. */
export interface ManifestEnv {
  value?: string;
  generator?: EnvGenerator;
  template?: string;
  description?: string;
  required: boolean;
  /** Copy the parent's value when the manifest gives none (false also for `value: null`). */
  inherit: boolean;
}

/** One add-on to provision, with the provider already mapped to Quai's (heroku-postgresql → postgresql). */
export interface ManifestAddon {
  provider: string;
  plan: string | undefined;
  /** `options.version`, kept only to say it is ignored. */
  version?: string;
  /** True when written with a Heroku provider name: a plan Quai lacks becomes the default plan. */
  foreign?: boolean;
  /** The entry as written ("heroku-postgresql:essential-0"), for notes and errors. */
  source?: string;
}

/** One process type of the manifest's formation. */
export interface ManifestProcess {
  amount: number;
  /** A Quai size (S..2XL); undefined takes the parent's. */
  size: string | undefined;
  /** The Heroku dyno size `size` was mapped from, for the plan's notes. */
  sizeFrom?: string;
}

/** Scripts, named by when they run rather than by each format's key. */
export interface ManifestScripts {
  firstDeploy?: string;
  postdeploy?: string;
  prPredestroy?: string;
}

/** A parsed, valid manifest. */
export interface Manifest {
  file: ManifestFile;
  env: Record<string, ManifestEnv>;
  /** Top-level `inherit` (default true): copy the parent's variables the manifest does not list. */
  inheritUnlisted: boolean;
  addons: ManifestAddon[];
  /** False when the manifest has no `addons` key: the review app gets fresh add-ons like the parent's. */
  addonsListed?: boolean;
  /** Undefined when the manifest has no formation: the parent's is used. */
  formation: Record<string, ManifestProcess> | undefined;
  scripts: ManifestScripts;
  /** What parsing decided on the reader's behalf (keys ignored, Heroku meanings); carried into the plan. */
  notes?: string[];
}

/** What a review app is created with. */
export interface ReviewAppPlan {
  /** Sorted by name. */
  env: { name: string; value: string; source: "manifest" | "generated" | "parent" }[];
  addons: { provider: string; plan: string }[];
  /** Sorted by name. */
  formation: { name: string; amount: number; size: string }[];
  scripts: ManifestScripts;
  /** Human lines explaining choices ("SECRET_KEY_BASE generated (secret)"); never values. */
  notes: string[];
}

/** What the planner needs to know about the parent app and the platform. */
export interface PlanInput {
  /** The parent's variables as stored (references like $SCALINGO_POSTGRESQL_URL unresolved). */
  parentVars: Record<string, string>;
  parentFormation: { name: string; amount: number; size: string }[];
  /** The review app's URL, for generator "url" and %URL%. */
  appUrl: string;
  /** The review app's name, for %APP%. */
  appName: string;
  /** The pull request's number, for %PR_NUMBER% (a template using it fails without it). */
  prNumber?: number;
  /** The review-app size cap: S, M, L, XL or 2XL. */
  maxSize: string;
  /** The add-on providers Quai offers, by id: their plans and default plan. */
  providers: Record<string, { plans: string[]; defaultPlan: string }>;
  /** True for variables an add-on of the parent set: never copied, the review app gets its own. */
  addonVariable: (name: string) => boolean;
  /** A fresh secret for generator "secret" (`newSecret` in production, deterministic in tests). */
  random: () => string;
  /** The parent's add-ons: a review app whose manifest lists none gets fresh ones of these plans. */
  parentAddons?: { provider: string; plan: string }[];
}

/** A fresh secret for generator "secret": 32 random bytes as 64 hex digits, like Heroku's. */
export function newSecret(): string {
  return randomBytes(32).toString("hex");
}

/**
 * Picks the manifest a review app follows among the repository's root files (scalingo.json wins
 * over app.json, which is then not read) and parses it. Undefined when there is neither.
 */
export function readManifest(files: Partial<Record<ManifestFile, string>>): Manifest | undefined {
  const file = manifestFiles.find((f) => files[f] !== undefined);
  if (file === undefined) return undefined;
  const manifest = parseManifest(files[file] as string, file);
  const ignored = manifestFiles.filter((f) => f !== file && files[f] !== undefined);
  for (const other of ignored) manifest.notes = [...(manifest.notes ?? []), `${other} ignored: ${file} takes precedence`];
  return manifest;
}

// ----- limits and vocabularies ------------------------------------------------------------------

const MAX_TEXT_BYTES = 1024 * 1024;
const MAX_DEPTH = 64;
const MAX_VALUE_BYTES = 64 * 1024;
const MAX_NAME = 255;
const MAX_AMOUNT = 20;
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PROCESS_TYPE = /^[A-Za-z0-9_-]{1,63}$/;
const PLACEHOLDERS = ["URL", "APP", "PR_NUMBER"] as const;
const PLACEHOLDER = /%([A-Z][A-Z0-9_]*)%/g;

const SIZES = Object.keys(containerSizes) as ContainerSize[];

const COMMON_KEYS = ["$schema", "name", "description", "logo", "repository", "website", "keywords", "stack", "env", "addons", "formation", "scripts", "inherit"];
const TOP_KEYS: Record<ManifestFile, readonly string[]> = {
  "scalingo.json": [...COMMON_KEYS, "ref", "copy_parent_database_urls"],
  "app.json": [...COMMON_KEYS, "success_url", "image", "buildpacks", "environments"],
};
const REVIEW_KEYS = ["env", "addons", "formation", "scripts", "buildpacks", "stack", "image"];
const ENV_KEYS = ["description", "value", "generator", "template", "required", "inherit"];
/** Keys a review app does not use but that change how an app is built: said to be ignored. */
const IGNORED_BUILD_KEYS: Record<string, string> = {
  stack: "stack ignored: a review app builds on its parent's stack",
  ref: "ref ignored: a review app deploys the pull request's commit",
  buildpacks: "buildpacks ignored: a review app builds like its parent (set BUILDPACK_URL to choose)",
  image: "image ignored: a review app builds like its parent",
};

/** Provider names a manifest may use → Quai's provider; `foreign` for Heroku's names. */
const PROVIDER_ALIASES = new Map<string, { provider: string; foreign: boolean }>([
  ["postgresql", { provider: "postgresql", foreign: false }],
  ["scalingo-postgresql", { provider: "postgresql", foreign: false }],
  ["heroku-postgresql", { provider: "postgresql", foreign: true }],
  ["mysql", { provider: "mysql", foreign: false }],
  ["scalingo-mysql", { provider: "mysql", foreign: false }],
  ["jawsdb", { provider: "mysql", foreign: true }],
  ["jawsdb-maria", { provider: "mysql", foreign: true }],
  ["cleardb", { provider: "mysql", foreign: true }],
  ["redis", { provider: "redis", foreign: false }],
  ["scalingo-redis", { provider: "redis", foreign: false }],
  ["heroku-redis", { provider: "redis", foreign: true }],
  ["rediscloud", { provider: "redis", foreign: true }],
  ["redistogo", { provider: "redis", foreign: true }],
  ["openredis", { provider: "redis", foreign: true }],
]);

/** Heroku dyno sizes and their memory (MB), mapped to the smallest Quai size holding it. */
const HEROKU_DYNO_MB = new Map<string, number>([
  ["free", 512], ["hobby", 512], ["eco", 512], ["basic", 512], ["standard-1x", 512], ["standard-2x", 1024],
  ["performance-m", 2560], ["performance-l", 14336], ["performance-l-ram", 30720], ["performance-xl", 63488], ["performance-2xl", 129024],
  ["private-s", 1024], ["private-m", 2560], ["private-l", 14336], ["shield-s", 1024], ["shield-m", 2560], ["shield-l", 14336],
]);

function sizeForMemory(mb: number): ContainerSize {
  return SIZES.find((s) => containerSizes[s].memoryMb >= mb) ?? (SIZES[SIZES.length - 1] as ContainerSize);
}

// ----- small helpers ------------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);
const bytes = (s: string) => Buffer.byteLength(s, "utf8");

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)})`;
  return `${typeof v === "number" ? "a number" : "a boolean"} (${String(v)})`;
}

/** `path` extended by a key or index, the way problems name places: env.FOO, addons[2], env["MY VAR"]. */
function at(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  const part = /^[A-Za-z0-9_$-]+$/.test(key) ? key : JSON.stringify(key);
  if (path === "") return part.startsWith('"') ? `[${part}]` : part;
  return part.startsWith('"') ? `${path}[${part}]` : `${path}.${part}`;
}

/** Edit distance counting a swap of neighbours as one edit ("nmae" → "name"), to suggest the key a typo meant. */
function distance(a: string, b: string): number {
  const width = b.length + 1;
  const d = new Array<number>((a.length + 1) * width).fill(0);
  const get = (i: number, j: number) => d[i * width + j] as number;
  for (let i = 0; i <= a.length; i++) {
    for (let j = 0; j <= b.length; j++) {
      let best = i === 0 || j === 0 ? i + j : Math.min(get(i - 1, j) + 1, get(i, j - 1) + 1, get(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, get(i - 2, j - 2) + 1);
      d[i * width + j] = best;
    }
  }
  return get(a.length, b.length);
}

function didYouMean(word: string, options: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const option of options) {
    const d = distance(word.toLowerCase(), option.toLowerCase());
    if (d < bestDistance && d < option.length / 2) {
      best = option;
      bestDistance = d;
    }
  }
  return best === undefined ? "" : ` (did you mean "${best}"?)`;
}

/** Where parsing collects problems, in document order. */
class Problems {
  readonly lines: string[] = [];
  add(path: string, message: string): void {
    this.lines.push(path === "" ? message : `${path}: ${message}`);
  }
}

function invalid(file: string, problems: string[]): QuaiError {
  const message = problems.map((p) => `${file}: ${p}`).join("\n");
  return new QuaiError("scm_manifest_invalid", message, { file, problems });
}

function checkKeys(obj: JsonObject, path: string, known: readonly string[], p: Problems, hints: Record<string, string> = {}): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const hint = Object.hasOwn(hints, key) ? ` (${hints[key]})` : didYouMean(key, known);
    p.add(at(path, key), `unknown key${hint}; allowed here: ${known.join(", ")}`);
  }
}

function optionalString(obj: JsonObject, key: string, path: string, p: Problems): string | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string") {
    p.add(at(path, key), `must be a string, not ${kind(v)}`);
    return undefined;
  }
  return v;
}

function optionalBoolean(obj: JsonObject, key: string, path: string, p: Problems): boolean | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") {
    p.add(at(path, key), `must be true or false, not ${kind(v)}`);
    return undefined;
  }
  return v;
}

function checkLength(text: string, path: string, what: string, p: Problems): boolean {
  const n = bytes(text);
  if (n <= MAX_VALUE_BYTES) return true;
  p.add(path, `${what} is ${n} bytes; the limit is ${MAX_VALUE_BYTES} (64 KiB)`);
  return false;
}

// ----- JSON syntax, with positions and duplicate keys ---------------------------------------------

class JsonSyntax extends Error {
  readonly at: number;
  constructor(at: number, reason: string) {
    super(reason);
    this.at = at;
  }
}

/**
 * Walks the JSON grammar to report the first syntax error with its position in words that do
 * not change with the Node.js version (V8's messages do), and every key given twice in one
 * object. JSON.parse still builds the value: this only explains.
 */
function scanJson(text: string): { error: JsonSyntax | undefined; duplicates: string[] } {
  let i = 0;
  const duplicates: string[] = [];
  const found = () => (i >= text.length ? "the end of the file" : JSON.stringify(text[i]));
  const fail = (reason: string, where = i): never => {
    throw new JsonSyntax(where, reason);
  };
  const space = () => {
    while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  };
  const string = (): string => {
    const start = i++;
    let out = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) fail("a string is not closed (missing \")", start);
      if (c === '"') {
        i++;
        return out;
      }
      if (c === "\\") {
        const e = text[i + 1];
        const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e !== undefined && Object.hasOwn(simple, e)) {
          out += simple[e] as string;
          i += 2;
        } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else {
          fail(`invalid escape ${JSON.stringify(text.slice(i, i + 2))} in a string`);
        }
        continue;
      }
      if ((c as string) < " ") fail("a control character (such as a line break) inside a string: write it as \\n, \\t, ...");
      out += c;
      i++;
    }
  };
  const value = (path: string, depth: number): void => {
    if (depth > MAX_DEPTH) fail(`nested more than ${MAX_DEPTH} levels deep`);
    space();
    const c = text[i];
    if (c === "{") return object(path, depth);
    if (c === "[") return array(path, depth);
    if (c === '"') {
      string();
      return;
    }
    const number = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    number.lastIndex = i;
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) {
      if (!number.test(text)) fail(`invalid number starting at ${found()}`);
      i = number.lastIndex;
      return;
    }
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    fail(c === "'" ? "strings take double quotes, not single quotes" : `expected a value, found ${found()}`);
  };
  const object = (path: string, depth: number): void => {
    i++;
    space();
    if (text[i] === "}") {
      i++;
      return;
    }
    const seen = new Set<string>();
    for (;;) {
      space();
      if (text[i] === "}") fail('a comma before "}": JSON allows no trailing comma');
      if (text[i] !== '"') fail(`expected a property name in double quotes, found ${found()}`);
      const key = string();
      if (seen.has(key)) duplicates.push(at(path, key));
      seen.add(key);
      space();
      if (text[i] !== ":") fail(`expected ":" after the property name, found ${found()}`);
      i++;
      value(at(path, key), depth + 1);
      space();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return;
      }
      fail(`expected "," or "}" after a property, found ${found()}`);
    }
  };
  const array = (path: string, depth: number): void => {
    i++;
    space();
    if (text[i] === "]") {
      i++;
      return;
    }
    for (let n = 0; ; n++) {
      value(at(path, n), depth + 1);
      space();
      if (text[i] === ",") {
        i++;
        space();
        if (text[i] === "]") fail('a comma before "]": JSON allows no trailing comma');
        continue;
      }
      if (text[i] === "]") {
        i++;
        return;
      }
      fail(`expected "," or "]" after an element, found ${found()}`);
    }
  };
  try {
    value("", 0);
    space();
    if (i < text.length) fail(`unexpected ${found()} after the end of the JSON value`);
    return { error: undefined, duplicates };
  } catch (err) {
    if (err instanceof JsonSyntax) return { error: err, duplicates };
    throw err;
  }
}

function lineAndColumn(text: string, index: number): string {
  const before = text.slice(0, index);
  const line = before.split("\n").length;
  const column = index - before.lastIndexOf("\n");
  return `line ${line}, column ${column}`;
}

function parseJson(text: string, file: ManifestFile): unknown {
  if (bytes(text) > MAX_TEXT_BYTES) throw invalid(file, [`is ${bytes(text)} bytes; a manifest is at most ${MAX_TEXT_BYTES} (1 MiB)`]);
  // Editors on Windows save a byte-order mark; JSON.parse refuses it, and so would nobody else.
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const { error, duplicates } = scanJson(body);
  if (error) throw invalid(file, [`not valid JSON at ${lineAndColumn(body, error.at)}: ${error.message}`]);
  if (duplicates.length > 0) throw invalid(file, duplicates.map((d) => `${d}: given twice (JSON keeps only the last one)`));
  try {
    return JSON.parse(body);
  } catch (err) {
    // The scanner accepts exactly JSON; this is a second line of defence, not an expected path.
    throw invalid(file, [`not valid JSON: ${(err as Error).message}`]);
  }
}

// ----- parsing the sections -----------------------------------------------------------------------

/** One level of a manifest (the base, or app.json's environments.review); undefined = key absent. */
interface Sections {
  env: Map<string, ManifestEnv> | undefined;
  addons: ManifestAddon[] | undefined;
  formation: Map<string, ManifestProcess> | undefined;
  scripts: ManifestScripts | undefined;
}

interface Context {
  file: ManifestFile;
  p: Problems;
  notes: string[];
}

function note(ctx: Context, line: string): void {
  if (!ctx.notes.includes(line)) ctx.notes.push(line);
}

function parseSections(obj: JsonObject, path: string, allowed: readonly string[], ctx: Context): Sections {
  for (const key of Object.keys(IGNORED_BUILD_KEYS)) {
    // Keys not allowed at this level are already reported as unknown.
    if (obj[key] === undefined || !allowed.includes(key)) continue;
    if (key === "buildpacks") checkBuildpacks(obj[key], at(path, key), ctx.p);
    else optionalString(obj, key, path, ctx.p);
    note(ctx, IGNORED_BUILD_KEYS[key] as string);
  }
  return {
    env: obj.env === undefined ? undefined : parseEnv(obj.env, at(path, "env"), ctx),
    addons: obj.addons === undefined ? undefined : parseAddons(obj.addons, at(path, "addons"), ctx),
    formation: obj.formation === undefined ? undefined : parseFormation(obj.formation, at(path, "formation"), ctx),
    scripts: obj.scripts === undefined ? undefined : parseScripts(obj.scripts, at(path, "scripts"), ctx),
  };
}

function checkBuildpacks(v: unknown, path: string, p: Problems): void {
  if (!Array.isArray(v)) {
    p.add(path, `must be an array of { "url": "..." }, not ${kind(v)}`);
    return;
  }
  v.forEach((item, n) => {
    if (!isObject(item)) return p.add(at(path, n), `must be an object { "url": "..." }, not ${kind(item)}`);
    checkKeys(item, at(path, n), ["url"], p);
    if (typeof item.url !== "string") p.add(at(at(path, n), "url"), `must be a string, not ${kind(item.url)}`);
  });
}

function checkTemplate(template: string, path: string, p: Problems): void {
  if (!checkLength(template, path, "template", p)) return;
  for (const m of template.matchAll(PLACEHOLDER)) {
    const name = m[1] as string;
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
      p.add(path, `unknown placeholder %${name}%${didYouMean(name, PLACEHOLDERS)}; known: ${PLACEHOLDERS.map((x) => `%${x}%`).join(", ")}`);
    }
  }
}

function parseEnv(raw: unknown, path: string, ctx: Context): Map<string, ManifestEnv> {
  const out = new Map<string, ManifestEnv>();
  if (!isObject(raw)) {
    ctx.p.add(path, `must be an object of variables, not ${kind(raw)}`);
    return out;
  }
  for (const [name, spec] of Object.entries(raw)) {
    const here = at(path, name);
    let nameOk = true;
    if (!VAR_NAME.test(name) || name.length > MAX_NAME) {
      nameOk = false;
      const why = name === "" ? "it is empty" : name.length > MAX_NAME ? `it is ${name.length} characters long` : /^[0-9]/.test(name) ? "it starts with a digit" : "it has characters outside A-Z, a-z, 0-9 and _";
      ctx.p.add(here, `invalid variable name: ${why}; names match [A-Za-z_][A-Za-z0-9_]* (at most ${MAX_NAME} characters)`);
    }
    const entry = parseEnvEntry(spec, here, ctx);
    if (entry && nameOk) out.set(name, entry);
  }
  return out;
}

function parseEnvEntry(spec: unknown, here: string, ctx: Context): ManifestEnv | undefined {
  const { p, file } = ctx;
  const requiredByDefault = file === "app.json";
  if (typeof spec === "string") {
    if (spec === "" && file === "scalingo.json") return { required: false, inherit: false };
    return checkLength(spec, here, "value", p) ? { value: spec, required: requiredByDefault, inherit: true } : undefined;
  }
  if (!isObject(spec)) {
    p.add(here, `must be an object such as { "value": "..." } or a string, not ${kind(spec)}`);
    return undefined;
  }
  const before = p.lines.length;
  checkKeys(spec, here, ENV_KEYS, p);
  const description = optionalString(spec, "description", here, p);
  const required = optionalBoolean(spec, "required", here, p);
  const inherit = optionalBoolean(spec, "inherit", here, p);

  let value: string | undefined;
  let removed = false;
  if (spec.value === null || (spec.value === "" && file === "scalingo.json")) removed = true;
  else if (spec.value !== undefined) {
    if (typeof spec.value !== "string") p.add(at(here, "value"), `must be a string, not ${kind(spec.value)}${typeof spec.value === "number" || typeof spec.value === "boolean" ? `: write "${String(spec.value)}"` : ""}`);
    else if (checkLength(spec.value, at(here, "value"), "value", p)) value = spec.value;
  }

  let generator: EnvGenerator | undefined;
  if (spec.generator !== undefined) {
    const g = spec.generator;
    if (typeof g === "string" && (envGenerators as readonly string[]).includes(g)) generator = g as EnvGenerator;
    else {
      const what = typeof g === "string" ? `unknown generator ${JSON.stringify(g)}${didYouMean(g, envGenerators)}` : `must be a string, not ${kind(g)}`;
      p.add(at(here, "generator"), `${what}; known generators: ${envGenerators.join(", ")} (template needs a "template" with %URL%, %APP% or %PR_NUMBER%)`);
    }
  }
  const template = optionalString(spec, "template", here, p);
  if (template !== undefined) checkTemplate(template, at(here, "template"), p);

  if (spec.value !== undefined && spec.generator !== undefined) p.add(here, "value and generator are exclusive: give one");
  if (generator === "template" && template === undefined) p.add(here, 'generator "template" needs a "template" string, e.g. "%URL%/api"');
  if (template !== undefined && (spec.generator === undefined || generator === "secret")) p.add(at(here, "template"), 'applies only with generator "url" or "template"');
  if (removed && required === true) p.add(here, "required, but its value is empty, which removes the variable");
  if (removed && inherit === true) p.add(here, "inherit is true, but its value is empty, which removes the variable");
  if (inherit === false && ((spec.value !== undefined && !removed) || spec.generator !== undefined)) p.add(at(here, "inherit"), "applies only to variables copied from the parent (no value, no generator)");
  if (p.lines.length > before) return undefined;

  if (removed) return { ...(description !== undefined ? { description } : {}), required: false, inherit: false };
  return {
    ...(value !== undefined ? { value } : {}),
    ...(generator !== undefined ? { generator } : {}),
    ...(template !== undefined ? { template } : {}),
    ...(description !== undefined ? { description } : {}),
    required: required ?? requiredByDefault,
    inherit: inherit ?? true,
  };
}

function parseAddonRef(text: string, here: string, p: Problems): ManifestAddon | undefined {
  const m = /^([a-z0-9][a-z0-9-]*)(?::([A-Za-z0-9][A-Za-z0-9._-]*))?$/.exec(text.trim());
  if (!m) {
    p.add(here, `${JSON.stringify(text)} is not "provider" or "provider:plan" (e.g. "postgresql:postgresql-starter-512")`);
    return undefined;
  }
  const [, name, plan] = m as unknown as [string, string, string | undefined];
  const alias = PROVIDER_ALIASES.get(name);
  return { provider: alias?.provider ?? name, plan, foreign: alias?.foreign ?? false, source: text.trim() };
}

function parseAddons(raw: unknown, path: string, ctx: Context): ManifestAddon[] {
  const { p } = ctx;
  if (!Array.isArray(raw)) {
    p.add(path, `must be an array of add-ons such as "postgresql" or { "plan": "postgresql:postgresql-starter-512" }, not ${kind(raw)}`);
    return [];
  }
  const out: ManifestAddon[] = [];
  raw.forEach((item, n) => {
    const here = at(path, n);
    if (typeof item === "string") {
      const addon = parseAddonRef(item, here, p);
      if (addon) out.push(addon);
      return;
    }
    if (!isObject(item)) return p.add(here, `must be a string "provider:plan" or an object { "plan": ... }, not ${kind(item)}`);
    checkKeys(item, here, ["plan", "options"], p, {
      as: "Heroku's attachment names are not supported: an add-on's variables keep their names; point yours at them with a reference, e.g. DATABASE_URL=$SCALINGO_POSTGRESQL_URL",
    });
    let version: string | undefined;
    if (item.options !== undefined) {
      if (!isObject(item.options)) p.add(at(here, "options"), `must be an object such as { "version": "15" }, not ${kind(item.options)}`);
      else {
        checkKeys(item.options, at(here, "options"), ["version"], p);
        version = optionalString(item.options, "version", at(here, "options"), p);
      }
    }
    if (typeof item.plan !== "string") return p.add(at(here, "plan"), item.plan === undefined ? 'missing: "provider" or "provider:plan"' : `must be a string, not ${kind(item.plan)}`);
    const addon = parseAddonRef(item.plan, at(here, "plan"), p);
    if (addon) out.push(version !== undefined ? { ...addon, version } : addon);
  });
  return out;
}

function parseSize(raw: unknown, path: string, ctx: Context): { size: ContainerSize; from?: string } | undefined {
  if (typeof raw !== "string") {
    ctx.p.add(path, `must be a string, not ${kind(raw)}`);
    return undefined;
  }
  const quai = SIZES.find((s) => s.toLowerCase() === raw.toLowerCase());
  if (quai) return { size: quai };
  const mb = ctx.file === "app.json" ? HEROKU_DYNO_MB.get(raw.toLowerCase()) : undefined;
  if (mb !== undefined) return { size: sizeForMemory(mb), from: raw };
  const heroku = ctx.file === "app.json" ? `, or a Heroku dyno size (${[...HEROKU_DYNO_MB.keys()].join(", ")})` : "";
  ctx.p.add(path, `unknown size ${JSON.stringify(raw)}; sizes: ${SIZES.join(", ")}${heroku}`);
  return undefined;
}

function parseProcess(name: string, spec: unknown, here: string, ctx: Context): ManifestProcess | undefined {
  const { p, file } = ctx;
  if (!PROCESS_TYPE.test(name)) p.add(here, 'invalid process type: 1 to 63 letters, digits, "-" and "_"');
  const countKey = file === "scalingo.json" ? "amount" : "quantity";
  if (!isObject(spec)) {
    p.add(here, `must be an object such as { "${countKey}": 1, "size": "M" }, not ${kind(spec)}`);
    return undefined;
  }
  const hints: Record<string, string> = file === "scalingo.json" ? { quantity: "scalingo.json counts containers with amount" } : { amount: "app.json counts dynos with quantity" };
  checkKeys(spec, here, [countKey, "size"], p, hints);
  let amount = 1;
  const count = spec[countKey];
  if (count !== undefined) {
    if (typeof count !== "number" || !Number.isInteger(count) || count < 0 || count > MAX_AMOUNT) {
      p.add(at(here, countKey), `must be a whole number from 0 to ${MAX_AMOUNT}, not ${kind(count)}`);
    } else amount = count;
  }
  const size = spec.size === undefined ? undefined : parseSize(spec.size, at(here, "size"), ctx);
  if (!PROCESS_TYPE.test(name) || (spec.size !== undefined && size === undefined)) return undefined;
  return { amount, size: size?.size, ...(size?.from !== undefined ? { sizeFrom: size.from } : {}) };
}

function parseFormation(raw: unknown, path: string, ctx: Context): Map<string, ManifestProcess> {
  const out = new Map<string, ManifestProcess>();
  const add = (name: string, spec: unknown, here: string) => {
    const process = parseProcess(name, spec, here, ctx);
    if (process) out.set(name, process);
  };
  if (Array.isArray(raw) && ctx.file === "app.json") {
    // Heroku's list form, as its formation API takes it: [{ "type": "web", "quantity": 1 }].
    raw.forEach((item, n) => {
      const here = at(path, n);
      if (!isObject(item)) return ctx.p.add(here, `must be an object { "type": "web", "quantity": 1 }, not ${kind(item)}`);
      const nameKey = item.type !== undefined ? "type" : "process";
      const name = item[nameKey];
      if (typeof name !== "string") return ctx.p.add(at(here, "type"), `must be a process type name, not ${kind(name)}`);
      if (out.has(name)) ctx.p.add(here, `process type ${name} is listed twice`);
      const spec = { ...item };
      delete spec[nameKey];
      add(name, spec, here);
    });
    return out;
  }
  if (!isObject(raw)) {
    ctx.p.add(path, `must be an object of process types such as { "web": { "${ctx.file === "scalingo.json" ? "amount" : "quantity"}": 1, "size": "M" } }, not ${kind(raw)}`);
    return out;
  }
  for (const [name, spec] of Object.entries(raw)) add(name, spec, at(path, name));
  return out;
}

function parseScripts(raw: unknown, path: string, ctx: Context): ManifestScripts {
  const { p, file } = ctx;
  const out: ManifestScripts = {};
  if (!isObject(raw)) {
    p.add(path, `must be an object of scripts, not ${kind(raw)}`);
    return out;
  }
  const keys: Record<string, keyof ManifestScripts> =
    file === "scalingo.json" ? { "first-deploy": "firstDeploy", postdeploy: "postdeploy", "pr-predestroy": "prPredestroy" } : { postdeploy: "firstDeploy", "pr-predestroy": "prPredestroy" };
  const hints: Record<string, string> = file === "app.json" ? { "first-deploy": 'app.json calls it "postdeploy"' } : {};
  checkKeys(raw, path, Object.keys(keys), p, hints);
  for (const [key, field] of Object.entries(keys)) {
    let v = raw[key];
    if (v === undefined) continue;
    const here = at(path, key);
    if (isObject(v) && file === "app.json") {
      // The object form { "command": "...", "size": "performance-l" } names the one-off dyno's size too.
      checkKeys(v, here, ["command", "size"], p);
      if (v.size !== undefined) {
        if (typeof v.size !== "string") p.add(at(here, "size"), `must be a string, not ${kind(v.size)}`);
        else note(ctx, `${here}.size ignored: scripts run in a one-off container of the review app's size`);
      }
      if (v.command === undefined) {
        p.add(at(here, "command"), "missing: the command to run");
        continue;
      }
      v = v.command;
    }
    if (typeof v !== "string" || v.trim() === "") {
      p.add(here, typeof v === "string" ? "must not be empty" : `must be a command string${file === "app.json" ? ' or { "command": "..." }' : ""}, not ${kind(v)}`);
      continue;
    }
    if (v.includes("\0")) {
      p.add(here, "must not contain a NUL character");
      continue;
    }
    if (!checkLength(v, here, "script", p)) continue;
    out[field] = v;
  }
  if (file === "app.json" && out.firstDeploy !== undefined) {
    note(ctx, "scripts.postdeploy of app.json runs once, after the first deploy, as on Heroku (a Procfile postdeploy line runs after every deploy)");
  }
  return out;
}

function merge(base: Sections, review: Sections): Sections {
  return {
    env: review.env === undefined ? base.env : new Map([...(base.env ?? []), ...review.env]),
    addons: review.addons ?? base.addons,
    formation: review.formation === undefined ? base.formation : new Map([...(base.formation ?? []), ...review.formation]),
    scripts: review.scripts === undefined ? base.scripts : { ...base.scripts, ...review.scripts },
  };
}

/**
 * Parses and validates a manifest. Throws `scm_manifest_invalid` listing every problem found,
 * one per line (`scalingo.json: env.FOO.genrator: unknown key ...`), never a partial manifest.
 */
export function parseManifest(text: string, file: ManifestFile): Manifest {
  const data = parseJson(text, file);
  if (!isObject(data)) throw invalid(file, [`must be a JSON object { ... }, not ${kind(data)}`]);
  const ctx: Context = { file, p: new Problems(), notes: [] };
  const { p } = ctx;
  const topHints: Record<string, string> =
    file === "scalingo.json"
      ? { environments: "app.json only; scalingo.json describes the review app directly", buildpacks: "app.json only; set BUILDPACK_URL instead", success_url: "app.json only" }
      : { copy_parent_database_urls: "scalingo.json only; and Quai never shares the parent's databases" };
  checkKeys(data, "", TOP_KEYS[file], p, topHints);
  for (const key of ["$schema", "name", "description", "logo", "repository", "website", "success_url"]) if (TOP_KEYS[file].includes(key)) optionalString(data, key, "", p);
  if (data.keywords !== undefined && (!Array.isArray(data.keywords) || data.keywords.some((k) => typeof k !== "string"))) {
    p.add("keywords", `must be an array of strings, not ${kind(data.keywords)}`);
  }
  const inheritUnlisted = optionalBoolean(data, "inherit", "", p) ?? true;
  const copyDb = data.copy_parent_database_urls;
  if (copyDb !== undefined && file === "scalingo.json") {
    if (copyDb === true || copyDb === "true") {
      p.add("copy_parent_database_urls", "Quai never gives a review app its parent's databases (a pull request's migrations would run on them): list add-ons to get fresh ones");
    } else if (copyDb !== false && copyDb !== "false") p.add("copy_parent_database_urls", `must be true or false, not ${kind(copyDb)}`);
  }

  let sections = parseSections(data, "", TOP_KEYS[file], ctx);
  if (file === "app.json" && data.environments !== undefined) {
    if (!isObject(data.environments)) p.add("environments", `must be an object such as { "review": { ... } }, not ${kind(data.environments)}`);
    else {
      for (const name of Object.keys(data.environments).filter((n) => n !== "review")) note(ctx, `environments.${name} ignored: a review app follows environments.review`);
      const review = data.environments.review;
      if (review !== undefined) {
        if (!isObject(review)) p.add("environments.review", `must be an object, not ${kind(review)}`);
        else {
          checkKeys(review, "environments.review", REVIEW_KEYS, p);
          sections = merge(sections, parseSections(review, "environments.review", REVIEW_KEYS, ctx));
          note(ctx, "environments.review applied over the rest of app.json");
        }
      }
    }
  }

  const addons = sections.addons ?? [];
  const byProvider = new Map<string, number[]>();
  addons.forEach((a, n) => byProvider.set(a.provider, [...(byProvider.get(a.provider) ?? []), n]));
  for (const [provider, indexes] of byProvider) {
    if (indexes.length > 1) p.add("addons", `${provider} is listed ${indexes.length} times (${indexes.map((n) => JSON.stringify(addons[n]?.source)).join(", ")}): an app has one add-on per provider`);
  }

  if (p.lines.length > 0) throw invalid(file, p.lines);
  return {
    file,
    env: Object.fromEntries(sections.env ?? []),
    inheritUnlisted,
    addons,
    addonsListed: sections.addons !== undefined,
    formation: sections.formation === undefined ? undefined : Object.fromEntries(sections.formation),
    scripts: sections.scripts ?? {},
    notes: ctx.notes,
  };
}

// ----- planning -----------------------------------------------------------------------------------

const sizeRank = (size: string) => SIZES.indexOf(size as ContainerSize);

function describe(name: string, env: ManifestEnv): string {
  return env.description === undefined ? `env.${name}` : `env.${name} (${JSON.stringify(env.description)})`;
}

/**
 * Plans a review app from its manifest (undefined: the repository has none) and its parent.
 * Throws `scm_manifest_invalid` listing every plan-level problem: an unknown add-on provider or
 * plan, a required variable with no value anywhere, a value over 64 KiB.
 */
export function planReviewApp(manifest: Manifest | undefined, input: PlanInput): ReviewAppPlan {
  const maxSize = SIZES.find((s) => s === input.maxSize);
  if (maxSize === undefined) throw new QuaiError("config_invalid", `review-app size limit ${JSON.stringify(input.maxSize)} is not one of ${SIZES.join(", ")}`);
  const file = manifest?.file ?? "review app";
  const problems: string[] = [];
  const notes: string[] = [...(manifest?.notes ?? [])];
  if (manifest === undefined) notes.push("no scalingo.json or app.json: the parent's variables except add-on ones, the parent's formation, fresh add-ons like the parent's, no scripts");
  const listed = manifest !== undefined && manifest.addonsListed !== false;
  const parentAddons = (input.parentAddons ?? []).map((a): ManifestAddon => ({ provider: a.provider, plan: a.plan }));
  if (!listed && parentAddons.length > 0) notes.push(`add-ons like the parent's, fresh and empty: ${parentAddons.map((a) => `${a.provider}:${a.plan}`).join(", ")}`);
  const addons = planAddons(listed ? (manifest?.addons ?? []) : parentAddons, input, problems, notes);
  const env = planEnv(manifest, input, addons.length > 0, problems, notes);
  const formation = planFormation(manifest?.formation, input.parentFormation, maxSize, notes);

  if (problems.length > 0) throw invalid(file, problems);
  return { env, addons, formation, scripts: { ...(manifest?.scripts ?? {}) }, notes };
}

function planAddons(wanted: ManifestAddon[], input: PlanInput, problems: string[], notes: string[]): { provider: string; plan: string }[] {
  const out: { provider: string; plan: string }[] = [];
  const known = Object.keys(input.providers).sort();
  wanted.forEach((a, n) => {
    const label = a.source ?? (a.plan === undefined ? a.provider : `${a.provider}:${a.plan}`);
    const where = `addons[${n}] (${JSON.stringify(label)})`;
    const provider = Object.hasOwn(input.providers, a.provider) ? input.providers[a.provider] : undefined;
    if (provider === undefined) {
      problems.push(`${where}: unknown add-on provider ${JSON.stringify(a.provider)}${didYouMean(a.provider, known)}; Quai provides: ${known.join(", ")}`);
      return;
    }
    const through = label.split(":")[0] === a.provider ? "" : ` (provided by Quai's ${a.provider})`;
    let plan: string;
    if (a.plan === undefined) {
      plan = provider.defaultPlan;
      notes.push(`${label}: default plan ${plan}${through}`);
    } else if (provider.plans.includes(a.plan)) {
      plan = a.plan;
      if (through) notes.push(`${label}: plan ${plan}${through}`);
    } else if (provider.plans.includes(`${a.provider}-${a.plan}`)) {
      plan = `${a.provider}-${a.plan}`;
      notes.push(`${label}: plan ${a.plan} read as ${plan}${through}`);
    } else if (a.foreign) {
      plan = provider.defaultPlan;
      notes.push(`${label}: no Quai plan matches ${JSON.stringify(a.plan)}; default plan ${plan}${through}`);
    } else {
      problems.push(`${where}: ${a.provider} has no plan ${JSON.stringify(a.plan)}${didYouMean(a.plan, provider.plans)}; plans: ${provider.plans.join(", ")}`);
      return;
    }
    if (a.version !== undefined) notes.push(`${label}: options.version ${JSON.stringify(a.version)} ignored (Quai runs one version of each engine)`);
    out.push({ provider: a.provider, plan });
  });
  return out;
}

function planEnv(manifest: Manifest | undefined, input: PlanInput, hasAddons: boolean, problems: string[], notes: string[]): ReviewAppPlan["env"] {
  const planned = new Map<string, { value: string; source: "manifest" | "generated" | "parent" }>();
  const parentHas = (name: string) => Object.hasOwn(input.parentVars, name);
  const listed = manifest?.env ?? {};
  const expand = (name: string, template: string): string | undefined => {
    if (template.includes("%PR_NUMBER%") && input.prNumber === undefined) {
      problems.push(`env.${name}: the template uses %PR_NUMBER%, and this review app has no pull request number`);
      return undefined;
    }
    const values: Record<string, string> = { URL: input.appUrl, APP: input.appName, PR_NUMBER: String(input.prNumber) };
    // A function replacement, so that "$&" in a URL is not read as a replacement pattern.
    return template.replace(PLACEHOLDER, (whole, key: string) => (Object.hasOwn(values, key) ? (values[key] as string) : whole));
  };

  for (const name of Object.keys(listed).sort()) {
    const e = listed[name] as ManifestEnv;
    const replaces = parentHas(name) ? ", replacing the parent's" : "";
    if (e.value !== undefined) {
      planned.set(name, { value: e.value, source: "manifest" });
      if (replaces) notes.push(`${name}: the manifest's value${replaces}`);
    } else if (e.generator === "secret") {
      planned.set(name, { value: input.random(), source: "generated" });
      notes.push(`${name} generated (secret)${replaces}`);
    } else if (e.generator === "url" || e.generator === "template") {
      const value = e.template === undefined ? input.appUrl : expand(name, e.template);
      if (value === undefined) continue;
      planned.set(name, { value, source: "generated" });
      notes.push(`${name} ${e.template === undefined ? "set to the review app's URL" : "generated from its template"}${replaces}`);
    } else if (!e.inherit) {
      if (e.required) problems.push(`${describe(name, e)}: required, but it has no value and inherit is false`);
      else if (parentHas(name)) notes.push(`${name} not copied from the parent (the manifest removes it)`);
    } else if (parentHas(name) && !input.addonVariable(name)) {
      planned.set(name, { value: input.parentVars[name] as string, source: "parent" });
    } else if (input.addonVariable(name)) {
      // The parent's value points at the parent's database: the review app's own add-ons set it.
      if (e.required && !hasAddons) problems.push(`${describe(name, e)}: required, but the parent's value comes from its add-on, which is never copied, and the manifest provisions no add-on`);
      else notes.push(`${name} not copied: an add-on of the parent sets it${hasAddons ? "; the review app's add-ons are expected to" : ""}`);
    } else if (e.required) {
      problems.push(`${describe(name, e)}: required, but the manifest gives no value and the parent app has none`);
    } else {
      notes.push(`${name} not set: the manifest gives no value and the parent app has none`);
    }
  }

  const addonVars: string[] = [];
  const notInherited: string[] = [];
  for (const name of Object.keys(input.parentVars).sort()) {
    if (Object.hasOwn(listed, name)) continue;
    if (input.addonVariable(name)) addonVars.push(name);
    else if (!(manifest?.inheritUnlisted ?? true)) notInherited.push(name);
    else planned.set(name, { value: input.parentVars[name] as string, source: "parent" });
  }
  if (addonVars.length > 0) notes.push(`not copied, set by the parent's add-ons (the review app gets its own): ${addonVars.join(", ")}`);
  if (notInherited.length > 0) notes.push(`not copied (inherit: false): ${notInherited.join(", ")}`);

  const out: ReviewAppPlan["env"] = [];
  for (const name of [...planned.keys()].sort()) {
    const { value, source } = planned.get(name) as { value: string; source: "manifest" | "generated" | "parent" };
    const size = bytes(value);
    if (size > MAX_VALUE_BYTES) problems.push(`env.${name}: the value is ${size} bytes; the limit is ${MAX_VALUE_BYTES} (64 KiB)`);
    // A copied reference to a variable the review app lacks would fail its first release; say so now.
    for (const ref of referencesOf(value)) {
      if (planned.has(ref)) continue;
      if (input.addonVariable(ref)) notes.push(`${name} refers to $${ref}, set by an add-on: the review app's own add-on must provide it`);
      else notes.push(`${name} refers to $${ref}, which the review app will not have`);
    }
    out.push({ name, value, source });
  }
  return out;
}

function planFormation(wanted: Manifest["formation"], parent: PlanInput["parentFormation"], maxSize: ContainerSize, notes: string[]): ReviewAppPlan["formation"] {
  const parentByName = new Map(parent.map((f) => [f.name, f]));
  const entries: { name: string; amount: number; size: string }[] = [];
  if (wanted === undefined) {
    entries.push(...parent.map((f) => ({ name: f.name, amount: f.amount, size: f.size })));
    if (parent.length > 0) notes.push("formation copied from the parent");
  } else {
    for (const [name, f] of Object.entries(wanted)) {
      let size = f.size;
      if (size === undefined) {
        size = parentByName.get(name)?.size ?? "M";
        notes.push(`size of ${name} not given: ${size}${parentByName.has(name) ? ", the parent's" : ", the default"}`);
      } else if (f.sizeFrom !== undefined) {
        notes.push(`size of ${name}: Heroku's ${f.sizeFrom} (${HEROKU_DYNO_MB.get(f.sizeFrom.toLowerCase())} MB) read as ${size}`);
      }
      entries.push({ name, amount: f.amount, size });
    }
    for (const p of parent) {
      if (!Object.hasOwn(wanted, p.name) && p.amount > 0) notes.push(`${p.name} not started: the manifest's formation does not list it (the parent runs ${p.amount}×${p.size})`);
    }
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const rank = sizeRank(e.size);
    if (rank === -1) throw new Error(`formation of ${e.name} has unknown size ${JSON.stringify(e.size)}`);
    if (rank > sizeRank(maxSize)) {
      notes.push(`size of ${e.name} capped from ${e.size} to ${maxSize} (the review-app limit)`);
      e.size = maxSize;
    }
  }
  return entries;
}
