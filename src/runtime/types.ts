// The contract between the deploy pipeline and whatever runs containers (Nomad's task-driver
// lifecycle): start / wait / stop / inspect / recover / exec / stats. Every driver passes the
// conformance suite in test/conformance/runtime.suite.ts.
import type { EventEmitter } from "node:events";

/** Scalingo's container sizes. */
export const containerSizes = {
  S: { memoryMb: 256, pids: 256, cpuShares: 256 },
  M: { memoryMb: 512, pids: 512, cpuShares: 512 },
  L: { memoryMb: 1024, pids: 1024, cpuShares: 1024 },
  XL: { memoryMb: 2048, pids: 2048, cpuShares: 2048 },
  "2XL": { memoryMb: 4096, pids: 4096, cpuShares: 4096 },
} as const;

/** One of S, M, L, XL, 2XL. */
export type ContainerSize = keyof typeof containerSizes;

/** What to run: everything a driver needs, nothing it must look up. */
export interface ContainerSpec {
  /** Unique, stable id chosen by the caller ("<app>-web-1-<random>"): names cgroups, files. */
  id: string;
  /** App name, for labels and logs. */
  app: string;
  /** Host uid/gid the container runs as (one per app, never 0). */
  uid: number;
  gid: number;
  /** Host directory mounted at /app (the unpacked slug, or a build dir). */
  appDir: string;
  /** Mount /app writable (builds, and a container's layer over its slug). */
  appWritable: boolean;
  /**
   * When set, appDir is an empty mount point and /app is an overlay of `lower` (the release's
   * unpacked slug, read-only to everyone) under `upper` (the container's own changes; `work` is
   * the overlay's scratch directory, on the same file system). Nothing is copied per container.
   */
  appLayers?: { lower: string; upper: string; work: string };
  /** Where appDir is mounted (default /app). Builds mount one directory and link /app and /cache into it, so hard links work between them. */
  appMount?: string;
  /** Symbolic links to create in the sandbox (after the mounts). */
  symlinks?: { link: string; target: string }[];
  /** Extra binds: host path → sandbox path. */
  binds?: { source: string; target: string; writable: boolean }[];
  /** argv run inside the sandbox (never through a host shell). */
  command: string[];
  /** The complete environment (nothing inherited from the control plane). */
  env: Record<string, string>;
  /** Working directory inside the sandbox (default /app). */
  cwd?: string;
  size: ContainerSize;
  /** Share the host's network namespace (apps listen on 127.0.0.1:PORT; builds fetch packages). */
  network: "host" | "none";
  /** File that receives stdout and stderr (appended); the log shipper reads and truncates it. */
  logFile: string;
}

/** What a driver knows about a container. */
export interface ContainerState {
  id: string;
  /** running: process alive; exited: ended with exitCode/signal; unknown: lost (host reboot). */
  status: "running" | "exited" | "unknown";
  /** Host pid of the supervisor process (bwrap) while running. */
  pid?: number;
  exitCode?: number | null;
  signal?: string | null;
  /** True when the kernel's OOM killer ended it. */
  oomKilled?: boolean;
  startedAt: string;
  finishedAt?: string;
}

/** Resource use, from the cgroup. */
export interface ContainerStats {
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
  cpuNanos: number;
}

/** A driver that runs containers. Containers outlive the control plane process. */
export interface RuntimeDriver {
  readonly name: string;
  /** Starts a container; resolves once its process exists. */
  start(spec: ContainerSpec): Promise<ContainerState>;
  /** Resolves when the container has exited (now or later), with its final state. */
  wait(id: string, signal?: AbortSignal): Promise<ContainerState>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when it has exited. Idempotent. */
  stop(id: string, graceMs: number): Promise<ContainerState>;
  /** Current state, or undefined if the driver never heard of this id. */
  inspect(id: string): Promise<ContainerState | undefined>;
  /** Re-attaches to containers started by an earlier control-plane process (by spec id). */
  recover(spec: ContainerSpec): Promise<ContainerState>;
  /**
   * Runs a one-off process in the same sandbox as `spec` and streams it (pipes). `timedOut` is
   * true when `io.timeoutMs` ended it; an abort of `io.signal` kills it and rejects.
   */
  exec(spec: ContainerSpec, io: ExecIo): Promise<ExecResult>;
  /** Memory, pids and CPU of a running container. */
  stats(id: string): Promise<ContainerStats | undefined>;
  /** Forgets an exited container: removes its cgroup and state files. */
  remove(id: string): Promise<void>;
  /**
   * A hint that a start or exec follows within milliseconds: the driver may ready what that
   * start waits on. Never fails; a driver may do nothing.
   */
  warm?(): void;
  /**
   * Removes what one-off processes of an earlier control plane left: a control plane killed
   * during an exec loses the exec with it (it dies with its parent), and nothing else would
   * clear its traces. Only traces older than `minAgeMs` go, so another control plane's exec
   * being set up on the same host is never touched. Resolves to what it removed.
   */
  sweep?(minAgeMs?: number): Promise<string[]>;
}

/** How a one-off process ended. */
export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  oomKilled: boolean;
  timedOut?: boolean;
}

/** Streams of a one-off process. */
export interface ExecIo {
  stdin?: NodeJS.ReadableStream;
  onStdout: (chunk: Buffer) => void;
  onStderr: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /** Kill after this many ms (builds: 15 minutes). */
  timeoutMs?: number;
  /** Allocate a pseudo-terminal (stdout and stderr merged). */
  tty?: boolean;
  /**
   * With `tty`: the terminal's new size whenever it changes (`emit("resize", cols, rows)`); the
   * program gets SIGWINCH. The first size comes from COLUMNS and LINES in the environment.
   */
  resizes?: EventEmitter<{ resize: [cols: number, rows: number] }>;
}
