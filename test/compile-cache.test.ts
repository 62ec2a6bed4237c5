// Builds keep Node.js's compile cache with the app's build cache; a new app's first build starts
// from the platform's seed (made once, from npm alone, in the build sandbox): its files linked,
// root's and read-only, in a directory named for and owned by the app's uid.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { commitAll, gitApp, startPlatform, type TestPlatform } from "../src/testing/platform.ts";

let p: TestPlatform;

/** A Node.js app with no dependencies: npm ci and npm run build still run. */
function nodeApp(body: string, build = "node -e \"require('fs').writeFileSync('built.txt', 'yes')\""): Record<string, string> {
  const pkg = { name: "cc-app", version: "1.0.0", private: true, engines: { node: "24.x" }, scripts: { build, start: "node server.js" } };
  const lock = { name: "cc-app", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "cc-app", version: "1.0.0", engines: { node: "24.x" } } } };
  return {
    "package.json": JSON.stringify(pkg, null, 2),
    "package-lock.json": JSON.stringify(lock, null, 2),
    "server.js": `require("http").createServer((q, s) => s.end(${JSON.stringify(body)})).listen(process.env.PORT, "127.0.0.1");\n`,
  };
}

/** The compile cache directories in an app's build cache: name, owner uid, and its files' inode, owner and mode. */
async function compileCacheOf(cacheDir: string): Promise<{ name: string; uid: number; files: { ino: number; uid: number; mode: number }[] }[]> {
  const root = join(cacheDir, ".node-compile-cache");
  if (!existsSync(root)) return [];
  return Promise.all(
    (await readdir(root)).map(async (name) => {
      const files = await Promise.all((await readdir(join(root, name))).map((f) => stat(join(root, name, f))));
      return { name, uid: (await stat(join(root, name))).uid, files: files.map((f) => ({ ino: f.ino, uid: f.uid, mode: f.mode })) };
    }),
  );
}

/** Each file of a directory: name → sha256 of its content. */
async function digests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const f of await readdir(dir)) out.set(f, createHash("sha256").update(await readFile(join(dir, f))).digest("hex"));
  return out;
}

/** A build script that tries to write into every file of the build's compile cache, then says how many it could. */
const poison = `node -e "const fs=require('fs'),d='/cache/.node-compile-cache';let n=0,t=0;for(const s of fs.readdirSync(d))for(const f of fs.readdirSync(d+'/'+s)){t++;try{fs.appendFileSync(d+'/'+s+'/'+f,'x');n++}catch{}}fs.writeFileSync('built.txt',n+' of '+t)"`;

describe("the compile cache of builds", () => {
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  it("a first build makes the platform's seed; a new app's first build starts from it, which the app's build cannot change", async () => {
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

    const seedDir = join(seeds, seed, seedSub[0] as string);
    const seedInodes = new Set(await Promise.all(seedFiles.map(async (f) => (await stat(join(seedDir, f))).ino)));
    const before = await digests(seedDir);

    // The second app's build tries to write into every file of its compile cache.
    assert.equal((await p.quai(["create", "cc-second"])).code, 0);
    const secondDir = await gitApp({ ...nodeApp("second", poison), "server.js": 'require("http").createServer((q, s) => s.end(require("fs").readFileSync("built.txt"))).listen(process.env.PORT, "127.0.0.1");\n' });
    const second = await p.push("cc-second", secondDir);
    assert.equal(second.code, 0, second.stderr);
    const [wrote, , total] = (await p.get("cc-second")).body.split(" ");
    assert.ok(Number(total) >= seedFiles.length, `the build saw the seed's files in its cache (${total})`);
    const caches = join(runtime, "caches");
    let planted = 0;
    let linkedFiles = 0;
    for (const id of await readdir(caches)) {
      const uid = (await stat(join(caches, id))).uid;
      for (const dir of await compileCacheOf(join(caches, id))) {
        assert.match(dir.name, new RegExp(`^v24\\.[\\d.]+-x64-[0-9a-f]+-${uid}$`), "Node.js's own name for the app's uid");
        assert.equal(dir.uid, uid, "the directory is the app's: Node.js replaces entries in it");
        const linked = dir.files.filter((f) => seedInodes.has(f.ino));
        for (const f of linked) {
          assert.equal(f.uid, 0, "a file shared with the seed is root's");
          assert.equal(f.mode & 0o222 & ~0o200, 0, "and only root may write it");
        }
        for (const f of dir.files.filter((x) => !seedInodes.has(x.ino))) assert.equal(f.uid, uid, "any other file is the app's own");
        if (linked.length > 0) planted++;
        linkedFiles += linked.length;
      }
    }
    assert.ok(planted >= 1, "the second app's cache started from the seed");
    assert.ok(Number(wrote) <= Number(total) - linkedFiles, `the build could write none of the seed's files (it wrote ${wrote} of ${total}, ${linkedFiles} are the seed's)`);
    assert.deepEqual(await digests(seedDir), before, "the seed is unchanged");

    // And the app's next build reuses its cache as it is.
    await writeFile(join(secondDir, "server.js"), 'require("http").createServer((q, s) => s.end("again")).listen(process.env.PORT, "127.0.0.1");\n');
    await commitAll(secondDir, "again");
    const again = await p.push("cc-second", secondDir);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await p.get("cc-second")).body, "again");
    assert.deepEqual(await digests(seedDir), before, "the seed is still unchanged");
  });
});
