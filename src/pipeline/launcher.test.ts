// The container launcher (/quai/bin/launch, written by prepareRuntime) in a real sandbox: a
// Procfile line runs as `bash -c` would run it, after the .profile.d scripts, whichever way the
// launcher takes to run it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimePaths, type RuntimePaths } from "./context.ts";
import { prepareRuntime } from "./setup.ts";
import { LocalRuntime } from "../runtime/local.ts";

const UID = 60044;

describe("the container launcher", { skip: process.getuid?.() !== 0 && "needs root (sandboxes, cgroups)" }, () => {
  let dir: string;
  let paths: RuntimePaths;
  let runtime: LocalRuntime;
  let app: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "quai-launcher-"));
    await chmod(dir, 0o755);
    paths = runtimePaths(join(dir, "runtime"));
    await prepareRuntime(paths);
    runtime = new LocalRuntime({ stateDir: join(dir, "state") });
    app = join(dir, "app");
    await mkdir(join(app, ".profile.d"), { recursive: true });
    // A buildpack's profile script: an exported variable and a PATH entry, as the Node.js one writes.
    await writeFile(join(app, ".profile.d", "lang.sh"), 'export GREETING="hello from profile"\nexport PATH="$HOME/bin:$PATH"\n');
    await mkdir(join(app, "bin"));
    await writeFile(join(app, "bin", "greet"), '#!/bin/sh\necho "greet: $GREETING on $PORT ($#: $*)"\n', { mode: 0o755 });
    await writeFile(join(app, "bin", "no-shebang"), 'echo "ran as a script: $1"\n', { mode: 0o755 });
    await writeFile(join(app, "a.txt"), "");
    await writeFile(join(app, "b.txt"), "");
    await chown(app, UID, UID);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs a Procfile line in a container's sandbox, through the launcher. */
  const line = (command: string) => launch(["--shell", command]);

  /** Runs the launcher with `args` in a container's sandbox. */
  async function launch(args: string[]): Promise<{ out: string; code: number | null }> {
    let out = "";
    const res = await runtime.exec(
      {
        id: `launch-${randomBytes(3).toString("hex")}`,
        app: "launcher",
        uid: UID,
        gid: UID,
        appDir: app,
        appWritable: false,
        binds: [{ source: paths.bin, target: "/quai/bin", writable: false }],
        command: ["/quai/bin/launch", ...args],
        env: { PATH: "/usr/local/bin:/usr/bin:/bin", PORT: "5123" },
        size: "S",
        network: "none",
        logFile: "/dev/null",
      },
      { onStdout: (b) => (out += b.toString()), onStderr: (b) => (out += b.toString()), timeoutMs: 20_000 },
    );
    return { out, code: res.exitCode };
  }

  it("runs a plain command after the profile scripts, with $VAR and ${VAR} expanded and no arguments of its own", async () => {
    assert.deepEqual(await line("greet $PORT ${GREETING}"), { out: "greet: hello from profile on 5123 (4: 5123 hello from profile)\n", code: 0 });
    assert.deepEqual(await line("greet $1 $2"), { out: "greet: hello from profile on 5123 (0: )\n", code: 0 }, "no positional parameters leak in");
    assert.deepEqual(await line("  /usr/bin/printf %s:%s. $PORT 0.0.0.0:$PORT  "), { out: "5123:0.0.0.0:5123.", code: 0 });
    assert.deepEqual(await line("bin/no-shebang x"), { out: "ran as a script: x\n", code: 0 }, "a file without #! runs as a shell script, as with bash -c");
  });

  it("gives $0 as bash -c does, either way", async () => {
    assert.equal((await line("/usr/bin/printf %s $0")).out, "/bin/bash");
    assert.equal((await line("printf %s $0")).out, "/bin/bash", "printf is a builtin: bash -c runs it");
  });

  it("gives lines with shell syntax, builtins and leading assignments to bash -c", async () => {
    assert.deepEqual(await line("exit 3"), { out: "", code: 3 });
    assert.deepEqual(await line("sh -c 'exit 4'"), { out: "", code: 4 });
    assert.deepEqual(await line("greet a && echo and; echo then | tr a-z A-Z"), { out: "greet: hello from profile on 5123 (1: a)\nand\nTHEN\n", code: 0 });
    assert.deepEqual(await line("GREETING=overridden greet"), { out: "greet: overridden on 5123 (0: )\n", code: 0 });
    assert.deepEqual(await line("ls *.txt"), { out: "a.txt\nb.txt\n", code: 0 });
    assert.deepEqual(await line("echo ${PORT:-none} ~"), { out: "5123 /app\n", code: 0 });
    assert.equal((await line("greet > /dev/null")).out, "");
  });

  it("says a program of an argv (quai run) is not found as a shell does, with 127", async () => {
    assert.deepEqual(await launch(["no-such-program", "x"]), { out: "no-such-program: command not found\n", code: 127 });
  });

  it("exits 127 for a command that does not exist, either way", async () => {
    assert.equal((await line("no-such-command arg")).code, 127);
    assert.equal((await line("no-such-command arg; true && false")).code, 1);
    assert.equal((await line("no-such-command arg || exit 9")).code, 9);
  });
});
