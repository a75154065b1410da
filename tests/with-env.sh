#!/usr/bin/env bash
# with-env.sh - run a command against throwaway local S3 servers and a throwaway PostgreSQL.
#
# usage: tests/with-env.sh [--no-swift] [--no-pg] [--no-s3rver] [--] COMMAND [ARGS...]
#
# Makes a temp dir (exported as S3JOBFS_TEST_ENV_DIR) that holds every state, data and log file,
# starts these on 127.0.0.1 and free ports, runs COMMAND with the variables below exported and
# exits with COMMAND's status. On every exit (COMMAND done, a service that would not start,
# SIGINT, SIGTERM, SIGHUP) it stops all services and deletes the temp dir
# (S3JOBFS_TEST_ENV_KEEP=1 keeps the dir, e.g. to read the logs in it).
#
#   s3rver 3.7.1 (tests/node_modules), buckets s3jobfs-test and s3jobfs-other:
#     S3RVER_ENDPOINT S3RVER_ACCESS_KEY_ID S3RVER_SECRET_ACCESS_KEY S3RVER_BUCKET S3RVER_BUCKET2
#     S3RVER_REGION
#   OpenStack Swift (Debian's packages): one-node proxy, account, container and object servers,
#   s3api + tempauth (keys test:tester / testing, region us-east-1; test:reader / reading is a
#   user of the same account without rights, for AccessDenied), same two buckets:
#     SWIFT_ENDPOINT SWIFT_ACCESS_KEY_ID SWIFT_SECRET_ACCESS_KEY SWIFT_BUCKET SWIFT_BUCKET2
#     SWIFT_REGION
#   PostgreSQL 15, trust auth, database s3jobfs_test:
#     DATABASE_URL PGHOST PGPORT PGUSER PGDATABASE
#   S3JOBFS_TEST_SERVICES: the services started, e.g. "pg s3rver swift"
# A service turned off with --no-* is not started and its variables are left as they were.
#
# Tools in $S3JOBFS_TEST_ENV_DIR for tests:
#   pg-stop [fast|immediate]  pg-start      stop / start the same cluster on the same port
#   s3rver-stop  s3rver-start               same port and data directory: objects survive
#   swift-stop   swift-start                the proxy only (backends and data stay)
#   s3req                                   one SigV4-signed S3 request, see `s3req --help`
#   env.sh                                  the exports, to source from another shell
#   log/                                    the services' logs
#
# Exit status: COMMAND's; 125 when a service could not be started (the message names it and
# shows the end of its log); 2 on a usage error; 128+N when stopped by signal N.
# shellcheck disable=SC2317  # functions called through traps, wait_ready and stop_group
set -uo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
top=$(cd "$(dirname "$self")/.." && pwd)
PY=/usr/bin/python3                   # Debian's: the one that has the swift modules
PGBIN=/usr/lib/postgresql/15/bin
s3rver_bin=$top/tests/node_modules/.bin/s3rver
BUCKET=s3jobfs-test
BUCKET2=s3jobfs-other

say() { printf 'with-env: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes. Every service runs in a session of its own (setsid), so one kill of its process
# group stops it and all it forked, and nothing else; E/run/NAME.pid holds that group's id.

# spawn NAME LOG CMD...: start CMD in the background in a new session, record its group
spawn() {
	local name=$1 log=$2
	shift 2
	setsid "$@" </dev/null >>"$log" 2>&1 &
	echo $! >"$E/run/$name.pid"
}

# group_alive PGID: some process of the group lives (zombies, which an init that reaps
# slowly may leave for a while, do not count); our groups are also sessions (setsid)
group_alive() {
	[ -n "$1" ] && kill -0 -- "-$1" 2>/dev/null || return 1
	ps -o stat= --sid "$1" 2>/dev/null | grep -qv '^Z'
}

# stop_group NAME...: TERM those services' process groups, KILL what is left after 5 s
stop_group() {
	local name f g i gs=() left
	for name; do
		f=$E/run/$name.pid
		[ -f "$f" ] || continue
		g=$(cat "$f")
		rm -f "$f"
		group_alive "$g" && kill -TERM -- "-$g" 2>/dev/null && gs+=("$g")
	done
	for ((i = 0; i < 100 && ${#gs[@]} > 0; i++)); do
		left=()
		for g in "${gs[@]}"; do group_alive "$g" && left+=("$g"); done
		gs=("${left[@]}")
		[ ${#gs[@]} -gt 0 ] && sleep 0.05
	done
	for g in "${gs[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
	return 0
}

# wait_ready NAME SECONDS CHECK...: poll CHECK until it succeeds (0), the service's group
# dies (2) or time runs out (1)
wait_ready() {
	local name=$1 secs=$2 g i
	shift 2
	g=$(cat "$E/run/$name.pid" 2>/dev/null)
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		group_alive "$g" || { "$@" && return 0; return 2; }
		sleep 0.1
	done
	return 1
}

# log_mark FILE / log_since FILE MARK: the part of a log written after the mark
log_mark() { stat -c %s "$1" 2>/dev/null || echo 0; }
log_since() { tail -c +$(($2 + 1)) "$1" 2>/dev/null; }
port_clash() { log_since "$1" "$2" | grep -qiE 'EADDRINUSE|address already in use|could not bind'; }

# fail NAME LOG MESSAGE: say which service failed, show the end of its log, exit 125
fail() {
	say "$1 failed to start: $3"
	if [ -s "$2" ]; then
		echo "---- last lines of $2 ----" >&2
		tail -n 25 "$2" >&2
		echo "---- end of $2 ----" >&2
	fi
	exit 125
}

# free_ports N: N distinct ports that were free on 127.0.0.1 a moment ago, below the
# ephemeral range, so that no outgoing connection takes one while its service is stopped
# (pg-stop ... pg-start reuse the port)
free_ports() {
	"$PY" -c '
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
socks = []
while len(socks) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(10000, low - 1) if low > 11000 else 0))
        socks.append(s)
    except OSError:
        s.close()
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# as_owner USER CMD...: run CMD as USER when we are root (initdb and postgres refuse root)
as_owner() {
	local user=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
	else
		"$@"
	fi
}

http_up() { curl -s -o /dev/null --max-time 2 "$1"; }        # any HTTP answer
http_ok() { curl -sf -o /dev/null --max-time 2 "$1"; }       # a 2xx answer

# ---------------------------------------------------------------------------------------------
# s3rver

s3rver_launch() {
	mkdir -p "$E/s3rver"
	s3rver_mark=$(log_mark "$E/log/s3rver.log")
	# s3rver's ListObjectsV2 continuation token uses DES, which Node's OpenSSL 3 only has in
	# its legacy provider: without it every truncated listing is a 500.
	spawn s3rver "$E/log/s3rver.log" env NODE_OPTIONS=--openssl-legacy-provider \
		"$s3rver_bin" --directory "$E/s3rver" \
		--address 127.0.0.1 --port "$S3RVER_PORT" --silent \
		--configure-bucket "$BUCKET" --configure-bucket "$BUCKET2"
}

s3rver_wait() { wait_ready s3rver 20 http_up "http://127.0.0.1:$S3RVER_PORT/"; }

# ---------------------------------------------------------------------------------------------
# Swift. Configuration, rings and a swift.conf of our own live in E/swift/etc. Two processes:
# swift-backends (account, container and object servers; it builds the rings first) and
# swift-proxy (s3api); both run E/swift/run-servers.py.

swift_write_files() {
	local etc=$E/swift/etc
	mkdir -p "$etc" "$E/swift/srv/d1"
	cat >"$E/swift/run-servers.py" <<'EOF'
# run-servers.py [--rings A,C,O] SWIFT_CONF SERVER_CONF... - run Swift WSGI servers in one
# process, in the foreground, as run_wsgi() does with workers = 0 (several of them in one
# process as Swift's in-process functional tests do; this halves the start-up time on two
# cores). It reads our swift.conf, not /etc/swift/swift.conf, and logs to stderr, not syslog.
# --rings builds one-device, one-replica account, container and object rings for those ports
# first (what `swift-ring-builder X create 6 1 1; add; rebalance` does); without it, it waits
# up to 30 s for them.
import logging
import os
import sys
import time
import traceback

from swift.common import utils

args = sys.argv[1:]
ring_ports = None
if args[0] == "--rings":
    ring_ports, args = args[1].split(","), args[2:]
utils.SWIFT_CONF_FILE = args[0]             # must precede any import of storage_policy
utils.ThreadSafeSysLogHandler = lambda *a, **kw: logging.NullHandler()    # no syslog
utils.eventlet_monkey_patch()
import eventlet                             # noqa: E402
from swift.common import wsgi               # noqa: E402

etc = os.path.dirname(os.path.abspath(args[0]))
kinds = ("account", "container", "object")
if ring_ports:
    from swift.common.ring import RingBuilder
    for kind, port in zip(kinds, ring_ports):
        builder = RingBuilder(6, 1, 1)
        builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                         "device": "d1", "weight": 1.0, "meta": ""})
        builder.rebalance()
        builder.save("%s/%s.builder" % (etc, kind))
        builder.get_ring().save("%s/%s.ring.gz" % (etc, kind))     # atomic (rename)
else:
    deadline = time.time() + 30
    while not all(os.path.exists("%s/%s.ring.gz" % (etc, k)) for k in kinds):
        if time.time() > deadline:
            sys.exit("run-servers: no rings in %s after 30 s" % etc)
        time.sleep(0.05)


def serve(path):
    try:
        section = os.path.basename(path)[:-len(".conf")]
        conf, logger, log_name = wsgi._initrp(path, section, verbose=True)
        sock = wsgi.get_socket(conf)
        wsgi.run_server(conf, logger, sock, global_conf={"log_name": log_name})
    except BaseException:
        traceback.print_exc()
    sys.stderr.flush()
    os._exit(1)     # one server gone takes the process down, so the wrapper sees it


# run_server() picks eventlet's hub each time, and a new hub drops the green threads already
# scheduled on the old one: pick it here once for this thread (tpool's threads still get one)
eventlet.hubs.use_hub(wsgi.get_hub())
_use_hub = eventlet.hubs.use_hub


def use_hub_once(*args, **kwargs):
    if not hasattr(eventlet.hubs._threadlocal, "hub"):
        _use_hub(*args, **kwargs)


eventlet.hubs.use_hub = use_hub_once
servers = [eventlet.spawn(serve, path) for path in args[1:]]
for server in servers:
    server.wait()
EOF
	cat >"$E/swift/s3jobfs_cache.py" <<'EOF'
# s3jobfs_cache.py - the proxy's `cache` filter without memcached: a dict in its one process.
# tempauth needs env['swift.cache'] even for S3 requests ("Memcache required"), and the proxy
# keeps account and container info there as it would in memcached. Values go through JSON as
# they do in memcached.
import json
import time as _time


class DictCache(object):
    def __init__(self):
        self.data = {}

    def get(self, key, raise_on_error=False):
        item = self.data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= _time.time():
            del self.data[key]
            return None
        return json.loads(item[0]) if item[2] else item[0]

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False):
        expires = None
        if time:
            expires = time if time > 30 * 24 * 3600 else _time.time() + time
        self.data[key] = (json.dumps(value) if serialize else value, expires, serialize)

    def incr(self, key, delta=1, time=0):
        value = max(0, int(self.get(key) or 0) + delta)
        self.set(key, str(value), serialize=False, time=time)
        return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        self.data.pop(key, None)

    def get_multi(self, keys, server_key):
        return [self.get(k) for k in keys]

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for k, v in mapping.items():
            self.set(k, v, serialize, time)


def filter_factory(global_conf, **local_conf):
    cache = DictCache()

    def cache_filter(app):
        def handle(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return handle
    return cache_filter
EOF
	cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = s3jobfs-test-$RANDOM$RANDOM
swift_hash_path_prefix = s3jobfs

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
EOF
	local kind port
	for kind in account container object; do
		case $kind in
		account) port=$SWIFT_ACCOUNT_PORT ;;
		container) port=$SWIFT_CONTAINER_PORT ;;
		object) port=$SWIFT_OBJECT_PORT ;;
		esac
		cat >"$etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
bind_timeout = 2
workers = 0
swift_dir = $etc
devices = $E/swift/srv
mount_check = false
disable_fallocate = true
log_level = WARNING

[pipeline:main]
pipeline = healthcheck $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
	done
	cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $SWIFT_PROXY_PORT
bind_timeout = 2
workers = 0
swift_dir = $etc
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
# the region SigV4 credential scopes must name, and GetBucketLocation's answer
location = us-east-1
# AWS's limits: 10,000 parts (Swift's default is 1,000); 5 MiB minimum part size (default)
max_upload_part_num = 10000

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
user_test_reader = reading

[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000

[filter:cache]
use = call:s3jobfs_cache:filter_factory

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
EOF
}

swift_proxy_launch() {
	spawn swift-proxy "$E/log/swift-proxy.log" "$PY" "$E/swift/run-servers.py" \
		"$E/swift/etc/swift.conf" "$E/swift/etc/proxy-server.conf"
}

swift_launch() {
	swift_write_files
	swift_mark=("$(log_mark "$E/log/swift-backends.log")" "$(log_mark "$E/log/swift-proxy.log")")
	spawn swift-backends "$E/log/swift-backends.log" "$PY" "$E/swift/run-servers.py" \
		--rings "$SWIFT_ACCOUNT_PORT,$SWIFT_CONTAINER_PORT,$SWIFT_OBJECT_PORT" \
		"$E/swift/etc/swift.conf" "$E/swift/etc/account-server.conf" \
		"$E/swift/etc/container-server.conf" "$E/swift/etc/object-server.conf"
	swift_proxy_launch
}

swift_proxy_ready() { http_ok "http://127.0.0.1:$SWIFT_PROXY_PORT/healthcheck"; }
swift_backends_ready() {
	local p
	for p in "$SWIFT_ACCOUNT_PORT" "$SWIFT_CONTAINER_PORT" "$SWIFT_OBJECT_PORT"; do
		http_ok "http://127.0.0.1:$p/healthcheck" || return 1
	done
}

# swift_wait: all four servers answer their healthcheck (swift_bad: the process that did not)
swift_wait() {
	local rc
	wait_ready swift-backends 30 swift_backends_ready
	rc=$?
	[ "$rc" -eq 0 ] || { swift_bad=backends; return "$rc"; }
	wait_ready swift-proxy 30 swift_proxy_ready
	rc=$?
	[ "$rc" -eq 0 ] || { swift_bad=proxy; return "$rc"; }
}

swift_clash() {
	port_clash "$E/log/swift-backends.log" "${swift_mark[0]}" ||
		port_clash "$E/log/swift-proxy.log" "${swift_mark[1]}"
}

swift_stop() { stop_group swift-proxy swift-backends; }

# swift_buckets: create both buckets through s3api, retrying (5 s at most) only while the
# proxy has no answer or answers 503 (e.g. the account being auto-created)
swift_buckets() {
	local b i out rc
	for b in "$BUCKET" "$BUCKET2"; do
		for ((i = 0; ; i++)); do
			out=$("$E/s3req" -i swift PUT "/$b" 2>&1)
			rc=$?
			[ "$rc" -eq 0 ] && break
			if [ "$i" -ge 25 ] || { [ "$rc" -eq 1 ] && [ "${out:0:8}" != "HTTP 503" ]; }; then
				printf 'PUT /%s:\n%s\n' "$b" "$out" >>"$E/log/swift-setup.log"
				return 1
			fi
			sleep 0.2
		done
	done
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: initdb once; postgres and pg_ctl as the `postgres` user when we are root.

pg_owner() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }

pg_init() {
	local owner
	owner=$(pg_owner)
	mkdir -p "$E/pg/sock"
	: >>"$E/log/postgres.log"
	chown "$owner" "$E/pg" "$E/pg/sock" "$E/log/postgres.log"
	(cd "$E/pg" && as_owner "$owner" "$PGBIN/initdb" -D "$E/pg/data" -U postgres -A trust \
		-E UTF8 --locale=C --no-sync --no-instructions) >>"$E/log/postgres.log" 2>&1 ||
		fail postgresql "$E/log/postgres.log" "initdb failed"
	echo "include = 's3jobfs-test.conf'" >>"$E/pg/data/postgresql.conf"
}

pg_ctl_as() { (cd "$E/pg" && as_owner "$(pg_owner)" "$PGBIN/pg_ctl" -D "$E/pg/data" "$@"); }

pg_launch() {
	cat >"$E/pg/data/s3jobfs-test.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$E/pg/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	chown "$(pg_owner)" "$E/pg/data/s3jobfs-test.conf"
	pg_mark=$(log_mark "$E/log/postgres.log")
	# pg_ctl starts postgres in a session of its own (setsid): our signals do not reach it
	pg_ctl_as start -w -t 30 -l "$E/log/postgres.log" >>"$E/log/postgres.log" 2>&1 </dev/null
	local rc=$? pid
	if [ "$rc" -eq 0 ]; then
		pid=$(head -n 1 "$E/pg/data/postmaster.pid" 2>/dev/null)
		ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' >"$E/run/postgres.pid"
	fi
	return "$rc"
}

pg_query() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$1" -c "$2" >/dev/null 2>&1; }

pg_stop() {  # pg_stop MODE
	[ -f "$E/pg/data/postmaster.pid" ] && pg_ctl_as stop -m "$1" -w -t 30 >/dev/null 2>&1
	stop_group postgres
}

# ---------------------------------------------------------------------------------------------
# Helpers that tests call; each runs `with-env.sh --internal ACTION DIR`, which reads E/state.sh.

write_helpers() {
	local h
	for h in pg-stop pg-start s3rver-stop s3rver-start swift-stop swift-start; do
		printf '#!/bin/sh\n# %s - outage helper of %s\nexec %q --internal %s %q "$@"\n' \
			"$h" "$self" "$self" "$h" "$E" >"$E/$h"
		chmod +x "$E/$h"
	done
	write_s3req
}

internal() {
	local action=$1
	E=$2
	shift 2
	# shellcheck source=/dev/null
	. "$E/state.sh" || exit 1
	case $action in
	pg-stop)
		[ -n "$PG_PORT" ] || { echo "pg-stop: PostgreSQL is not running here" >&2; exit 1; }
		pg_stop "${1:-fast}"
		;;
	pg-start)
		[ -n "$PG_PORT" ] || { echo "pg-start: PostgreSQL is not set up here" >&2; exit 1; }
		pg_ctl_as status >/dev/null 2>&1 && exit 0
		pg_launch || { echo "pg-start: failed, see $E/log/postgres.log" >&2; exit 1; }
		;;
	s3rver-stop) stop_group s3rver ;;
	s3rver-start)
		[ -n "$S3RVER_PORT" ] || { echo "s3rver-start: s3rver is not set up here" >&2; exit 1; }
		stop_group s3rver
		s3rver_launch
		s3rver_wait || { echo "s3rver-start: failed, see $E/log/s3rver.log" >&2; exit 1; }
		;;
	swift-stop) stop_group swift-proxy ;;
	swift-start)
		[ -n "$SWIFT_PROXY_PORT" ] || { echo "swift-start: Swift is not set up here" >&2; exit 1; }
		stop_group swift-proxy
		swift_proxy_launch
		wait_ready swift-proxy 30 swift_proxy_ready ||
			{ echo "swift-start: failed, see $E/log/swift-proxy.log" >&2; exit 1; }
		;;
	*) echo "with-env.sh: unknown internal action '$action'" >&2; exit 2 ;;
	esac
}

# s3req: a SigV4 signer from Python's standard library; a reference independent of s3jobfs's
# own signer, for tests that look at the servers directly.
write_s3req() {
	{
		echo "#!$PY"
		cat <<'EOF'
"""s3req - send one SigV4-signed S3 request (path style) and print the response body.

usage: s3req [-i] [-o FILE] [-H 'Name: value']... [--secret-key KEY] TARGET METHOD PATH [BODYFILE|-]

TARGET is swift or s3rver: endpoint, keys and region come from SWIFT_* or S3RVER_* variables
(--endpoint, --access-key, --secret-key, --region override them). PATH is /bucket[/key][?query],
not yet percent-encoded (so a key cannot hold a '?'). -i prints the status line and headers before the body. -H headers are
signed; an x-amz-content-sha256 given so (e.g. UNSIGNED-PAYLOAD) replaces the body's hash.
Exit status: 0 on 2xx, 1 on any other HTTP status, 2 when there was no answer.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse


def quote(s, safe=""):
    return urllib.parse.quote(s, safe=safe + "~")


def sign(method, host, path, query, headers, body, access_key, secret_key, region):
    amz_date = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    hdrs = {k.strip().lower(): " ".join(v.split()) for k, v in headers.items()}
    hdrs.update({"host": host, "x-amz-date": amz_date})
    # -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' (or a wrong hash) is sent and signed as given
    hdrs.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
    names = sorted(hdrs)
    canonical = "\n".join([
        method, quote(path, "/"),
        "&".join("%s=%s" % kv for kv in sorted((quote(k), quote(v)) for k, v in query)),
        "".join("%s:%s\n" % (n, hdrs[n]) for n in names), ";".join(names),
        hdrs["x-amz-content-sha256"]])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
                             % (access_key, scope, ";".join(names), signature))
    return hdrs


def main():
    ap = argparse.ArgumentParser(prog="s3req", description=__doc__.split("\n")[0])
    ap.add_argument("-i", action="store_true", help="print status line and headers")
    ap.add_argument("-o", metavar="FILE", help="write the body to FILE")
    ap.add_argument("-H", action="append", default=[], metavar="HEADER")
    for opt in ("endpoint", "access-key", "secret-key", "region"):
        ap.add_argument("--" + opt)
    ap.add_argument("target", choices=["swift", "s3rver"])
    ap.add_argument("method")
    ap.add_argument("path")
    ap.add_argument("body", nargs="?")
    a = ap.parse_args()
    env = a.target.upper() + "_"
    endpoint = a.endpoint or os.environ.get(env + "ENDPOINT")
    if not endpoint:
        sys.exit("s3req: %sENDPOINT is not set" % env)
    access_key = a.access_key or os.environ.get(env + "ACCESS_KEY_ID", "")
    secret_key = a.secret_key or os.environ.get(env + "SECRET_ACCESS_KEY", "")
    region = a.region or os.environ.get(env + "REGION", "us-east-1")
    body = b""
    if a.body == "-":
        body = sys.stdin.buffer.read()
    elif a.body:
        with open(a.body, "rb") as f:
            body = f.read()
    url = urllib.parse.urlsplit(endpoint)
    path, _, qs = a.path.partition("?")
    query = urllib.parse.parse_qsl(qs, keep_blank_values=True)
    extra = dict(h.split(":", 1) for h in a.H)
    hdrs = sign(a.method, url.netloc, path, query, extra, body, access_key, secret_key, region)
    target = quote(path, "/") + ("?" + "&".join(
        "%s=%s" % (quote(k), quote(v)) if v or "=" in qs else quote(k)
        for k, v in query) if query else "")
    try:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
        conn.request(a.method, target, body=body if body or a.method in ("PUT", "POST") else None,
                     headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        print("s3req: %s %s: %s" % (a.method, endpoint, e), file=sys.stderr)
        return 2
    out = open(a.o, "wb") if a.o else sys.stdout.buffer
    try:
        if a.i:
            out.write(("HTTP %d %s\n" % (resp.status, resp.reason)).encode())
            for k, v in resp.getheaders():
                out.write(("%s: %s\n" % (k, v)).encode())
            out.write(b"\n")
        out.write(data)
        out.flush()
    except BrokenPipeError:             # e.g. | head -1
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0 if 200 <= resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
EOF
	} >"$E/s3req"
	chmod +x "$E/s3req"
}

# ---------------------------------------------------------------------------------------------
# Cleanup and signals

child=
cleanup() {
	local rc=$?
	trap '' INT TERM HUP
	trap - EXIT
	if [ -n "${E:-}" ] && [ -d "$E" ]; then
		[ -n "$child" ] && kill_tree "$child"
		pg_stop immediate
		local f names=()
		for f in "$E"/run/*.pid; do
			[ -f "$f" ] || continue
			f=${f##*/}
			names+=("${f%.pid}")
		done
		stop_group "${names[@]}"
		if [ "${S3JOBFS_TEST_ENV_KEEP:-}" = 1 ]; then
			say "kept $E"
		else
			rm -rf "$E"
		fi
	fi
	exit "$rc"
}

# kill_tree PID: TERM PID and all its descendants, KILL what is left after 5 s
kill_tree() {
	local pids p i
	pids=$(ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			for (p in parent) {
				q = p
				for (n = 0; n < 64 && q != "" && q != 0; n++) {
					if (q == root) { print p; break }
					q = parent[q]
				}
			}
		}')
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		for p in $pids; do kill -0 "$p" 2>/dev/null && break; p=; done
		[ -z "$p" ] && break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null
	wait "$1" 2>/dev/null
}

on_signal() {
	trap '' INT TERM HUP
	exit $((128 + $1))
}

# ---------------------------------------------------------------------------------------------
# Main

if [ "${1:-}" = --internal ]; then
	shift
	internal "$@"
	exit
fi

# A shell started with SIGINT ignored (any `cmd &` from a script) cannot trap it: start again
# with INT and TERM at their defaults, so that `kill -INT` cleans up as it should.
ign=$(awk '/^SigIgn:/ { print $2 }' /proc/$$/status 2>/dev/null)
if [ -n "$ign" ] && (((16#$ign & 0x4002) != 0)) && [ -z "${S3JOBFS_WITH_ENV_REEXEC:-}" ]; then
	S3JOBFS_WITH_ENV_REEXEC=1 exec env --default-signal=INT,TERM "$BASH" "$self" "$@"
fi
unset S3JOBFS_WITH_ENV_REEXEC

use_s3rver=1 use_swift=1 use_pg=1
while [ $# -gt 0 ]; do
	case $1 in
	--no-s3rver) use_s3rver= ;;
	--no-swift) use_swift= ;;
	--no-pg) use_pg= ;;
	--) shift; break ;;
	-h | --help) sed -n '2,/^set -uo/{/^set -uo/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "$self"; exit 0 ;;
	-*) echo "with-env.sh: unknown option '$1'" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
if [ $# -eq 0 ]; then
	echo "usage: tests/with-env.sh [--no-swift] [--no-pg] [--no-s3rver] -- COMMAND [ARGS...]" >&2
	exit 2
fi

trap cleanup EXIT
trap 'on_signal 2' INT
trap 'on_signal 15' TERM
trap 'on_signal 1' HUP

E=$(mktemp -d "${TMPDIR:-/tmp}/s3jobfs-env.XXXXXX") || { say "cannot make a temp dir"; exit 125; }
chmod 755 "$E"          # the postgres user must reach its data dir in here
mkdir -p "$E/run" "$E/log"
export S3JOBFS_TEST_ENV_DIR=$E
S3RVER_PORT='' SWIFT_PROXY_PORT='' SWIFT_ACCOUNT_PORT='' SWIFT_CONTAINER_PORT='' SWIFT_OBJECT_PORT=''
PG_PORT=''
services=()

[ -z "$use_s3rver" ] || [ -x "$s3rver_bin" ] ||
	fail s3rver /dev/null "$s3rver_bin is missing (run scripts/deps.sh)"
[ -z "$use_swift" ] || [ -x /usr/bin/swift-proxy-server ] ||
	fail swift /dev/null "the swift Python modules are missing (run scripts/deps.sh)"
[ -z "$use_pg" ] || [ -x "$PGBIN/initdb" ] ||
	fail postgresql /dev/null "$PGBIN/initdb is missing (run scripts/deps.sh)"
write_helpers

# Launch all three first, then wait for each: they boot side by side. A start that failed
# because another process took its port in the meantime is tried again on new ports.
if [ -n "$use_s3rver" ]; then
	S3RVER_PORT=$(free_ports 1)
	s3rver_launch
fi
if [ -n "$use_swift" ]; then
	read -r SWIFT_PROXY_PORT SWIFT_ACCOUNT_PORT SWIFT_CONTAINER_PORT SWIFT_OBJECT_PORT \
		<<<"$(free_ports 4)"
	swift_launch
fi
if [ -n "$use_pg" ]; then
	pg_init
	for try in 1 2 3 4 5; do
		PG_PORT=$(free_ports 1)
		pg_launch && break
		port_clash "$E/log/postgres.log" "$pg_mark" && [ "$try" -lt 5 ] ||
			fail postgresql "$E/log/postgres.log" "pg_ctl start failed"
	done
	pg_query postgres 'create database s3jobfs_test' ||
		fail postgresql "$E/log/postgres.log" "cannot create database s3jobfs_test"
	export DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PORT/s3jobfs_test
	export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=s3jobfs_test
	services+=(pg)
	say "postgresql on 127.0.0.1:$PG_PORT"
fi
if [ -n "$use_s3rver" ]; then
	for try in 1 2 3 4 5; do
		s3rver_wait && break
		rc=$?
		stop_group s3rver
		port_clash "$E/log/s3rver.log" "$s3rver_mark" && [ "$try" -lt 5 ] ||
			fail s3rver "$E/log/s3rver.log" \
				"$([ "$rc" -eq 1 ] && echo "no answer on 127.0.0.1:$S3RVER_PORT in 20 s" || echo "it exited")"
		S3RVER_PORT=$(free_ports 1)
		s3rver_launch
	done
	export S3RVER_ENDPOINT=http://127.0.0.1:$S3RVER_PORT S3RVER_ACCESS_KEY_ID=S3RVER
	export S3RVER_SECRET_ACCESS_KEY=S3RVER S3RVER_BUCKET=$BUCKET S3RVER_BUCKET2=$BUCKET2
	export S3RVER_REGION=us-east-1
	services+=(s3rver)
	say "s3rver on 127.0.0.1:$S3RVER_PORT"
fi
if [ -n "$use_swift" ]; then
	for try in 1 2 3 4 5; do
		swift_bad=
		swift_wait && break
		rc=$?
		swift_stop
		swift_clash && [ "$try" -lt 5 ] ||
			fail swift "$E/log/swift-$swift_bad.log" "$swift_bad: $(
				[ "$rc" -eq 1 ] && echo "no healthcheck answer in 30 s" || echo "it exited")"
		read -r SWIFT_PROXY_PORT SWIFT_ACCOUNT_PORT SWIFT_CONTAINER_PORT SWIFT_OBJECT_PORT \
			<<<"$(free_ports 4)"
		swift_launch
	done
	export SWIFT_ENDPOINT=http://127.0.0.1:$SWIFT_PROXY_PORT SWIFT_ACCESS_KEY_ID=test:tester
	export SWIFT_SECRET_ACCESS_KEY=testing SWIFT_BUCKET=$BUCKET SWIFT_BUCKET2=$BUCKET2
	export SWIFT_REGION=us-east-1
	swift_buckets || fail swift "$E/log/swift-setup.log" "cannot create the buckets through s3api"
	services+=(swift)
	say "swift (s3api) on 127.0.0.1:$SWIFT_PROXY_PORT"
fi
export S3JOBFS_TEST_SERVICES="${services[*]}"

{
	printf 'S3RVER_PORT=%q\nSWIFT_PROXY_PORT=%q\nSWIFT_ACCOUNT_PORT=%q\n' \
		"$S3RVER_PORT" "$SWIFT_PROXY_PORT" "$SWIFT_ACCOUNT_PORT"
	printf 'SWIFT_CONTAINER_PORT=%q\nSWIFT_OBJECT_PORT=%q\nPG_PORT=%q\n' \
		"$SWIFT_CONTAINER_PORT" "$SWIFT_OBJECT_PORT" "$PG_PORT"
} >"$E/state.sh"
for v in S3JOBFS_TEST_ENV_DIR S3JOBFS_TEST_SERVICES ${use_s3rver:+${!S3RVER_*}} \
	${use_swift:+${!SWIFT_*}} ${use_pg:+DATABASE_URL PGHOST PGPORT PGUSER PGDATABASE}; do
	case $v in S3RVER_PORT | SWIFT_*_PORT) continue ;; esac
	printf 'export %s=%q\n' "$v" "${!v}"
done >"$E/env.sh"

# Run COMMAND in the background so a signal to us is handled at once (a foreground child
# would delay the trap until it ends), with our stdin, and with SIGINT and SIGQUIT at their
# defaults (bash ignores them in background commands, and libfuse and Python keep an
# inherited ignore: a test's `kill -INT` of its daemon would do nothing).
{ exec 3<&0; } 2>/dev/null || exec 3</dev/null
env --default-signal=INT,QUIT "$@" <&3 3<&- &
child=$!
exec 3<&-
wait "$child"
rc=$?
child=
exit "$rc"
