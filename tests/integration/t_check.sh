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

# ---- every variable `s3jobfs check --print-config` lists, given invalid values: both `check`
# and `mount` exit 2 before doing anything, with a message naming the variable (and never the
# value of a secret). The values are refused by the configuration itself, so no server is needed.
ctl=$'Sekrit\001value'           # a control character: refused in every string variable
secrets=" S3_SECRET_ACCESS_KEY AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN DATABASE_URL "

# bad_values VAR: fill the array vals with values VAR must refuse
bad_values() {
	case $1 in
	S3_ENABLED|S3_UPLOAD_ON_COMPLETION|S3_FORCE_PATH_STYLE|AWS_EC2_METADATA_DISABLED)
		vals=(maybe 2 -1 "true false" tru) ;;
	S3_UPLOAD_TIMEOUT|S3_CONNECT_TIMEOUT|S3JOBFS_UPLOAD_CONCURRENCY|S3JOBFS_PG_POLL_SECONDS)
		vals=(abc -5 0 1.5 99999999999 "10 s" 0x10) ;;
	S3_MAX_RETRIES|S3JOBFS_IDLE_COMPLETE_SECONDS|S3JOBFS_SETTLE_MS|S3JOBFS_DRAIN_TIMEOUT)
		vals=(abc -1 1.5 99999999999 "10 s" 0x10) ;;
	S3_MULTIPART_THRESHOLD|S3_MULTIPART_PART_SIZE) vals=(lots -1 1MiB 4MiB 1XB 99999TiB 8MiBs) ;;
	S3JOBFS_CACHE_MAX_SIZE) vals=(lots -1 12QB 99999999999TiB 1.5GiB) ;;
	S3_SSE) vals=(aes256 kms rot13 "$ctl") ;;
	S3_CHECKSUM) vals=(crc32 MD5 "md5 " "$ctl") ;;
	S3JOBFS_LOG_LEVEL) vals=(verbose DEBUG 7 "$ctl") ;;
	S3_BUCKET_NAME) vals=(Bad_Bucket! ab "$(printf 'b%.0s' {1..64})" "my bucket" "$ctl") ;;
	S3_REGION) vals=(AP-SOUTHEAST-2 "us east 1" eu_west_1 "$ctl") ;;
	S3_ENDPOINT|AWS_CONTAINER_CREDENTIALS_FULL_URI|AWS_EC2_METADATA_SERVICE_ENDPOINT|S3JOBFS_TEST_ECS_BASE)
		vals=(ftp://host localhost:4568 http:// 169.254.169.254 "$ctl") ;;
	AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) vals=(v2/credentials "$ctl") ;;
	S3_TAGGING) vals=("a b=c" =v "a=1&&b=2" "a=1&" "$ctl") ;;
	S3JOBFS_JOBS_TABLE) vals=(a.b.c public. .jobs "$ctl") ;;
	DATABASE_URL) vals=(nonsense "postgresql://u:Sekrit@127.0.0.1/db?no_such_option=1"
		"postgresql://u:Sekrit%zz@127.0.0.1/db" "$ctl") ;;
	S3_SSE_KMS_KEY_ID) vals=("$ctl" $'key\nid') ;;
	*)	# the other strings (keys, names, paths, prefixes): any text without control characters
		vals=("$ctl" $'with\nnewline' $'with\ttab') ;;
	esac
}

# refuses NAME CMD VAR VALUE: `s3jobfs CMD` with VAR=VALUE over a valid setup exits 2 naming VAR
refuses() {
	local name=$1 cmd=$2 var=$3 val=$4 rc
	local -a env=(S3_ENABLED=true "S3_ENDPOINT=${S3RVER_ENDPOINT:-http://127.0.0.1:9}"
		S3_FORCE_PATH_STYLE=true S3_BUCKET_NAME=s3jobfs-test S3_REGION=us-east-1
		S3_ACCESS_KEY_ID=S3RVER S3_SECRET_ACCESS_KEY=S3RVER "S3JOBFS_CACHE_DIR=$cfgtmp/cache"
		"$var=$val")
	local -a argv=(check --env-file /dev/null)
	[ "$cmd" = mount ] && argv=(mount -f --env-file /dev/null "$cfgtmp/mnt")
	(cd /tmp && env -i PATH="$PATH" HOME=/nonexistent AWS_EC2_METADATA_DISABLED=true "${env[@]}" \
		timeout -k 5 30 "$bin" "${argv[@]}") >"$out" 2>&1
	rc=$?
	if grep -q "fuse.s3jobfs" /proc/self/mountinfo && grep -qF " $cfgtmp/mnt " /proc/self/mountinfo; then
		fusermount3 -uz "$cfgtmp/mnt" 2>/dev/null
		echo "$name: mounted" >>"$cfgtmp/problems"; return
	fi
	if [ "$rc" -ne 2 ]; then
		echo "$name: exit $rc, expected 2: $(head -c 300 "$out" | tr '\n' '|')" >>"$cfgtmp/problems"
	elif ! grep -qF -- "$var" "$out"; then
		echo "$name: the message does not name $var: $(head -c 300 "$out" | tr '\n' '|')" >>"$cfgtmp/problems"
	elif [[ "$secrets" == *" $var "* ]] && grep -qF Sekrit "$out"; then
		echo "$name: the message shows the secret value: $(head -c 300 "$out")" >>"$cfgtmp/problems"
	fi
}

cfgtmp=$(mktemp -d)
trap 'rm -f "$out"; rm -rf "$cfgtmp"' EXIT
mkdir -p "$cfgtmp/mnt"
mapfile -t cfg_vars < <("$bin" check --print-config | sed -n 's/^  \([A-Z][A-Z0-9_]*\) .*/\1/p')
tried=0
for cmd in check mount; do
	: >"$cfgtmp/problems"
	for var in "${cfg_vars[@]}"; do
		bad_values "$var"
		for val in "${vals[@]}"; do
			refuses "$cmd $var=$(printf '%q' "$val")" "$cmd" "$var" "$val"
			tried=$((tried + 1))
		done
	done
	if [ "${#cfg_vars[@]}" -lt 40 ]; then
		echo "FAIL: t_check/invalid_every_variable_$cmd: only ${#cfg_vars[@]} variables in --print-config"
		fails=$((fails + 1))
	elif [ -s "$cfgtmp/problems" ]; then
		echo "FAIL: t_check/invalid_every_variable_$cmd: $(wc -l <"$cfgtmp/problems") values not refused right"
		sed 's/^/    /' "$cfgtmp/problems"
		fails=$((fails + 1))
	else
		ok "invalid_every_variable_$cmd"
	fi
done
echo "# $tried invalid values of ${#cfg_vars[@]} variables tried"

# --help is complete enough to name every option
if "$bin" check --help | grep -q -- "--env-file" && "$bin" --help | grep -q "check"; then
	ok help
else
	echo "FAIL: t_check/help: help text incomplete"; fails=$((fails + 1))
fi
[ "$fails" -eq 0 ]
