// The demo app: answers with a message built from its variables, and its release.
const http = require("node:http");

const server = http.createServer((req, res) => {
  if (req.url === "/health") return res.end("ok\n");
  res.setHeader("content-type", "text/plain; charset=utf-8");
  res.end(`${process.env.MESSAGE || "Hello from Quai"}\n(container ${process.env.CONTAINER}, release ${process.env.CONTAINER_VERSION})\n`);
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log(`demo listening on ${process.env.PORT}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
