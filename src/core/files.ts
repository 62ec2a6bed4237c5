// Small file helpers for state under QUAI_HOME: private directories, atomic writes, and files an
// app's uid left that the control plane (root) reads.
import { constants } from "node:fs";
import { mkdir, open, rename, writeFile, chmod, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { randomBytes } from "node:crypto";

/** Creates `dir` (and parents) readable by the owner only. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
}

/** Writes `data` to `file` with mode 0600 through a temporary file and a rename, so readers never see half a file. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, file);
}

/**
 * Opens for reading a file an app's build left, only if it is a regular file owned by `uid`:
 * without following a symlink (root must not be led to read a file of the host) and without
 * blocking on a FIFO. Undefined otherwise; the caller closes the handle.
 */
export async function openAppOwnedFile(path: string, uid: number): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  const st = await fh.stat().catch(() => undefined);
  if (st?.isFile() && st.uid === uid) return fh;
  await fh.close();
  return undefined;
}
