#!/usr/bin/env bash
# t_check.sh - `s3jobfs check` passes on a good setup and explains each kind of failure.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/s3jobfs
fails=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

ok()   { echo "PASS: t_check/$1"; }
bad()  { echo "FAIL: t_check/$1: $2"; echo "---- output:"; cat "$out"; fails=$((fails + 1)); }

# run_check NAME SERVER(S3RVER|SWIFT) EXPECTED_EXIT [VAR=VALUE ...] -- then grep patterns
run_check() {
	local name=$1 srv=$2 want=$3; shift 3
	local ep="${srv}_ENDPOINT" bk="${srv}_BUCKET" ak="${srv}_ACCESS_KEY_ID" sk="${srv}_SECRET_ACCESS_KEY"
	if [ -z "${!ep:-}" ]; then echo "SKIP: t_check/$name: $ep is not set"; return; fi
	local -a env=(S3_ENABLED=true "S3_ENDPOINT=${!ep}" S3_FORCE_PATH_STYLE=true "S3_BUCKET_NAME=${!bk}"
		S3_REGION=us-east-1 "S3_ACCESS_KEY_ID=${!ak}" "S3_SECRET_ACCESS_KEY=${!sk}" S3_MAX_RETRIES=1)
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do env+=("$1"); shift; done
	[ "${1:-}" = "--" ] && shift
	(cd /tmp && env -i PATH="$PATH" HOME=/nonexistent AWS_EC2_METADATA_DISABLED=true "${env[@]}" \
		"$bin" check --env-file /dev/null) >"$out" 2>&1
	local rc=$?
	if [ "$rc" -ne "$want" ]; then bad "$name" "exit $rc, expected $want"; return; fi
	for pat in "$@"; do
		if ! grep -qiF -- "$pat" "$out"; then bad "$name" "output lacks '$pat'"; return; fi
	done
	# the secret is never printed
	if grep -qF -- "${!sk}" "$out" && [ ${#sk} -gt 0 ] && [ "${!sk}" != "S3RVER" ]; then
		bad "$name" "the secret appears in the output"; return
	fi
	ok "$name"
}

run_check good_s3rver S3RVER 0 -- "all checks passed" "from S3_ACCESS_KEY_ID" "wrote s3://"
run_check good_swift SWIFT 0 -- "all checks passed" "HeadBucket answered"
run_check wrong_secret SWIFT 1 S3_SECRET_ACCESS_KEY=not-the-secret -- \
	"SignatureDoesNotMatch" "S3_SECRET_ACCESS_KEY" "check: FAILED"
run_check wrong_key_id S3RVER 1 S3_ACCESS_KEY_ID=NOBODY -- "InvalidAccessKeyId" "S3_ACCESS_KEY_ID"
# a valid Swift user of the same account without rights on the bucket (tempauth, no .admin)
run_check access_denied SWIFT 1 S3_ACCESS_KEY_ID=test:reader S3_SECRET_ACCESS_KEY=reading -- \
	"AccessDenied" "s3:PutObject" "s3:ListBucket"
run_check wrong_bucket S3RVER 1 S3_BUCKET_NAME=no-such-bucket-here -- \
	"NoSuchBucket" "S3_BUCKET_NAME" "aws s3 mb s3://no-such-bucket-here"
run_check wrong_bucket_swift SWIFT 1 S3_BUCKET_NAME=no-such-bucket-here -- "NoSuchBucket"
run_check unreachable S3RVER 1 S3_ENDPOINT=http://127.0.0.1:9 -- \
	"ConnectionRefused" "http://127.0.0.1:9" "S3_ENDPOINT"
run_check wrong_region SWIFT 1 S3_REGION=ap-southeast-2 -- "is in region 'us-east-1'" "set S3_REGION=us-east-1"
run_check refused_feature SWIFT 1 S3_STORAGE_CLASS=GLACIER -- "S3_STORAGE_CLASS" "unset S3_STORAGE_CLASS"
run_check disabled S3RVER 1 S3_ENABLED=false -- "S3_ENABLED is false"
run_check invalid_value S3RVER 2 S3_MAX_RETRIES=lots -- "S3_MAX_RETRIES='lots'"

# --help is complete enough to name every option
if "$bin" check --help | grep -q -- "--env-file" && "$bin" --help | grep -q "check"; then
	ok help
else
	echo "FAIL: t_check/help: help text incomplete"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
