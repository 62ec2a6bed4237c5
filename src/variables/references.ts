// Variable references: `DATABASE_URL=$SCALINGO_POSTGRESQL_URL` or `${NAME}`, stored as written
// and resolved when a release is made. `$$` is a literal dollar sign.
import { QuaiError } from "../core/errors.ts";

const NAME = "[A-Za-z_][A-Za-z0-9_]*";
const TOKEN = new RegExp(`\\$\\$|\\$\\{(${NAME})\\}|\\$(${NAME})`, "g");

/** Names `value` refers to, in order of appearance, without repeats. */
export function referencesOf(value: string): string[] {
  const names = new Set<string>();
  for (const m of value.matchAll(TOKEN)) {
    const name = m[1] ?? m[2];
    if (name) names.add(name);
  }
  return [...names];
}

/** Throws `variable_reference_cycle` if some variables refer to each other in a loop. */
export function assertNoCycle(vars: ReadonlyMap<string, string>): void {
  const state = new Map<string, "visiting" | "done">();
  const path: string[] = [];
  const visit = (name: string): void => {
    const s = state.get(name);
    if (s === "done") return;
    if (s === "visiting") {
      const cycle = [...path.slice(path.indexOf(name)), name];
      throw new QuaiError("variable_reference_cycle", `variables refer to each other in a cycle: ${cycle.map((n) => "$" + n).join(" → ")}`, { cycle });
    }
    state.set(name, "visiting");
    path.push(name);
    const value = vars.get(name);
    if (value !== undefined) for (const ref of referencesOf(value)) if (vars.has(ref)) visit(ref);
    path.pop();
    state.set(name, "done");
  };
  for (const name of vars.keys()) visit(name);
}

/**
 * Resolves every reference in `vars` (references may chain). A reference to a name absent from
 * `vars` is reported with `variable_reference_missing`, never replaced by an empty string.
 */
export function resolveAll(vars: ReadonlyMap<string, string>): Map<string, string> {
  assertNoCycle(vars);
  const missing: { variable: string; reference: string }[] = [];
  const resolved = new Map<string, string>();
  const resolve = (name: string): string => {
    const done = resolved.get(name);
    if (done !== undefined) return done;
    const raw = vars.get(name) as string;
    const out = raw.replace(TOKEN, (whole, braced: string | undefined, bare: string | undefined) => {
      const ref = braced ?? bare;
      if (!ref) return "$"; // `$$`
      if (!vars.has(ref)) {
        missing.push({ variable: name, reference: ref });
        return whole;
      }
      return resolve(ref);
    });
    resolved.set(name, out);
    return out;
  };
  for (const name of vars.keys()) resolve(name);
  if (missing.length > 0) {
    const list = missing.map((m) => `${m.variable} refers to $${m.reference}`).join(", ");
    throw new QuaiError("variable_reference_missing", `undefined variable referenced: ${list}`, { missing });
  }
  return resolved;
}
