// The pre-receive hook of every app repository, in plain JavaScript: it runs on every push, and
// Node starts a .mjs file several times faster than a .ts one (no type stripping).
// `git http-backend` (or `git receive-pack` behind the SSH front) runs it with the pushed refs on
// stdin and Quai's callback address in its environment. For the deploy branch it archives the
// pushed commit (still in git's quarantine) and streams it to Quai, then relays the deployment's
// output to the pusher line by line; its exit code accepts or refuses the push.
import { spawn } from "node:child_process";
import { request } from "node:http";

const zero = /^0+$/;
const deployRefs = new Set(["refs/heads/main", "refs/heads/master"]);

async function main() {
  const url = process.env.QUAI_HOOK_URL;
  const token = process.env.QUAI_HOOK_TOKEN;
  if (!url || !token) {
    process.stdout.write("Quai: this repository only accepts pushes through Quai's git front\n");
    return 1;
  }
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const updates = input.split("\n").filter(Boolean).map((l) => l.split(" "));
  let deploy;
  for (const u of updates) {
    if (deployRefs.has(u[2]) && !zero.test(u[1])) {
      if (deploy) {
        process.stdout.write("Quai: push main or master, not both at once\n");
        return 1;
      }
      deploy = u;
    } else if (zero.test(u[1])) {
      process.stdout.write(`Quai: ${u[2]} deleted.\n`);
    } else {
      process.stdout.write(`Quai: ${u[2].replace(/^refs\/heads\//, "branch ")} stored; only main or master deploys.\n`);
    }
  }
  if (!deploy) return 0;
  const [, sha, ref] = deploy;
  const archive = spawn("git", ["archive", "--format=tar.gz", "--prefix=app/", sha], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve) => {
    const req = request(`${url}?ref=${encodeURIComponent(ref)}&sha=${sha}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" } }, (res) => {
      let status = "";
      let pending = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          // The outcome comes last, on a line of its own after a NUL.
          if (line.startsWith("\0")) status = line.slice(1);
          else process.stdout.write(line + "\n");
        }
      });
      res.on("end", () => {
        if (pending.startsWith("\0")) status = pending.slice(1);
        else if (pending) process.stdout.write(pending + "\n");
        resolve(res.statusCode === 200 && status === "success" ? 0 : 1);
      });
      res.on("error", () => resolve(1));
    });
    req.on("error", (err) => {
      process.stdout.write(`Quai: the deployment could not be started: ${err.message}\n`);
      resolve(1);
    });
    archive.stdout.pipe(req);
  });
}

process.exitCode = await main();
