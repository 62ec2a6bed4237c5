// Renders the whole nginx.conf of the router from the desired state: a pure function, golden-tested
// (testdata/), that refuses any name or path which could smuggle nginx syntax into the config.
import { isAbsolute } from "node:path";
import { RouterError } from "./errors.ts";
import type { RouteApp, RouterState } from "./types.ts";

/** Everything about the router process that is not routing state. */
export interface RenderSettings {
  /** nginx prefix (`-p`): the router's own directory. */
  prefix: string;
  /** Where apps are served: an IPv4 address or a bracketed IPv6 one, and a port. */
  listen: { host: string; port: number };
  /** Port of the loopback-only status listener (generation, stub_status). */
  statusPort: number;
  /** `worker_processes`. */
  workers: number;
  /** Number of this config, served by the status listener so a reload can be seen going live. */
  generation: number;
  /** Directory holding 404.html, 502.html and 503.html (see `errorPages`); read by workers. */
  errorPagesDir: string;
  pidFile: string;
  /** The router's own error log (the master opens it). */
  errorLog: string;
  /** Access log of requests no app claimed (unknown hosts). */
  accessLog: string;
  /** Parent of the client body and proxy temp directories; written by workers. */
  tempDir: string;
  /** Account the workers switch to: set it when the master runs as root. */
  user?: { user: string; group: string };
  /** HTTPS: its port, the certificate for names without their own, where apps' certificates are written, ACME's webroot. */
  https?: { port: number; publicPort: number; fallbackCert: string; fallbackKey: string; certDir: string; acmeRoot: string };
}

/** Path (under `statusPort`) answering the generation number of the config the worker runs. */
export const GENERATION_PATH = "/quai/generation";

// One DNS label (RFC 1123): letters, digits, inner dashes. Only [a-z0-9.-] ever reach the config.
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6 = /^\[[0-9a-f:.]+\]$/;
// Paths are written inside double quotes: quotes, backslashes, `$` (variable interpolation), braces,
// semicolons and control characters are refused rather than escaped.
const UNSAFE_PATH = /["'\\${};\p{Cc}]/u;
const CIDR4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\/(?:3[0-2]|[12]?\d)$/;
const CIDR6 = /^[0-9a-f:]+\/(?:12[0-8]|1[01]\d|[1-9]?\d)$/;
const TOKEN = /^[0-9a-f]{32,128}$/;

/** Whether the router takes `network` in an allow list: an address in CIDR form, as written by `normaliseNetwork`. */
export function isRouterNetwork(network: string): boolean {
  return CIDR4.test(network) || CIDR6.test(network);
}

/** Where the bypass link of an app in maintenance points (sets the cookie, then redirects to /). */
export const BYPASS_PATH = "/.quai/maintenance-bypass";
/** Name of the cookie that lets team members through maintenance. */
export const BYPASS_COOKIE = "quai_maintenance";

/** File name of an app's maintenance page in `errorPagesDir`. */
export const maintenancePage = (app: string): string => `maintenance-${app}.html`;
/** Idle connections to an app each router worker keeps open (nginx `keepalive` of its upstream). */
const UPSTREAM_KEEPALIVE = 64;
// A client's X-Request-ID is kept when it looks like an id (Heroku's rule: 20 to 200 of these).
const CLIENT_REQUEST_ID = "~^[A-Za-z0-9+/=_.:-]{20,200}$";

function invalid(message: string): never {
  throw new RouterError("invalid-state", message);
}

function checkHostname(what: string, name: unknown): string {
  if (typeof name !== "string" || name.length > 253 || !HOSTNAME.test(name)) {
    invalid(`${what} ${JSON.stringify(name)} is not a valid hostname (lowercase letters, digits, dots and dashes)`);
  }
  return name;
}

function checkPath(what: string, path: unknown): string {
  if (typeof path !== "string" || !isAbsolute(path) || UNSAFE_PATH.test(path) || path.endsWith("/")) {
    invalid(`${what} ${JSON.stringify(path)} must be an absolute file path without quotes, backslashes, $, braces, semicolons or control characters`);
  }
  return path;
}

function checkPort(what: string, port: unknown): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) invalid(`${what} ${JSON.stringify(port)} is not a TCP port`);
  return port;
}

function checkAddress(what: string, host: unknown): string {
  if (typeof host !== "string" || !(IPV4.test(host) || IPV6.test(host))) {
    invalid(`${what} ${JSON.stringify(host)} must be an IP address (IPv6 in brackets): names would make nginx resolve DNS while loading`);
  }
  return host;
}

/** Smallest power of two ≥ n. */
function pow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

interface CheckedApp {
  app: RouteApp;
  serverNames: string[];
}

/** Validates the state and returns the apps sorted by name with their server names. */
function checkState(state: RouterState): CheckedApp[] {
  if (typeof state !== "object" || state === null || !Array.isArray(state.apps)) invalid("router state must be { domain, apps: [...] }");
  const domain = checkHostname("domain", state.domain);
  const owner = new Map<string, string>();
  const out: CheckedApp[] = [];
  for (const app of state.apps) {
    const name = checkHostname("app name", app?.name);
    if (!Array.isArray(app.hostnames) || !Array.isArray(app.backends)) invalid(`app ${name}: hostnames and backends must be arrays`);
    checkPath(`app ${name}: access log`, app.accessLog);
    for (const b of app.backends) {
      checkAddress(`app ${name}: backend host`, b?.host);
      checkPort(`app ${name}: backend port`, b.port);
      if (b.role !== undefined && b.role !== "incoming" && b.role !== "backup") invalid(`app ${name}: backend role ${JSON.stringify(b.role)} is not "incoming" or "backup"`);
    }
    if (app.backends.length > 0 && app.backends.every((b) => b.role === "backup")) invalid(`app ${name}: backup backends need a backend to back up`);
    if (app.maintenance !== undefined) {
      const m = app.maintenance;
      if (typeof m.bypassToken !== "string" || !TOKEN.test(m.bypassToken)) invalid(`app ${name}: maintenance bypass token must be 32 to 128 hex digits`);
      if (!Number.isInteger(m.retryAfter) || m.retryAfter < 1 || m.retryAfter > 7 * 86400) invalid(`app ${name}: Retry-After ${JSON.stringify(m.retryAfter)} must be 1 s to 7 days`);
      if (!Array.isArray(m.allow)) invalid(`app ${name}: maintenance allow list must be an array`);
      for (const c of m.allow) if (typeof c !== "string" || !(CIDR4.test(c) || CIDR6.test(c))) invalid(`app ${name}: ${JSON.stringify(c)} is not a network in CIDR form (1.2.3.4/32)`);
    }
    const names = [`${name}.${domain}`, ...app.hostnames.map((h) => checkHostname(`app ${name}: hostname`, h))];
    for (const c of app.certificates ?? []) {
      if (!app.hostnames.includes(checkHostname(`app ${name}: certificate hostname`, c.hostname))) invalid(`app ${name}: certificate for ${c.hostname}, which is not one of its hostnames`);
    }
    if (app.canonical !== undefined && !app.hostnames.includes(checkHostname(`app ${name}: canonical domain`, app.canonical))) invalid(`app ${name}: canonical domain ${app.canonical} is not one of its hostnames`);
    const unique = [...new Set(names)];
    for (const n of unique) {
      const other = owner.get(n);
      if (other !== undefined) invalid(other === name ? `app ${name} appears twice` : `hostname ${n} is claimed by both ${other} and ${name}`);
      owner.set(n, name);
    }
    out.push({ app, serverNames: [unique[0] as string, ...unique.slice(1).sort()] });
  }
  return out.sort((a, b) => (a.app.name < b.app.name ? -1 : a.app.name > b.app.name ? 1 : 0));
}

function checkSettings(s: RenderSettings): void {
  for (const [what, p] of [["prefix", s.prefix], ["pid file", s.pidFile], ["error log", s.errorLog], ["access log", s.accessLog], ["error pages dir", s.errorPagesDir], ["temp dir", s.tempDir]] as const) {
    checkPath(what, p);
  }
  checkAddress("listen host", s.listen.host);
  checkPort("listen port", s.listen.port);
  checkPort("status port", s.statusPort);
  if (s.https) {
    checkPort("HTTPS port", s.https.port);
    checkPort("HTTPS public port", s.https.publicPort);
    for (const [what, p] of [["fallback certificate", s.https.fallbackCert], ["fallback key", s.https.fallbackKey], ["certificate dir", s.https.certDir], ["ACME webroot", s.https.acmeRoot]] as const) checkPath(what, p);
  }
  if (!Number.isInteger(s.workers) || s.workers < 1 || s.workers > 64) invalid(`worker count ${s.workers} must be between 1 and 64`);
  if (!Number.isSafeInteger(s.generation) || s.generation < 0) invalid(`generation ${s.generation} must be a non-negative integer`);
  if (s.user && !(/^[a-z_][a-z0-9_-]*$/.test(s.user.user) && /^[a-z_][a-z0-9_-]*$/.test(s.user.group))) {
    invalid(`worker user ${JSON.stringify(s.user)} is not a plain account name`);
  }
}

/** The named location serving one of the error pages, with its headers. */
function errorPageLocation(s: RenderSettings, status: 404 | 502 | 503): string[] {
  return [
    `    location @quai_${status} {`,
    `      root "${s.errorPagesDir}";`,
    `      try_files /${status}.html =${status};`,
    `      charset utf-8;`,
    `      etag off;`,
    `      if_modified_since off;`,
    `      add_header Cache-Control "no-store" always;`,
    `      add_header X-Request-ID $quai_request_id always;`,
    ...(status === 503 ? [`      add_header Retry-After 10 always;`] : []),
    `    }`,
  ];
}

/** The named location serving an app's maintenance page (503, Retry-After, never cached). */
function maintenanceLocation(s: RenderSettings, app: RouteApp): string[] {
  return [
    `    location @quai_maintenance {`,
    `      root "${s.errorPagesDir}";`,
    `      try_files /${maintenancePage(app.name)} =503;`,
    `      charset utf-8;`,
    `      etag off;`,
    `      if_modified_since off;`,
    `      add_header Cache-Control "no-store" always;`,
    `      add_header X-Request-ID $quai_request_id always;`,
    `      add_header Retry-After ${app.maintenance?.retryAfter ?? 60} always;`,
    `    }`,
  ];
}

/** ACME HTTP-01 challenges, answered from files the control plane writes (never redirected). */
function acmeLocation(s: RenderSettings): string[] {
  if (!s.https) return [];
  return [
    `    location ^~ /.well-known/acme-challenge/ {`,
    `      root "${s.https.acmeRoot}";`,
    `      default_type text/plain;`,
    `      try_files $uri =404;`,
    `    }`,
  ];
}

/** What an app's server block does, the same over HTTP and HTTPS. */
function appServerBody(s: RenderSettings, app: RouteApp, live: boolean): string[] {
  const m = app.maintenance;
  const v = varName(app.name);
  const L: string[] = [`    access_log "${app.accessLog}" quai;`];
  if (m) {
    // Through: an allow-listed network, or the team's bypass cookie (set by the bypass link).
    L.push(
      `    set $quai_maintenance 1;`,
      `    if ($quai_allow_${v}) {`,
      `      set $quai_maintenance 0;`,
      `    }`,
      `    if ($cookie_${BYPASS_COOKIE} = "${m.bypassToken}") {`,
      `      set $quai_maintenance 0;`,
      `    }`,
      `    location = ${BYPASS_PATH} {`,
      `      if ($arg_token != "${m.bypassToken}") {`,
      `        return 403;`,
      `      }`,
      `      add_header Set-Cookie "${BYPASS_COOKIE}=${m.bypassToken}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax" always;`,
      `      return 302 /;`,
      `    }`,
    );
  }
  L.push(
    `    location / {`,
    ...(app.canonical !== undefined ? [`      if ($host != "${app.canonical}") {`, `        return 301 $scheme://${app.canonical}$quai_host_port$request_uri;`, `      }`] : []),
    ...(m ? [`      if ($quai_maintenance) {`, `        return 503;`, `      }`] : []),
    // Every incoming backend may refuse before a backup answers: each may be tried once.
    ...(app.backends.some((b) => b.role === "incoming") ? [`      proxy_next_upstream_tries ${Math.max(3, app.backends.length)};`] : []),
    live ? `      proxy_pass http://quai_app_${app.name};` : `      return 503;`,
    `    }`,
    ...(live ? [`    error_page 502 504 @quai_502;`, ...errorPageLocation(s, 502)] : []),
    ...(m ? [`    error_page 503 @quai_maintenance;`, ...maintenanceLocation(s, app)] : live ? [] : [`    error_page 503 @quai_503;`, ...errorPageLocation(s, 503)]),
  );
  return L;
}

/** nginx variable name part for an app (names have dashes, variables may not). */
const varName = (app: string) => app.replace(/-/g, "_");

/** Renders the complete nginx.conf; throws a `RouterError` ("invalid-state") before writing anything unsafe. */
export function renderNginxConf(state: RouterState, s: RenderSettings): string {
  checkSettings(s);
  const apps = checkState(state);
  const listen = `${s.listen.host}:${s.listen.port}`;
  const allNames = apps.flatMap((a) => a.serverNames);
  // Sized from the state so nginx never refuses to build the server-name hash ("increase
  // server_names_hash_bucket_size") when an app gets a long custom domain or there are many apps.
  // Room for two of the longest names per bucket (nginx warns, slower, when it must fall back).
  const bucket = Math.max(128, pow2(2 * (Math.max(0, ...allNames.map((n) => n.length)) + 16)));
  const maxSize = Math.max(512, pow2(allNames.length * 2));

  const L: string[] = [
    `# Rendered by Quai (src/router/render.ts), generation ${s.generation}. Do not edit: every apply rewrites it.`,
    ...(s.user ? [`user ${s.user.user} ${s.user.group};`] : []),
    `worker_processes ${s.workers};`,
    `worker_rlimit_nofile 16384;`,
    // Reloads would otherwise keep old workers alive as long as any WebSocket stays open.
    `worker_shutdown_timeout 30s;`,
    `pid "${s.pidFile}";`,
    `lock_file "${s.pidFile}.lock";`,
    `error_log "${s.errorLog}" warn;`,
    `pcre_jit on;`,
    ``,
    `events {`,
    `  worker_connections 4096;`,
    `}`,
    ``,
    `http {`,
    `  types {`,
    `    text/html html;`,
    `  }`,
    `  default_type application/octet-stream;`,
    `  server_tokens off;`,
    `  sendfile on;`,
    `  tcp_nopush on;`,
    `  tcp_nodelay on;`,
    `  reset_timedout_connection on;`,
    `  keepalive_timeout 65s;`,
    `  keepalive_requests 1000;`,
    `  client_header_timeout 15s;`,
    `  client_body_timeout 60s;`,
    `  send_timeout 60s;`,
    `  client_max_body_size 100m;`,
    `  client_body_buffer_size 128k;`,
    `  large_client_header_buffers 4 32k;`,
    `  server_names_hash_bucket_size ${bucket};`,
    `  server_names_hash_max_size ${maxSize};`,
    ``,
    `  # Every temp file stays in Quai's directory (nothing under /var); workers write here.`,
    `  client_body_temp_path "${s.tempDir}/client_body";`,
    `  proxy_temp_path "${s.tempDir}/proxy";`,
    `  fastcgi_temp_path "${s.tempDir}/fastcgi";`,
    `  uwsgi_temp_path "${s.tempDir}/uwsgi";`,
    `  scgi_temp_path "${s.tempDir}/scgi";`,
    ``,
    `  # A client's X-Request-ID is kept when it looks like an id, else nginx makes one.`,
    `  map $http_x_request_id $quai_request_id {`,
    `    default $request_id;`,
    `    "${CLIENT_REQUEST_ID}" $http_x_request_id;`,
    `  }`,
    `  # The app gets the hostname nginx routed on ($host: an absolute request URI can disagree with`,
    `  # the Host header) and the client's port, if it gave one.`,
    `  map $http_host $quai_host_port {`,
    `    default "";`,
    `    "~^[^:]+(?<quai_port>:[0-9]{1,5})$" $quai_port;`,
    `  }`,
    `  # Upstream keep-alive needs an empty Connection header; WebSocket upgrades must pass through.`,
    `  map $http_upgrade $quai_connection {`,
    `    default upgrade;`,
    `    "" "";`,
    `  }`,
    ``,
    `  log_format quai '$time_iso8601 request_id=$quai_request_id client=$remote_addr method=$request_method path="$request_uri" host=$host status=$status bytes=$body_bytes_sent duration=$request_time upstream="$upstream_addr" upstream_duration="$upstream_response_time"';`,
    `  access_log "${s.accessLog}" quai;`,
    ``,
    `  proxy_http_version 1.1;`,
    `  proxy_set_header Host $host$quai_host_port;`,
    `  proxy_set_header Connection $quai_connection;`,
    `  proxy_set_header Upgrade $http_upgrade;`,
    `  proxy_set_header X-Request-ID $quai_request_id;`,
    `  proxy_set_header X-Request-Start "t=\${msec}";`,
    `  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`,
    `  proxy_set_header X-Forwarded-Proto $scheme;`,
    `  proxy_set_header X-Forwarded-Port $server_port;`,
    `  # httpoxy: a client's Proxy header must never reach an app as HTTP_PROXY. Nor may a client`,
    `  # pass for the router with forwarding headers it does not set (an app trusting its proxy`,
    `  # would take them for the router's: a forged host in its links, a forged client address).`,
    `  proxy_set_header Proxy "";`,
    `  proxy_set_header Forwarded "";`,
    `  proxy_set_header X-Forwarded-Host "";`,
    `  proxy_set_header X-Real-IP "";`,
    `  proxy_hide_header X-Request-ID;`,
    `  proxy_redirect off;`,
    `  proxy_connect_timeout 5s;`,
    `  proxy_send_timeout 60s;`,
    `  proxy_read_timeout 60s;`,
    `  proxy_buffering on;`,
    `  proxy_buffer_size 16k;`,
    `  proxy_buffers 64 16k;`,
    `  proxy_busy_buffers_size 64k;`,
    `  proxy_next_upstream error timeout;`,
    `  proxy_next_upstream_tries 3;`,
    `  add_header X-Request-ID $quai_request_id always;`,
  ];

  for (const { app } of apps) {
    if (!app.maintenance) continue;
    L.push(
      ``,
      `  # app ${app.name} is in maintenance: these networks still reach it.`,
      `  geo $quai_allow_${varName(app.name)} {`,
      `    default 0;`,
      ...app.maintenance.allow.map((c) => `    ${c} 1;`),
      `  }`,
    );
  }

  for (const { app } of apps) {
    if (app.backends.length === 0) continue;
    L.push(
      ``,
      `  upstream quai_app_${app.name} {`,
      // Incoming (booting) backends refuse connections until they listen: never marked failed
      // for that, so each request tries them first and the switch is immediate.
      ...app.backends.map((b) => `    server ${b.host}:${b.port}${b.role === "incoming" ? " max_fails=0" : b.role === "backup" ? " backup" : ""};`),
      // Idle connections each worker keeps per app: a burst of up to this many concurrent requests
      // per worker reuses them instead of opening (and closing) a connection to the app per
      // request. With 16, 64 concurrent clients cost a TCP handshake on one request in eight
      // and 12% of the router's throughput (ADR 0039).
      `    keepalive ${UPSTREAM_KEEPALIVE};`,
      // Shorter than the idle timeout of common app servers (Node.js and uvicorn 5 s), so nginx
      // drops an idle connection before the app does and never reuses a half-closed one.
      `    keepalive_timeout 4s;`,
      `    keepalive_requests 1000;`,
      `  }`,
    );
  }

  L.push(
    ``,
    `  # Hosts no app claims.`,
    `  server {`,
    `    listen ${listen} default_server;`,
    `    server_name _;`,
    `    location / {`,
    `      return 404;`,
    `    }`,
    `    error_page 404 @quai_404;`,
    ...errorPageLocation(s, 404),
    `  }`,
  );
  if (s.https) {
    L.push(
      ``,
      `  # TLS 1.2 and 1.3 only, with OpenSSL's default (modern) ciphers.`,
      `  ssl_protocols TLSv1.2 TLSv1.3;`,
      `  ssl_prefer_server_ciphers off;`,
      `  ssl_session_cache shared:quai_tls:10m;`,
      `  ssl_session_timeout 1d;`,
      `  ssl_session_tickets off;`,
      ``,
      `  # Hosts no app claims, over HTTPS.`,
      `  server {`,
      `    listen ${s.listen.host}:${s.https.port} ssl http2 default_server;`,
      `    server_name _;`,
      `    ssl_certificate "${s.https.fallbackCert}";`,
      `    ssl_certificate_key "${s.https.fallbackKey}";`,
      `    location / {`,
      `      return 404;`,
      `    }`,
      `    error_page 404 @quai_404;`,
      ...errorPageLocation(s, 404),
      `  }`,
    );
  }

  for (const { app, serverNames } of apps) {
    const live = app.backends.length > 0;
    const m = app.maintenance;
    const certified = new Set((app.certificates ?? []).map((c) => c.hostname));
    const body = appServerBody(s, app, live);
    const head = `  # app ${app.name}: ${live ? `${app.backends.length} backend${app.backends.length > 1 ? "s" : ""}` : "no running web container"}${m ? ", in maintenance" : ""}${app.forceHttps ? ", HTTPS only" : ""}`;
    L.push(``, head, `  server {`, `    listen ${listen};`, `    server_name ${serverNames.join(" ")};`, ...acmeLocation(s));
    if (app.forceHttps && s.https) {
      // Everything but ACME challenges moves to HTTPS (the certificate must be obtainable over HTTP).
      const port = s.https.publicPort === 443 ? "" : `:${s.https.publicPort}`;
      L.push(`    access_log "${app.accessLog}" quai;`, `    location / {`, `      return 301 https://$host${port}$request_uri;`, `    }`, `  }`);
    } else {
      L.push(...body, `  }`);
    }
    if (s.https) {
      const httpsListen = `${s.listen.host}:${s.https.port} ssl http2`;
      // A server-level add_header stops the http-level one from being inherited: repeat it.
      const hsts = app.forceHttps ? [`    add_header Strict-Transport-Security "max-age=31536000" always;`, `    add_header X-Request-ID $quai_request_id always;`] : [];
      const rest = serverNames.filter((n) => !certified.has(n));
      if (rest.length > 0) {
        L.push(``, `  # app ${app.name} over HTTPS with the platform's certificate`, `  server {`, `    listen ${httpsListen};`, `    server_name ${rest.join(" ")};`, `    ssl_certificate "${s.https.fallbackCert}";`, `    ssl_certificate_key "${s.https.fallbackKey}";`, ...hsts, ...body, `  }`);
      }
      for (const c of [...(app.certificates ?? [])].sort((a, b) => (a.hostname < b.hostname ? -1 : 1))) {
        L.push(``, `  # app ${app.name} over HTTPS: ${c.hostname}`, `  server {`, `    listen ${httpsListen};`, `    server_name ${c.hostname};`, `    ssl_certificate "${s.https.certDir}/${c.hostname}.crt";`, `    ssl_certificate_key "${s.https.certDir}/${c.hostname}.key";`, ...hsts, ...body, `  }`);
      }
    }
  }

  L.push(
    ``,
    `  # Loopback only: tells Quai which config generation the workers run.`,
    `  server {`,
    `    listen 127.0.0.1:${s.statusPort};`,
    `    access_log off;`,
    `    location = ${GENERATION_PATH} {`,
    `      default_type text/plain;`,
    `      return 200 "${s.generation}\\n";`,
    `    }`,
    `    location = /quai/nginx {`,
    `      stub_status;`,
    `    }`,
    `    location / {`,
    `      return 404;`,
    `    }`,
    `  }`,
    `}`,
    ``,
  );
  return L.join("\n");
}

const page = (title: string, text: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; color: #1e1e1e; max-width: 36rem; margin: 15vh auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
p { color: #555; }
</style>
</head>
<body>
<h1>${title}</h1>
<p>${text}</p>
</body>
</html>
`;

/** The static error pages, by file name, to write into `errorPagesDir`. */
export function errorPages(): Record<"404.html" | "502.html" | "503.html", string> {
  return {
    "404.html": page("No app at this address", "Nothing is deployed at this hostname. Check the address, or add this domain to your app."),
    "502.html": page("The app did not answer", "The app's web container did not respond in time. Please try again in a moment."),
    "503.html": page("No running web container", "This app has no running web container right now (it may be deploying, stopped or scaled to zero). Please try again in a moment."),
  };
}
