// CLI: env, env-set, env-unset, and the host-side master key rotation.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, requireApp, type CliContext, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import { withAdminStore } from "../store/admin.ts";
import { Keyring } from "./keyring.ts";
import { platformVariableWarning } from "./platform.ts";
import { rotateMasterKey, type Variable } from "./service.ts";

const path = (app: string) => `/v1/apps/${encodeURIComponent(app)}/variables`;

/**
 * After a change, says on stderr when a variable now refers to one that does not exist: the
 * change is stored (ADR 0006: an add-on may bring the name later), but the app cannot be
 * released with it, and keeps running its current config until the reference resolves.
 */
async function warnMissingReferences(ctx: CliContext, app: string): Promise<void> {
  try {
    await (await ctx.api()).request("GET", path(app) + "?resolved=true");
  } catch (err) {
    // Only a check: the change itself is done, whatever else this read meets.
    if (err instanceof QuaiError && err.code === "variable_reference_missing") {
      ctx.err(`warning: ${err.message}; ${app} keeps running its current config until that variable exists`);
    }
  }
}

const env: Command = {
  name: "env",
  summary: "List an app's variables (--resolved: with references resolved)",
  usage: "[--resolved]",
  example: "quai --app histologe env --resolved",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags } = parseFlags(args, ["resolved"], [], 0);
    const { variables } = await (await ctx.api()).request<{ variables: Variable[] }>("GET", path(app) + (flags.resolved ? "?resolved=true" : ""));
    if (ctx.json) return ctx.out(JSON.stringify(variables));
    ctx.out(variables.length === 0 ? `No variables on ${app}.` : variables.map((v) => `${v.name}=${v.value}`).join("\n"));
  },
};

const envSet: Command = {
  name: "env-set",
  summary: "Set variables (all or none); values may refer to others as $NAME or ${NAME}",
  usage: "KEY=VALUE [KEY=VALUE ...]",
  example: "quai --app histologe env-set DATABASE_URL='$SCALINGO_POSTGRESQL_URL' APP_ENV=prod",
  async run(ctx, args) {
    const app = requireApp(ctx);
    if (args.length === 0) throw new QuaiError("cli_usage", "usage: quai --app <name> env-set KEY=VALUE [KEY=VALUE ...]");
    const variables = args.map((a) => {
      const eq = a.indexOf("=");
      if (eq <= 0) throw new QuaiError("cli_usage", `"${a}" is not KEY=VALUE`);
      return { name: a.slice(0, eq), value: a.slice(eq + 1) };
    });
    const res = await (await ctx.api()).request<{ variables: Variable[] }>("PUT", path(app), { variables });
    if (ctx.json) ctx.out(JSON.stringify(res.variables));
    else ctx.out(table(["NAME", "VALUE"], res.variables.map((v) => [v.name, v.value.length > 60 ? v.value.slice(0, 57) + "..." : v.value])));
    for (const { name } of variables) {
      const warning = platformVariableWarning(name);
      if (warning) ctx.err(`warning: ${warning}`);
    }
    await warnMissingReferences(ctx, app);
  },
};

const envUnset: Command = {
  name: "env-unset",
  summary: "Remove variables by name (all or none)",
  usage: "KEY [KEY ...]",
  example: "quai --app histologe env-unset MAINTENANCE_BANNER_ENABLE",
  async run(ctx, args) {
    const app = requireApp(ctx);
    if (args.length === 0) throw new QuaiError("cli_usage", "usage: quai --app <name> env-unset KEY [KEY ...]");
    await (await ctx.api()).request("DELETE", path(app), { variable_ids: args });
    ctx.out(ctx.json ? JSON.stringify({ deleted: args }) : `Removed ${args.join(", ")} from ${app}.`);
    await warnMissingReferences(ctx, app);
  },
};

const rotate: Command = {
  name: "admin rotate-key",
  summary: "Re-encrypt every variable with a new master key; run on the server host",
  usage: "",
  example: "QUAI_HOME=~/.quai quai admin rotate-key",
  async run(ctx) {
    await withAdminStore(ctx.env, async ({ db, keyFile }) => {
      const res = await rotateMasterKey(db, await Keyring.open(keyFile));
      ctx.out(ctx.json ? JSON.stringify(res) : `Master key rotated: ${res.reencrypted} values re-encrypted with key ${res.keyId}.`);
    });
  },
};

export const variableCommands: Command[] = [env, envSet, envUnset, rotate];
