// Add-on endpoints in Scalingo's shapes (/v1/addon_providers, /v1/apps/:app/addons), and the
// backup, restore and point-in-time endpoints Quai adds under each add-on (Scalingo serves
// those from a separate database API; one API is simpler to run and to secure).
import type { FastifyPluginAsync } from "fastify";
import type { ApiDeps } from "../server/api.ts";
import { envelope } from "../core/http.ts";
import { QuaiError } from "../core/errors.ts";
import type { Addons, AddonRow, BackupRow, InstanceRow } from "./service.ts";
import type { PlanSpec, ProviderSpec } from "./engine.ts";

const appParams = { type: "object", required: ["app"], properties: { app: { type: "string" } } } as const;
const addonParams = { type: "object", required: ["app", "addon"], properties: { app: { type: "string" }, addon: { type: "string" } } } as const;
const backupParams = { type: "object", required: ["app", "addon", "backup"], properties: { app: { type: "string" }, addon: { type: "string" }, backup: { type: "string" } } } as const;

/** A plan in Scalingo's JSON shape, with the limits Quai enforces. */
export function planJson(plan: PlanSpec): Record<string, unknown> {
  return {
    id: plan.name,
    name: plan.name,
    display_name: plan.displayName,
    description: plan.description,
    position: plan.position,
    price: 0,
    on_demand: false,
    disabled: false,
    hds_available: false,
    sku: plan.name,
    memory_bytes: plan.memoryBytes,
    max_connections: plan.maxConnections,
    disk_bytes: plan.diskBytes,
  };
}

/** A provider in Scalingo's JSON shape. */
export function providerJson(p: ProviderSpec, withPlans = true): Record<string, unknown> {
  return {
    id: p.id,
    name: p.name,
    logo_url: null,
    short_description: p.shortDescription,
    description: p.shortDescription,
    category: { id: "databases", name: "Databases" },
    provider_name: "Quai",
    provider_url: null,
    ...(withPlans ? { plans: p.plans.map(planJson) } : {}),
  };
}

/** A backup in the shape of Scalingo's database API, with Quai's extra facts. */
export function backupJson(b: BackupRow): Record<string, unknown> {
  const duration = b.started_at && b.finished_at ? b.finished_at.getTime() - b.started_at.getTime() : null;
  return {
    id: b.id,
    database_id: b.addon_id,
    name: `${b.kind}-${b.created_at.toISOString().replace(/[:.]/g, "-")}`,
    created_at: b.created_at.toISOString(),
    started_at: b.started_at?.toISOString() ?? null,
    finished_at: b.finished_at?.toISOString() ?? null,
    status: b.status,
    backup_type: b.kind,
    method: "logical",
    direct: false,
    format: b.format,
    size: b.size === null ? null : Number(b.size),
    duration_ms: duration,
    sha256: b.status === "done" ? b.blob_key : null,
    error: b.error,
    verification: b.verification ?? null,
    verified_at: b.verified_at?.toISOString() ?? null,
  };
}

function instanceJson(r: InstanceRow): Record<string, unknown> {
  return { id: r.id, role: r.role, state: r.state, plan: r.plan, created_at: r.created_at.toISOString(), detached_at: r.detached_at?.toISOString() ?? null, origin: r.origin };
}

/** An add-on in Scalingo's JSON shape, with backup and archive health. */
export async function addonJson(addons: Addons, a: AddonRow): Promise<Record<string, unknown>> {
  const engine = addons.engine(a.provider);
  const plan = engine.provider.plans.find((p) => p.name === a.plan);
  const dataBytes = a.status === "running" ? ((await addons.usage(a)) ?? null) : null;
  return {
    id: a.id,
    app_id: a.app_id,
    resource_id: `${a.provider}-${a.id.slice(0, 8)}`,
    status: a.status,
    hds_resource: false,
    instance_id: a.current_instance_id,
    provisioned_at: a.created_at.toISOString(),
    deprovisioned_at: a.deleted_at?.toISOString() ?? null,
    plan: plan ? planJson(plan) : { id: a.plan, name: a.plan },
    addon_provider: providerJson(engine.provider, false),
    env: [`SCALINGO_${engine.provider.envPrefix}_URL`, `QUAI_${engine.provider.envPrefix}_URL`],
    data_bytes: dataBytes,
    quota_exceeded: dataBytes !== null && plan !== undefined && dataBytes > plan.diskBytes,
    backup_hour: a.backup_hour,
    backups: await addons.backupHealth(a),
    archive: await addons.archiveStatus(a),
  };
}

export function addonRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (app) => {
    const addons = deps.addons;
    if (!addons) return;
    const json = (a: AddonRow) => addonJson(addons, a);

    // Public, as on Scalingo: the catalogue is what a signup page shows.
    app.get("/v1/addon_providers", { config: { public: true }, schema: { summary: "Add-on providers and their plans", tags: ["addons"] } }, async () => ({
      addon_providers: [...addons.engines.values()].map((e) => providerJson(e.provider)),
    }));

    app.get<{ Params: { app: string } }>("/v1/apps/:app/addons", { schema: { summary: "The app's add-ons", tags: ["addons"], params: appParams } }, async (req) => {
      const { addons: rows } = await addons.list(req.actor, req.params.app);
      return { addons: await Promise.all(rows.map(json)) };
    });

    app.post<{ Params: { app: string }; Body: { addon: { addon_provider_id: string; plan_id: string } } }>("/v1/apps/:app/addons", {
      schema: { summary: "Provision an add-on: a new server, the app's variables, a release", tags: ["addons"], params: appParams, body: envelope("addon", { addon_provider_id: { type: "string", maxLength: 64 }, plan_id: { type: "string", maxLength: 128 } }, ["addon_provider_id", "plan_id"]) },
    }, async (req, reply) => {
      const addon = await addons.provision(req.actor, req.params.app, req.body.addon.addon_provider_id, req.body.addon.plan_id);
      return reply.code(201).send({ addon: await json(addon), message: `Add-on ${addon.provider} provisioned; the app gets SCALINGO_${addons.engine(addon.provider).provider.envPrefix}_URL` });
    });

    app.get<{ Params: { app: string; addon: string } }>("/v1/apps/:app/addons/:addon", { schema: { summary: "One add-on", tags: ["addons"], params: addonParams } }, async (req) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon);
      return { addon: await json(addon) };
    });

    app.patch<{ Params: { app: string; addon: string }; Body: { addon: { plan_id?: string; backup_hour?: number } } }>("/v1/apps/:app/addons/:addon", {
      schema: { summary: "Change an add-on's plan (the server restarts with it) or its daily backup hour", tags: ["addons"], params: addonParams, body: envelope("addon", { plan_id: { type: "string", maxLength: 128 }, backup_hour: { type: "integer" } }, []) },
    }, async (req) => {
      let addon: AddonRow | undefined;
      if (req.body.addon.backup_hour !== undefined) addon = await addons.setBackupHour(req.actor, req.params.app, req.params.addon, req.body.addon.backup_hour);
      if (req.body.addon.plan_id !== undefined) addon = await addons.upgrade(req.actor, req.params.app, req.params.addon, req.body.addon.plan_id);
      if (!addon) throw new QuaiError("validation_failed", "give addon.plan_id or addon.backup_hour");
      return { addon: await json(addon), message: `Add-on ${addon.provider} on ${addon.plan}` };
    });

    app.delete<{ Params: { app: string; addon: string }; Querystring: { final_backup?: string } }>("/v1/apps/:app/addons/:addon", {
      schema: { summary: "Remove an add-on (a final backup first unless final_backup=false)", tags: ["addons"], params: addonParams, querystring: { type: "object", additionalProperties: false, properties: { final_backup: { type: "string", enum: ["true", "false"] } } } },
    }, async (req) => {
      const res = await addons.remove(req.actor, req.params.app, req.params.addon, { finalBackup: req.query.final_backup !== "false" });
      return { addon: await json(res.addon), final_backup: res.finalBackup ? backupJson(res.finalBackup) : null };
    });

    app.get<{ Params: { app: string; addon: string }; Querystring: { lines?: number } }>("/v1/apps/:app/addons/:addon/logs", {
      schema: { summary: "The add-on server's recent log lines", tags: ["addons"], params: addonParams, querystring: { type: "object", additionalProperties: false, properties: { lines: { type: "integer", minimum: 1, maximum: 10000 } } } },
    }, async (req) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon);
      const { inst, engine } = await addons.current(addon);
      return { logs: await engine.logs(inst, req.query.lines ?? 100) };
    });

    app.get<{ Params: { app: string; addon: string } }>("/v1/apps/:app/addons/:addon/instances", { schema: { summary: "Instances replaced by restores (kept, stopped)", tags: ["addons"], params: addonParams } }, async (req) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon);
      return { instances: (await addons.detachedInstances(addon.id)).map(instanceJson) };
    });

    app.post<{ Params: { app: string; addon: string; instance: string } }>("/v1/apps/:app/addons/:addon/instances/:instance/reattach", {
      schema: { summary: "Undo a restore: switch back to an instance it replaced", tags: ["addons"], params: { type: "object", required: ["app", "addon", "instance"], properties: { app: { type: "string" }, addon: { type: "string" }, instance: { type: "string" } } } },
    }, async (req) => ({ addon: await json(await addons.reattach(req.actor, req.params.app, req.params.addon, req.params.instance)) }));

    app.get<{ Params: { app: string; addon: string } }>("/v1/apps/:app/addons/:addon/backups", { schema: { summary: "Backups of an add-on, newest first", tags: ["addons"], params: addonParams } }, async (req) => {
      const { backups } = await addons.listBackups(req.actor, req.params.app, req.params.addon);
      return { backups: backups.map(backupJson) };
    });

    app.post<{ Params: { app: string; addon: string } }>("/v1/apps/:app/addons/:addon/backups", { schema: { summary: "Start a backup now (it runs in the background)", tags: ["addons"], params: addonParams } }, async (req, reply) => {
      const backup = await addons.createBackup(req.actor, req.params.app, req.params.addon);
      return reply.code(201).send({ backup: backupJson(backup) });
    });

    app.get<{ Params: { app: string; addon: string; backup: string } }>("/v1/apps/:app/addons/:addon/backups/:backup", { schema: { summary: "One backup", tags: ["addons"], params: backupParams } }, async (req) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon, { deleted: true });
      return { backup: backupJson((await addons.findBackup(req.actor, req.params.backup, addon.id)).backup) };
    });

    app.get<{ Params: { app: string; addon: string; backup: string } }>("/v1/apps/:app/addons/:addon/backups/:backup/archive", { schema: { summary: "Download a backup (streamed; Range resumes)", tags: ["addons"], params: backupParams } }, async (req, reply) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon, { deleted: true });
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      // A start past any file (even past what a number holds exactly) is past this one: 416.
      const start = range ? Math.min(Number(range[1]), Number.MAX_SAFE_INTEGER) : 0;
      const { backup, stream, size } = await addons.backupFile(req.actor, req.params.backup, start, addon.id);
      if (start >= size && size > 0) {
        stream.destroy();
        return reply.code(416).header("content-range", `bytes */${size}`).send();
      }
      reply.header("accept-ranges", "bytes").header("content-type", "application/octet-stream").header("content-length", String(size - start));
      reply.header("content-disposition", `attachment; filename="${backupJson(backup).name as string}.${backup.format.replace(/^pg_dump-custom$/, "pgdump")}"`);
      reply.header("x-checksum-sha256", backup.blob_key ?? "");
      if (range) reply.code(206).header("content-range", `bytes ${start}-${size - 1}/${size}`);
      return reply.send(stream);
    });

    app.post<{ Params: { app: string; addon: string; backup: string } }>("/v1/apps/:app/addons/:addon/backups/:backup/verify", { schema: { summary: "Restore a backup into a throwaway instance and check it", tags: ["addons"], params: backupParams } }, async (req) => {
      const { addon } = await addons.find(req.actor, req.params.app, req.params.addon, { deleted: true });
      return { backup: backupJson(await addons.verifyBackup(req.actor, req.params.backup, addon.id)) };
    });

    app.post<{ Params: { app: string; addon: string }; Body: { backup_id: string } }>("/v1/apps/:app/addons/:addon/restore", {
      schema: { summary: "Restore a backup (of this or another add-on you can see) into a new instance, then switch to it", tags: ["addons"], params: addonParams, body: { type: "object", additionalProperties: false, required: ["backup_id"], properties: { backup_id: { type: "string", maxLength: 64 } } } },
    }, async (req) => ({ addon: await json(await addons.restoreBackup(req.actor, req.params.app, req.params.addon, req.body.backup_id)) }));

    app.post<{ Params: { app: string; addon: string }; Body: { to: string } }>("/v1/apps/:app/addons/:addon/pitr_restore", {
      schema: { summary: "Restore a PostgreSQL add-on to a point in time (new instance, then switch)", tags: ["addons"], params: addonParams, body: { type: "object", additionalProperties: false, required: ["to"], properties: { to: { type: "string", maxLength: 64 } } } },
    }, async (req) => ({ addon: await json(await addons.pitrRestore(req.actor, req.params.app, req.params.addon, req.body.to)) }));
  };
}
