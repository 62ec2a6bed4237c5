// WebSocket endpoints of the API. One `upgrade` listener serves them all: a path none claims, or
// an app name that does not decode, is answered and closed, never left open or thrown at the
// server (an exception there would stop the control plane).
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";

/** Serves one upgrade; `appRef` is the decoded first capture of the route's pattern. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, appRef: string) => void;

const routes = new WeakMap<Server, { pattern: RegExp; handler: UpgradeHandler }[]>();

function refuse(socket: Duplex, status: string): void {
  socket.on("error", () => {});
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Routes upgrades whose URL matches `pattern` (one capture: the app's name or id) to `handler`. */
export function onUpgrade(server: Server, pattern: RegExp, handler: UpgradeHandler): void {
  let list = routes.get(server);
  if (!list) {
    const mine: { pattern: RegExp; handler: UpgradeHandler }[] = (list = []);
    routes.set(server, mine);
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      for (const r of mine) {
        const m = r.pattern.exec(req.url ?? "");
        if (!m) continue;
        let appRef: string;
        try {
          appRef = decodeURIComponent(m[1] ?? "");
        } catch {
          return refuse(socket, "400 Bad Request");
        }
        return r.handler(req, socket, head, appRef);
      }
      refuse(socket, "404 Not Found");
    });
  }
  list.push({ pattern, handler });
}
