// The CI gate of an auto-deploy: from the checks on a commit, whether to wait, deploy or give up.
// Quai's own statuses (context `quai/...`) never count, so Quai can never wait for itself.
import type { Check } from "./forge.ts";

/** Contexts Quai posts; a team may make them required on the forge, Quai never waits on them. */
export const OWN_CONTEXT_PREFIX = "quai/";

export type GateDecision =
  | { verdict: "deploy"; passed: string[] }
  | { verdict: "wait"; pending: string[] }
  | { verdict: "blocked"; failed: string[] };

/**
 * Decides from `checks` (the latest per name) and the link's `required` names (null: every check
 * on the commit but Quai's own). A failure blocks at once; a required check not reported yet is
 * pending. With no list and no checks at all, the commit deploys: the repository has no CI.
 */
export function decide(checks: Check[], required: string[] | null): GateDecision {
  const own = (name: string) => name.startsWith(OWN_CONTEXT_PREFIX);
  const latest = new Map<string, Check>();
  for (const c of checks) if (!own(c.name)) latest.set(c.name, c);
  const names = required ? required.filter((n) => !own(n)) : [...latest.keys()];
  const failed = names.filter((n) => latest.get(n)?.state === "failure");
  if (failed.length > 0) return { verdict: "blocked", failed: failed.sort() };
  const pending = names.filter((n) => latest.get(n)?.state !== "success");
  if (pending.length > 0) return { verdict: "wait", pending: pending.sort() };
  return { verdict: "deploy", passed: names.sort() };
}
