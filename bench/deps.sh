#!/usr/bin/env bash
# deps.sh - install the Debian packages that only `make bench` needs, with scripts/deps.sh's
# build and test dependencies. Idempotent and quiet; run as root on a fresh Debian 12.
#   s3fs rclone awscli  the peers: other FUSE filesystems over S3, and the AWS CLI as a plain
#                       client (Debian's /usr/bin/aws: bench/peers.py calls it by that path)
#   gnuplot-nox         the report's chart
#   nginx-light         the fast local S3 sink (bench/peers.py Sink; it runs its own nginx on
#                       a free port, the package's system nginx is not used)
set -euo pipefail

exec "$(cd "$(dirname "$0")/.." && pwd)/scripts/deps.sh" s3fs rclone awscli gnuplot-nox nginx-light
