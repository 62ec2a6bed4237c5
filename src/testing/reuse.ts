// Whether a request went out on a kept-alive connection that had already carried a response: the
// one case where browsers retry a request the server closed before answering (it may have closed
// the idle connection just as the request left). Load tests use it to tell that case, which a
// router reload causes and clients absorb, from a refused or dropped new connection.
import type { ClientRequest } from "node:http";

/**
 * Call when `req` is made; the function returned says, once the request failed, whether its
 * connection had carried a response before. Node.js's `req.reusedSocket` alone misses one case:
 * a request that waited for a socket (all in use) and was handed one as it was freed is marked
 * not reused, on a connection that served others before it.
 */
export function trackReuse(req: ClientRequest): () => boolean {
  let readBefore = 0;
  req.on("socket", (socket) => {
    readBefore = socket.bytesRead;
  });
  return () => req.reusedSocket || readBefore > 0;
}
