// The backend the router benchmarks proxy to: a node:http server answering a small fixed body,
// with keep-alive longer than nginx's, on 127.0.0.1 and a port chosen at run time.
import { once } from "node:events";
import http from "node:http";

/** Starts the backend; `close` ends its connections and stops it. */
export async function startBenchBackend(body: string): Promise<{ server: http.Server; port: number; close(): void }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    server,
    port: (server.address() as { port: number }).port,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
