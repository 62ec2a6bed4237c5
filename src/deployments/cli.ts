// CLI: deploy, deployments, deployment-logs, deployment-cancel, deployment-delete-cache.
import { QuaiError } from "../core/errors.ts";
import { parseFlags, readArgFile, requireApp, type CliContext, type Command } from "../cli/command.ts";
import { table } from "../cli/output.ts";
import type { ApiClient } from "../cli/client.ts";

interface DeploymentJson {
  id: string;
  status: string;
  git_ref: string | null;
  created_at: string;
  duration: number | null;
  image_size: number | null;
  pusher: { email: string | null };
}

const failed = new Set(["build-error", "crashed-error", "timeout-error", "hook-error", "aborted"]);

/** Streams a deployment's output to stdout until it ends; returns its final status. */
export async function followDeployment(api: ApiClient, app: string, id: string): Promise<string> {
  const res = await api.stream("GET", `/v1/apps/${encodeURIComponent(app)}/deployments/${id}/output?follow=true`);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) process.stdout.write(chunk);
  const { deployment } = await api.request<{ deployment: DeploymentJson }>("GET", `/v1/apps/${encodeURIComponent(app)}/deployments/${id}`);
  return deployment.status;
}

function endWith(status: string, id: string): void {
  if (failed.has(status)) throw new QuaiError("cli_deployment_failed", `deployment ${id} ended ${status}: the previous release keeps serving`);
}

const deploy: Command = {
  name: "deploy",
  summary: "Deploy a gzipped tarball (a local file, or an http(s) URL Quai downloads)",
  usage: "<archive.tar.gz | url> [--git-ref REF] [--no-follow]",
  example: "quai --app histologe deploy ./histologe-v2.tar.gz",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args, ["no-follow"], ["git-ref"]);
    const source = positionals[0];
    if (!source || positionals.length > 1) throw new QuaiError("cli_usage", "usage: quai deploy <archive.tar.gz | url>");
    const api = await ctx.api();
    let deployment: DeploymentJson;
    const gitRef = typeof flags["git-ref"] === "string" ? flags["git-ref"] : undefined;
    if (/^https?:\/\//.test(source)) {
      ({ deployment } = await api.request<{ deployment: DeploymentJson }>("POST", `/v1/apps/${encodeURIComponent(app)}/deployments`, { deployment: { source_url: source, ...(gitRef ? { git_ref: gitRef } : {}) } }));
    } else {
      if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(source)) throw new QuaiError("deployment_source_invalid", `${source}: Quai downloads http and https URLs only; for anything else, download the archive and deploy the file`);
      const data = await readArgFile(source);
      // Refused here rather than after a deployment is queued: gzip data starts with 1f 8b.
      if (data[0] !== 0x1f || data[1] !== 0x8b) throw new QuaiError("deployment_source_invalid", `${source} is not a gzipped tar archive (make one with: git archive --format=tar.gz HEAD)`);
      const res = await api.stream("POST", `/v1/apps/${encodeURIComponent(app)}/deployments/upload${gitRef ? `?git_ref=${encodeURIComponent(gitRef)}` : ""}`, { data, contentType: "application/gzip" });
      ({ deployment } = (await res.json()) as { deployment: DeploymentJson });
    }
    if (ctx.json && flags["no-follow"]) return ctx.out(JSON.stringify(deployment));
    ctx.err(`Deployment ${deployment.id} queued`);
    if (flags["no-follow"]) return;
    endWith(await followDeployment(api, app, deployment.id), deployment.id);
  },
};

const deployments: Command = {
  name: "deployments",
  summary: "List an app's deployments, newest first",
  usage: "[--page N]",
  example: "quai --app histologe deployments",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags } = parseFlags(args, [], ["page", "per-page"], 0);
    const qs = new URLSearchParams();
    if (flags.page) qs.set("page", String(flags.page));
    if (flags["per-page"]) qs.set("per_page", String(flags["per-page"]));
    const res = await (await ctx.api()).request<{ deployments: DeploymentJson[] }>("GET", `/v1/apps/${encodeURIComponent(app)}/deployments${qs.size ? "?" + qs.toString() : ""}`);
    if (ctx.json) return ctx.out(JSON.stringify(res.deployments));
    if (res.deployments.length === 0) return ctx.out("No deployments yet: git push, or quai deploy <archive>.");
    ctx.out(table(["ID", "DATE", "STATUS", "GIT REF", "DURATION", "PUSHER"], res.deployments.map((d) => [d.id, d.created_at, d.status, d.git_ref?.slice(0, 12), d.duration === null ? null : `${d.duration}s`, d.pusher.email])));
  },
};

const latestId = async (ctx: CliContext, app: string): Promise<string> => {
  const res = await (await ctx.api()).request<{ deployments: DeploymentJson[] }>("GET", `/v1/apps/${encodeURIComponent(app)}/deployments?per_page=1`);
  const d = res.deployments[0];
  if (!d) throw new QuaiError("deployment_not_found", "the app has no deployment yet");
  return d.id;
};

const logs: Command = {
  name: "deployment-logs",
  summary: "Show a deployment's output (the latest by default; -f follows it live)",
  usage: "[id] [-f]",
  example: "quai --app histologe deployment-logs -f",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { flags, positionals } = parseFlags(args.map((a) => (a === "-f" ? "--follow" : a)), ["follow"]);
    const id = positionals[0] ?? (await latestId(ctx, app));
    if (flags.follow) {
      await followDeployment(await ctx.api(), app, id);
      return;
    }
    const res = await (await ctx.api()).stream("GET", `/v1/apps/${encodeURIComponent(app)}/deployments/${encodeURIComponent(id)}/output`);
    process.stdout.write(await res.text());
  },
};

const cancel: Command = {
  name: "deployment-cancel",
  summary: "Cancel a queued or running deployment (the latest by default)",
  usage: "[id]",
  example: "quai --app histologe deployment-cancel",
  async run(ctx, args) {
    const app = requireApp(ctx);
    const { positionals } = parseFlags(args);
    const id = positionals[0] ?? (await latestId(ctx, app));
    const { deployment } = await (await ctx.api()).request<{ deployment: DeploymentJson }>("POST", `/v1/apps/${encodeURIComponent(app)}/deployments/${encodeURIComponent(id)}/cancel`);
    ctx.out(ctx.json ? JSON.stringify(deployment) : `Deployment ${id}: cancel requested (status ${deployment.status})`);
  },
};

const deleteCache: Command = {
  name: "deployment-delete-cache",
  summary: "Delete the app's build cache (the next build starts clean)",
  usage: "",
  example: "quai --app histologe deployment-delete-cache",
  async run(ctx) {
    const app = requireApp(ctx);
    await (await ctx.api()).request("DELETE", `/v1/apps/${encodeURIComponent(app)}/caches/deployment`);
    ctx.out(`Build cache of ${app} deleted`);
  },
};

export const deploymentCommands: Command[] = [deploy, deployments, logs, cancel, deleteCache];
