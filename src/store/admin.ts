// Direct store access for `quai admin` commands, run on the host beside a running server.
import { existsSync, readFileSync } from "node:fs";
import { QuaiError } from "../core/errors.ts";
import { loadServerConfig, storeInfoFile } from "../core/config.ts";
import { openDb, type Db } from "./db.ts";

/** Runs `fn` on the store of the installation in QUAI_HOME (or QUAI_DATABASE_URL), then closes it. */
export async function withAdminStore<T>(env: NodeJS.ProcessEnv, fn: (store: { db: Db; keyFile: string }) => Promise<T>): Promise<T> {
  const store = openAdminStore(env);
  try {
    return await fn(store);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ECONNREFUSED" || code === "57P03") {
      throw new QuaiError("cli_server_not_running", "the Quai server's database does not answer: is `quai server` running with this QUAI_HOME?");
    }
    throw err;
  } finally {
    await store.db.destroy();
  }
}

function openAdminStore(env: NodeJS.ProcessEnv): { db: Db; keyFile: string } {
  const config = loadServerConfig(env);
  if (config.databaseUrl) return { db: openDb(config.databaseUrl, 2), keyFile: config.keyFile };
  const file = storeInfoFile(config.home);
  if (!existsSync(file)) {
    throw new QuaiError("cli_server_not_running", `no running Quai server found in ${config.home}: start it with \`quai server\` (or set QUAI_HOME)`);
  }
  const info = JSON.parse(readFileSync(file, "utf8")) as { databaseUrl: string; keyFile: string };
  return { db: openDb(info.databaseUrl, 2), keyFile: info.keyFile };
}
