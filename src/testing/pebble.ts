// Test helper: a throwaway ACME CA (Let's Encrypt's `pebble`) with a mock DNS server
// (`pebble-challtestsrv`) that answers every name with 127.0.0.1, so HTTP-01 challenges for any
// test domain reach a server of the test's own on 127.0.0.1:<httpPort>. Tests can point a name
// elsewhere (`setDnsA`), and resolve with the same DNS server as pebble (`dnsServer`).
//
// Debian's pebble package ships no certificate for pebble's own HTTPS listener, so each start
// makes a small CA of its own with `openssl` and hands its root to the client as `caCertPem`.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createSocket } from "node:dgram";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../core/net.ts";
import { runChecked } from "../core/run.ts";

/** A running pebble and its mock DNS server. */
export interface Pebble {
  /** The ACME directory, e.g. `https://127.0.0.1:12345/dir`. */
  directoryUrl: string;
  /** Root of the certificate that pebble's own HTTPS listeners present (trust it for `directoryUrl`). */
  caCertPem: string;
  /** The root that signs the certificates pebble issues (new at every start of pebble). */
  issuerRootPem(): Promise<string>;
  /** The mock DNS server pebble resolves names with, as "127.0.0.1:<port>" (UDP and TCP). */
  dnsServer: string;
  /** Makes the mock DNS answer `addresses` to A queries for `host` (instead of 127.0.0.1). */
  setDnsA(host: string, addresses: string[]): Promise<void>;
  /** Stops the CA alone; the mock DNS keeps answering (a CA outage, not a DNS one). */
  stopCa(): Promise<void>;
  /** Stops both servers and removes their files. */
  stop(): Promise<void>;
}

/** Options of `startPebble`. */
export interface PebbleOptions {
  /** Port on 127.0.0.1 where pebble looks for HTTP-01 challenge answers. */
  httpPort: number;
  /** Intermediates between leaf and root (pebble's `PEBBLE_CHAIN_LENGTH`; 1 when absent). */
  chainLength?: number;
  /** Lifetime of issued certificates in seconds (pebble's `certificateValidityPeriod`). */
  certificateValiditySeconds?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts pebble-challtestsrv and pebble on ports free right now; `stop` ends both. */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  const dir = await mkdtemp(join(tmpdir(), "quai-pebble-"));
  const children: ChildProcess[] = [];
  const output: string[] = [];
  const stop = async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const { caCertPem, certFile, keyFile } = await makeServerCertificate(dir);
    const dnsPort = await freeTcpAndUdpPort();
    const challMgmtPort = await freePort();
    const acmePort = await freePort();
    const mgmtPort = await freePort();
    const tlsPort = await freePort();

    // Only the DNS server is wanted from challtestsrv; its challenge servers stay off so they
    // cannot take ports that belong to the test.
    children.push(startChild("pebble-challtestsrv", [
      "-defaultIPv4", "127.0.0.1",
      "-defaultIPv6", "",
      "-dns01", `127.0.0.1:${dnsPort}`,
      "-http01", "",
      "-https01", "",
      "-tlsalpn01", "",
      "-management", `127.0.0.1:${challMgmtPort}`,
    ], process.env, output));
    await waitForTcp(challMgmtPort, children, output);

    const config: Record<string, unknown> = {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: certFile,
      privateKey: keyFile,
      httpPort: opts.httpPort,
      tlsPort,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
    };
    if (opts.certificateValiditySeconds !== undefined) config.certificateValidityPeriod = opts.certificateValiditySeconds;
    const configFile = join(dir, "pebble-config.json");
    await writeFile(configFile, JSON.stringify({ pebble: config }, null, 2));

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      // Validate at once instead of after a random sleep of up to 15 s.
      PEBBLE_VA_NOSLEEP: "1",
      // Pebble rejects 5% of good nonces by default to exercise clients' retry; tests want
      // outcomes that do not depend on chance.
      PEBBLE_WFE_NONCEREJECT: "0",
      // Every order must prove control afresh, so a test of a failing challenge is not
      // passed by an authorization left valid by an earlier test.
      PEBBLE_AUTHZREUSE: "0",
    };
    if (opts.chainLength !== undefined) env.PEBBLE_CHAIN_LENGTH = String(opts.chainLength);
    const ca = startChild("pebble", ["-config", configFile, "-dnsserver", `127.0.0.1:${dnsPort}`], env, output);
    children.push(ca);

    const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    await waitForHttps(directoryUrl, caCertPem, children, output);
    return {
      directoryUrl,
      caCertPem,
      issuerRootPem: () => httpsGet(`https://127.0.0.1:${mgmtPort}/roots/0`, caCertPem),
      dnsServer: `127.0.0.1:${dnsPort}`,
      setDnsA: (host, addresses) => httpPost(`http://127.0.0.1:${challMgmtPort}/add-a`, { host, addresses }),
      stopCa: () => stopChild(ca),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A root CA and a leaf for `localhost` / 127.0.0.1 signed by it, made with openssl under `dir`. */
async function makeServerCertificate(dir: string): Promise<{ caCertPem: string; certFile: string; keyFile: string }> {
  const caKey = join(dir, "ca.key.pem");
  const caCert = join(dir, "ca.pem");
  const keyFile = join(dir, "key.pem");
  const csr = join(dir, "server.csr");
  const certFile = join(dir, "cert.pem");
  const ext = join(dir, "server.ext");
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await runChecked("openssl", ["req", "-x509", ...ecKey, "-keyout", caKey, "-out", caCert, "-days", "2",
    "-subj", "/CN=Quai test pebble HTTPS CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await runChecked("openssl", ["req", "-new", ...ecKey, "-keyout", keyFile, "-out", csr, "-subj", "/CN=localhost"]);
  await writeFile(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
  await runChecked("openssl", ["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial",
    "-days", "2", "-extfile", ext, "-out", certFile]);
  return { caCertPem: await readFile(caCert, "utf8"), certFile, keyFile };
}

function startChild(cmd: string, args: string[], env: NodeJS.ProcessEnv, output: string[]): ChildProcess {
  const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const keep = (b: Buffer) => {
    output.push(...b.toString("utf8").split("\n").filter((l) => l.trim() !== "").map((l) => `${cmd}: ${l}`));
    // Only the last lines matter when explaining a failed start.
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.on("error", (err) => output.push(`${cmd}: ${err.message}`));
  return child;
}

/** Ends `child` (one we spawned, by its PID): SIGTERM, then SIGKILL if it lingers. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited.finally(() => clearTimeout(timer));
}

function assertRunning(children: ChildProcess[], output: string[]): void {
  const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null || c.pid === undefined);
  if (dead) throw new Error(`${dead.spawnfile} exited before it was up (${dead.exitCode ?? dead.signalCode ?? "did not start"}):\n${output.join("\n")}`);
}

async function waitForTcp(port: number, children: ChildProcess[], output: string[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    assertRunning(children, output);
    const ok = await new Promise<boolean>((resolvePromise) => {
      const sock = connect({ host: "127.0.0.1", port }, () => {
        sock.destroy();
        resolvePromise(true);
      });
      sock.on("error", () => resolvePromise(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after 10 s:\n${output.join("\n")}`);
}

async function waitForHttps(url: string, ca: string, children: ChildProcess[], output: string[]): Promise<void> {
  let last = "";
  for (let i = 0; i < 200; i++) {
    assertRunning(children, output);
    try {
      await httpsGet(url, ca);
      return;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`pebble did not answer ${url} within 10 s (${last}):\n${output.join("\n")}`);
}

/** GET `url` trusting only `ca`; the body, or an error for any status but 200. */
function httpsGet(url: string, ca: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { ca, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode === 200) resolvePromise(body);
        else reject(new Error(`GET ${url}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** POST `body` as JSON to the mock DNS server's management API; an error for any status but 200. */
async function httpPost(url: string, body: unknown): Promise<void> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`POST ${url}: HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
}

/** A port free for both TCP and UDP on 127.0.0.1: the mock DNS server listens on both. */
async function freeTcpAndUdpPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort();
    const udpFree = await new Promise<boolean>((resolvePromise) => {
      const sock = createSocket("udp4");
      sock.once("error", () => {
        try {
          sock.close();
        } catch {
          // A socket that never bound may count as closed already.
        }
        resolvePromise(false);
      });
      sock.bind({ address: "127.0.0.1", port, exclusive: true }, () => sock.close(() => resolvePromise(true)));
    });
    if (udpFree) return port;
  }
  throw new Error("no port free for both TCP and UDP on 127.0.0.1");
}
