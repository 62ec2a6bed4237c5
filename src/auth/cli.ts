// CLI: login, logout, whoami, and the host-side admin commands that make users and tokens.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, type Command } from "../cli/command.ts";
import { ApiClient, deleteCredentials, readCredentials, saveCredentials, credentialsFile } from "../cli/client.ts";
import { withAdminStore } from "../store/admin.ts";
import { createApiToken, ensureUser } from "./service.ts";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}

const login: Command = {
  name: "login",
  summary: "Log in to a Quai API with an API token (stored with mode 0600)",
  usage: "[--url URL] [--api-token TOKEN]",
  example: "quai login --url http://127.0.0.1:8080 --api-token qt_...",
  async run(ctx, args) {
    const { flags } = parseFlags(args, [], ["url", "api-token"], 0);
    const saved = await readCredentials(ctx.env);
    const url = (flags.url as string | undefined) || ctx.env.QUAI_URL || saved?.url || (await ctx.prompt("Quai API URL: "));
    if (!url) throw new QuaiError("cli_usage", "no API URL: pass --url or set QUAI_URL");
    let token = (flags["api-token"] as string | undefined) || ctx.env.QUAI_TOKEN;
    if (!token) token = process.stdin.isTTY ? await ctx.prompt("API token: ", { secret: true }) : await readStdin();
    if (!token) throw new QuaiError("cli_usage", "no API token: pass --api-token, set QUAI_TOKEN or type it when asked");
    const client = new ApiClient(url, token);
    await client.exchange();
    const { user } = await client.request<{ user: { email: string } }>("GET", "/v1/users/self");
    await saveCredentials(ctx.env, { url: client.url, token });
    ctx.out(ctx.json ? JSON.stringify({ user, url: client.url }) : `Logged in as ${user.email} on ${client.url} (credentials in ${credentialsFile(ctx.env)})`);
  },
};

const logout: Command = {
  name: "logout",
  summary: "Forget the stored credentials",
  usage: "",
  example: "quai logout",
  async run(ctx) {
    const had = await deleteCredentials(ctx.env);
    ctx.out(had ? "Logged out." : "Not logged in.");
  },
};

const whoami: Command = {
  name: "whoami",
  summary: "Show the logged-in user",
  usage: "",
  example: "quai whoami",
  async run(ctx) {
    const { user } = await (await ctx.api()).request<{ user: { email: string; username: string; role: string } }>("GET", "/v1/users/self");
    ctx.out(ctx.json ? JSON.stringify(user) : `${user.email} (${user.username}, ${user.role})`);
  },
};

function adminUserCommand(name: string, summary: string, example: string, defaultRole: "owner" | "member"): Command {
  return {
    name,
    summary,
    usage: "--email EMAIL [--role owner|member] [--name TOKEN_NAME]",
    example,
    async run(ctx, args) {
      const { flags } = parseFlags(args, [], ["email", "role", "name"], 0);
      const email = flags.email as string | undefined;
      if (!email) throw new QuaiError("cli_usage", "--email is required");
      const role = (flags.role as string | undefined) ?? defaultRole;
      if (role !== "owner" && role !== "member") throw new QuaiError("cli_usage", "--role is owner or member");
      await withAdminStore(ctx.env, async ({ db }) => {
        const { user } = await ensureUser(db, email, role);
        const { token } = await createApiToken(db, user, (flags.name as string | undefined) ?? "admin-cli");
        ctx.out(ctx.json ? JSON.stringify({ email: user.email, token }) : token);
      });
    },
  };
}

export const authCommands: Command[] = [
  login,
  logout,
  whoami,
  adminUserCommand("admin token-create", "Print a new API token for a user (created as owner if missing); run on the server host", "QUAI_HOME=~/.quai quai admin token-create --email admin@example.org", "owner"),
  adminUserCommand("admin create-user", "Create a user (member unless --role owner) and print its API token; run on the server host", "quai admin create-user --email dev@example.org", "member"),
];
