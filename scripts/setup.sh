#!/usr/bin/env bash
# Installs what Quai needs and is missing: Debian packages with apt-get, npm packages with
# `npm ci`. Idempotent: a second run with nothing missing changes nothing and takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: PostgreSQL server (Quai's store), git, util-linux (unshare).
packages=(postgresql git util-linux ca-certificates)
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
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
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
