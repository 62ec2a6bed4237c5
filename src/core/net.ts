// Port helpers: ports are chosen at run time, never fixed, since another process may hold any.
//
// Ports come from below the kernel's ephemeral range (32768–60999 here): a port the kernel
// hands to an outgoing connection or to a `listen(0)` can be taken again the moment it is
// freed, so a port probed there and bound a little later is not reliably ours. Platform
// services (API, router, embedded PostgreSQL, SSH) draw from `servicePortRange`, add-on
// servers from `addonPortRange`, app containers from theirs (formation/supervisor.ts), so
// none of them meet.
import { createServer } from "node:net";

/** A range of TCP ports, `min` included, `max` excluded. */
export interface PortRange {
  min: number;
  max: number;
}

/** Ports for the platform's own listeners. */
export const servicePortRange: PortRange = { min: 10000, max: 15000 };

/** Ports of add-on servers (kept for an instance's life: apps' URLs name them). */
export const addonPortRange: PortRange = { min: 15000, max: 20000 };

/**
 * Ports that browsers and fetch() refuse to connect to (the WHATWG Fetch standard's "bad ports"):
 * a listener there could not be opened from a browser, nor by a client built on fetch. Never
 * chosen (in the ranges above, 10080 is one).
 */
export const BROWSER_BLOCKED_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** Whether `port` can be bound on `host` right now. */
export function portIsFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolvePromise(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolvePromise(true)));
  });
}

/**
 * Ports this process handed out lately, and when. A port is free until its taker binds it: two
 * draws before that could return the same one (the router draws its HTTP, HTTPS and status
 * ports, then nginx binds all three: the same port twice made the status listener unreachable).
 */
const handedOut = new Map<number, number>();
/** How long a port handed out is not handed out again: long enough for its taker to bind it. */
const HANDED_OUT_MS = 60_000;

/** A free TCP port on `host`, drawn at random from `range` (default: the service range). */
export async function freePort(host = "127.0.0.1", range: PortRange = servicePortRange): Promise<number> {
  const now = Date.now();
  for (const [port, at] of handedOut) if (now - at > HANDED_OUT_MS) handedOut.delete(port);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = range.min + Math.floor(Math.random() * (range.max - range.min));
    if (BROWSER_BLOCKED_PORTS.has(port) || handedOut.has(port)) continue;
    // Marked before the probe: a draw running meanwhile cannot pick it either.
    handedOut.set(port, now);
    if (await portIsFree(port, host)) return port;
    handedOut.delete(port);
  }
  throw new Error(`no free port in ${range.min}-${range.max - 1} on ${host}`);
}

/**
 * Runs `bind(port)` on `port`, or when it is 0 on a free port from the service range, trying
 * another one if a racing process took it between the probe and the bind.
 */
export async function bindPort<T>(host: string, port: number, bind: (port: number) => Promise<T>): Promise<T> {
  if (port !== 0) return bind(port);
  for (let attempt = 1; ; attempt++) {
    try {
      return await bind(await freePort(host));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || attempt >= 10) throw err;
    }
  }
}
