#!/usr/bin/env python3
"""Renders the nginx configuration of a static site from its static.json (all keys optional).

Usage: render.py BUILD_DIR OUT_DIR
Writes OUT_DIR/nginx.conf.template (with @APP_DIR@, @RUN_DIR@, @LISTEN@, @WORKERS@ and
@ACCESS_LOG@ left for the start script) and prints the document root it chose. static.json keys, as Heroku's static
buildpack reads them: root, clean_urls, routes, redirects, headers, error_page, https_only.
A value that cannot be used is an error naming the key: nothing of the user's reaches the
configuration unchecked.
"""
import json
import os
import re
import sys


class ConfigError(Exception):
    pass


URL_PATH = re.compile(r"^/[A-Za-z0-9._~!&'()*+,=:@%/-]*$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#%&'*+.^_`|~-]+$")


def quote(value):
    """An nginx double-quoted string; `$` goes through a variable since nginx cannot escape it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError("control characters are not allowed: %r" % value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${quai_dollar}") + '"'


def url_path(key, value):
    if not isinstance(value, str) or not URL_PATH.match(value) or "/../" in value + "/" or "//" in value:
        raise ConfigError("%s: %r is not a plain URL path starting with /" % (key, value))
    return value


def rel_file(key, value):
    """A file path inside the document root, as a URI ("/index.html")."""
    if not isinstance(value, str) or not value.strip("/"):
        raise ConfigError("%s: %r is not a file name" % (key, value))
    return url_path(key, "/" + value.lstrip("/"))


def pattern(key, value):
    """A static.json path pattern: "/**", "/prefix/**" or an exact "/path"."""
    if value == "/**":
        return ("all", "/")
    if value.endswith("/**"):
        return ("prefix", url_path(key, value[:-2]))
    if "*" in value:
        raise ConfigError("%s: %r: only \"/**\", \"/prefix/**\" and exact paths are supported" % (key, value))
    return ("exact", url_path(key, value))


def load(build_dir):
    path = os.path.join(build_dir, "static.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except ValueError as e:
        raise ConfigError("static.json is not valid JSON: %s" % e)
    if not isinstance(data, dict):
        raise ConfigError("static.json must contain a JSON object")
    known = {"root", "clean_urls", "routes", "redirects", "headers", "error_page", "https_only"}
    unknown = sorted(set(data) - known)
    if unknown:
        sys.stderr.write("Warning: static.json: ignoring unknown keys: %s\n" % ", ".join(unknown))
    return data


def choose_root(build_dir, conf):
    if "root" in conf:
        root = conf["root"]
        if not isinstance(root, str) or os.path.isabs(root) or ".." in root.split("/") or not root.strip():
            raise ConfigError("static.json: root must be a directory inside the app, got %r" % (root,))
        root = os.path.normpath(root)
        if not os.path.isdir(os.path.join(build_dir, root)):
            raise ConfigError("static.json: root %r is not a directory of the app" % root)
        return root
    for candidate in ("dist", "public"):
        if os.path.isfile(os.path.join(build_dir, candidate, "index.html")):
            return candidate
    return "."


def render(build_dir, conf):
    root = choose_root(build_dir, conf)
    root_dir = os.path.join(build_dir, root)
    clean_urls = conf.get("clean_urls", False)
    https_only = conf.get("https_only", False)
    for k, v in (("clean_urls", clean_urls), ("https_only", https_only)):
        if not isinstance(v, bool):
            raise ConfigError("static.json: %s must be true or false" % k)

    # routes: a URL pattern served by one file when nothing else matches (single-page apps).
    routes = conf.get("routes", {})
    if not isinstance(routes, dict):
        raise ConfigError("static.json: routes must be an object")
    fallbacks = {}  # kind/path -> file URI
    for pat, target in routes.items():
        fallbacks[pattern("routes", pat)] = rel_file("routes[%s]" % pat, target)

    headers = conf.get("headers", {})
    if not isinstance(headers, dict):
        raise ConfigError("static.json: headers must be an object")
    header_sets = {}
    for pat, values in headers.items():
        if not isinstance(values, dict):
            raise ConfigError("static.json: headers[%s] must be an object of header: value" % pat)
        lines = []
        for name, value in values.items():
            if not HEADER_NAME.match(name) or not isinstance(value, str):
                raise ConfigError("static.json: headers[%s]: bad header %r: %r" % (pat, name, value))
            lines.append("add_header %s %s;" % (name, quote(value)))
        header_sets[pattern("headers", pat)] = lines

    redirects = conf.get("redirects", {})
    if not isinstance(redirects, dict):
        raise ConfigError("static.json: redirects must be an object")

    error_page = None
    if "error_page" in conf:
        error_page = rel_file("error_page", conf["error_page"])
        if not os.path.isfile(os.path.join(root_dir, error_page.lstrip("/"))):
            raise ConfigError("static.json: error_page %r is not a file in %s/" % (conf["error_page"], root))
    elif os.path.isfile(os.path.join(root_dir, "404.html")):
        error_page = "/404.html"

    base_headers = [
        "add_header Cache-Control $quai_cache_control;",
        "add_header X-Content-Type-Options nosniff;",
    ] + header_sets.get(("all", "/"), [])

    def try_files(fallback):
        parts = ["$uri"]
        if clean_urls:
            parts.append("$uri.html")
        parts.append("$uri/")
        parts.append(quote(fallback) if fallback else "=404")
        return "try_files %s;" % " ".join(parts)

    locations = []
    # Dotfiles (.profile.d, .quai, .git, .env...) are never served, save /.well-known.
    locations.append("location ~ /\\.(?!well-known(/|$)) {\n      return 404;\n    }")
    for src, spec in redirects.items():
        src = url_path("redirects", src)
        if isinstance(spec, str):
            spec = {"url": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
            raise ConfigError("static.json: redirects[%s] must be {\"url\": ..., \"status\": 301}" % src)
        status = spec.get("status", 301)
        if status not in (301, 302, 303, 307, 308):
            raise ConfigError("static.json: redirects[%s]: status must be 301, 302, 303, 307 or 308" % src)
        locations.append("location = %s {\n      return %d %s;\n    }" % (quote(src), status, quote(spec["url"])))

    prefixes = sorted({p for (kind, p) in list(fallbacks) + list(header_sets) if kind == "prefix"}, key=len, reverse=True)
    exacts = sorted({p for (kind, p) in list(fallbacks) + list(header_sets) if kind == "exact"})
    for kind, paths in (("exact", exacts), ("prefix", prefixes)):
        for p in paths:
            body = base_headers + header_sets.get((kind, p), [])
            fb = fallbacks.get((kind, p)) or fallbacks.get(("all", "/"))
            if kind == "exact" and (kind, p) in fallbacks:
                body = body + ["try_files %s =404;" % quote(fallbacks[(kind, p)])]
            else:
                body = body + [try_files(fb)]
            op = "=" if kind == "exact" else "^~"
            locations.append("location %s %s {\n      %s\n    }" % (op, quote(p), "\n      ".join(body)))
    locations.append("location / {\n      %s\n    }" % try_files(fallbacks.get(("all", "/"))))

    if error_page:
        errors = "error_page 404 %s;" % quote(error_page)
    else:
        errors = ("error_page 404 /__quai/404.html;\n"
                  "    location = /__quai/404.html {\n"
                  "      internal;\n"
                  "      alias \"@APP_DIR@/.quai/static/404.html\";\n"
                  "    }")
    https = ""
    if https_only:
        https = "if ($http_x_forwarded_proto = \"http\") {\n      return 301 https://$host$request_uri;\n    }\n    "

    doc_root = "@APP_DIR@" if root == "." else "@APP_DIR@/" + root
    conf_text = TEMPLATE.format(
        root=quote(doc_root),
        server_headers="\n    ".join(base_headers),
        https=https,
        locations="\n    ".join(locations),
        errors=errors,
    )
    return root, conf_text


TEMPLATE = """\
# nginx configuration of a static site, written by Quai's static buildpack at build time.
# .quai/static/start fills in the @...@ values at container start and runs nginx unprivileged.
daemon off;
worker_processes @WORKERS@;
pid "@RUN_DIR@/nginx.pid";
error_log stderr warn;

events {{
  worker_connections 1024;
}}

http {{
  include "@APP_DIR@/.quai/static/mime.types";
  default_type application/octet-stream;
  charset utf-8;
  charset_types text/css text/plain text/xml text/javascript application/javascript application/json image/svg+xml;

  log_format quai '$remote_addr "$http_x_forwarded_for" "$request" $status $body_bytes_sent '
                  '$request_time "$http_referer" "$http_user_agent" $http_x_request_id';
  access_log "@ACCESS_LOG@" quai;

  client_body_temp_path "@RUN_DIR@/client_body";
  proxy_temp_path "@RUN_DIR@/proxy";
  fastcgi_temp_path "@RUN_DIR@/fastcgi";
  uwsgi_temp_path "@RUN_DIR@/uwsgi";
  scgi_temp_path "@RUN_DIR@/scgi";

  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  server_tokens off;
  # The router in front terminates the public URL: redirects stay relative.
  absolute_redirect off;
  port_in_redirect off;

  gzip on;
  gzip_static on;
  gzip_vary on;
  gzip_proxied any;
  gzip_comp_level 5;
  gzip_min_length 256;
  gzip_types text/css text/plain text/xml text/javascript application/javascript application/json
             application/manifest+json application/xml application/rss+xml image/svg+xml
             application/wasm font/ttf font/otf application/vnd.ms-fontobject;

  # HTML revalidates on every visit; fingerprinted files (app.3f9a2c1b.js, Vite's
  # /assets/index-BxK3fA9q.js, Next's /_next/static/) are immutable; other assets are cached briefly.
  map $uri $quai_cache_control {{
    default "public, max-age=600";
    "~*\\.(html?|json|webmanifest|txt|xml)$" "no-cache";
    "~*[.-](?=[0-9a-f]*[0-9])[0-9a-f]{{8,}}\\.[a-z0-9]+$" "public, max-age=31536000, immutable";
    "~*^/assets/.+-[A-Za-z0-9_-]{{8}}\\.(js|mjs|css|woff2?|png|jpe?g|gif|svg|webp|avif)$" "public, max-age=31536000, immutable";
    "~^/_next/static/" "public, max-age=31536000, immutable";
  }}
  geo $quai_dollar {{
    default "$";
  }}

  server {{
    listen @LISTEN@ default_server;
    server_name _;
    root {root};
    index index.html index.htm;
    {server_headers}

    {https}{locations}

    {errors}
  }}
}}
"""

FOUR_OH_FOUR = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Page not found</title>
<style>body{font:16px/1.5 system-ui,sans-serif;color:#222;max-width:32rem;margin:20vh auto;padding:0 1rem}h1{font-size:1.5rem}</style></head>
<body><h1>Page not found</h1><p>There is nothing at this address. Check the link, or go back to the <a href="/">home page</a>.</p></body>
</html>
"""


def main():
    build_dir, out_dir = sys.argv[1], sys.argv[2]
    try:
        root, text = render(build_dir, load(build_dir))
    except ConfigError as e:
        sys.stderr.write("%s\n" % e)
        sys.exit(1)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "nginx.conf.template"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "404.html"), "w") as f:
        f.write(FOUR_OH_FOUR)
    print(root)


if __name__ == "__main__":
    main()
