// Identifier helpers shared by the capabilities.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a UUID as PostgreSQL prints it; guards queries on uuid columns from arbitrary input. */
export function isUuid(s: string): boolean {
  return UUID.test(s);
}
