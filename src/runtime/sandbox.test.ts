// Golden tests of the sandbox command line: a spec in, the exact argv and bwrap options out.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeArgs, sandboxCommand, validateSpec, type SandboxHost } from "./sandbox.ts";
import type { ContainerSpec } from "./types.ts";

const host: SandboxHost = {
  bwrap: "/usr/bin/bwrap",
  sandboxExec: "/opt/quai/libexec/sandbox-exec",
  rootEntries: [
    { name: "bin", kind: "symlink", target: "usr/bin" },
    { name: "sbin", kind: "symlink", target: "usr/sbin" },
    { name: "lib", kind: "symlink", target: "usr/lib" },
    { name: "lib64", kind: "symlink", target: "usr/lib64" },
  ],
};

const procs = ["/sys/fs/cgroup/memory/quai/shop-web-1-ab12/cgroup.procs", "/sys/fs/cgroup/pids/quai/shop-web-1-ab12/cgroup.procs"];

const web: ContainerSpec = {
  id: "shop-web-1-ab12",
  app: "shop",
  uid: 60010,
  gid: 60010,
  appDir: "/var/lib/quai/containers/shop-web-1-ab12/app",
  appWritable: true,
  binds: [{ source: "/var/lib/quai/shared/geoip", target: "/app/geoip", writable: false }],
  // A Procfile line is the app's business: it stays one argv element, run by the sandbox's sh.
  command: ["/bin/sh", "-c", "node server.js --port $PORT; rm -rf / # $(whoami)"],
  env: { PORT: "5000", DATABASE_URL: "postgres://u:p@127.0.0.1:5433/db", "WEIRD VALUE": "a b\nc 'd' \"e\" $(f)" },
  size: "M",
  network: "host",
  logFile: "/var/log/quai/shop-web-1-ab12.log",
};

describe("sandboxCommand", () => {
  it("builds an app container: cgroups as root, then the app's uid, then bwrap reading its options from a fd", () => {
    const cmd = sandboxCommand(web, host, { procsFiles: procs, argsFd: 4, statusFd: 3 });
    assert.deepEqual(cmd.argv, [
      "/opt/quai/libexec/sandbox-exec", "--cgroup", procs[0], "--cgroup", procs[1], "--uid", "60010", "--gid", "60010", "--",
      "/usr/bin/bwrap", "--args", "4", "--",
      "/bin/sh", "-c", "node server.js --port $PORT; rm -rf / # $(whoami)",
    ]);
    assert.deepEqual(cmd.bwrapArgs, [
      "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
      "--hostname", "shop-web-1-ab12",
      "--ro-bind", "/usr", "/usr",
      "--ro-bind", "/etc", "/etc",
      "--symlink", "usr/bin", "/bin",
      "--symlink", "usr/sbin", "/sbin",
      "--symlink", "usr/lib", "/lib",
      "--symlink", "usr/lib64", "/lib64",
      "--proc", "/proc",
      "--dev", "/dev",
      "--tmpfs", "/dev/shm",
      "--tmpfs", "/tmp",
      "--bind", "/var/lib/quai/containers/shop-web-1-ab12/app", "/app",
      "--ro-bind", "/var/lib/quai/shared/geoip", "/app/geoip",
      "--remount-ro", "/dev",
      "--remount-ro", "/",
      "--chdir", "/app",
      "--cap-drop", "ALL",
      "--new-session",
      "--json-status-fd", "3",
      "--clearenv",
      "--setenv", "HOME", "/app",
      "--setenv", "PORT", "5000",
      "--setenv", "DATABASE_URL", "postgres://u:p@127.0.0.1:5433/db",
      "--setenv", "WEIRD VALUE", "a b\nc 'd' \"e\" $(f)",
    ]);
  });

  it("builds a one-off exec: no network, read-only /app, its own cwd and HOME, dies with its parent", () => {
    const oneOff: ContainerSpec = { ...web, appWritable: false, binds: undefined, network: "none", cwd: "/app/web", env: { HOME: "/tmp" }, command: ["rake", "db:migrate"] };
    const cmd = sandboxCommand(oneOff, { ...host, rootEntries: [{ name: "bin", kind: "dir" }] }, { procsFiles: procs.slice(0, 1), argsFd: 3, dieWithParent: true, command: ["/usr/bin/python3", "-c", "PTY", "rake", "db:migrate"] });
    assert.deepEqual(cmd.argv, [
      "/opt/quai/libexec/sandbox-exec", "--cgroup", procs[0], "--uid", "60010", "--gid", "60010", "--",
      "/usr/bin/bwrap", "--args", "3", "--",
      "/usr/bin/python3", "-c", "PTY", "rake", "db:migrate",
    ]);
    assert.deepEqual(cmd.bwrapArgs, [
      "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "--unshare-net",
      "--hostname", "shop-web-1-ab12",
      "--ro-bind", "/usr", "/usr",
      "--ro-bind", "/etc", "/etc",
      "--ro-bind", "/bin", "/bin",
      "--proc", "/proc",
      "--dev", "/dev",
      "--tmpfs", "/dev/shm",
      "--tmpfs", "/tmp",
      "--ro-bind", "/var/lib/quai/containers/shop-web-1-ab12/app", "/app",
      "--remount-ro", "/dev",
      "--remount-ro", "/",
      "--chdir", "/app/web",
      "--cap-drop", "ALL",
      "--new-session",
      "--die-with-parent",
      "--clearenv",
      "--setenv", "HOME", "/tmp",
    ]);
  });

  it("layers /app over the slug: a private mount namespace mounts the overlay, as root, before dropping to the app's uid", () => {
    const layers = { lower: "/var/lib/quai/slugs/4f2a", upper: "/var/lib/quai/containers/shop-web-1-ab12/layer", work: "/var/lib/quai/containers/shop-web-1-ab12/layer-work" };
    const cmd = sandboxCommand({ ...web, appLayers: layers }, host, { procsFiles: procs, argsFd: 4 });
    assert.deepEqual(cmd.argv, [
      "/opt/quai/libexec/sandbox-exec", "--cgroup", procs[0], "--cgroup", procs[1],
      "--overlay", layers.lower, layers.upper, layers.work, "/var/lib/quai/containers/shop-web-1-ab12/app",
      "--uid", "60010", "--gid", "60010", "--",
      "/usr/bin/bwrap", "--args", "4", "--",
      "/bin/sh", "-c", "node server.js --port $PORT; rm -rf / # $(whoami)",
    ]);
    // bwrap binds the mount point, where the overlay is in its parent's namespace.
    const i = cmd.bwrapArgs.indexOf("/var/lib/quai/containers/shop-web-1-ab12/app");
    assert.deepEqual(cmd.bwrapArgs.slice(i - 1, i + 2), ["--bind", "/var/lib/quai/containers/shop-web-1-ab12/app", "/app"]);
  });

  it("never puts env values in argv, where `ps` would show them", () => {
    const cmd = sandboxCommand(web, host, { procsFiles: procs, argsFd: 4 });
    assert.ok(!cmd.argv.some((a) => a.includes("postgres://")));
  });

  it("cuts the host name to 63 bytes", () => {
    const id = "x".repeat(100);
    const args = sandboxCommand({ ...web, id }, host, { procsFiles: [], argsFd: 4 }).bwrapArgs;
    assert.equal(args[args.indexOf("--hostname") + 1], "x".repeat(63));
  });

  it("encodes options for --args as NUL-terminated strings", () => {
    assert.deepEqual(encodeArgs(["--setenv", "A", "x y"]), Buffer.from("--setenv\0A\0x y\0"));
  });
});

describe("validateSpec", () => {
  const bad: [string, Partial<ContainerSpec>][] = [
    ["an id with a slash", { id: "a/b" }],
    ["an id that climbs", { id: "../etc" }],
    ["an empty id", { id: "" }],
    ["uid 0", { uid: 0 }],
    ["gid 0", { gid: 0 }],
    ["a relative appDir", { appDir: "app" }],
    ["a bind target with ..", { binds: [{ source: "/srv", target: "/app/../etc", writable: true }] }],
    ["a relative cwd", { cwd: "app" }],
    ["an env name with =", { env: { "A=B": "c" } }],
    ["an env value with NUL", { env: { A: "b\0c" } }],
    ["an empty command", { command: [] }],
    ["a slug layer with a comma (mount option syntax)", { appLayers: { lower: "/srv/slug,upperdir=/etc", upper: "/srv/u", work: "/srv/w" } }],
    ["a slug layer with a colon (more lower layers)", { appLayers: { lower: "/srv/slug:/root", upper: "/srv/u", work: "/srv/w" } }],
    ["a relative upper layer", { appLayers: { lower: "/srv/slug", upper: "u", work: "/srv/w" } }],
    ["a work dir that climbs", { appLayers: { lower: "/srv/slug", upper: "/srv/u", work: "/srv/../w" } }],
  ];
  for (const [what, over] of bad) {
    it(`rejects ${what}`, () => {
      assert.throws(() => validateSpec({ ...web, ...over }));
    });
  }

  it("accepts a normal spec", () => {
    validateSpec(web);
  });
});
