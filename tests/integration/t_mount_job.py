#!/usr/bin/python3
"""t_mount_job.py - a scraper-like job written through `s3jobfs mount` reaches S3 byte for byte.

Cases (s3rver and Swift unless noted):
  on_close        S3_UPLOAD_ON_COMPLETION=false: every file of a ~300-file job (json.dump files,
                  64 KiB-chunked binaries of 10 KiB..2 MiB, nested dirs, an empty file) appears
                  as PREFIX + JOB/REL without any completion signal; contents identical, no other
                  object; object metadata (x-amz-meta-mode/-uid/-gid/-mtime) matches stat().
  on_completion   S3_UPLOAD_ON_COMPLETION=true: nothing of the job is in S3 after a settle period;
                  `s3jobfs complete JOB` uploads it all; a second job is uploaded (and every
                  object present) when fsync() of its directory returns; `s3jobfs complete
                  MOUNTPOINT/JOB` works as well (sub-check complete_by_path).
  daemonised      (s3rver) `s3jobfs mount` without -f exits 0 with the mount ready; a file
                  written through it is uploaded; `s3jobfs umount` returns with the daemon gone.
Run under tests/with-env.sh; see mountlib.py for the output format and options.
"""
import decimal
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_job")


def check_meta(ctx, m, job, rel):
    """x-amz-meta-mode/uid/gid/mtime of PREFIX+JOB/REL agree with stat() through the mount."""
    key = ctx.prefix + job + "/" + rel
    st = os.stat(os.path.join(m.mnt, job, rel))
    h = ctx.s3.head(key)
    ml.check(h.status == 200, "HEAD %s: %d" % (key, h.status))
    probs = []
    mode = h.header("x-amz-meta-mode")
    if mode is None:
        probs.append("x-amz-meta-mode missing")
    else:
        try:
            v = int(mode, 8)
            if v & 0o7777 != st.st_mode & 0o7777 or (v > 0o7777 and v != st.st_mode):
                probs.append("x-amz-meta-mode %s, stat says %o" % (mode, st.st_mode))
        except ValueError:
            probs.append("x-amz-meta-mode %r is not octal" % mode)
    for name, want in (("uid", st.st_uid), ("gid", st.st_gid)):
        got = h.header("x-amz-meta-" + name)
        if got != str(want):
            probs.append("x-amz-meta-%s %r, stat says %d" % (name, got, want))
    mt = h.header("x-amz-meta-mtime")
    want_mt = "%d.%09d" % divmod(st.st_mtime_ns, 10 ** 9)
    if mt is None:
        probs.append("x-amz-meta-mtime missing")
    else:
        try:
            ns = int(decimal.Decimal(mt) * 10 ** 9)
            if ns != st.st_mtime_ns:
                probs.append("x-amz-meta-mtime %s, stat says %s" % (mt, want_mt))
            if "." not in mt or len(mt.split(".")[1]) != 9:
                probs.append("x-amz-meta-mtime %r is not seconds.nanoseconds (9 digits)" % mt)
        except decimal.InvalidOperation:
            probs.append("x-amz-meta-mtime %r is not a number" % mt)
    if probs:
        ml.fail("metadata of %s: %s" % (key, "; ".join(probs)))


@T.case("on_close", servers=ml.SERVERS, timeout=300)
def on_close(ctx):
    job = ml.job_name()
    files = ml.scraper_job(1)
    want = ml.job_bytes(files)
    expected = {job + "/" + k: v for k, v in ml.digest_map(want).items()}
    m = ctx.mount(on_completion=False)
    ctx.step("writing the job (%d files, %.1f MiB)" % (len(files), sum(map(len, want.values())) / ml.MiB))
    ml.write_job(os.path.join(m.mnt, job), files)
    ctx.step("reading the job back through the mount")
    ml.check_tree(os.path.join(m.mnt, job), want, "files read back")
    ctx.step("waiting for the objects (no completion signal)")
    ml.wait_s3(ctx.s3, ctx.prefix, expected, timeout=120, what="objects of the on-close job")
    with ctx.soft("metadata"):
        check_meta(ctx, m, job, "pdfs/SKU-00000.pdf")
        check_meta(ctx, m, job, "products/SKU-00007.json")
    ctx.step("umount")
    m.umount()


@T.case("on_completion", servers=ml.SERVERS, timeout=300)
def on_completion(ctx):
    job1, files1 = ml.job_name(), ml.scraper_job(2)
    want1 = ml.job_bytes(files1)
    m = ctx.mount(on_completion=True)
    ctx.step("writing job 1")
    ml.write_job(os.path.join(m.mnt, job1), files1)
    ctx.step("settling (nothing may be uploaded before completion)")
    time.sleep(3)       # 30 x S3JOBFS_SETTLE_MS
    early = ctx.s3.list(ctx.prefix)
    ml.check(not early, "%d objects in S3 before the job was completed (e.g. %s)"
             % (len(early), sorted(early)[:3]))
    ml.check_tree(os.path.join(m.mnt, job1), want1, "job 1 read back")
    ctx.step("s3jobfs complete of job 1")
    t0 = time.monotonic()
    m.complete(job1)
    exp1 = {job1 + "/" + k: v for k, v in ml.digest_map(want1).items()}
    ml.wait_s3(ctx.s3, ctx.prefix, exp1, timeout=120, what="objects of job 1 after 's3jobfs complete'")
    print("# job 1: all objects %.1f s after 's3jobfs complete' was called" % (time.monotonic() - t0))

    job2, files2 = ml.job_name(), ml.scraper_job(3, 60, 10, 20)
    want2 = ml.job_bytes(files2)
    ctx.step("writing job 2")
    ml.write_job(os.path.join(m.mnt, job2), files2)
    time.sleep(1)
    early = [k for k in ctx.s3.list(ctx.prefix + job2)]
    ml.check(not early, "%d objects of job 2 in S3 before its completion (e.g. %s)"
             % (len(early), early[:3]))
    ctx.step("fsync of job 2's directory")
    ml.fsync_dir(os.path.join(m.mnt, job2))
    ctx.step("checking S3 right after fsync(job 2) returned")
    exp2 = {job2 + "/" + k: v for k, v in ml.digest_map(want2).items()}
    ml.check_s3(ctx.s3, ctx.prefix + job2 + "/", {k[len(job2) + 1:]: v for k, v in exp2.items()},
                what="objects of job 2 right after fsync() of its directory returned")
    ml.check_s3(ctx.s3, ctx.prefix, dict(exp1, **exp2), what="objects of both jobs")
    ctx.step("complete by path")
    with ctx.soft("complete_by_path"):       # JOBFOLDER given as MOUNTPOINT/JOB works too
        job3 = ml.job_name()
        ml.write_file(os.path.join(m.mnt, job3, "x.txt"), b"x")
        m.complete(os.path.join(m.mnt, job3))
        ml.wait_s3(ctx.s3, ctx.prefix + job3 + "/", ml.digest_map({"x.txt": b"x"}), timeout=20,
                   what="objects after 's3jobfs complete MOUNTPOINT/JOB'")
    ctx.step("umount")
    m.umount()


@T.case("daemonised", timeout=120)
def daemonised(ctx):
    job = ml.job_name()
    m = ctx.mount(on_completion=False, foreground=False)
    ml.check(m.pids, "no s3jobfs process found for %s after the daemonising mount" % m.mnt)
    data = os.urandom(300 * 1024)
    ml.write_file(os.path.join(m.mnt, job, "a.bin"), data)
    ml.wait_s3(ctx.s3, ctx.prefix, {job + "/a.bin": (len(data), ml.sha(data))}, timeout=30)
    m.umount()


@T.case("idle_complete", timeout=120)
def idle_complete(ctx):
    """S3JOBFS_IDLE_COMPLETE_SECONDS: a job left alone that long counts as complete."""
    job = ml.job_name()
    m = ctx.mount(on_completion=True, env={"S3JOBFS_IDLE_COMPLETE_SECONDS": "3"})
    data = {"all_products.json": b"[]", "pdfs/a.pdf": os.urandom(100 * 1024)}
    for rel, b in data.items():
        ml.write_file(os.path.join(m.mnt, job, rel), b)
    time.sleep(1)
    ml.check(not ctx.s3.list(ctx.prefix), "objects in S3 before the job was idle for 3 s")
    ml.wait_s3(ctx.s3, ctx.prefix, {job + "/" + k: v for k, v in ml.digest_map(data).items()},
               timeout=30, what="objects of the idle job")
    m.umount()


if __name__ == "__main__":
    T.main()
