#!/usr/bin/env bash
# Installs what Quai needs and is missing: Debian packages with apt-get, npm packages with
# `npm ci`. Idempotent: a second run with nothing missing changes nothing and takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: PostgreSQL server (Quai's store), git and curl (the git front and its hook), zstd (slugs), util-linux (unshare,
# setpriv, script), bubblewrap (the sandbox), a C compiler (libexec/sandbox-exec, below), nginx (the router and the PHP web server), and the
# runtimes the built-in buildpacks use: PHP with php-fpm and composer, Python with venv; and
# the add-on engines: MariaDB and Redis servers and clients (PostgreSQL is above); and pebble,
# the ACME test server the TLS tests issue certificates from, with openssl for test certificates.
packages=(postgresql git openssh-client util-linux ca-certificates curl zstd bubblewrap gcc libc6-dev nginx-light
  php-fpm php-cli composer php-mbstring php-xml php-curl php-zip php-pgsql php-mysql php-intl unzip
  python3 python3-venv python3-pip python3-gunicorn
  mariadb-server mariadb-client redis-server redis-tools
  pebble openssl)
# `--bench` (npm run bench): valgrind too, for the router's instruction counts (bench/router-cost.ts).
if [ "${1:-}" = "--bench" ]; then packages+=(valgrind); fi
missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Quai runs its own clusters; keep the package from creating and starting a system one.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  # Quai starts the servers it needs itself: keep packages (nginx, php-fpm) from starting
  # system services during the install.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  if [ -n "$created_policy" ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi

# npm packages, including Node.js 24 itself (the `node` package): reinstall only when the
# lockfile changed since the last install.
stamp=node_modules/.quai-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/.bin/node ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# libexec/sandbox-exec prepares every container's sandbox (see its source): built here, and again
# whenever its source is newer than the program.
if [ ! -x libexec/sandbox-exec ] || [ libexec/sandbox-exec.c -nt libexec/sandbox-exec ]; then
  echo "setup: building libexec/sandbox-exec"
  cc -O2 -Wall -Wextra -Werror -o libexec/sandbox-exec.tmp libexec/sandbox-exec.c
  mv libexec/sandbox-exec.tmp libexec/sandbox-exec
fi
