#!/usr/bin/env python3
"""t_fault_crash - kill -9 of the daemon in the middle of real work, then a new mount on the
same cache dir: every file whose close() returned arrives byte for byte, nothing else, no
multipart upload stays open, and every job's row in `jobs` (PostgreSQL) says success.

  kill9_ten_jobs   (s3rver, swift) upload-on-completion, S3JOBFS_UPLOAD_CONCURRENCY=4: ten
                   scraper-like jobs written by ten threads at once, each marking its row
                   `completed` when its files are closed (completion by the row, as the scraper
                   does); kill -9 once the first objects are in S3. A writer whose file failed
                   (ENOTCONN) at the kill starts that file again after the remount and goes on
                   (a scraper re-running its step); writer i starts 0.5*i s late, so jobs are
                   being written, completed and uploaded at the kill. Then: the ten jobs in S3 exactly, each row
                   success with filesUploaded/bytesUploaded of the whole job (no double count
                   of files uploaded twice).
  kill9_multipart  (swift) S3_MULTIPART_THRESHOLD=S3_MULTIPART_PART_SIZE=5MiB: a 24 MiB file
                   (5 parts) and small files; the proxy stalls part 3, so kill -9 lands while
                   the multipart upload is open (ListMultipartUploads shows it); after the
                   remount (stall cleared) the upload is aborted and redone: the objects are
                   byte-identical, no multipart upload is open, the log says
                   `aborted interrupted multipart upload`, the row says success.
"""
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import mountlib as ml  # noqa: E402
from t_mount_crash import wait_uploads_closed  # noqa: E402

T = ml.Suite("t_fault_crash")
MiB = ml.MiB


class Writer(threading.Thread):
    """Writes one job's files in order through mnt, then marks its row completed; stops at the
    first failed file (kept for a later run to start again)."""

    def __init__(self, mnt, u, folder, files, start=0, delay=0):
        super().__init__(daemon=True)
        self.delay = delay
        self.mnt, self.u, self.folder, self.files, self.next = mnt, u, folder, files, start
        self.done = self.error = None

    def run(self):
        time.sleep(self.delay)
        for rel, data in self.files[self.next:]:
            try:
                ml.write_file(os.path.join(self.mnt, self.folder, rel), data)
            except (OSError, ml.Failure) as e:
                self.error = "%s: %s" % (rel, e)
                return
            self.next += 1
        fl.sql("UPDATE jobs SET status = 'completed' WHERE id = :'v1'", self.u)
        self.done = True


@T.case("kill9_ten_jobs", servers=ml.SERVERS, timeout=600)
def kill9_ten_jobs(ctx):
    jobs = [fl.new_job("concurrent %d" % i) for i in range(10)]
    contents = [sorted(ml.job_bytes(ml.scraper_job(100 + i, 10 + 6 * i, 2 + i, 0)).items())
                for i in range(10)]
    env = fl.pg_env({"S3JOBFS_UPLOAD_CONCURRENCY": "4"})
    m = ctx.mount(on_completion=True, env=env)
    ctx.step("ten writers")
    writers = [Writer(m.mnt, u, folder, contents[i], delay=0.5 * i)     # staggered
               for i, (u, folder) in enumerate(jobs)]
    for w in writers:
        w.start()
    ml.wait_for(lambda: ctx.s3.list(ctx.prefix), 120, "no object in S3", interval=0.05)
    m.kill9()
    for w in writers:
        w.join(60)
        ml.check(not w.is_alive(), "a writer still runs 60 s after kill -9")
    in_s3 = len(ctx.s3.list(ctx.prefix))
    print("# killed with %d objects in S3; writers done: %d of 10; files closed: %d of %d"
          % (in_s3, sum(bool(w.done) for w in writers), sum(w.next for w in writers),
             sum(map(len, contents))))
    ml.lazy_unmount(m.mnt)
    ctx.step("remount on the same cache dir, unfinished writers go on")
    m2 = ctx.mount(on_completion=True, env=env)
    rest = [Writer(m2.mnt, w.u, w.folder, w.files, w.next) for w in writers if not w.done]
    for w in rest:
        w.start()
    for w in rest:
        w.join(120)
        ml.check(w.done, "writer of %s after the remount: %s" % (w.folder, w.error or "still running"))
    for (u, folder), files in zip(jobs, contents):
        ctx.step("waiting for %s" % folder)
        st = fl.wait_status(u, "success", 240, "after kill -9 and remount")
        want = dict(files)
        ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(want),
                    what="job %s after kill -9 and remount" % folder)
        got = (st.get("filesUploaded"), st.get("bytesUploaded"))
        if got != (len(want), sum(map(len, want.values()))):
            ledger = dict(line.split("|", 1) for line in fl.sql(
                "SELECT rel_path, state FROM s3jobfs_files WHERE job_id = :'v1'", u).splitlines())
            ml.fail("(filesUploaded, bytesUploaded) of %s: expected %s, got %s; not 'uploaded' "
                    "in the ledger s3jobfs_files: %s" % (folder, (len(want), sum(map(len, want.values()))),
                                                        got, {k: ledger.get(k) for k in want
                                                              if ledger.get(k) != "uploaded"}))
    wait_uploads_closed(ctx)
    ctx.step("umount")
    m2.umount()


@T.case("kill9_multipart", servers=("swift",), timeout=300)
def kill9_multipart(ctx):
    u, folder = fl.new_job("multipart crash")
    px = ctx.fault_proxy()
    px.add_rule("stall", method="PUT", query=r"(^|&)partNumber=3(&|$)")
    env = fl.pg_env({"S3_MULTIPART_THRESHOLD": "5MiB", "S3_MULTIPART_PART_SIZE": "5MiB"})
    m = ctx.mount(on_completion=True, proxy=True, env=env)
    files = {"video/big.bin": os.urandom(24 * MiB), "all_products.json": b"[1]",
             "products/p1.json": os.urandom(3000)}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, folder, rel), data)
    m.complete(folder)
    ctx.step("waiting for part 3 to stall")
    ml.wait_for(lambda: px.injected().get("stall"), 60, "part 3 of video/big.bin never sent",
                interval=0.05)
    open_at_kill = ctx.s3.list_uploads(ctx.prefix)
    m.kill9()
    ml.check_eq([k for k, _ in open_at_kill], [ctx.prefix + folder + "/video/big.bin"],
                "multipart uploads open at the kill")
    ml.lazy_unmount(m.mnt)
    px.clear()
    ctx.step("remount on the same cache dir")
    m2 = ctx.mount(on_completion=True, proxy=True, env=env)
    ml.wait_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files), timeout=120,
               what="objects after kill -9 mid-multipart and remount")
    wait_uploads_closed(ctx)
    fl.wait_status(u, "success", 60, "after kill -9 mid-multipart and remount")
    ml.check(any('msg="aborted interrupted multipart upload"' in line for line in m2.log_tail(400)),
             "the new daemon's log does not say it aborted the interrupted multipart upload")
    ctx.step("umount")
    m2.umount()


if __name__ == "__main__":
    T.main()
