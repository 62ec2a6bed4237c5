// The engines Quai ships: PostgreSQL, MySQL (MariaDB) and Redis.
import type { AddonEngine, EngineContext } from "./engine.ts";
import { PostgresqlEngine } from "./engines/postgresql.ts";
import { MysqlEngine } from "./engines/mysql.ts";
import { RedisEngine } from "./engines/redis.ts";

export function defaultEngines(ctx: EngineContext): AddonEngine[] {
  return [new PostgresqlEngine(ctx), new MysqlEngine(ctx), new RedisEngine(ctx)];
}
