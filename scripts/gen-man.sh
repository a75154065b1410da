#!/bin/sh
# gen-man.sh - make docs/s3jobfs.1 from docs/s3jobfs.1.in, with the ENVIRONMENT section taken
# from `s3jobfs check --print-config` (the configuration table), so the two never drift.
# usage: scripts/gen-man.sh [S3JOBFS_BINARY] > docs/s3jobfs.1
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$top/s3jobfs}
env -i PATH=/usr/bin:/bin "$bin" check --print-config --env-file /dev/null |
awk -v tmpl="$top/docs/s3jobfs.1.in" '
	function esc(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); sub(/^[.\047]/, "\\\\\\&&", s); return s }
	/^  [A-Z]/ { name = $1; sub(/^  [^ ]+ +/, ""); env = env ".TP\n.B " name "\n" esc($0) "\n"; next }
	/^ +default: / { sub(/^ +default: /, ""); env = env ".br\nDefault: " esc($0) "\n"; next }
	END {
		while ((getline line < tmpl) > 0) {
			if (line == "@ENVIRONMENT@") printf "%s", env; else print line
		}
	}'
