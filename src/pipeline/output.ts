// A deployment's output: appended to a file as it happens (so it survives the process) and
// fanned out live to whoever follows it — the pusher's git hook, `deployment-logs -f`, WebSockets.
import { EventEmitter } from "node:events";
import { appendFile, mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";

/** What a follower receives. */
export type OutputEvent = { type: "log"; text: string } | { type: "status"; status: string; final: boolean };

/** Statuses after which a deployment does not change again. */
export const finalStatuses = new Set(["success", "build-error", "crashed-error", "timeout-error", "hook-error", "aborted"]);

/** Per-deployment output files under one directory, with live followers. */
export class DeploymentOutputs {
  private readonly dir: string;
  private readonly bus = new EventEmitter();
  /** Appends are chained per deployment so lines keep their order on disk. */
  private readonly tails = new Map<string, Promise<void>>();
  /** Output of deployments still running, kept in memory for followers that join late. */
  private readonly live = new Map<string, string[]>();

  constructor(dir: string) {
    this.dir = dir;
    this.bus.setMaxListeners(0);
  }

  file(id: string): string {
    return join(this.dir, `${id}.log`);
  }

  /** Appends `text` (any number of lines) and tells followers. */
  append(id: string, text: string): Promise<void> {
    if (text === "") return Promise.resolve();
    let live = this.live.get(id);
    if (!live) this.live.set(id, (live = []));
    live.push(text);
    this.bus.emit(id, { type: "log", text } satisfies OutputEvent);
    this.bus.emit("*", id, { type: "log", text } satisfies OutputEvent);
    const prev = this.tails.get(id) ?? mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => {});
    const next = prev.then(() => appendFile(this.file(id), text, { mode: 0o600 })).catch(() => {});
    this.tails.set(id, next);
    return next;
  }

  /** Tells followers the status changed; a final status ends their stream. */
  status(id: string, status: string): void {
    const final = finalStatuses.has(status);
    this.bus.emit(id, { type: "status", status, final } satisfies OutputEvent);
    this.bus.emit("*", id, { type: "status", status, final } satisfies OutputEvent);
    if (final) {
      this.live.delete(id);
      void this.tails.get(id)?.then(() => this.tails.delete(id));
    }
  }

  /** Deletes a deployment's output once what was appended is written (its app is deleted). */
  async remove(id: string): Promise<void> {
    await this.tails.get(id);
    this.live.delete(id);
    await rm(this.file(id), { force: true });
  }

  /** The whole output written so far. */
  async read(id: string): Promise<string> {
    const live = this.live.get(id);
    if (live) return live.join("");
    await this.tails.get(id);
    try {
      return await readFile(this.file(id), "utf8");
    } catch {
      return "";
    }
  }

  /**
   * Yields the output from the beginning, then live lines, until a final status (or `signal`).
   * `finalStatus` returns the deployment's status if it has already finished.
   */
  async *follow(id: string, finalStatus: () => Promise<string | undefined>, signal?: AbortSignal): AsyncGenerator<OutputEvent> {
    const queue: OutputEvent[] = [];
    let wake: (() => void) | undefined;
    // Snapshot and subscribe in the same tick: no line is missed or repeated.
    const live = this.live.get(id);
    const snapshot = live ? live.join("") : undefined;
    const onEvent = (e: OutputEvent) => {
      queue.push(e);
      wake?.();
    };
    this.bus.on(id, onEvent);
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      if (snapshot !== undefined) {
        if (snapshot) yield { type: "log", text: snapshot };
      } else {
        const done = await finalStatus();
        if (done) {
          const text = await this.read(id);
          if (text) yield { type: "log", text };
          yield { type: "status", status: done, final: true };
          return;
        }
      }
      for (;;) {
        while (queue.length > 0) {
          const e = queue.shift() as OutputEvent;
          yield e;
          if (e.type === "status" && e.final) return;
        }
        if (signal?.aborted) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      this.bus.off(id, onEvent);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Every event of every deployment (for per-app WebSocket streams); returns the unsubscribe. */
  onAny(fn: (id: string, e: OutputEvent) => void): () => void {
    this.bus.on("*", fn);
    return () => this.bus.off("*", fn);
  }
}
