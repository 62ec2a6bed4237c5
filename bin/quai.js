#!/usr/bin/env node
// Entry point of the `quai` command. Quai runs on Node.js 24 (the `node` package pinned in
// package.json); when started by an older Node.js, re-run with the project's own binary.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  const node = fileURLToPath(new URL("../node_modules/node/bin/node", import.meta.url));
  if (!existsSync(node)) {
    process.stderr.write("quai needs Node.js 24: run `npm ci` in the Quai checkout first.\n");
    process.exit(69);
  }
  const res = spawnSync(node, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(res.status ?? 1);
}
// The server (`server`, `demo`) runs with a small young generation: V8 grows it to 128 MB here,
// every page of which a fork write-protects and a later write then faults on (see
// docs/adr/0028-a-spawn-helper-forks-for-the-control-plane.md). Re-executed in place: same pid.
const command = process.argv.slice(2).find((a) => !a.startsWith("-"));
if ((command === "server" || command === "demo") && !process.execArgv.some((a) => a.startsWith("--max-semi-space-size")) && typeof process.execve === "function") {
  process.execve(process.execPath, [process.execPath, "--max-semi-space-size=8", ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], process.env);
}
const { main } = await import("../src/cli/main.ts");
// `server` and `demo` resolve only once stopped; idle keep-alive sockets must not hold the exit.
process.exit(await main(process.argv.slice(2)));
