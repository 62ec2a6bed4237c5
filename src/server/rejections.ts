// What the control plane does with a promise rejection nothing handled.

let installed = false;

/**
 * Logs a rejection nothing handled (a background task's promise that a timer started and nobody
 * awaits) instead of stopping the process, as Node.js does by default. Such a rejection is a bug
 * to report, but stopping the server for it would cut every request in flight, the deployments
 * running and the supervision of the apps' containers and add-ons, which a restarted server only
 * resumes. Thrown exceptions (state left half-changed) still stop it.
 */
export function logStrayRejections(log: (line: string) => void): void {
  if (installed) return;
  installed = true;
  process.on("unhandledRejection", (reason) => {
    const text = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
    log(`internal error in a background task (a bug: please report it); the server keeps running: ${text}`);
  });
}
