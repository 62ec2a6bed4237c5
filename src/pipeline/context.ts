// What the pipeline steps share: the store, the blob store, the runtime and router drivers, the
// directories under the runtime root, and the platform settings.
import { join } from "node:path";
import type { Db } from "../store/db.ts";
import type { Keyring } from "../variables/keyring.ts";
import type { BlobStore } from "../blobs/store.ts";
import type { ContainerSize, RuntimeDriver } from "../runtime/types.ts";
import type { DeploymentOutputs } from "./output.ts";

/**
 * Directories the sandboxes see (through bind mounts). They live under a runtime root every
 * app uid can traverse (mode 0711), unlike QUAI_HOME's private parts (keys, database).
 */
export interface RuntimePaths {
  root: string;
  /** Work directories of running builds. */
  builds: string;
  /** Unpacked slugs, one directory per slug key, owned by root and read-only to apps. */
  slugs: string;
  /** Per-container /app copies and runtime state. */
  containers: string;
  /** Build caches, one per app id. */
  caches: string;
  /** Built-in buildpacks, copied from the checkout at start. */
  buildpacks: string;
  /** Language runtimes offered to builds (mounted at /quai/runtimes). */
  runtimes: string;
  /** Scripts mounted at /quai/bin (the container launcher). */
  bin: string;
  /** The shared npm package store (npm-store.ts), read-only to builds at /quai/shared/npm. */
  sharedNpm: string;
  /** Container log spools and per-app log streams. */
  logs: string;
}

/**
 * How a build's box (its `app/` and `cache/`, one directory so that hard links between them work)
 * appears in the build sandbox: mounted once at /quai/build, writable, with /app and /cache linked
 * into it. Spread into the sandbox's spec.
 */
export const BUILD_BOX = {
  appMount: "/quai/build",
  symlinks: [
    { link: "/app", target: "/quai/build/app" },
    { link: "/cache", target: "/quai/build/cache" },
  ],
  appWritable: true,
} as const;

/** The directories under `root`. */
export function runtimePaths(root: string): RuntimePaths {
  return {
    root,
    builds: join(root, "builds"),
    slugs: join(root, "slugs"),
    containers: join(root, "containers"),
    caches: join(root, "caches"),
    buildpacks: join(root, "buildpacks"),
    runtimes: join(root, "runtimes"),
    bin: join(root, "bin"),
    sharedNpm: join(root, "shared", "npm"),
    logs: join(root, "logs"),
  };
}

/** Pipeline settings. */
export interface PipelineSettings {
  domain: string;
  /** Whole-build time limit (default 15 minutes). */
  buildTimeoutMs: number;
  /** Container size builds run with (memory limit). */
  buildSize: ContainerSize;
  /** Largest source archive accepted. */
  sourceLimitBytes: number;
  /** Largest slug a build may make (compressed); a larger one fails the build. */
  slugLimitBytes: number;
  /** Host directories buildpacks may be taken from (paths and file:// URLs); others are refused. */
  buildpackDirs: string[];
  /** Size bound of the shared npm package store, in bytes (0: no store). */
  sharedNpmBytes: number;
}

/** Everything a pipeline step may use. */
export interface PipelineContext {
  db: Db;
  keyring: Keyring;
  blobs: BlobStore;
  runtime: RuntimeDriver;
  outputs: DeploymentOutputs;
  paths: RuntimePaths;
  settings: PipelineSettings;
  log: (line: string) => void;
}
