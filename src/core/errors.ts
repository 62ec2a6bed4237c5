// The error catalogue: every error Quai reports, with its HTTP status and CLI exit code.
// Services throw `QuaiError`s by code; the API and the CLI translate them. Codes are never reused.

/** One entry of the catalogue. */
export interface ErrorSpec {
  /** HTTP status the API answers with. */
  readonly status: number;
  /** Exit code of the `quai` CLI (sysexits.h values where one fits). */
  readonly exit: number;
  /** What the error means, for the generated documentation. */
  readonly description: string;
}

/** Exit codes, named after sysexits.h. */
export const Exit = {
  usage: 64,
  data: 65,
  noInput: 66,
  unavailable: 69,
  software: 70,
  cantCreate: 73,
  tempFail: 75,
  noPerm: 77,
  config: 78,
} as const;

export const catalogue = {
  // Requests
  bad_request: { status: 400, exit: Exit.data, description: "The request is not valid HTTP (a Content-Length that does not match the body, a malformed header line)." },
  bad_json: { status: 400, exit: Exit.data, description: "The request body is not valid JSON." },
  unsupported_media_type: { status: 415, exit: Exit.data, description: "The request body is not `application/json`." },
  body_too_large: { status: 413, exit: Exit.data, description: "The request body is larger than the server accepts." },
  validation_failed: { status: 422, exit: Exit.data, description: "A field is missing or has the wrong type or format." },
  unknown_field: { status: 422, exit: Exit.data, description: "The request names a field this endpoint does not know." },
  route_not_found: { status: 404, exit: Exit.noInput, description: "No API endpoint at this method and path." },
  // Auth
  auth_required: { status: 401, exit: Exit.noPerm, description: "The request has no bearer token." },
  token_invalid: { status: 401, exit: Exit.noPerm, description: "The token is unknown or malformed." },
  token_expired: { status: 401, exit: Exit.noPerm, description: "The bearer token has expired; exchange the API token again." },
  forbidden: { status: 403, exit: Exit.noPerm, description: "The user may not do this." },
  user_email_invalid: { status: 422, exit: Exit.data, description: "The email address is not valid." },
  // Apps
  app_not_found: { status: 404, exit: Exit.noInput, description: "No app with this name or id that the user can see." },
  app_name_invalid: { status: 422, exit: Exit.data, description: "App names are 3 to 48 lowercase letters, digits and dashes, starting and ending with a letter or digit." },
  app_name_taken: { status: 409, exit: Exit.cantCreate, description: "Another app already has this name." },
  health_check_path_invalid: { status: 422, exit: Exit.data, description: "A health-check path starts with `/` and has no spaces or control characters." },
  confirmation_mismatch: { status: 422, exit: Exit.data, description: "A destructive action needs the app's current name as confirmation, and the one given differs." },
  // Variables
  variable_not_found: { status: 404, exit: Exit.noInput, description: "No variable with this id or name on the app." },
  variable_name_invalid: { status: 422, exit: Exit.data, description: "Variable names match [A-Za-z_][A-Za-z0-9_]* and are at most 255 characters." },
  variable_value_too_large: { status: 422, exit: Exit.data, description: "Variable values are at most 64 KiB (65,536 bytes of UTF-8)." },
  variable_duplicate: { status: 422, exit: Exit.data, description: "The same variable name appears twice in one request." },
  variables_busy: { status: 409, exit: Exit.tempFail, description: "The app's variables kept changing while this change was applied (many concurrent edits); nothing was written: try again." },
  variable_reference_cycle: { status: 422, exit: Exit.data, description: "Variables refer to each other in a cycle ($A → $B → $A)." },
  variable_reference_missing: { status: 422, exit: Exit.data, description: "A variable refers to another variable that does not exist." },
  // Deployments
  deployment_not_found: { status: 404, exit: Exit.noInput, description: "No deployment with this id on the app." },
  deployment_source_invalid: { status: 422, exit: Exit.data, description: "The source to deploy is missing, not a gzipped tar archive with one top folder, or its URL is not http(s)." },
  deployment_source_unreachable: { status: 422, exit: Exit.data, description: "Quai could not download the archive at `source_url`." },
  deployment_source_too_large: { status: 413, exit: Exit.data, description: "The source archive is larger than Quai accepts (QUAI_SOURCE_LIMIT)." },
  deployment_finished: { status: 409, exit: Exit.data, description: "The deployment has already finished; there is nothing to cancel." },
  git_ref_invalid: { status: 422, exit: Exit.data, description: "A git ref must be a branch, tag or commit name without spaces, control characters or shell syntax." },
  procfile_invalid: { status: 422, exit: Exit.data, description: "A Procfile line is not `type: command`, or a command is empty." },
  release_not_found: { status: 404, exit: Exit.noInput, description: "No release with this version on the app." },
  no_release: { status: 409, exit: Exit.data, description: "The app has no release yet: deploy it first (git push or `quai deploy`)." },
  // Formation and containers
  formation_invalid: { status: 422, exit: Exit.data, description: "A scale request names an unknown process type or size, or an amount outside 0..QUAI_MAX_CONTAINERS." },
  container_not_found: { status: 404, exit: Exit.noInput, description: "No container with this name on the app." },
  operation_not_found: { status: 404, exit: Exit.noInput, description: "No recent operation with this id on the app (operations are kept one hour)." },
  run_command_invalid: { status: 422, exit: Exit.data, description: "A one-off command must be a non-empty list of arguments." },
  // SSH keys
  ssh_key_invalid: { status: 422, exit: Exit.data, description: "The SSH public key is not one line `TYPE BASE64 [comment]` of a supported type (ssh-ed25519, ecdsa-sha2-*, ssh-rsa of 2048 bits or more)." },
  ssh_key_taken: { status: 409, exit: Exit.cantCreate, description: "This SSH key is already registered (keys identify one user)." },
  ssh_key_not_found: { status: 404, exit: Exit.noInput, description: "No SSH key with this id among the user's keys." },
  // Add-ons
  addon_provider_unknown: { status: 422, exit: Exit.data, description: "No add-on provider with this id (see `quai addons-providers` or GET /v1/addon_providers)." },
  addon_plan_unknown: { status: 422, exit: Exit.data, description: "The provider has no plan with this id (see GET /v1/addon_providers)." },
  addon_not_found: { status: 404, exit: Exit.noInput, description: "No add-on with this id (or provider) on the app." },
  addon_exists: { status: 409, exit: Exit.cantCreate, description: "The app already has an add-on of this provider (one per provider: their variables would clash)." },
  addon_plan_too_small: { status: 422, exit: Exit.data, description: "The add-on's data is larger than the disk of the plan asked for." },
  addon_not_running: { status: 409, exit: Exit.tempFail, description: "The add-on is not running (still provisioning, or being restored); try again shortly." },
  addon_failed: { status: 502, exit: Exit.software, description: "The add-on's server failed to do what was asked; the message has its output. Nothing was changed." },
  addon_instance_not_found: { status: 404, exit: Exit.noInput, description: "No instance with this id among those restores replaced on this add-on (see `quai addons-instances`)." },
  backup_not_found: { status: 404, exit: Exit.noInput, description: "No backup with this id that the user can see." },
  backup_not_done: { status: 409, exit: Exit.data, description: "The backup has not completed (status scheduled, running or error): there is nothing to restore or download." },
  backup_corrupted: { status: 422, exit: Exit.data, description: "The backup file no longer matches its checksum: it will not be restored. Use another backup." },
  backup_provider_mismatch: { status: 422, exit: Exit.data, description: "A backup restores only into an add-on of the same provider." },
  pitr_unsupported: { status: 422, exit: Exit.data, description: "Point-in-time recovery exists for PostgreSQL add-ons only." },
  pitr_time_invalid: { status: 422, exit: Exit.data, description: "The time is not `YYYY-MM-DD HH:MM[:SS]` (Europe/Paris, or followed by an offset, `Z` or a zone name such as UTC)." },
  pitr_out_of_range: { status: 422, exit: Exit.data, description: "The time is outside the restorable window (from the earliest base backup to the last archived change)." },
  backup_hour_invalid: { status: 422, exit: Exit.data, description: "The backup hour is a whole hour from 0 to 23 (Europe/Paris)." },
  // Domains
  domain_invalid: { status: 422, exit: Exit.data, description: "A domain is a fully qualified DNS name (letters, digits, dashes; internationalised names are stored as punycode), at most 253 characters and 63 per label; not an IP address, not localhost, not under the platform's domain; wildcards are not supported yet." },
  domain_taken: { status: 409, exit: Exit.cantCreate, description: "Another app (or this one) already has this domain: a domain belongs to one app at a time." },
  domain_certificate_invalid: { status: 422, exit: Exit.data, description: "The certificate or key is not PEM, the key does not match the certificate, the certificate does not cover the domain, or it has expired." },
  domain_not_found: { status: 404, exit: Exit.noInput, description: "The app has no domain with this id or name." },
  // Maintenance
  maintenance_time_invalid: { status: 422, exit: Exit.data, description: "A maintenance time is not `YYYY-MM-DD HH:MM` or `HH:MM` (Europe/Paris, or with an offset or zone), or it is in the past, or the end is not after the start." },
  maintenance_invalid: { status: 422, exit: Exit.data, description: "A maintenance setting is invalid: a message over 2,000 characters, an allowed network that is not an IP address or CIDR, or a page over 256 KiB or not reachable." },
  maintenance_not_found: { status: 404, exit: Exit.noInput, description: "The app is not in maintenance and has no maintenance scheduled." },
  // SCM integrations, repo links, webhooks, review apps
  scm_integration_invalid: { status: 422, exit: Exit.data, description: "An SCM integration needs a known `scm_type` (github, gitlab, github-enterprise, gitlab-self-hosted), an http(s) API URL for self-hosted forges, and a token the forge accepts." },
  scm_integration_not_found: { status: 404, exit: Exit.noInput, description: "No SCM integration with this id or type for this user." },
  scm_integration_in_use: { status: 409, exit: Exit.cantCreate, description: "Repo links still use this integration: delete them first." },
  scm_forge_unreachable: { status: 502, exit: Exit.unavailable, description: "The forge (GitHub or GitLab) did not answer, timed out, or answered a server error after retries." },
  scm_forge_refused: { status: 502, exit: Exit.unavailable, description: "The forge refused the request: the token lacks access to the repository, or the repository, branch or pull request does not exist there." },
  scm_repo_link_invalid: { status: 422, exit: Exit.data, description: "A repo link setting is invalid: the repository URL is not a GitHub or GitLab repository of the integration's forge, a branch name is not a valid git branch, or a number is out of range." },
  scm_repo_link_exists: { status: 409, exit: Exit.cantCreate, description: "The app is already linked to a repository: update or delete that link first." },
  scm_repo_link_not_found: { status: 404, exit: Exit.noInput, description: "The app is not linked to a repository." },
  scm_webhook_refused: { status: 401, exit: Exit.noPerm, description: "A webhook was refused: no signature, a signature that does not match any link of the repository, a replayed delivery, or a repository no app is linked to. It was recorded and not acted on." },
  scm_webhook_invalid: { status: 400, exit: Exit.data, description: "A webhook payload is not the JSON the event names." },
  scm_manifest_invalid: { status: 422, exit: Exit.data, description: "The repository's `scalingo.json` or `app.json` is not valid: unknown keys, an unknown `generator`, a required variable without a value, an add-on plan that does not exist, or a size over the review-app limit." },
  review_app_not_found: { status: 404, exit: Exit.noInput, description: "No review app for this pull request." },
  review_app_forbidden: { status: 403, exit: Exit.noPerm, description: "Review apps are not created for this pull request: it comes from a fork and the link does not allow forks, or review apps are disabled on the link." },
  // Events
  event_not_found: { status: 404, exit: Exit.noInput, description: "No event with this id on the app." },
  // Platform
  internal_error: { status: 500, exit: Exit.software, description: "Quai failed unexpectedly; the server log has the details." },
  store_unavailable: { status: 503, exit: Exit.unavailable, description: "The state database is not reachable." },
  // CLI only (never sent by the API)
  cli_usage: { status: 400, exit: Exit.usage, description: "The command line is not valid: unknown command, flag or missing argument." },
  cli_not_logged_in: { status: 401, exit: Exit.noPerm, description: "The CLI has no API token: run `quai login` or set QUAI_TOKEN." },
  cli_server_unreachable: { status: 503, exit: Exit.unavailable, description: "The CLI could not reach the Quai API at QUAI_URL." },
  cli_server_not_running: { status: 503, exit: Exit.unavailable, description: "`quai admin` found no running Quai server in QUAI_HOME (start it with `quai server`)." },
  cli_deployment_failed: { status: 422, exit: Exit.software, description: "The deployment the command followed ended in a failure (build-error, crashed-error, timeout-error, hook-error, aborted)." },
  cli_run_failed: { status: 500, exit: Exit.software, description: "`quai run` could not start or lost its connection; the command's own exit code is returned when it ran." },
  cli_confirmation_required: { status: 400, exit: Exit.usage, description: "A destructive command needs confirmation: type it when asked, or pass --force." },
  config_invalid: { status: 500, exit: Exit.config, description: "A setting (environment variable or flag) has an invalid value." },
} as const satisfies Record<string, ErrorSpec>;

/** A code from the catalogue. */
export type ErrorCode = keyof typeof catalogue;

/** A domain error: services throw these, transports translate them. */
export class QuaiError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable facts (field names, the cycle found, ...). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "QuaiError";
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return catalogue[this.code].status;
  }

  get exitCode(): number {
    return catalogue[this.code].exit;
  }
}

/** True when `code` is a catalogue code (used by the CLI to read API errors). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(catalogue, code);
}
