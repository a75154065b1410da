#!/usr/bin/env bash
# t_env.sh - smoke test of the test environment that tests/with-env.sh sets up.
#
# usage: tests/with-env.sh -- tests/integration/t_env.sh
#
# One line per check: "PASS: env/NAME", "FAIL: env/NAME" (then the check's output, indented)
# or "SKIP: env/NAME: why" for a service turned off with --no-*. Exits non-zero if a check
# failed. Requests are signed by the environment's own SigV4 signer ($S3JOBFS_TEST_ENV_DIR/s3req,
# Python's standard library only), which the Swift checks prove against s3api's verification.
# shellcheck disable=SC2317  # the checks are called through check()
set -u
E=${S3JOBFS_TEST_ENV_DIR:?"run me under tests/with-env.sh"}
s3req=$E/s3req
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# check NAME FUNCTION: run it, print one PASS or FAIL line for it
check() {
	if "$2" >"$tmp/out" 2>&1; then
		echo "PASS: env/$1"
	else
		echo "FAIL: env/$1"
		tail -n 20 "$tmp/out" | awk '{ print "    " $0 }'   # awk ends every line
		failed=1
	fi
}

started() { case " ${S3JOBFS_TEST_SERVICES:-} " in *" $1 "*) return 0 ;; esac; return 1; }

# same_content TARGET PATH FILE: a GET of PATH returns exactly FILE
same_content() {
	"$s3req" -o "$tmp/got" "$1" GET "$2" || return 1
	cmp "$3" "$tmp/got"
}

# ---- s3rver
s3rver_http() { curl -sSf -o /dev/null --max-time 5 "$S3RVER_ENDPOINT/"; }
s3rver_buckets() {
	"$s3req" s3rver HEAD "/$S3RVER_BUCKET" && "$s3req" s3rver HEAD "/$S3RVER_BUCKET2"
}
s3rver_put_get() {
	"$s3req" s3rver PUT "/$S3RVER_BUCKET/keep.txt" "$tmp/keep.txt" &&
		same_content s3rver "/$S3RVER_BUCKET/keep.txt" "$tmp/keep.txt"
}
s3rver_stop() { "$E/s3rver-stop" && ! "$s3req" s3rver HEAD "/$S3RVER_BUCKET"; }
s3rver_start() {    # same port, same data: the object PUT before the outage is still there
	"$E/s3rver-start" && same_content s3rver "/$S3RVER_BUCKET/keep.txt" "$tmp/keep.txt"
}

if started s3rver; then
	printf 'survives a restart %s\n' "$RANDOM" >"$tmp/keep.txt"
	check s3rver-http s3rver_http
	check s3rver-buckets s3rver_buckets
	check s3rver-put-get s3rver_put_get
	check s3rver-stop s3rver_stop
	check s3rver-start s3rver_start
else
	echo "SKIP: env/s3rver: not started (--no-s3rver)"
fi

# ---- Swift with s3api
swift_healthcheck() { [ "$(curl -sSf --max-time 5 "$SWIFT_ENDPOINT/healthcheck")" = OK ]; }
swift_bad_signature() {
	! "$s3req" --secret-key "not-$SWIFT_SECRET_ACCESS_KEY" -o "$tmp/bad" swift GET "/$SWIFT_BUCKET"
	local rc=$?
	cat "$tmp/bad"
	[ "$rc" -eq 0 ] && grep -q '<Code>SignatureDoesNotMatch</Code>' "$tmp/bad"
}
swift_put_get() {
	"$s3req" swift PUT "/$SWIFT_BUCKET/smoke.txt" "$tmp/smoke.txt" &&
		same_content swift "/$SWIFT_BUCKET/smoke.txt" "$tmp/smoke.txt"
}
swift_bucket2() { "$s3req" swift HEAD "/$SWIFT_BUCKET2"; }
etag_of() { sed -n 's/^[Ee][Tt][Aa][Gg]: *\([^[:space:]]*\).*/\1/p'; }
swift_multipart() {   # needs slo in the proxy pipeline; parts but the last need 5 MiB
	local id etag1 etag2 key=/$SWIFT_BUCKET/big.bin
	head -c $((5 * 1024 * 1024 + 1000)) /dev/urandom >"$tmp/big"
	head -c $((5 * 1024 * 1024)) "$tmp/big" >"$tmp/part1"
	tail -c 1000 "$tmp/big" >"$tmp/part2"
	id=$("$s3req" swift POST "$key?uploads" | sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
	[ -n "$id" ] || return 1
	etag1=$("$s3req" -i swift PUT "$key?partNumber=1&uploadId=$id" "$tmp/part1" | etag_of)
	etag2=$("$s3req" -i swift PUT "$key?partNumber=2&uploadId=$id" "$tmp/part2" | etag_of)
	[ -n "$etag1" ] && [ -n "$etag2" ] || return 1
	printf '<CompleteMultipartUpload>%s%s</CompleteMultipartUpload>' \
		"<Part><PartNumber>1</PartNumber><ETag>$etag1</ETag></Part>" \
		"<Part><PartNumber>2</PartNumber><ETag>$etag2</ETag></Part>" >"$tmp/complete.xml"
	"$s3req" swift POST "$key?uploadId=$id" "$tmp/complete.xml" || return 1
	same_content swift "$key" "$tmp/big"
}
swift_stop() { "$E/swift-stop" && ! "$s3req" swift HEAD "/$SWIFT_BUCKET"; }
swift_start() {
	"$E/swift-start" && same_content swift "/$SWIFT_BUCKET/smoke.txt" "$tmp/smoke.txt"
}

if started swift; then
	printf 'smoke test %s\n' "$RANDOM" >"$tmp/smoke.txt"
	check swift-healthcheck swift_healthcheck
	check swift-bad-signature swift_bad_signature
	check swift-put-get swift_put_get
	check swift-bucket2 swift_bucket2
	check swift-multipart swift_multipart
	check swift-stop swift_stop
	check swift-start swift_start
else
	echo "SKIP: env/swift: not started (--no-swift)"
fi

# ---- PostgreSQL
psql_ok() { [ "$(psql "$DATABASE_URL" -X -q -t -A -c 'select 1')" = 1 ]; }
pg_stop() { "$E/pg-stop" && ! psql_ok; }
pg_start() { "$E/pg-start" && psql_ok; }

if started pg; then
	check pg-select psql_ok
	check pg-stop pg_stop
	check pg-start pg_start
else
	echo "SKIP: env/pg: not started (--no-pg)"
fi

exit "$failed"
