// The cgroup implementations against a directory standing in for the cgroup filesystem, and
// the detection of v1 / v2 from mount tables.
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CgroupsV1, CgroupsV2, detectCgroups, ownProcsFile, parseCgroupMounts, sharesToWeight, warmMoves } from "./cgroups.ts";

const limits = { memoryBytes: 256 * 1024 * 1024, pids: 256, cpuShares: 256 };

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "quai-cgroups-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (...p: string[]) => readFile(join(root, ...p), "utf8");

describe("CgroupsV2", () => {
  it("creates quai/<id> with memory, no swap, pids and a cpu weight, and enables the controllers above it", async () => {
    const cg = new CgroupsV2(join(root, "v2"));
    await cg.create("web-1", limits);
    assert.equal(await read("v2", "quai", "web-1", "memory.max"), String(256 * 1024 * 1024));
    assert.equal(await read("v2", "quai", "web-1", "memory.swap.max"), "0");
    assert.equal(await read("v2", "quai", "web-1", "pids.max"), "256");
    assert.equal(await read("v2", "quai", "web-1", "cpu.weight"), "25");
    assert.equal(await read("v2", "cgroup.subtree_control"), "+memory +pids +cpu");
    assert.equal(await read("v2", "quai", "cgroup.subtree_control"), "+memory +pids +cpu");
    assert.deepEqual(cg.procsFiles("web-1"), [join(root, "v2", "quai", "web-1", "cgroup.procs")]);
    assert.equal(cg.exists("web-1"), true);
    assert.equal(cg.exists("web-2"), false);
  });

  it("lists its groups with when each was made, and nothing that is not a directory", async () => {
    const cg = new CgroupsV2(join(root, "v2-list"));
    const before = Date.now();
    await cg.create("web-1", limits);
    await cg.create("web-1.exec-0123abcd", limits);
    const groups = await cg.list();
    assert.deepEqual(groups.map((g) => g.id), ["web-1", "web-1.exec-0123abcd"]);
    for (const g of groups) assert.ok(g.createdMs >= before - 1000 && g.createdMs <= Date.now() + 1000, `${g.id} made at ${g.createdMs}`);
    assert.deepEqual(await new CgroupsV2(join(root, "v2-none")).list(), []);
  });

  it("reads usage, pids and the OOM-kill count from the group's files", async () => {
    const cg = new CgroupsV2(join(root, "v2"));
    const dir = join(root, "v2", "quai", "web-1");
    await writeFile(join(dir, "memory.current"), "104857600\n");
    await writeFile(join(dir, "memory.stat"), "anon 94371840\nfile 10485760\ninactive_file 4194304\n");
    await writeFile(join(dir, "pids.current"), "3\n");
    await writeFile(join(dir, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
    await writeFile(join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n");
    await writeFile(join(dir, "cgroup.procs"), "");
    assert.deepEqual(await cg.usage("web-1"), { memoryBytes: 104857600 - 4194304, memoryLimitBytes: 268435456, pids: 3, cpuNanos: 1_500_000 });
    assert.equal(await cg.oomKills("web-1"), 1);
    assert.deepEqual(await cg.pids("web-1"), []);
    assert.equal(await cg.usage("nope"), undefined);
  });

  it("kills through cgroup.kill when the kernel has it", async () => {
    const cg = new CgroupsV2(join(root, "v2"));
    await writeFile(join(root, "v2", "quai", "web-1", "cgroup.kill"), "");
    await cg.killAll("web-1");
    assert.equal(await read("v2", "quai", "web-1", "cgroup.kill"), "1");
  });

  it("converts cpu shares to weights proportionally, within the kernel's range", () => {
    assert.equal(sharesToWeight(1024), 100);
    assert.equal(sharesToWeight(256), 25);
    assert.equal(sharesToWeight(4096), 400);
    assert.equal(sharesToWeight(2), 1);
    assert.equal(sharesToWeight(262144), 10000);
  });
});

describe("CgroupsV1", () => {
  const mounts = () => ({ memory: join(root, "v1", "memory"), pids: join(root, "v1", "pids"), cpu: join(root, "v1", "cpu,cpuacct"), cpuacct: join(root, "v1", "cpu,cpuacct") });

  it("sets memory (and memory+swap when accounted), pids and cpu.shares in each hierarchy", async () => {
    // The kernel creates memory.memsw.* only with swap accounting: stand in for it.
    await mkdir(join(root, "v1", "memory", "quai", "web-1"), { recursive: true });
    await writeFile(join(root, "v1", "memory", "quai", "web-1", "memory.memsw.limit_in_bytes"), "");
    const cg = new CgroupsV1(mounts());
    await cg.create("web-1", limits);
    assert.equal(await read("v1", "memory", "quai", "web-1", "memory.limit_in_bytes"), "268435456");
    assert.equal(await read("v1", "memory", "quai", "web-1", "memory.memsw.limit_in_bytes"), "268435456");
    assert.equal(await read("v1", "pids", "quai", "web-1", "pids.max"), "256");
    assert.equal(await read("v1", "cpu,cpuacct", "quai", "web-1", "cpu.shares"), "256");
    // Co-mounted cpu and cpuacct are one hierarchy: joined once.
    assert.deepEqual(cg.procsFiles("web-1"), [
      join(root, "v1", "memory", "quai", "web-1", "cgroup.procs"),
      join(root, "v1", "pids", "quai", "web-1", "cgroup.procs"),
      join(root, "v1", "cpu,cpuacct", "quai", "web-1", "cgroup.procs"),
    ]);
  });

  it("lists each group once across its hierarchies, even one left in a single hierarchy", async () => {
    const m = { memory: join(root, "v1-list", "memory"), pids: join(root, "v1-list", "pids"), cpu: join(root, "v1-list", "cpu,cpuacct"), cpuacct: join(root, "v1-list", "cpu,cpuacct") };
    const cg = new CgroupsV1(m);
    await cg.create("web-1", limits);
    await mkdir(join(m.pids, "quai", "web-2.exec-89abcdef"), { recursive: true });
    assert.deepEqual((await cg.list()).map((g) => g.id), ["web-1", "web-2.exec-89abcdef"]);
  });

  it("turns swapping off when swap is not accounted", async () => {
    const cg = new CgroupsV1(mounts());
    await cg.create("web-2", limits);
    assert.equal(await read("v1", "memory", "quai", "web-2", "memory.swappiness"), "0");
  });

  it("reads the oom_kill counter of memory.oom_control", async () => {
    const cg = new CgroupsV1(mounts());
    await writeFile(join(root, "v1", "memory", "quai", "web-1", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    assert.equal(await cg.oomKills("web-1"), 2);
  });
});

const hybrid = `cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`;
const unified = `proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
`;

describe("detectCgroups", () => {
  it("parses v1 hierarchies and the cgroup2 mount, unescaping octal", () => {
    const m = parseCgroupMounts(`${hybrid}cgroup /sys/fs/cgroup/odd\\040dir cgroup rw,blkio 0 0\n`);
    assert.equal(m.v1.get("memory"), "/sys/fs/cgroup/memory");
    assert.equal(m.v1.get("blkio"), "/sys/fs/cgroup/odd dir");
    assert.equal(m.v2, "/sys/fs/cgroup/unified");
  });

  it("picks v1 on a hybrid layout, where the controllers are", () => {
    assert.equal(detectCgroups(hybrid, () => "").version, 1);
  });

  it("picks v2 on a unified layout with memory and pids", () => {
    assert.equal(detectCgroups(unified, () => "cpuset cpu io memory pids\n").version, 2);
  });

  it("refuses a host where memory cannot be limited", () => {
    assert.throws(() => detectCgroups(unified, () => "cpu io\n"), /no usable cgroup/);
  });
});

describe("readying moves between groups", () => {
  const self = "12:pids:/system.slice/quai.service\n4:memory:/process_api/2805\n1:name=systemd:/\n0::/user.slice/quai\n";

  it("finds the cgroup.procs of this process's own group, per hierarchy", () => {
    assert.equal(ownProcsFile("/sys/fs/cgroup/pids", "pids", self), "/sys/fs/cgroup/pids/system.slice/quai.service/cgroup.procs");
    assert.equal(ownProcsFile("/sys/fs/cgroup", "", self), "/sys/fs/cgroup/user.slice/quai/cgroup.procs");
    assert.equal(ownProcsFile("/sys/fs/cgroup/cpu", "cpu", self), undefined, "no line for it");
    assert.equal(ownProcsFile("/sys/fs/cgroup/pids", "pids", "12:pids:/../escape\n"), undefined);
  });

  it("writes this process's pid into its own group's file while called, then stops", async () => {
    const file = join(root, "warm-procs");
    await writeFile(file, "");
    const writes: string[] = [];
    const warm = warmMoves(() => file);
    const watcher = setInterval(() => void readFile(file, "utf8").then((t) => t && writes.push(t)), 1);
    const first = warm();
    assert.equal(warm(), first, "a warm-up under way is shared");
    await first;
    clearInterval(watcher);
    assert.ok(writes.length > 0);
    assert.ok(writes.every((w) => w === String(process.pid)));
    await writeFile(file, "");
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(await readFile(file, "utf8"), "", "nothing more once it ended");
  });

  it("does nothing, and does not fail, when its own group cannot be found", async () => {
    await warmMoves(() => undefined)();
    await warmMoves(() => {
      throw new Error("ENOENT: /proc/self/cgroup");
    })();
  });

  it("leaves this process in the groups it was in", { skip: process.getuid?.() !== 0 && "needs root (the host's cgroups)" }, async () => {
    const before = await readFile("/proc/self/cgroup", "utf8");
    await detectCgroups().warm();
    assert.equal(await readFile("/proc/self/cgroup", "utf8"), before);
  });
});

describe("listing the host's groups", () => {
  it("gives a group's creation time, which a process joining it later does not change", { skip: process.getuid?.() !== 0 && "needs root (the host's cgroups)" }, async () => {
    const cg = detectCgroups();
    const id = `list-test-${process.pid}`;
    const made = Date.now();
    await cg.create(id, limits);
    try {
      await new Promise((r) => setTimeout(r, 1100));
      // A process joins, as a container's first process does.
      const child = spawn("sleep", ["30"], { stdio: "ignore" });
      for (const file of cg.procsFiles(id)) await writeFile(file, String(child.pid));
      assert.deepEqual(await cg.pids(id), [child.pid]);
      const found = (await cg.list()).find((g) => g.id === id);
      assert.ok(found, "listed");
      assert.ok(Math.abs(found.createdMs - made) < 1000, `made at ${made}, listed as ${found.createdMs}`);
    } finally {
      await cg.remove(id);
    }
  });
});
