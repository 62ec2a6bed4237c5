// A slug larger than QUAI_SLUG_LIMIT fails its build: the push is refused with a message naming
// the limit, the previous release keeps serving, and nothing of the new one is left.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { commitAll, gitApp, pythonWebApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;
let dir: string;
const APP = "slug-limit";

describe("QUAI_SLUG_LIMIT", () => {
  before(async () => {
    // Large enough for the Python app's slug (a few KB), small enough to refuse a 3 MB one.
    p = await startPlatform({ QUAI_SLUG_LIMIT: String(1024 * 1024) });
    assert.equal((await p.quai(["create", APP])).code, 0);
    dir = await gitApp(pythonWebApp("small"));
    const push = await p.push(APP, dir);
    assert.equal(push.code, 0, push.stderr);
  });
  after(async () => {
    await p?.close();
  });

  it("a slug over the limit fails the build: the previous release serves, nothing of the new one is left", async () => {
    const slugs = join(p.home, "runtime", "slugs");
    const slugsBefore = await readdir(slugs);
    await writeFile(join(dir, "data.bin"), randomBytes(3 * 1024 * 1024)); // Incompressible.
    await writeFile(join(dir, "server.py"), pythonWebApp("too big")["server.py"] as string);
    await commitAll(dir, "too big");
    const push = await p.push(APP, dir);
    assert.notEqual(push.code, 0, "the push is refused");
    assert.match(push.stderr, /The slug is larger than 1\.0 MB, the largest this platform keeps \(QUAI_SLUG_LIMIT\)/);
    assert.match(push.stderr, /Deployment ended: build-error/);
    assert.equal((await p.get(APP)).body, "small");
    const deployments = JSON.parse((await p.quai(["--app", APP, "deployments", "--json"])).stdout) as { status: string }[];
    assert.equal(deployments[0]?.status, "build-error");
    const ps = JSON.parse((await p.quai(["--app", APP, "ps", "--json"])).stdout) as { containers: { label: string; state: string; release: string }[] };
    assert.deepEqual(ps.containers.map((c) => [c.label, c.state, c.release]), [["web-1", "running", "v1"]]);
    const releases = JSON.parse((await p.quai(["--app", APP, "releases", "--json"])).stdout) as { version: number; current: boolean }[];
    assert.deepEqual(releases.map((r) => [r.version, r.current]), [[1, true]], "no release was made");
    assert.deepEqual((await readdir(slugs)).sort(), slugsBefore.sort(), "no slug directory or build tree is left");
  });
});
