// Builds keep Node.js's compile cache with the app's build cache; a new app's first build starts
// from the platform's seed (made once, from npm alone, in the build sandbox), copied as its uid's.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { gitApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;

/** A Node.js app with no dependencies: npm ci and npm run build still run. */
function nodeApp(body: string): Record<string, string> {
  const pkg = { name: "cc-app", version: "1.0.0", private: true, engines: { node: "24.x" }, scripts: { build: "node -e \"require('fs').writeFileSync('built.txt', 'yes')\"", start: "node server.js" } };
  const lock = { name: "cc-app", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "cc-app", version: "1.0.0", engines: { node: "24.x" } } } };
  return {
    "package.json": JSON.stringify(pkg, null, 2),
    "package-lock.json": JSON.stringify(lock, null, 2),
    "server.js": `require("http").createServer((q, s) => s.end(${JSON.stringify(body)})).listen(process.env.PORT, "127.0.0.1");\n`,
  };
}

/** The compile cache directories in an app's build cache: name → owner uid, and file count. */
async function compileCacheOf(cacheDir: string): Promise<{ name: string; uid: number; files: number; fileUids: number[] }[]> {
  const root = join(cacheDir, ".node-compile-cache");
  if (!existsSync(root)) return [];
  return Promise.all(
    (await readdir(root)).map(async (name) => {
      const files = await readdir(join(root, name));
      return { name, uid: (await stat(join(root, name))).uid, files: files.length, fileUids: [...new Set(await Promise.all(files.map(async (f) => (await stat(join(root, name, f))).uid)))] };
    }),
  );
}

describe("the compile cache of builds", () => {
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  it("a first build makes the platform's seed; a new app's first build starts from a copy of it, as its own uid's", async () => {
    const runtime = join(p.home, "runtime");
    assert.equal((await p.quai(["create", "cc-first"])).code, 0);
    const first = await p.push("cc-first", await gitApp(nodeApp("first")));
    assert.equal(first.code, 0, first.stderr);
    // The seed is made in the background of a build that found none.
    const seeds = join(runtime, "shared", "node-compile-cache");
    let seed: string | undefined;
    for (let i = 0; i < 150 && !seed; i++) {
      seed = (await readdir(seeds).catch(() => [] as string[])).find((d) => d.startsWith("node-"));
      if (!seed) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(seed, `the seed was made; server log: ${p.server.log.filter((l) => /seed|compile/.test(l)).join("\n")}`);
    const seedSub = await readdir(join(seeds, seed));
    assert.equal(seedSub.length, 1);
    const seedFiles = await readdir(join(seeds, seed, seedSub[0] as string));
    assert.ok(seedFiles.length > 10, `the seed holds npm's compiled code (${seedFiles.length} files)`);
    const seedStat = await stat(join(seeds, seed, seedSub[0] as string, seedFiles[0] as string));
    assert.equal(seedStat.uid, 0, "the seed is root's");
    assert.equal(seedStat.mode & 0o022, 0, "and no one else may write it");

    assert.equal((await p.quai(["create", "cc-second"])).code, 0);
    const second = await p.push("cc-second", await gitApp(nodeApp("second")));
    assert.equal(second.code, 0, second.stderr);
    assert.equal((await p.get("cc-second")).body, "second");
    const caches = join(runtime, "caches");
    let planted = 0;
    for (const id of await readdir(caches)) {
      const uid = (await stat(join(caches, id))).uid;
      for (const dir of await compileCacheOf(join(caches, id))) {
        assert.match(dir.name, new RegExp(`^v24\\.[\\d.]+-x64-[0-9a-f]+-${uid}$`), "Node.js's own name for the app's uid");
        assert.equal(dir.uid, uid);
        assert.deepEqual(dir.fileUids, [uid], "every file is the app's");
        if (dir.files >= seedFiles.length) planted++;
      }
    }
    assert.ok(planted >= 1, "the second app's cache started from the seed");
  });
});
