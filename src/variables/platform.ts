// What Quai itself sets in a container's environment, over the app's own variables.

/** Names Quai sets in containers: whatever an app's variable of that name says, its processes see Quai's value. */
export const PLATFORM_VARIABLES = ["PATH", "HOME", "APP", "CONTAINER", "CONTAINER_SIZE", "CONTAINER_VERSION", "SOURCE_VERSION", "PORT"] as const;

/** The variables Quai sets in a container (PORT only in one that has a port: web containers). */
export function platformEnv(c: { app: string; name: string; size: string; version: number; gitRef: string | null; port: number | null }): Record<string, string> {
  return {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: "/app",
    APP: c.app,
    CONTAINER: c.name,
    CONTAINER_SIZE: c.size,
    CONTAINER_VERSION: `v${c.version}`,
    SOURCE_VERSION: c.gitRef ?? "",
    ...(c.port !== null ? { PORT: String(c.port) } : {}),
  };
}

/** What to tell someone who just set `name`, when Quai's value hides theirs; undefined otherwise. */
export function platformVariableWarning(name: string): string | undefined {
  if (name === "PORT") return "PORT is the port Quai gives each web container: web processes never see the value set here (one-off containers do)";
  if ((PLATFORM_VARIABLES as readonly string[]).includes(name)) return `${name} is set by Quai in every container: the app's processes never see the value set here`;
  return undefined;
}
