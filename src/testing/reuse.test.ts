import { describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { trackReuse } from "./reuse.ts";

describe("telling a reused keep-alive connection", () => {
  it("counts a request handed a freed socket as reused, which Node.js's reusedSocket does not", async () => {
    const server = http.createServer((_req, res) => res.end("ok"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = () =>
        new Promise<{ reusedSocket: boolean; reused: boolean }>((resolve, reject) => {
          const req = http.get({ host: "127.0.0.1", port, agent }, (res) => {
            res.resume();
            res.on("end", () => resolve({ reusedSocket: req.reusedSocket, reused: reused() }));
          });
          const reused = trackReuse(req);
          req.on("error", reject);
        });
      // One socket for three requests at once: the second and third wait, then get it as it is freed.
      const [first, second, third] = await Promise.all([get(), get(), get()]);
      assert.deepEqual(first, { reusedSocket: false, reused: false });
      assert.equal(second.reusedSocket, false, "Node.js's flag misses a socket handed over from the queue");
      assert.equal(second.reused, true);
      assert.equal(third.reused, true);
      // Taken from the free sockets: both agree.
      assert.deepEqual(await get(), { reusedSocket: true, reused: true });
    } finally {
      agent.destroy();
      server.close();
    }
  });
});
