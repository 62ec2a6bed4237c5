// Schema fragments shared by the capabilities' routes.

/** Path parameter `:app` (name or id). */
export const appParams = {
  type: "object",
  properties: { app: { type: "string", description: "App name or id" } },
  required: ["app"],
  additionalProperties: false,
} as const;

/** Pagination query string (Scalingo's `page` and `per_page`). */
export const pageQuery = {
  type: "object",
  properties: {
    page: { type: "string", pattern: "^[1-9][0-9]{0,5}$" },
    per_page: { type: "string", pattern: "^[1-9][0-9]{0,2}$" },
    from: { type: "string", pattern: "^[0-9]{1,6}$", description: "Accepted for compatibility; ignored." },
  },
  additionalProperties: false,
} as const;

/** Reads `page`/`per_page` (default 1 and 30; per_page at most 100). */
export function pageOf(q: { page?: string; per_page?: string }): { page: number; perPage: number } {
  return { page: Number(q.page ?? 1), perPage: Math.min(100, Number(q.per_page ?? 30)) };
}

/** JSON schema of Scalingo's request envelope `{"<key>": {...}}`, refusing unknown fields at both levels. */
export function envelope(key: string, properties: Record<string, unknown>, required: string[] = []) {
  return {
    type: "object",
    required: [key],
    additionalProperties: false,
    properties: { [key]: { type: "object", required, additionalProperties: false, properties } },
  } as const;
}

