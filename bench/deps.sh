#!/usr/bin/env bash
# deps.sh - install the Debian packages that only `make bench` needs (the peers s3jobfs is
# measured against, and the tools the driver uses), after scripts/deps.sh's build and test
# dependencies. Idempotent and quiet; run as root on a fresh Debian 12.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

"$top/scripts/deps.sh"

pkgs=(
  # peers: other FUSE filesystems over S3, and the AWS CLI as a plain client. The CLI is
  # Debian's, /usr/bin/aws: bench/peers.py calls it by that path, never an aws first on PATH.
  s3fs rclone awscli
  # the report's plots; the fast local S3 sink (bench/peers.py Sink); fuser for cleanup
  gnuplot-nox nginx-light psmisc
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench/deps.sh: missing packages: ${missing[*]}; run as root" >&2
    exit 1
  fi
  echo "bench/deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx's package starts the system nginx (port 80) when an init system answers; the
  # sink runs its own nginx on a free port with its own config, so that one is not needed.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "bench/deps.sh: all dependencies present"
