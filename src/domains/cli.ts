// CLI: domains, domains-add, domains-remove, domains-set-canonical, domains-unset-canonical.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, readArgFile, requireApp, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";

interface DomainJson {
  id: string;
  name: string;
  name_unicode: string;
  canonical: boolean;
  ssl_status: string;
}
const enc = encodeURIComponent;

function one(args: string[], usage: string): string {
  const { positionals } = parseFlags(args);
  if (positionals.length !== 1) throw new QuaiError("cli_usage", `usage: quai ${usage}`);
  return positionals[0] as string;
}

const list: Command = {
  name: "domains",
  summary: "List the app's custom domains",
  usage: "",
  example: "quai --app histologe domains",
  async run(ctx) {
    const app = requireApp(ctx);
    const { domains } = await (await ctx.api()).request<{ domains: DomainJson[] }>("GET", `/v1/apps/${enc(app)}/domains`);
    if (ctx.json) return ctx.out(JSON.stringify(domains));
    if (domains.length === 0) return ctx.out(`No custom domains: add one with \`quai --app ${app} domains-add www.example.fr\`.`);
    ctx.out(table(["DOMAIN", "SHOWN AS", "CANONICAL", "TLS"], domains.map((d) => [d.name, d.name_unicode, d.canonical ? "yes" : "", d.ssl_status])));
  },
};

const add: Command = {
  name: "domains-add",
  summary: "Add a custom domain to the app",
  usage: "<domain>",
  example: "quai --app histologe domains-add histologe.beta.gouv.fr",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const name = one(args, "domains-add <domain>");
    const { domain } = await (await ctx.api()).request<{ domain: DomainJson }>("POST", `/v1/apps/${enc(app)}/domains`, { domain: { name } });
    ctx.out(ctx.json ? JSON.stringify(domain) : `Domain ${domain.name}${domain.name_unicode !== domain.name ? ` (${domain.name_unicode})` : ""} added to ${app}; point its DNS at the platform`);
  },
};

const remove: Command = {
  name: "domains-remove",
  summary: "Remove a custom domain from the app",
  usage: "<domain>",
  example: "quai --app histologe domains-remove old.example.fr",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const name = one(args, "domains-remove <domain>");
    await (await ctx.api()).request("DELETE", `/v1/apps/${enc(app)}/domains/${enc(name)}`);
    ctx.out(`Domain ${name} removed from ${app}`);
  },
};

const setCanonical: Command = {
  name: "domains-set-canonical",
  summary: "Make one domain canonical: the app's other hostnames redirect to it (301)",
  usage: "<domain>",
  example: "quai --app histologe domains-set-canonical histologe.beta.gouv.fr",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const name = one(args, "domains-set-canonical <domain>");
    await (await ctx.api()).request("PATCH", `/v1/apps/${enc(app)}`, { app: { canonical_domain: name } });
    ctx.out(`${name} is now ${app}'s canonical domain: its other hostnames redirect there`);
  },
};

const unsetCanonical: Command = {
  name: "domains-unset-canonical",
  summary: "Stop redirecting the app's hostnames to a canonical domain",
  usage: "",
  example: "quai --app histologe domains-unset-canonical",
  async run(ctx) {
    const app = requireApp(ctx);
    await (await ctx.api()).request("PATCH", `/v1/apps/${enc(app)}`, { app: { canonical_domain: null } });
    ctx.out(`${app} has no canonical domain`);
  },
};

const ssl: Command = {
  name: "domains-ssl",
  summary: "Give a domain its own certificate (PEM files), or --disable to go back to none",
  usage: "<domain> --cert FILE --key FILE | <domain> --disable",
  example: "quai --app histologe domains-ssl histologe.beta.gouv.fr --cert fullchain.pem --key privkey.pem",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["disable"], ["cert", "key"]);
    const name = positionals[0];
    const usage = "usage: quai domains-ssl <domain> --cert FILE --key FILE | <domain> --disable";
    if (!name || positionals.length > 1) throw new QuaiError("cli_usage", usage);
    let body: Record<string, unknown>;
    if (flags.disable === true) body = { ssl: false };
    else {
      if (typeof flags.cert !== "string" || typeof flags.key !== "string") throw new QuaiError("cli_usage", usage);
      const read = async (file: string) => (await readArgFile(file)).toString("utf8");
      body = { tlscert: await read(flags.cert), tlskey: await read(flags.key) };
    }
    const { domain } = await (await ctx.api()).request<{ domain: DomainJson & { validity: string | null } }>("PATCH", `/v1/apps/${enc(app)}/domains/${enc(name)}`, { domain: body });
    ctx.out(ctx.json ? JSON.stringify(domain) : flags.disable === true ? `${domain.name} has no certificate of its own now` : `${domain.name} now serves its certificate over HTTPS (valid until ${domain.validity ?? "?"})`);
  },
};

export const domainCommands: Command[] = [list, add, remove, setCanonical, unsetCanonical, ssl];
