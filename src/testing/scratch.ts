// Temporary directories for tests, removed when the test process exits if nothing removed them
// before: a day of test runs must not fill the disk with what failed or interrupted tests left.
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const scratch = new Set<string>();
process.once("exit", () => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A new temporary directory, removed when this process exits if nothing removed it before. */
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  scratch.add(dir);
  return dir;
}
