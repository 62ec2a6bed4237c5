// CLI: keys, keys-add, keys-remove.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, readArgFile, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import type { KeyJson } from "./service.ts";

const keys: Command = {
  name: "keys",
  summary: "List your SSH public keys (git push over SSH)",
  usage: "",
  example: "quai keys",
  async run(ctx) {
    const res = await (await ctx.api()).request<{ keys: KeyJson[] }>("GET", "/v1/account/keys");
    if (ctx.json) return ctx.out(JSON.stringify(res.keys));
    if (res.keys.length === 0) return ctx.out("No SSH keys: add one with `quai keys-add laptop ~/.ssh/id_ed25519.pub`.");
    ctx.out(table(["ID", "NAME", "FINGERPRINT", "ADDED"], res.keys.map((k) => [k.id, k.name, k.fingerprint, k.created_at])));
  },
};

const keysAdd: Command = {
  name: "keys-add",
  summary: "Add an SSH public key from a .pub file",
  usage: "<name> <file.pub>",
  example: "quai keys-add laptop ~/.ssh/id_ed25519.pub",
  async run(ctx, args) {
    const { positionals } = parseFlags(args);
    const [name, file] = positionals;
    if (!name || !file || positionals.length > 2) throw new QuaiError("cli_usage", "usage: quai keys-add <name> <file.pub>");
    const content = (await readArgFile(file)).toString("utf8");
    const { key } = await (await ctx.api()).request<{ key: KeyJson }>("POST", "/v1/account/keys", { key: { name, content } });
    ctx.out(ctx.json ? JSON.stringify(key) : `Key ${key.name} added (${key.fingerprint})`);
  },
};

const keysRemove: Command = {
  name: "keys-remove",
  summary: "Remove one of your SSH keys",
  usage: "<id>",
  example: "quai keys-remove 3f2b8c1e-...",
  async run(ctx, args) {
    const { positionals } = parseFlags(args);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai keys-remove <id>");
    await (await ctx.api()).request("DELETE", `/v1/account/keys/${encodeURIComponent(positionals[0] as string)}`);
    ctx.out("Key removed");
  },
};

export const keyCommands: Command[] = [keys, keysAdd, keysRemove];
