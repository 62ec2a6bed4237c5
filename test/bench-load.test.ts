// The router benchmark's lean load generator must count only whole 200 responses, follow the
// server's framing (Content-Length, chunked) and its keep-alive limit, and fail loudly otherwise:
// a generator that counted a 502 or half a response would report a broken proxy as a fast one.
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { describe, it } from "node:test";
import { chunkedEnd, parseHead, runRawLoad } from "../bench/raw-load.ts";

async function listen(server: http.Server | net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

describe("bench raw load generator", () => {
  it("reads Content-Length and chunked bodies over kept-alive connections, and reopens a connection the server closes", async () => {
    let served = 0;
    const sockets = new Set<net.Socket>();
    const server = http.createServer((req, res) => {
      served++;
      sockets.add(req.socket);
      // Every fifth response is chunked; every seventh closes its connection.
      if (served % 7 === 0) res.setHeader("connection", "close");
      if (served % 5 === 0) {
        res.write("part one, ");
        res.end("part two\n");
      } else res.end("hello\n");
    });
    const port = await listen(server);
    try {
      const result = await runRawLoad({ origin: `http://127.0.0.1:${port}`, path: "/", warmup: 20, requests: 300, concurrency: 4 });
      assert.equal(result.latenciesMs.length, 300);
      assert.equal(served, 320);
      assert.ok(result.latenciesMs.every((ms) => ms >= 0 && ms < 10_000));
      // Closed connections were replaced: more sockets than clients.
      assert.ok(sockets.size > 8, `${sockets.size} connections`);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("fails on a response that is not 200, naming its status and body", async () => {
    let n = 0;
    const server = http.createServer((_req, res) => {
      n++;
      res.statusCode = n === 30 ? 502 : 200;
      res.end(n === 30 ? "bad gateway from the test\n" : "ok\n");
    });
    const port = await listen(server);
    try {
      await assert.rejects(runRawLoad({ origin: `http://127.0.0.1:${port}`, path: "/", warmup: 0, requests: 100, concurrency: 3 }), /HTTP 502: bad gateway from the test/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it("fails when the server closes a connection in the middle of a response", async () => {
    const server = net.createServer((socket) => {
      socket.once("data", () => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"));
    });
    const port = await listen(server);
    try {
      await assert.rejects(runRawLoad({ origin: `http://127.0.0.1:${port}`, path: "/", warmup: 0, requests: 5, concurrency: 1 }), /closed the connection before a whole response/);
    } finally {
      server.close();
    }
  });

  it("parses response heads and chunked bodies byte by byte", () => {
    const head = Buffer.from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCONTENT-LENGTH: 5\r\nConnection: keep-alive, Close\r\n\r\nhello");
    for (let cut = 0; cut < head.indexOf("\r\n\r\n") + 4; cut++) assert.equal(parseHead(head.subarray(0, cut)), undefined);
    assert.deepEqual(parseHead(head), { status: 200, headEnd: head.length - 5, length: 5, close: true });
    assert.deepEqual(parseHead(Buffer.from("HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n")), { status: 204, headEnd: 46, length: 0, close: true });
    assert.match((parseHead(Buffer.from("SSH-2.0-x\r\n\r\n")) as { error: string }).error, /not an HTTP\/1.x status line/);
    assert.match((parseHead(Buffer.from("HTTP/1.1 200 OK\r\n\r\n")) as { error: string }).error, /without a Content-Length/);

    const body = Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n");
    const framing = parseHead(body) as { headEnd: number; chunked: true };
    assert.equal(framing.chunked, true);
    for (let cut = framing.headEnd; cut < body.length; cut++) assert.equal(chunkedEnd(body.subarray(0, cut), framing.headEnd), undefined, `cut at ${cut}`);
    assert.equal(chunkedEnd(body, framing.headEnd), body.length);
    assert.throws(() => chunkedEnd(Buffer.from("zz\r\n"), 0), /malformed chunk size/);
  });
});
