// Facts about host processes from /proc: whether a recorded pid is still the same process (pids
// are reused), and how much memory a process holds.
import { readFileSync } from "node:fs";

/** The fields of /proc/<pid>/stat the runtime needs. */
export interface ProcStat {
  /** R, S, D, Z (zombie: exited, not yet reaped), ... */
  state: string;
  ppid: number;
  /** Start time in clock ticks after boot: with the pid, identifies one process for good. */
  startTicks: number;
}

/** Parses /proc/<pid>/stat; the command name may hold spaces and parentheses, so split after the last ")". */
export function parseProcStat(text: string): ProcStat | undefined {
  const end = text.lastIndexOf(")");
  if (end < 0) return undefined;
  const fields = text.slice(end + 2).split(" ");
  // fields[0] is field 3 of proc(5) (state); starttime is field 22.
  const state = fields[0];
  const ppid = Number(fields[1]);
  const startTicks = Number(fields[19]);
  if (state === undefined || !Number.isFinite(startTicks)) return undefined;
  return { state, ppid, startTicks };
}

/** The stat of a live pid, or undefined if there is none. */
export function procStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` is the process that started at `startTicks` and has not exited. A zombie
 * counts as exited: when the control plane restarts, the sandbox is re-parented to pid 1, and
 * some init processes never reap.
 */
export function isAlive(pid: number, startTicks: number): boolean {
  const st = procStat(pid);
  return st !== undefined && st.startTicks === startTicks && st.state !== "Z" && st.state !== "X";
}

/** Resident memory of a process in bytes (VmRSS), 0 when gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Changes at each boot: a container recorded under another boot id was lost with its host. */
export function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}
