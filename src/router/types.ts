// The contract between the control plane and the HTTP router: the whole desired state goes in,
// the router applies it in one step or keeps the previous one (Caddy's model).

/** One app as the router sees it. */
export interface RouteApp {
  /** App name: becomes <name>.<domain>. */
  name: string;
  /** Extra hostnames (custom domains), exact names. */
  hostnames: string[];
  /** Web backends ready to receive traffic: 127.0.0.1 and a port. Empty → 503 page. */
  backends: RouteBackend[];
  /** File the app's access log lines are appended to. */
  accessLog: string;
  /** Certificates of some of `hostnames` (PEM); the others get the platform's over HTTPS. */
  certificates?: { hostname: string; certPem: string; keyPem: string }[];
  /** Plain HTTP redirects to HTTPS (301) and HTTPS answers carry HSTS. */
  forceHttps?: boolean;
  /** One of `hostnames`: requests for the app's other names redirect there (301). */
  canonical?: string;
  /** Set while the app is in maintenance: every request gets the page, with 503. */
  maintenance?: RouteMaintenance;
}

/**
 * One web backend. While a deployment's containers boot, the router may already list them as
 * `incoming`, with the serving ones as `backup`: a request tries an incoming backend first and,
 * while it does not accept connections yet (refused at once), goes on to a backup. Traffic thus
 * moves to the new release the moment it listens, without a reload at that moment.
 */
export interface RouteBackend {
  host: string;
  port: number;
  /** Absent: serving. "incoming": tried first, never marked failed. "backup": used when no other answers. */
  role?: "incoming" | "backup";
}

/** Maintenance of one app at the router. */
export interface RouteMaintenance {
  /** The whole page (HTML) served with the 503. */
  html: string;
  /** Client networks that still reach the app (CIDR, e.g. 1.2.3.4/32). */
  allow: string[];
  /** Value of the bypass cookie (hex): team members holding it reach the app. */
  bypassToken: string;
  /** Seconds for Retry-After. */
  retryAfter: number;
}

/** The whole routing table. */
export interface RouterState {
  /** Platform domain: apps answer at <app>.<domain> (default "localhost"). */
  domain: string;
  apps: RouteApp[];
}

/** A router process managed by Quai. */
export interface RouterDriver {
  readonly name: string;
  /** Starts (or re-attaches to a running) router; resolves when it accepts connections. */
  start(): Promise<void>;
  /** Renders, validates, swaps in and reloads; throws and keeps the old config if invalid. */
  apply(state: RouterState): Promise<void>;
  /** Port the router listens on for HTTP. */
  readonly httpPort: number;
  /** Stops the router process. */
  stop(): Promise<void>;
  /** The router's own log files (requests for no app, its errors), which Quai rotates. */
  logFiles?(): string[];
  /** Makes the router write to new files at those paths (after they were renamed). */
  reopenLogs?(): Promise<void>;
}
