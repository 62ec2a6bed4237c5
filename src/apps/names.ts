// The app name rule: a DNS label (apps answer at `<name>.<domain>`), 3 to 48 characters.
import { QuaiError } from "../core/errors.ts";

const RULE = "3 to 48 characters, lowercase letters a-z, digits and dashes, starting and ending with a letter or digit";
const VALID = /^[a-z0-9][a-z0-9-]{1,46}[a-z0-9]$/;

/** Throws `app_name_invalid`, naming the rule and what is wrong, unless `name` is a valid app name. */
export function assertAppName(name: unknown): asserts name is string {
  if (typeof name !== "string") throw new QuaiError("app_name_invalid", `app name must be a string (${RULE})`, { field: "name" });
  // Dashes as 3rd and 4th characters are reserved for internationalised names (RFC 5891): a
  // browser shows `xn--…` as other letters, a way around the refusal of look-alikes below.
  if (VALID.test(name) && name.slice(2, 4) !== "--") return;
  let why: string;
  if (name.length < 3) why = "it is shorter than 3 characters";
  else if (name.length > 48) why = `it is ${name.length} characters long`;
  else if (/[A-Z]/.test(name)) why = "it has uppercase letters";
  // eslint-disable-next-line no-control-regex
  else if (/[^\x00-\x7f]/.test(name)) why = "it has characters outside a-z, 0-9 and '-' (non-ASCII look-alikes are refused)";
  else if (/^-|-$/.test(name)) why = "it starts or ends with a dash";
  else if (name.slice(2, 4) === "--") why = "its 3rd and 4th characters are dashes, which DNS keeps for internationalised names (xn--…) that browsers show as other letters";
  else why = "it has characters outside a-z, 0-9 and '-'";
  throw new QuaiError("app_name_invalid", `invalid app name ${JSON.stringify(name)}: ${why}; app names are ${RULE}`, { field: "name" });
}
