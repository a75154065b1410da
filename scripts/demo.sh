#!/usr/bin/env bash
# demo.sh - a sample scraper job written through s3jobfs into a local S3 server.
# Run by `make demo`, under tests/with-env.sh (which starts s3rver and PostgreSQL and cleans up).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/s3jobfs
work=$(mktemp -d /tmp/s3jobfs-demo.XXXXXX)
mnt=$work/jobs cache=$work/cache
mkdir -p "$mnt"

export S3_ENABLED=true S3_BUCKET_NAME=$S3RVER_BUCKET S3_REGION=us-east-1 \
	S3_ENDPOINT=$S3RVER_ENDPOINT S3_FORCE_PATH_STYLE=true \
	S3_ACCESS_KEY_ID=$S3RVER_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY=$S3RVER_SECRET_ACCESS_KEY \
	S3_PREFIX=scraper-outputs/ S3_UPLOAD_ON_COMPLETION=true

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

job=$(date -u +%Y%m%d_%H%M%S)_$(python3 -c 'import uuid; print(uuid.uuid4())')
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
"$bin" status --cache-dir "$cache"

step "the job completes: s3jobfs complete $job"
"$bin" complete --cache-dir "$cache" "$job"
for i in $(seq 1 100); do
	out=$("$bin" status --cache-dir "$cache")
	echo "$out" | grep -q " success " && break
	sleep 0.2
done
"$bin" status --cache-dir "$cache"

step "objects in s3://$S3RVER_BUCKET/scraper-outputs/$job/ (first 10)"
"$S3JOBFS_TEST_ENV_DIR/s3req" s3rver GET "/$S3RVER_BUCKET?list-type=2&prefix=scraper-outputs/$job/" |
	python3 -c 'import sys, re; ks = re.findall(r"<Key>(.*?)</Key><LastModified>.*?</LastModified><ETag>.*?</ETag><Size>(\d+)</Size>", sys.stdin.read()); [print("  %8s  %s" % (s, k)) for k, s in ks[:10]]; print("  ... %d objects" % len(ks))'

step "s3jobfs umount (drains, unmounts)"
"$bin" umount "$mnt" && echo "  unmounted"
