// Per-app log streams: container output, router access lines and deployment events, one line
// each with a timestamp and a source, in a bounded file per app (current + one rotated file).
import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { appendFile, mkdir, readFile, rename, rm, stat, open, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** One log line. */
export interface LogLine {
  at: Date;
  /** web-1, worker-1, one-off-3, router, deploy */
  source: string;
  text: string;
}

/** Formats a line as `quai logs` and the API show it. */
export function formatLine(l: LogLine): string {
  return `${l.at.toISOString()} [${l.source}] ${l.text}`;
}

/** Runs fallocate(1) `op` on `length` bytes of `file` from `offset`; whether it did. */
function fallocate(op: "--collapse-range" | "--punch-hole", offset: number, length: number, file: string): Promise<boolean> {
  return new Promise((resolve) => execFile("fallocate", [op, "--offset", String(offset), "--length", String(length), file], (err) => resolve(!err)));
}

/** Bounded per-app log files with live followers. */
export class AppLogs {
  private readonly dir: string;
  /** Bytes kept per app, the current file and the rotated one together. */
  readonly maxBytes: number;
  private readonly bus = new EventEmitter();
  private readonly chains = new Map<string, Promise<void>>();
  /** Apps whose stream was removed: lines still arriving for them are dropped (ids are never reused). */
  private readonly removed = new Set<string>();

  /** `maxBytes` per app, split over the current and one rotated file. */
  constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.bus.setMaxListeners(0);
  }

  private file(appId: string): string {
    return join(this.dir, `${appId}.log`);
  }

  /** Appends lines to an app's stream. */
  append(appId: string, lines: LogLine[]): Promise<void> {
    if (lines.length === 0 || this.removed.has(appId)) return Promise.resolve();
    const text = lines.map((l) => formatLine(l) + "\n").join("");
    this.bus.emit(appId, text);
    const prev = this.chains.get(appId) ?? mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {});
    const next = prev.then(() => this.write(appId, text)).catch(() => {});
    this.chains.set(appId, next);
    return next;
  }

  private async write(appId: string, text: string): Promise<void> {
    const file = this.file(appId);
    await appendFile(file, text, { mode: 0o600 });
    const size = (await stat(file)).size;
    if (size > this.maxBytes / 2) await rename(file, `${file}.1`);
  }

  /** Deletes an app's stream, once the writes under way are done (the app is deleted). */
  async remove(appId: string): Promise<void> {
    this.removed.add(appId);
    this.bus.emit(`${appId}:end`);
    await this.chains.get(appId);
    this.chains.delete(appId);
    for (const f of [this.file(appId), `${this.file(appId)}.1`]) await rm(f, { force: true });
  }

  /** The last `n` lines (optionally only those whose source starts with `filter`). */
  async tail(appId: string, n: number, filter?: string): Promise<string[]> {
    await this.chains.get(appId);
    let text = "";
    for (const f of [`${this.file(appId)}.1`, this.file(appId)]) {
      try {
        text += await readFile(f, "utf8");
      } catch {
        // not there yet
      }
    }
    let lines = text.split("\n").filter((l) => l !== "");
    if (filter) lines = lines.filter((l) => matches(l, filter));
    return lines.slice(-n);
  }

  /** Calls `fn` with each new chunk of lines, and `end` if the stream is removed; returns the unsubscribe function. */
  follow(appId: string, fn: (text: string) => void, end: () => void = () => {}): () => void {
    this.bus.on(appId, fn);
    this.bus.once(`${appId}:end`, end);
    return () => {
      this.bus.off(appId, fn);
      this.bus.off(`${appId}:end`, end);
    };
  }
}

/** Whether a formatted line comes from a source starting with `filter` (`web` matches web-1, web-2). */
export function matches(line: string, filter: string): boolean {
  const m = /^\S+ \[([^\]]+)\]/.exec(line);
  return !!m && (m[1] === filter || (m[1] as string).startsWith(`${filter}-`));
}

/**
 * Reads what containers append to their spool files, from a saved offset (kept beside the spool,
 * so a restarted control plane resumes where the last one stopped: lines written while it was
 * down are shipped then). A spool is emptied once read past `truncateAt`; the container keeps its
 * O_APPEND descriptor, so it goes on writing at the new end. When more than `backlogBytes` wait
 * unread (lines written while the control plane was down, or faster than it ships them), only the
 * newest `backlogBytes` are shipped, from the first whole line, after a line saying how much was
 * skipped: the app's stream would keep no more than that anyway.
 */
export class SpoolReader {
  private readonly offsets = new Map<string, number>();
  private readonly truncateAt: number;
  private readonly backlogBytes: number;

  constructor(truncateAt = 4 * 1024 * 1024, backlogBytes = Infinity) {
    this.truncateAt = truncateAt;
    this.backlogBytes = backlogBytes;
  }

  /** Drains in progress, by file: two callers draining one spool take turns, never the same bytes. */
  private readonly busy = new Map<string, Promise<unknown>>();

  /** Complete lines written since the last call. */
  drain(file: string): Promise<string> {
    const next = (this.busy.get(file) ?? Promise.resolve()).catch(() => {}).then(() => this.drainNow(file));
    const settled = next.catch(() => {});
    this.busy.set(file, settled);
    void settled.then(() => {
      if (this.busy.get(file) === settled) this.busy.delete(file);
    });
    return next;
  }

  private async drainNow(file: string): Promise<string> {
    let offset = this.offsets.get(file);
    if (offset === undefined) {
      offset = Number(await readFile(`${file}.offset`, "utf8").catch(() => "0")) || 0;
    }
    let fh;
    try {
      fh = await open(file, "r");
    } catch {
      return "";
    }
    try {
      const st = await fh.stat();
      const size = st.size;
      if (size < offset) offset = 0;
      if (size === offset) return "";
      let note = "";
      if (size - offset > this.backlogBytes) {
        // Resume at the first line that starts within the newest backlogBytes.
        const from = size - this.backlogBytes;
        const probe = Buffer.alloc(Math.min(64 * 1024, size - from));
        const { bytesRead } = await fh.read(probe, 0, probe.length, from - 1);
        const nl = probe.subarray(0, bytesRead).indexOf(10);
        const resume = nl < 0 ? from : from + nl;
        note = `quai: ${resume - offset} bytes of older output skipped: more than ${this.backlogBytes} bytes were waiting to be shipped\n`;
        offset = resume;
      }
      const buf = Buffer.alloc(Math.min(size - offset, 1024 * 1024));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      const chunk = buf.subarray(0, bytesRead);
      const lastNl = chunk.lastIndexOf(10);
      // A partial line waits for its end, unless it is huge.
      const end = lastNl < 0 ? (chunk.length >= 64 * 1024 ? chunk.length : 0) : lastNl + 1;
      offset += end;
      if (offset - (this.punched.get(file) ?? 0) >= this.truncateAt) offset = await this.reclaim(file, offset, size, st.blksize || 4096);
      this.offsets.set(file, offset);
      await writeFile(`${file}.offset`, String(offset));
      return note + chunk.subarray(0, end).toString("utf8");
    } finally {
      await fh.close();
    }
  }

  /** How the file system gives back shipped bytes, once found: see `reclaim`. */
  private mode: "collapse" | "punch" | "truncate" | undefined;
  /** Bytes punched out at the head of each spool (mode "punch"). */
  private readonly punched = new Map<string, number>();

  /**
   * Gives the disk of the shipped head of a spool back, without losing what the container appends
   * meanwhile (it writes with O_APPEND, at whatever the end is then): the head is cut out of the
   * file (FALLOC_FL_COLLAPSE_RANGE, whole blocks, never the last byte), or where the file system
   * cannot, punched out (the file keeps its length, not its blocks). A file system that can do
   * neither gets the spool emptied once all of it was read, as before: a line written between the
   * read and the truncation is lost. Returns the read offset in the file afterwards.
   */
  private async reclaim(file: string, offset: number, size: number, block: number): Promise<number> {
    const len = Math.floor(Math.min(offset, size - 1) / block) * block;
    if (this.mode !== "punch" && this.mode !== "truncate" && len > 0) {
      if (await fallocate("--collapse-range", 0, len, file)) {
        this.mode = "collapse";
        return offset - len;
      }
      if (this.mode === undefined) this.mode = "punch";
    }
    if (this.mode === "punch") {
      const from = this.punched.get(file) ?? 0;
      if (await fallocate("--punch-hole", from, offset - from, file)) {
        this.punched.set(file, offset);
        return offset;
      }
      this.mode = "truncate";
    }
    if (offset === size) {
      await truncate(file, 0);
      this.punched.delete(file);
      return 0;
    }
    return offset;
  }

  forget(file: string): void {
    this.offsets.delete(file);
    this.punched.delete(file);
  }

  /** Deletes a spool and its saved offset, after a drain under way. */
  async remove(file: string): Promise<void> {
    await this.busy.get(file);
    this.offsets.delete(file);
    this.punched.delete(file);
    await rm(file, { force: true });
    await rm(`${file}.offset`, { force: true });
  }
}
