// The one error type the router throws, with a reason the control plane can map to its catalogue
// (an invalid state is the caller's fault; a rejected or failed reload is the router's).

/** Why a router operation failed. */
export type RouterErrorReason =
  /** The desired state breaks a rule (bad name, duplicate hostname, ...): nothing was changed. */
  | "invalid-state"
  /** nginx -t refused the rendered config: the old config keeps serving. */
  | "config-rejected"
  /** nginx accepted the config but the running master did not load it: the old config keeps serving. */
  | "reload-failed"
  /** The router process could not be started, or is not running. */
  | "not-running";

/** A router failure; `message` includes nginx's own words when nginx is the one refusing. */
export class RouterError extends Error {
  readonly reason: RouterErrorReason;

  constructor(reason: RouterErrorReason, message: string) {
    super(message);
    this.name = "RouterError";
    this.reason = reason;
  }
}
