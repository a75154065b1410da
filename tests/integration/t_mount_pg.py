#!/usr/bin/env python3
"""t_mount_pg - a job written through the mount reports its upload state in the scraper's
`jobs` row (output->'uploadToS3'), as the scraper's guide queries it.

  status_success    (s3rver) jobs row with output {saveFiles, fileFormat}; write a job; the row's
                    status set to 'completed' completes it; the guide's SQL returns success,
                    uploadedAt, filesUploaded, bytesUploaded, errors [] and s3Urls; other keys
                    of output are untouched.
  policy_disabled   (s3rver) output.uploadToS3.enabled=false: nothing uploaded, status disabled.
"""
import json
import os
import re
import subprocess
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_pg")


sql = ml.sql
setup_table = ml.setup_jobs_table
job_folder = ml.job_folder


@T.case("status_success", timeout=120)
def status_success(ctx):
    if "DATABASE_URL" not in os.environ:
        raise ml.Skip("DATABASE_URL is not set (run under tests/with-env.sh)")
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'S3 Test Job', 'running', "
        "'{\"saveFiles\": true, \"fileFormat\": \"json\"}')", u)
    m = ctx.mount(on_completion=True, env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                           "S3JOBFS_PG_POLL_SECONDS": "1"})
    folder = job_folder(u)
    files = {"all_products.json": json.dumps([{"id": 1}]).encode(),
             "categories.json": b'{"categories": []}',
             "pdfs/a.pdf": os.urandom(70000), "products/p1.json": b'{"id": 1}'}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, folder, rel), data)
    ml.wait_for(lambda: sql("SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = :'v1'", u)
                == "pending", 20, "status pending in the jobs row")
    ctx.step("the scraper marks the job completed")
    sql("UPDATE jobs SET status = 'completed' WHERE id = :'v1'", u)
    ml.wait_for(lambda: sql("SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = :'v1'", u)
                == "success", 30, "status success in the jobs row")
    row = sql("""SELECT output->'uploadToS3'->>'status', output->'uploadToS3'->>'uploadedAt',
                 output->'uploadToS3'->>'filesUploaded', output->'uploadToS3'->>'bytesUploaded',
                 output->'uploadToS3'->'errors', output->>'fileFormat'
                 FROM jobs WHERE id = :'v1'""", u).split("|")
    ml.check_eq(row[0], "success", "status")
    ml.check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", row[1]), "uploadedAt %r" % row[1])
    ml.check_eq(row[2], str(len(files)), "filesUploaded")
    ml.check_eq(row[3], str(sum(map(len, files.values()))), "bytesUploaded")
    ml.check_eq(json.loads(row[4]), [], "errors")
    ml.check_eq(row[5], "json", "output.fileFormat (untouched)")
    urls = json.loads(sql("SELECT output->'uploadToS3'->'s3Urls' FROM jobs WHERE id = :'v1'", u))
    base = "s3://%s/%s%s/" % (ctx.s3.bucket, ctx.prefix, folder)
    ml.check_eq(urls.get("all_products_json"), base + "all_products.json", "s3Urls.all_products_json")
    ml.check_eq(urls.get("pdfs_dir"), base + "pdfs/", "s3Urls.pdfs_dir")
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files))
    ledger = sql("SELECT rel_path, key, size, checksum, state, attempts FROM s3jobfs_files "
                 "WHERE job_id = :'v1' ORDER BY rel_path", u)
    want = "\n".join("%s|%s|%d|%s|uploaded|1" % (rel, ctx.prefix + folder + "/" + rel, len(data),
                                                 ml.sha(data)) for rel, data in sorted(files.items()))
    ml.check_eq(ledger, want, "ledger rows (path, key, size, SHA-256, state, attempts)")
    m.umount()
    ctx.step("a remount re-posts the ledger rows of the clean files: they keep what they had")
    before = sql("SELECT max(updated_at) FROM s3jobfs_files WHERE job_id = :'v1'", u)
    m2 = ctx.mount(on_completion=True, cache=m.cache, env=m.env)
    ml.wait_for(lambda: sql("SELECT max(updated_at) FROM s3jobfs_files WHERE job_id = :'v1'", u)
                != before, 20, "ledger rows re-posted after the remount")
    ml.check_eq(sql("SELECT rel_path, key, size, checksum, state, attempts FROM s3jobfs_files "
                    "WHERE job_id = :'v1' ORDER BY rel_path", u), want, "ledger rows after a remount")
    m2.umount()


@T.case("policy_disabled", timeout=120)
def policy_disabled(ctx):
    if "DATABASE_URL" not in os.environ:
        raise ml.Skip("DATABASE_URL is not set (run under tests/with-env.sh)")
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'no upload', 'running', "
        "'{\"saveFiles\": true, \"uploadToS3\": {\"enabled\": false}}')", u)
    m = ctx.mount(on_completion=False, env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                            "S3JOBFS_PG_POLL_SECONDS": "1"})
    folder = job_folder(u)
    os.makedirs(os.path.join(m.mnt, folder))
    time.sleep(2.5)     # the policy is fetched when the folder appears
    ml.write_file(os.path.join(m.mnt, folder, "all_products.json"), b"[]")
    ml.wait_for(lambda: sql("SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = :'v1'", u)
                == "disabled", 20, "status disabled")
    time.sleep(2)
    ml.check(not ctx.s3.list(ctx.prefix), "objects uploaded for a job with uploadToS3.enabled=false")
    m.umount()


def status_of(u):
    return sql("SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id = :'v1'", u)


@T.case("failed_then_only_failed", timeout=150)
def failed_then_only_failed(ctx):
    """S3 down when the job completes: status failed with errors; after the server is back,
    `s3jobfs upload JOB --only-failed` brings it to success (before the daemon's own retry)."""
    if "DATABASE_URL" not in os.environ:
        raise ml.Skip("DATABASE_URL is not set (run under tests/with-env.sh)")
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'flaky', 'running', '{}')", u)
    m = ctx.mount(on_completion=True, env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                           "S3_MAX_RETRIES": "0"})
    folder = job_folder(u)
    files = {"all_products.json": b"[1, 2]", "pdfs/x.pdf": os.urandom(20000)}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, folder, rel), data)
    tool = os.path.join(os.environ["S3JOBFS_TEST_ENV_DIR"], "s3rver-")
    subprocess.run([tool + "stop"], check=True, timeout=60)
    try:
        m.complete(folder)
        ml.wait_for(lambda: status_of(u) == "failed", 30, "status failed with S3 down")
        errs = json.loads(sql("SELECT output->'uploadToS3'->'errors' FROM jobs WHERE id = :'v1'", u))
        ml.check_eq(sorted(e["file"] for e in errs), sorted(files), "files listed in errors")
        ml.check(all(e.get("code") for e in errs), "every error has an S3 code: %s" % errs)
    finally:
        subprocess.run([tool + "start"], check=True, timeout=60)
    t0 = time.monotonic()
    m.cmd("upload", "--cache-dir", m.cache, folder, "--only-failed")
    ml.wait_for(lambda: status_of(u) == "success", 20, "status success after upload --only-failed")
    print("# success %.1f s after upload --only-failed" % (time.monotonic() - t0))
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files))
    m.umount()


@T.case("upload_path", timeout=120)
def upload_path(ctx):
    """`s3jobfs upload --path DIR`: an existing local job folder (not under the mount) uploaded
    with the same keys, its row's policy (screenshots off) and status."""
    if "DATABASE_URL" not in os.environ:
        raise ml.Skip("DATABASE_URL is not set (run under tests/with-env.sh)")
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'old job', 'completed', "
        "'{\"saveFiles\": true}')", u)
    folder = job_folder(u)
    root = os.path.join(ctx.tmp, folder)
    files = {"all_products.json": b"[]", "pdfs/a.pdf": os.urandom(5000),
             "screenshots/s.png": os.urandom(3000)}
    for rel, data in files.items():
        ml.write_file(os.path.join(root, rel), data)
    env = dict(ctx.env(False, os.path.join(ctx.tmp, "unused-cache")),
               DATABASE_URL=os.environ["DATABASE_URL"])
    r = subprocess.run([ml.BIN, "upload", "--env-file",
                        "/dev/null", "--path", root], env=env, capture_output=True, text=True,
                       timeout=60)
    ml.check_eq(r.returncode, 0, "exit status of upload --path (%s)" % r.stderr.strip())
    want = {k: v for k, v in files.items() if not k.startswith("screenshots/")}
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(want))
    ml.wait_for(lambda: status_of(u) == "success", 15, "status success after upload --path")
    ml.check_eq(sql("SELECT output->'uploadToS3'->>'filesUploaded' FROM jobs WHERE id = :'v1'", u),
                "2", "filesUploaded (screenshots skipped by default)")


@T.case("policy_overrides", timeout=120)
def policy_overrides(ctx):
    """The row's uploadToS3.bucket/.prefix/.includeFiles (screenshots off by default): objects go
    to the other bucket and prefix, excluded files stay local, the status counts what went."""
    if "DATABASE_URL" not in os.environ:
        raise ml.Skip("DATABASE_URL is not set (run under tests/with-env.sh)")
    setup_table()
    u = str(uuid.uuid4())
    other = os.environ["S3RVER_BUCKET2"]
    prefix = "custom-%d/" % os.getpid()
    out = {"saveFiles": True, "uploadToS3": {"enabled": True, "bucket": other, "prefix": prefix,
                                             "includeFiles": ["all_products.json"]}}
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'custom', 'running', :'v2')",
        u, json.dumps(out))
    m = ctx.mount(on_completion=True, env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                           "S3JOBFS_PG_POLL_SECONDS": "1"})
    folder = job_folder(u)
    files = {"all_products.json": b"[1]", "categories.json": b"{}",
             "pdfs/a.pdf": os.urandom(9000), "screenshots/s.png": os.urandom(4000)}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, folder, rel), data)
    time.sleep(1.5)     # the row is read when the folder appears
    sql("UPDATE jobs SET status = 'completed' WHERE id = :'v1'", u)
    ml.wait_for(lambda: status_of(u) == "success", 30, "status success")
    want = {k: v for k, v in files.items() if k in ("all_products.json", "pdfs/a.pdf")}
    ml.check_s3(ml.S3("s3rver", other), prefix + folder + "/", ml.digest_map(want),
                what="objects in the job's own bucket and prefix")
    ml.check(not ctx.s3.list(ctx.prefix), "objects in the mount's bucket/prefix for an overridden job")
    ml.check_eq(sql("SELECT output->'uploadToS3'->>'filesUploaded' FROM jobs WHERE id = :'v1'", u),
                "2", "filesUploaded")
    urls = json.loads(sql("SELECT output->'uploadToS3'->'s3Urls' FROM jobs WHERE id = :'v1'", u))
    ml.check_eq(urls.get("all_products_json"), "s3://%s/%s%s/all_products.json" % (other, prefix, folder),
                "s3Urls.all_products_json")
    ml.wait_for(lambda: sql("SELECT count(*) FROM s3jobfs_files WHERE job_id = :'v1' "
                            "AND state = 'skipped'", u) == "2", 10, "two skipped ledger rows")
    ml.check_eq(sql("SELECT string_agg(rel_path || ':' || state, ',' ORDER BY rel_path) "
                    "FROM s3jobfs_files WHERE job_id = :'v1'", u),
                "all_products.json:uploaded,categories.json:skipped,pdfs/a.pdf:uploaded,"
                "screenshots/s.png:skipped", "ledger states")
    st = json.loads(subprocess.run([ml.BIN, "status", "--json", "--cache-dir", m.cache],
                                   capture_output=True, text=True, timeout=20).stdout)
    job = [j for j in st["jobs"] if j["job"] == folder]
    ml.check(job and job[0]["skipped"] == 2 and job[0]["clean"] == 2,
             "s3jobfs status counts 2 skipped, 2 clean: %r" % (job,))
    ml.check_tree(os.path.join(m.mnt, folder), files, "every file still readable through the mount")
    m.umount()


@T.case("two_daemons", timeout=180)
def two_daemons(ctx):
    """Two daemons (two hosts, say), each with its own cache and mountpoint on the same bucket
    and prefix, write different files of one job and start at the same moment (schema
    migration under the advisory lock): when the row completes, its uploadToS3 counts the
    files of both."""
    ml.need_db()
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'two hosts', 'running', "
        "'{\"saveFiles\": true}')", u)
    env = {"DATABASE_URL": os.environ["DATABASE_URL"], "S3JOBFS_PG_POLL_SECONDS": "1"}
    folder = job_folder(u)
    mounts, files = [], {}
    for i in range(2):
        mounts.append(ctx.mount(on_completion=True, env=env,
                                cache=os.path.join(ctx.tmp, "cache%d" % i),
                                mnt=os.path.join(ctx.tmp, "mnt%d" % i)))
    for i, m in enumerate(mounts):
        mine = {"products/host%d_%02d.json" % (i, k): os.urandom(1000 + 100 * k + i) for k in range(6)}
        for rel, data in mine.items():
            ml.write_file(os.path.join(m.mnt, folder, rel), data)
        files.update(mine)
    ctx.step("the scraper marks the job completed")
    sql("UPDATE jobs SET status = 'completed' WHERE id = :'v1'", u)
    ml.wait_for(lambda: sql("SELECT output->'uploadToS3'->>'filesUploaded' FROM jobs "
                            "WHERE id = :'v1'", u) == str(len(files)), 40,
                "filesUploaded counts both daemons' files")
    ml.check_eq(sql("SELECT output->'uploadToS3'->>'bytesUploaded' FROM jobs WHERE id = :'v1'", u),
                str(sum(map(len, files.values()))), "bytesUploaded of both daemons")
    ml.wait_for(lambda: status_of(u) == "success", 20, "status success")
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files))
    for m in mounts:
        m.umount()


if __name__ == "__main__":
    T.main()
