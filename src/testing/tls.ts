// Test certificates made with the openssl command: a CA, and leaf certificates it signs for
// given names, valid now or expired (`openssl ca` takes explicit dates).
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { runChecked } from "../core/run.ts";
import { scratchDir } from "./scratch.ts";

/** A CA that signs test certificates. */
export interface TestCa {
  certPem: string;
  /** A certificate and key for `names` (valid from yesterday for `days`, or expired last year). */
  issue(names: string[], opts?: { expired?: boolean; days?: number }): Promise<{ certPem: string; keyPem: string }>;
}

const stamp = (d: Date) => d.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";

export async function makeTestCa(): Promise<TestCa> {
  const dir = await scratchDir("quai-test-ca-");
  await runChecked("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=Quai test CA", "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.crt")]);
  await mkdir(join(dir, "issued"), { recursive: true });
  await writeFile(join(dir, "index.txt"), "");
  await writeFile(join(dir, "serial"), "1000\n");
  let n = 0;
  return {
    certPem: await readFile(join(dir, "ca.crt"), "utf8"),
    async issue(names, opts = {}) {
      const id = `leaf-${++n}`;
      const ext = join(dir, `${id}.cnf`);
      await writeFile(ext, [
        "[ ca ]", "default_ca = test", "[ test ]", `dir = ${dir}`, "database = $dir/index.txt", "serial = $dir/serial", "new_certs_dir = $dir/issued",
        "certificate = $dir/ca.crt", "private_key = $dir/ca.key", "default_md = sha256", "policy = anything", "unique_subject = no", "copy_extensions = none", "x509_extensions = leaf",
        "[ anything ]", "commonName = supplied",
        "[ leaf ]", "basicConstraints = CA:FALSE", "keyUsage = digitalSignature", "extendedKeyUsage = serverAuth", `subjectAltName = ${names.map((x) => `DNS:${x}`).join(",")}`,
      ].join("\n") + "\n");
      await runChecked("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", `/CN=${names[0]}`, "-keyout", join(dir, `${id}.key`), "-out", join(dir, `${id}.csr`)]);
      const now = Date.now();
      const start = opts.expired ? new Date(now - 400 * 86_400_000) : new Date(now - 86_400_000);
      const end = opts.expired ? new Date(now - 35 * 86_400_000) : new Date(now + (opts.days ?? 90) * 86_400_000);
      await runChecked("openssl", ["ca", "-batch", "-config", ext, "-notext", "-startdate", stamp(start), "-enddate", stamp(end), "-in", join(dir, `${id}.csr`), "-out", join(dir, `${id}.crt`)]);
      return { certPem: await readFile(join(dir, `${id}.crt`), "utf8"), keyPem: await readFile(join(dir, `${id}.key`), "utf8") };
    },
  };
}
