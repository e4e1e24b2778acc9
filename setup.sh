#!/usr/bin/env bash
# Installs what tsrun needs on a fresh Debian/Ubuntu machine, builds it, and starts a first
# container on the built-in busybox image. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo ./setup.sh): it installs packages and runs containers" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

mapfile -t pkgs < <(grep -v -e '^#' -e '^\s*$' deps/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ! command -v node >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "setup.sh: tsrun needs Node.js 20 or newer (found $(node --version))" >&2; exit 1; }

# npm ci builds the addon and the static init (install script) and compiles TypeScript (prepare).
npm ci --no-audit --no-fund --loglevel=error

echo "setup.sh: tsrun is built; a first container on the built-in busybox image:"
./bin/tsrun run --rm busybox sh -c 'echo "hello from $(hostname): I am PID $$, and I see these processes:"; ps'
