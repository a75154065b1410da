#!/usr/bin/env bash
# deps.sh - install every Debian package (and the pinned npm S3 server) that s3jobfs needs
# to build, test and run the demo. Idempotent and quiet; run as root on a fresh Debian 12.
#
# usage: scripts/deps.sh [PACKAGE...]   (more Debian packages to install the same way, e.g.
#                                        bench/deps.sh's)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(
  # build
  build-essential pkg-config
  libfuse3-dev libcurl4-openssl-dev libssl-dev libpq-dev libcjson-dev uthash-dev libxml2-dev
  # run
  fuse3 ca-certificates
  # test: PostgreSQL, OpenStack Swift with s3api, s3rver (node), tools the tests drive
  postgresql postgresql-client
  swift swift-proxy swift-account swift-container swift-object
  python3 curl rsync tar procps psmisc util-linux e2fsprogs attr valgrind
)
# Node.js may come from another source already (it ships its own npm, which conflicts with
# Debian's npm package): only ask Debian for it when there is no node/npm at all.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
pkgs+=("$@")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]}; run as root" >&2
    exit 1
  fi
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Swift's packages try to start services; there is no init system to talk to here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The pinned local S3 server (tests/package.json + package-lock.json).
if [ ! -x "$top/tests/node_modules/.bin/s3rver" ]; then
  echo "deps.sh: installing s3rver from tests/package-lock.json"
  (cd "$top/tests" && npm ci --silent --no-audit --no-fund >/dev/null)
fi
echo "deps.sh: all dependencies present"
