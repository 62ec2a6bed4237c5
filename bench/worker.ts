// A load generator runs in a worker thread of its own, so its work never delays the backend's
// loop in the bench process. One module answers in a worker only when it is the one started.
import { Worker, parentPort, workerData } from "node:worker_threads";
import type { LoadResult } from "./load.ts";

interface Started<S> {
  module: string;
  spec: S;
}

/** Runs `module`'s generator (see `answerInWorker`) on `spec` in a new worker thread. */
export function runInWorker<S>(module: string, spec: S): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(module), { workerData: { module, spec } satisfies Started<S> });
    let result: LoadResult | undefined;
    worker.once("message", (m: { ok: true; result: LoadResult } | { ok: false; error: string }) => {
      if (m.ok) result = m.result;
      else reject(new Error(m.error));
    });
    worker.once("error", reject);
    worker.once("exit", (code) => {
      if (result) resolve(result);
      else reject(new Error(`load worker exited with code ${code} and no result`));
    });
  });
}

/** In a worker started by `runInWorker` for `module` (the caller's import.meta.url), runs `run` and posts its result. */
export function answerInWorker<S>(module: string, run: (spec: S) => Promise<LoadResult>): void {
  const started = workerData as Started<S> | undefined;
  const port = parentPort;
  if (!port || started?.module !== module) return;
  run(started.spec).then(
    (result) => port.postMessage({ ok: true, result }),
    (err: unknown) => port.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
}
