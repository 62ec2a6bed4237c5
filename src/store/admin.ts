// Direct store access for `quai admin` commands, run on the host beside a running server.
import { existsSync, readFileSync } from "node:fs";
import { QuaiError } from "../core/errors.ts";
import { loadServerConfig } from "../core/config.ts";
import { openDb, type Db } from "./db.ts";
import { storeInfoFile } from "../server/main.ts";

/** Opens the store of the installation in QUAI_HOME (or QUAI_DATABASE_URL). */
export function openAdminStore(env: NodeJS.ProcessEnv): { db: Db; keyFile: string } {
  const config = loadServerConfig(env);
  if (config.databaseUrl) return { db: openDb(config.databaseUrl, 2), keyFile: config.keyFile };
  const file = storeInfoFile(config.home);
  if (!existsSync(file)) {
    throw new QuaiError("cli_server_unreachable", `no running Quai server found in ${config.home}: start it with \`quai server\` (or set QUAI_HOME)`);
  }
  const info = JSON.parse(readFileSync(file, "utf8")) as { databaseUrl: string; keyFile: string };
  return { db: openDb(info.databaseUrl, 2), keyFile: info.keyFile };
}
