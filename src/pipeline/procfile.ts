// Procfiles and buildpack release output: process types and their commands.
import { QuaiError } from "../core/errors.ts";

/** Process type name → command (a shell command line, run inside the container). */
export type ProcessTypes = Record<string, string>;

const typeName = /^[A-Za-z0-9_-]{1,63}$/;

/** The type of one-off containers (`quai run`): no Procfile type may take it. */
export const ONE_OFF = "one-off";

/** Parses a Procfile (`name: command` per line; `#` comments). Throws `procfile_invalid`. */
export function parseProcfile(text: string): ProcessTypes {
  const out: ProcessTypes = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = /^([^:\s]+)\s*:(.*)$/.exec(line);
    if (!m) throw new QuaiError("procfile_invalid", `Procfile line ${i + 1} is not "type: command": ${JSON.stringify(raw)}`);
    const [, name, command] = m as unknown as [string, string, string];
    if (!typeName.test(name)) throw new QuaiError("procfile_invalid", `Procfile line ${i + 1}: process type "${name}" may only use letters, digits, "-" and "_"`);
    if (name === ONE_OFF) throw new QuaiError("procfile_invalid", `Procfile line ${i + 1}: process type "${ONE_OFF}" is the name of the containers \`quai run\` starts; choose another`);
    if (command.trim() === "") throw new QuaiError("procfile_invalid", `Procfile line ${i + 1}: process type "${name}" has an empty command`);
    if (name === "__proto__") throw new QuaiError("procfile_invalid", `Procfile line ${i + 1}: "__proto__" cannot name a process type; choose another`);
    if (Object.hasOwn(out, name)) throw new QuaiError("procfile_invalid", `Procfile line ${i + 1}: process type "${name}" is defined twice`);
    out[name] = command.trim();
  });
  return out;
}

/**
 * Reads `default_process_types` from a buildpack's `bin/release` output (a small YAML subset:
 * the key, then indented `name: command` lines).
 */
export function parseReleaseYaml(text: string): ProcessTypes {
  const out: ProcessTypes = {};
  let inTypes = false;
  for (const raw of text.split(/\r?\n/)) {
    if (/^default_process_types\s*:\s*(\{\s*\})?\s*$/.test(raw)) {
      inTypes = true;
      continue;
    }
    if (!/^\s/.test(raw)) {
      inTypes = false;
      continue;
    }
    if (!inTypes) continue;
    const m = /^\s+([A-Za-z0-9_-]+)\s*:\s*(.+?)\s*$/.exec(raw);
    if (m && m[1] !== ONE_OFF && m[1] !== "__proto__") out[m[1] as string] = unquote(m[2] as string);
  }
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) {
    return v.startsWith('"') ? (JSON.parse(v) as string) : v.slice(1, -1).replace(/''/g, "'");
  }
  return v;
}

/** Process types that run as containers (everything but the `postdeploy` hook). */
export function runnableTypes(types: ProcessTypes): string[] {
  return Object.keys(types).filter((t) => t !== "postdeploy").sort((a, b) => (a === "web" ? -1 : b === "web" ? 1 : a.localeCompare(b)));
}
