// CLI: integrations, integrations-add, integrations-delete, integration-link(-create, -update,
// -delete, -manual-deploy, -manual-review-app, -deploys) and review-apps, with Scalingo's flags.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, requireApp, type CliContext, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";

const enc = encodeURIComponent;

interface IntegrationJson {
  id: string;
  scm_type: string;
  url: string;
  username: string;
}
interface LinkJson {
  owner: string;
  repo: string;
  branch: string;
  scm_type: string;
  auto_deploy_enabled: boolean;
  deploy_review_apps_enabled: boolean;
  delete_on_close_enabled: boolean;
  hours_before_delete_on_close: number;
  delete_stale_enabled: boolean;
  hours_before_delete_stale: number;
  automatic_creation_from_forks_allowed: boolean;
  required_checks: string[] | null;
  ci_timeout_minutes: number;
  review_apps_limit: number;
  review_apps_seed: string | null;
  webhook_url: string;
}
interface ReviewAppJson {
  app_name: string;
  url: string | null;
  status: string;
  error: string | null;
  sha: string;
  pr: { number: number; title: string };
  delete_after: string | null;
}

const linkBooleans = ["auto-deploy", "no-auto-deploy", "deploy-review-apps", "no-deploy-review-apps", "destroy-on-close", "no-destroy-on-close", "destroy-on-stale", "no-destroy-on-stale", "allow-review-apps-from-forks", "no-allow-review-apps-from-forks", "all-checks", "no-seed"] as const;
const linkValued = ["branch", "hours-before-destroy-on-close", "hours-before-destroy-on-stale", "required-checks", "ci-timeout", "review-apps-limit", "seed", "integration"] as const;

function int(flag: string, v: string | true | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v === true || !/^\d{1,6}$/.test(v)) throw new QuaiError("cli_usage", `--${flag} needs a whole number`);
  return Number(v);
}

/** Link settings from Scalingo's flags (and Quai's own). */
function linkSettings(flags: Record<string, string | true>): Record<string, unknown> {
  const s: Record<string, unknown> = {};
  const toggle = (on: string, key: string) => {
    if (flags[on]) s[key] = true;
    if (flags[`no-${on}`]) s[key] = false;
  };
  if (typeof flags.branch === "string") s.branch = flags.branch;
  toggle("auto-deploy", "auto_deploy_enabled");
  toggle("deploy-review-apps", "deploy_review_apps_enabled");
  toggle("destroy-on-close", "delete_on_close_enabled");
  toggle("destroy-on-stale", "delete_stale_enabled");
  toggle("allow-review-apps-from-forks", "automatic_creation_from_forks_allowed");
  const close = int("hours-before-destroy-on-close", flags["hours-before-destroy-on-close"]);
  if (close !== undefined) s.hours_before_delete_on_close = close;
  const stale = int("hours-before-destroy-on-stale", flags["hours-before-destroy-on-stale"]);
  if (stale !== undefined) s.hours_before_delete_stale = stale;
  const timeout = int("ci-timeout", flags["ci-timeout"]);
  if (timeout !== undefined) s.ci_timeout_minutes = timeout;
  const limit = int("review-apps-limit", flags["review-apps-limit"]);
  if (limit !== undefined) s.review_apps_limit = limit;
  if (typeof flags["required-checks"] === "string") s.required_checks = flags["required-checks"].split(",").map((c) => c.trim()).filter(Boolean);
  if (flags["all-checks"]) s.required_checks = null;
  if (typeof flags.seed === "string") s.review_apps_seed = flags.seed;
  if (flags["no-seed"]) s.review_apps_seed = null;
  return s;
}

function showLink(ctx: CliContext, app: string, l: LinkJson): void {
  if (ctx.json) return ctx.out(JSON.stringify(l));
  ctx.out(
    table(
      ["SETTING", "VALUE"],
      [
        ["repository", `${l.owner}/${l.repo} (${l.scm_type})`],
        ["branch", l.branch],
        ["auto-deploy", l.auto_deploy_enabled ? `on, once ${l.required_checks ? l.required_checks.join(", ") : "every check but quai/*"} passed (timeout ${l.ci_timeout_minutes} min)` : "off"],
        ["review apps", l.deploy_review_apps_enabled ? `on, at most ${l.review_apps_limit}` : "off"],
        ["destroy on close", l.delete_on_close_enabled ? `after ${l.hours_before_delete_on_close} h` : "off"],
        ["destroy when stale", l.delete_stale_enabled ? `after ${l.hours_before_delete_stale} h` : "off"],
        ["forks", l.automatic_creation_from_forks_allowed ? "allowed" : "refused"],
        ["seed", l.review_apps_seed ?? "none (empty databases)"],
        ["webhook", l.webhook_url],
      ],
    ),
  );
  ctx.out(`(${app}'s repo link)`);
}

const integrations: Command = {
  name: "integrations",
  summary: "List your GitHub and GitLab integrations",
  usage: "",
  example: "quai integrations",
  async run(ctx) {
    const { scm_integrations: rows } = await (await ctx.api()).request<{ scm_integrations: IntegrationJson[] }>("GET", "/v1/scm_integrations");
    if (ctx.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out("No integrations: add one with `quai integrations-add github --token <token>`.");
    ctx.out(table(["ID", "TYPE", "URL", "USER"], rows.map((r) => [r.id, r.scm_type, r.url, r.username])));
  },
};

const integrationsAdd: Command = {
  name: "integrations-add",
  summary: "Add a GitHub or GitLab integration (token from --token, QUAI_SCM_TOKEN, or asked)",
  usage: "<github|gitlab|github-enterprise|gitlab-self-hosted> [--url <api url>] [--token <token>]",
  example: "quai integrations-add gitlab-self-hosted --url https://gitlab.example.org",
  async run(ctx, args) {
    const { flags, positionals } = parseFlags(args, [], ["url", "token"]);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", `usage: quai integrations-add ${integrationsAdd.usage}`);
    const token = (typeof flags.token === "string" ? flags.token : undefined) ?? ctx.env.QUAI_SCM_TOKEN ?? (await ctx.prompt("Access token: ", { secret: true }));
    if (!token) throw new QuaiError("cli_usage", "give the forge's access token with --token or QUAI_SCM_TOKEN");
    const body = { scm_integration: { scm_type: positionals[0] as string, access_token: token, ...(typeof flags.url === "string" ? { url: flags.url } : {}) } };
    const { scm_integration: i } = await (await ctx.api()).request<{ scm_integration: IntegrationJson }>("POST", "/v1/scm_integrations", body);
    ctx.out(ctx.json ? JSON.stringify(i) : `Integration ${i.scm_type} added as ${i.username} (${i.id})`);
  },
};

const integrationsDelete: Command = {
  name: "integrations-delete",
  summary: "Delete an integration no repo link uses",
  usage: "<id|type>",
  example: "quai integrations-delete github",
  async run(ctx, args) {
    const { positionals } = parseFlags(args);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai integrations-delete <id|type>");
    await (await ctx.api()).request("DELETE", `/v1/scm_integrations/${enc(positionals[0] as string)}`);
    ctx.out(`Integration ${positionals[0]} deleted`);
  },
};

const linkCreate: Command = {
  name: "integration-link-create",
  summary: "Link the app to a repository: auto-deploy a branch once CI passes, review apps for pull requests",
  usage: "<repo-url> [--branch main] [--auto-deploy] [--deploy-review-apps] [--destroy-on-close] [--hours-before-destroy-on-close N] [--destroy-on-stale] [--hours-before-destroy-on-stale N] [--allow-review-apps-from-forks] [--required-checks a,b] [--ci-timeout MIN] [--review-apps-limit N] [--seed parent-latest|backup:<id>] [--integration <id|type>]",
  example: "quai --app histologe-staging integration-link-create https://github.com/MTES-MCT/histologe --branch main --auto-deploy --deploy-review-apps",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, linkBooleans, linkValued);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", `usage: quai integration-link-create ${linkCreate.usage}`);
    const integration = typeof flags.integration === "string" ? flags.integration : undefined;
    const body = { scm_repo_link: { source: positionals[0] as string, ...(integration ? (/^[0-9a-f-]{36}$/.test(integration) ? { auth_integration_uuid: integration } : { scm_type: integration }) : {}), ...linkSettings(flags) } };
    const { scm_repo_link: l } = await (await ctx.api()).request<{ scm_repo_link: LinkJson }>("POST", `/v1/apps/${enc(app)}/scm_repo_link`, body);
    if (ctx.json) return ctx.out(JSON.stringify(l));
    ctx.out(`${app} is linked to ${l.owner}/${l.repo} (branch ${l.branch}); Quai's webhook is registered on the repository.`);
    showLink(ctx, app, l);
  },
};

const link: Command = {
  name: "integration-link",
  summary: "Show the app's repo link",
  usage: "",
  example: "quai --app histologe-staging integration-link",
  async run(ctx) {
    const app = requireApp(ctx);
    const { scm_repo_link: l } = await (await ctx.api()).request<{ scm_repo_link: LinkJson }>("GET", `/v1/apps/${enc(app)}/scm_repo_link`);
    showLink(ctx, app, l);
  },
};

const linkUpdate: Command = {
  name: "integration-link-update",
  summary: "Change the repo link's settings (--no-<flag> turns one off; --all-checks waits for every check again)",
  usage: "[--branch B] [--auto-deploy|--no-auto-deploy] [--deploy-review-apps|--no-deploy-review-apps] [--destroy-on-close|--no-destroy-on-close] [--hours-before-destroy-on-close N] [--destroy-on-stale|--no-destroy-on-stale] [--hours-before-destroy-on-stale N] [--allow-review-apps-from-forks|--no-allow-review-apps-from-forks] [--required-checks a,b|--all-checks] [--ci-timeout MIN] [--review-apps-limit N] [--seed S|--no-seed]",
  example: "quai --app histologe-staging integration-link-update --required-checks test,lint",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, linkBooleans, linkValued);
    if (positionals.length > 0) throw new QuaiError("cli_usage", `usage: quai integration-link-update ${linkUpdate.usage}`);
    const settings = linkSettings(flags);
    if (Object.keys(settings).length === 0) throw new QuaiError("cli_usage", "name at least one setting to change");
    const { scm_repo_link: l } = await (await ctx.api()).request<{ scm_repo_link: LinkJson }>("PATCH", `/v1/apps/${enc(app)}/scm_repo_link`, { scm_repo_link: settings });
    showLink(ctx, app, l);
  },
};

const linkDelete: Command = {
  name: "integration-link-delete",
  summary: "Unlink the app from its repository (its webhook is removed)",
  usage: "",
  example: "quai --app histologe-staging integration-link-delete",
  async run(ctx) {
    const app = requireApp(ctx);
    await (await ctx.api()).request("DELETE", `/v1/apps/${enc(app)}/scm_repo_link`);
    ctx.out(`${app} is no longer linked to a repository`);
  },
};

const manualDeploy: Command = {
  name: "integration-link-manual-deploy",
  summary: "Deploy the head of a branch of the linked repository now",
  usage: "<branch>",
  example: "quai --app histologe-staging integration-link-manual-deploy main",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length !== 1) throw new QuaiError("cli_usage", "usage: quai integration-link-manual-deploy <branch>");
    const res = await (await ctx.api()).request<{ deploy: { sha: string; status: string }; deployment: { id: string } | null }>("POST", `/v1/apps/${enc(app)}/scm_repo_link/manual_deploy`, { branch: positionals[0] });
    if (ctx.json) return ctx.out(JSON.stringify(res));
    ctx.out(`Deploying ${positionals[0]} (${res.deploy.sha.slice(0, 7)}) to ${app}${res.deployment ? `: follow it with \`quai --app ${app} deployment-logs ${res.deployment.id} -f\`` : ""}`);
  },
};

const manualReviewApp: Command = {
  name: "integration-link-manual-review-app",
  summary: "Create (or redeploy) the review app of a pull request",
  usage: "<pull request number>",
  example: "quai --app histologe-staging integration-link-manual-review-app 42",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    if (positionals.length !== 1 || !/^[1-9]\d{0,8}$/.test(positionals[0] as string)) throw new QuaiError("cli_usage", "usage: quai integration-link-manual-review-app <pull request number>");
    const { review_app: r } = await (await ctx.api()).request<{ review_app: ReviewAppJson }>("POST", `/v1/apps/${enc(app)}/scm_repo_link/manual_review_app`, { pull_request_id: Number(positionals[0]) });
    ctx.out(ctx.json ? JSON.stringify(r) : `Review app ${r.app_name} for #${r.pr.number}: ${r.status}${r.error ? ` (${r.error})` : ""}`);
  },
};

const deploys: Command = {
  name: "integration-link-deploys",
  summary: "Pushes of the linked branch: waiting for CI, deployed, blocked by a failed check, timed out",
  usage: "",
  example: "quai --app histologe-staging integration-link-deploys",
  async run(ctx) {
    const app = requireApp(ctx);
    const { deploys: rows } = await (await ctx.api()).request<{ deploys: { sha: string; branch: string; status: string; reason: string | null; created_at: string }[] }>("GET", `/v1/apps/${enc(app)}/scm_repo_link/deploys`);
    if (ctx.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out("No pushes of the linked branch yet.");
    ctx.out(table(["WHEN", "BRANCH", "COMMIT", "STATUS", "WHY"], rows.map((r) => [r.created_at, r.branch, r.sha.slice(0, 7), r.status, r.reason ?? ""])));
  },
};

const reviewApps: Command = {
  name: "review-apps",
  summary: "The app's review apps (one per pull request), with their URL and status",
  usage: "",
  example: "quai --app histologe-staging review-apps",
  async run(ctx) {
    const app = requireApp(ctx);
    const { review_apps: rows } = await (await ctx.api()).request<{ review_apps: ReviewAppJson[] }>("GET", `/v1/apps/${enc(app)}/scm_repo_link/review_apps`);
    if (ctx.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out("No review apps yet.");
    ctx.out(table(["PR", "APP", "STATUS", "COMMIT", "URL", "NOTE"], rows.map((r) => [`#${r.pr.number}`, r.app_name, r.status, r.sha.slice(0, 7), r.url ?? "", r.error ?? (r.delete_after ? `deleted after ${r.delete_after}` : "")])));
  },
};

export const scmCommands: Command[] = [integrations, integrationsAdd, integrationsDelete, linkCreate, link, linkUpdate, linkDelete, manualDeploy, manualReviewApp, deploys, reviewApps];
