// Generates docs/errors.md from the error catalogue (src/core/errors.ts), so the page cannot
// drift from the codes the API and the CLI report. Run with `npm run docs:errors`.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { catalogue, Exit, type ErrorSpec } from "../src/core/errors.ts";

/** Where the generated page lives. */
export const ERROR_DOCS_FILE: string = fileURLToPath(new URL("../docs/errors.md", import.meta.url));

/** sysexits.h names of the exit codes in `Exit`. */
const SYSEXITS: Record<keyof typeof Exit, string> = {
  usage: "EX_USAGE",
  data: "EX_DATAERR",
  noInput: "EX_NOINPUT",
  unavailable: "EX_UNAVAILABLE",
  software: "EX_SOFTWARE",
  cantCreate: "EX_CANTCREAT",
  tempFail: "EX_TEMPFAIL",
  noPerm: "EX_NOPERM",
  config: "EX_CONFIG",
};

/** Escapes text for a Markdown table cell; code spans (`...`) are kept as written. */
function cell(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part) => (part.startsWith("`") ? part.replaceAll("|", "\\|") : part.replace(/[\\*_[\]<>|]/g, (c) => `\\${c}`)))
    .join("");
}

/** The whole of docs/errors.md. */
export function renderErrorDocs(): string {
  const entries = Object.entries(catalogue) as [string, ErrorSpec][];
  const exits = (Object.entries(Exit) as [keyof typeof Exit, number][]).sort((a, b) => a[1] - b[1]);
  const lines = [
    "# Errors",
    "",
    "<!-- Generated from src/core/errors.ts by scripts/gen-error-docs.ts: do not edit, run `npm run docs:errors`. -->",
    "",
    "Every error Quai reports has a code from one catalogue (`src/core/errors.ts`). A code is never",
    "reused for another meaning.",
    "",
    "- **API**: a failing request gets the HTTP status below and a JSON body",
    "  `{\"error\": \"<code>\", \"message\": \"<what happened>\", \"details\": {...}}`; `details` is present",
    "  when there are machine-readable facts (the field at fault, the variables of a cycle, ...).",
    "- **CLI**: `quai` prints `error: <message> [<code>]` on stderr and exits with the exit code below.",
    "  With `--json` it prints the same JSON object as the API, on one line, on stderr. Success exits 0.",
    "",
    "Codes starting with `cli_`, and `config_invalid`, come from the `quai` command itself (its command",
    "line, its login, or a server setting), never from the API; their HTTP status is only nominal.",
    "",
    "| Code | HTTP status | CLI exit code | Meaning |",
    "| --- | --- | --- | --- |",
    ...entries.map(([code, spec]) => `| \`${code}\` | ${spec.status} | ${spec.exit} | ${cell(spec.description)} |`),
    "",
    "Exit codes follow sysexits.h:",
    "",
    "| Exit code | sysexits.h name |",
    "| --- | --- |",
    ...exits.map(([name, code]) => `| ${code} | ${SYSEXITS[name]} |`),
    "",
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  writeFileSync(ERROR_DOCS_FILE, renderErrorDocs());
  process.stdout.write(`wrote ${ERROR_DOCS_FILE}\n`);
}
