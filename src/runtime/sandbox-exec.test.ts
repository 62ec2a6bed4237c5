// libexec/sandbox-exec on its own: what the program it execs ends up with (ids, groups,
// capabilities, no_new_privs, cgroups, a private overlay), and what it refuses. Needs root.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../core/run.ts";
import { detectCgroups } from "./cgroups.ts";

const sandboxExec = fileURLToPath(new URL("../../libexec/sandbox-exec", import.meta.url));
const isRoot = process.getuid?.() === 0;
const UID = 60021;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "quai-sandbox-exec-"));
  await chmod(dir, 0o755);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The fields of /proc/self/status as the program sandbox-exec ran sees them. */
async function statusAs(args: string[]): Promise<Map<string, string>> {
  const res = await run(sandboxExec, [...args, "--", "/bin/cat", "/proc/self/status"]);
  assert.equal(res.code, 0, res.stderr);
  return new Map(res.stdout.split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
}

describe("sandbox-exec", { skip: !isRoot && "needs root" }, () => {
  it("runs the program as the app's uid and gid only, without capabilities, with no_new_privs", async () => {
    const s = await statusAs(["--uid", String(UID), "--gid", String(UID)]);
    assert.equal(s.get("Uid"), `${UID}\t${UID}\t${UID}\t${UID}`);
    assert.equal(s.get("Gid"), `${UID}\t${UID}\t${UID}\t${UID}`);
    assert.equal(s.get("Groups"), "", "root's supplementary groups are dropped");
    assert.equal(s.get("CapPrm"), "0000000000000000");
    assert.equal(s.get("CapEff"), "0000000000000000");
    assert.equal(s.get("NoNewPrivs"), "1");
  });

  it("joins the container's cgroups before the program's first instruction", async () => {
    const cgroups = detectCgroups();
    const id = `sandbox-exec-test-${process.pid}`;
    await cgroups.create(id, { memoryBytes: 64 * 1024 * 1024, pids: 16, cpuShares: 256 });
    try {
      const files = cgroups.procsFiles(id);
      const res = await run(sandboxExec, [...files.flatMap((f) => ["--cgroup", f]), "--uid", String(UID), "--gid", String(UID), "--", "/bin/cat", "/proc/self/cgroup"]);
      assert.equal(res.code, 0, res.stderr);
      const lines = res.stdout.split("\n").filter(Boolean);
      assert.ok(lines.length > 0);
      // Every hierarchy it was given a file of places it in the group.
      assert.equal(lines.filter((l) => l.endsWith(`/${id}`)).length, files.length, res.stdout);
    } finally {
      await cgroups.remove(id);
    }
  });

  it("mounts the overlay in a mount namespace of its own: the app sees it, the host does not", async () => {
    const lower = join(dir, "lower");
    const upper = join(dir, "upper");
    const work = join(dir, "work");
    const merged = join(dir, "app");
    await Promise.all([lower, upper, work, merged].map((d) => mkdir(d, { mode: 0o755 })));
    await writeFile(join(lower, "from-slug.txt"), "slug\n");
    await chown(upper, UID, UID);
    const res = await run(sandboxExec, ["--overlay", lower, upper, work, merged, "--uid", String(UID), "--gid", String(UID), "--", "/bin/sh", "-c", 'cat "$1/from-slug.txt" && echo mine > "$1/new.txt"', "sh", merged]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, "slug\n");
    assert.deepEqual(await readdir(merged), [], "the mount point stays empty on the host");
    assert.equal(await readFile(join(upper, "new.txt"), "utf8"), "mine\n", "the app's writes land in its layer");
    assert.deepEqual(await readdir(lower), ["from-slug.txt"], "the slug is never written");
  });

  it("refuses root, a malformed id, a missing id, an unknown option, no program, and a cgroup it cannot join", async () => {
    const cases: [string[], RegExp][] = [
      [["--uid", "0", "--gid", "5", "--", "/bin/true"], /invalid uid 0/],
      [["--uid", "5", "--gid", "0", "--", "/bin/true"], /invalid gid 0/],
      [["--uid", "1x", "--gid", "5", "--", "/bin/true"], /invalid uid 1x/],
      [["--uid", "-5", "--gid", "5", "--", "/bin/true"], /invalid uid -5/],
      [["--uid", "4294967295", "--gid", "5", "--", "/bin/true"], /invalid uid 4294967295/],
      [["--gid", "5", "--", "/bin/true"], /--uid and --gid are required/],
      [["--uid", "5", "--gid", "5", "--setuid", "0", "--", "/bin/true"], /unknown or incomplete option --setuid/],
      [["--uid", "5", "--gid", "5", "--overlay", "/a", "/b", "--", "/bin/true"], /unknown or incomplete option --overlay/],
      [["--uid", "--", "/bin/true"], /unknown or incomplete option --uid/],
      [["--uid", "5", "--gid", "5", "--"], /usage: sandbox-exec/],
      [["--cgroup", join(dir, "no-such-group", "cgroup.procs"), "--uid", "5", "--gid", "5", "--", "/bin/true"], /cannot join the cgroup of .*no-such-group/],
      [["--uid", "5", "--gid", "5", "--", join(dir, "no-such-program")], /cannot run .*no-such-program/],
    ];
    for (const [args, message] of cases) {
      const res = await run(sandboxExec, args);
      assert.equal(res.code, 125, `${args.join(" ")}: exit ${res.code}`);
      assert.match(res.stderr, /^sandbox-exec: /);
      assert.match(res.stderr, message);
    }
  });
});
