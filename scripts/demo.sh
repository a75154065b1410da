#!/usr/bin/env bash
# demo.sh - a sample scraper job written through s3jobfs into a local S3 server.
# Run by `make demo`, under tests/with-env.sh (which starts s3rver and PostgreSQL, exports
# DATABASE_URL and PG*, and cleans up). The job completes the way the scraper completes it:
# its jobs row's status becomes 'completed'.
set -euo pipefail
export PAGER=cat PSQL_PAGER=cat	# psql on a terminal must not stop in a pager
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/s3jobfs
work=$(mktemp -d /tmp/s3jobfs-demo.XXXXXX)
mnt=$work/jobs cache=$work/cache
mkdir -p "$mnt"

export S3_ENABLED=true S3_BUCKET_NAME=$S3RVER_BUCKET S3_REGION=us-east-1 \
	S3_ENDPOINT=$S3RVER_ENDPOINT S3_FORCE_PATH_STYLE=true \
	S3_ACCESS_KEY_ID=$S3RVER_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY=$S3RVER_SECRET_ACCESS_KEY \
	S3_PREFIX=scraper-outputs/ S3_UPLOAD_ON_COMPLETION=true S3JOBFS_PG_POLL_SECONDS=1

cleanup() {
	"$bin" umount "$mnt" >/dev/null 2>&1 || fusermount3 -uz "$mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "s3jobfs check (configuration, credentials, bucket)"
"$bin" check --env-file /dev/null

step "mount s3jobfs on $mnt (cache in $cache)"
"$bin" mount --env-file /dev/null --cache-dir "$cache" "$mnt"
grep " $mnt " /proc/self/mountinfo | sed 's/.* - /  /'

uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
job=$(date -u +%Y%m%d_%H%M%S)_$uuid
step "the scraper's jobs table (PostgreSQL $PGPORT) gets a running job $uuid"
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE IF NOT EXISTS jobs (id uuid PRIMARY KEY, name text, status text, config jsonb,
  output jsonb, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
INSERT INTO jobs (id, name, status, output)
  VALUES ('$uuid', 'Demo scrape', 'running', '{"saveFiles": true, "fileFormat": "json"}');
SQL
psql -X -q -c "SELECT id, name, status, output FROM jobs WHERE id = '$uuid'"
step "the scraper writes job $job through the mount"
python3 - "$mnt/$job" <<'PY'
import json, os, random, sys
root = sys.argv[1]
rnd = random.Random(42)
for d in ("products", "pdfs", "screenshots"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
products = [{"id": i, "name": "Product %d" % i, "price": round(rnd.uniform(1, 99), 2)} for i in range(40)]
for p in products:
    with open(os.path.join(root, "products", "product_%03d.json" % p["id"]), "w") as f:
        json.dump(p, f, indent=2)
with open(os.path.join(root, "all_products.json"), "w") as f:
    json.dump(products, f, indent=2)
with open(os.path.join(root, "categories.json"), "w") as f:
    json.dump({"categories": ["cleaning", "floor care", "kitchen"]}, f, indent=2)
for i in range(8):
    for d, ext in (("pdfs", "pdf"), ("screenshots", "png")):
        with open(os.path.join(root, d, "item_%02d.%s" % (i, ext)), "wb") as f:
            for _ in range(rnd.randint(2, 12)):
                f.write(os.urandom(64 * 1024))
print("  wrote %d files" % sum(len(fs) for _, _, fs in os.walk(root)))
PY

step "s3jobfs status (the job waits for completion: S3_UPLOAD_ON_COMPLETION=true)"
"$bin" status --cache-dir "$cache" "$job"

step "the scraper marks the job completed: UPDATE jobs SET status = 'completed'"
psql -X -q -v ON_ERROR_STOP=1 -c "UPDATE jobs SET status = 'completed', updated_at = now() WHERE id = '$uuid'"
echo "  s3jobfs sees the row's terminal status (poll or NOTIFY) and uploads the job"

step "s3jobfs status until success"
for i in $(seq 1 300); do
	out=$("$bin" status --cache-dir "$cache" "$job" | grep '^job=')
	printf '  %s\n' "$out"
	case $out in *state=success*) break ;; esac
	sleep 0.2
done
"$bin" status --cache-dir "$cache" "$job"
for i in $(seq 1 50); do
	s=$(psql -X -q -t -A -c "SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = '$uuid'")
	[ "$s" = success ] && break
	sleep 0.2
done

step "the job as the scraper's API returns it: .data.output.uploadToS3"
psql -X -q -t -A -c "SELECT jsonb_pretty(output->'uploadToS3') FROM jobs WHERE id = '$uuid'"

step "the guide's SQL"
psql -X -q -c "SELECT id, name,
       output->'uploadToS3'->>'status'        AS s3_status,
       output->'uploadToS3'->>'filesUploaded' AS files_uploaded,
       output->'uploadToS3'->>'bytesUploaded' AS bytes_uploaded
FROM jobs WHERE id = '$uuid'"

step "objects in s3://$S3RVER_BUCKET/scraper-outputs/$job/ (first 10)"
"$S3JOBFS_TEST_ENV_DIR/s3req" s3rver GET "/$S3RVER_BUCKET?list-type=2&prefix=scraper-outputs/$job/" |
	python3 -c 'import sys, re; ks = re.findall(r"<Key>(.*?)</Key><LastModified>.*?</LastModified><ETag>.*?</ETag><Size>(\d+)</Size>", sys.stdin.read()); [print("  %8s  %s" % (s, k)) for k, s in ks[:10]]; print("  ... %d objects" % len(ks))'

step "s3jobfs umount (drains, unmounts)"
"$bin" umount "$mnt" && echo "  unmounted"
