// The SHA-512 digests an npm lockfile names its packages by (their `integrity`), as npm's cache
// names its content files (content-v2/sha512/<hex>). Shared by the buildpack (pkg.cjs lock-plan,
// in the build's sandbox) and the control plane (src/pipeline/npm-store.ts, before the build).
// CommonJS without dependencies, so that any Node.js >= 12 runs it.
"use strict";

/**
 * The hex digests (128 hex digits) of every sha512 integrity in `lock`: lockfileVersion >= 2
 * lists them under `packages`; version 1 under `dependencies`, nested. Anything malformed is
 * skipped.
 */
function lockfileDigests(lock) {
  const digests = new Set();
  const collect = (deps) => {
    if (!deps || typeof deps !== "object") return;
    for (const meta of Object.values(deps)) {
      if (!meta || typeof meta !== "object") continue;
      if (typeof meta.integrity === "string") {
        for (const part of meta.integrity.split(/\s+/)) {
          const m = /^sha512-([A-Za-z0-9+/]+={0,2})$/.exec(part);
          const hex = m ? Buffer.from(m[1], "base64").toString("hex") : "";
          if (/^[0-9a-f]{128}$/.test(hex)) digests.add(hex);
        }
      }
      collect(meta.dependencies); // lockfileVersion 1 nests them
    }
  };
  if (!lock || typeof lock !== "object") return [];
  const packages = lock.lockfileVersion >= 2 && lock.packages && typeof lock.packages === "object" ? lock.packages : undefined;
  collect(packages || lock.dependencies);
  return [...digests];
}

module.exports = { lockfileDigests };
