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

/** Whether `port` can be bound on `host` right now. */
export function portIsFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolvePromise(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolvePromise(true)));
  });
}

/** A free TCP port on `host`, drawn at random from `range` (default: the service range). */
export async function freePort(host = "127.0.0.1", range: PortRange = servicePortRange): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = range.min + Math.floor(Math.random() * (range.max - range.min));
    if (await portIsFree(port, host)) return port;
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
