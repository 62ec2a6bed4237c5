// The domain name rule: what a user may attach to an app, stored in ASCII (punycode), shown in
// both forms so a homograph (a Cyrillic "а" in "pаypal.fr") is visible as what it is.
import { domainToASCII, domainToUnicode } from "node:url";
import { isIP } from "node:net";
import { QuaiError } from "../core/errors.ts";

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A domain as stored (ASCII) and as shown (Unicode). */
export interface DomainName {
  ascii: string;
  unicode: string;
}

/** Checks and normalises a domain name; throws `domain_invalid` saying which rule it breaks. */
export function normaliseDomain(input: unknown, platformDomain: string): DomainName {
  const bad = (why: string) => new QuaiError("domain_invalid", `${JSON.stringify(input)} is not a domain Quai can serve: ${why}`);
  if (typeof input !== "string" || input.trim() === "") throw bad("it is empty");
  const raw = input.trim().replace(/\.$/, "");
  if (raw.length > 253) throw bad(`it has ${raw.length} characters; at most 253`);
  if (raw.startsWith("*.") || raw.includes("*")) throw bad("wildcard domains are not supported yet (they need an uploaded certificate)");
  if (isIP(raw.replace(/^\[|\]$/g, "")) !== 0) throw bad("it is an IP address; apps answer on names");
  const ascii = domainToASCII(raw.toLowerCase());
  if (ascii === "") throw bad("it is not a valid internationalised domain name");
  if (ascii.length > 253) throw bad(`it has ${ascii.length} characters once encoded; at most 253`);
  const labels = ascii.split(".");
  if (labels.length < 2) throw bad("it needs at least two labels (example.org)");
  for (const l of labels) if (!LABEL.test(l)) throw bad(`the label ${JSON.stringify(l)} is not 1 to 63 letters, digits and inner dashes`);
  if (/^\d+$/.test(labels[labels.length - 1] as string)) throw bad("its last label is numeric");
  if (ascii === "localhost" || ascii.endsWith(".localhost")) throw bad("localhost names are the platform's");
  const platform = platformDomain.toLowerCase();
  if (ascii === platform || ascii.endsWith(`.${platform}`)) throw bad(`names under ${platform} are the platform's (every app already has <app>.${platform})`);
  return { ascii, unicode: domainToUnicode(ascii) };
}
