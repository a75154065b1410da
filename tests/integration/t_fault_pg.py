#!/usr/bin/env python3
"""t_fault_pg - PostgreSQL going away is never the writer's problem, and the job's row in
`jobs` catches up (status and the counters from the s3jobfs_files ledger) once it is back.

  pg_down_mid_job     (s3rver) upload-on-completion; half a job written, its row `pending`;
                      pg-stop; the other half is written (every write and close succeeds), the
                      job completed with `s3jobfs complete`, every object arrives in S3 while
                      PostgreSQL is still down; pg-start: the row says success with
                      filesUploaded/bytesUploaded of the whole job.
  pg_down_then_kill9  (s3rver) the same up to the uploads done with PostgreSQL down, then kill -9
                      of the daemon (the ledger rows it held in memory die with it), pg-start,
                      a new mount on the same cache dir: nothing is uploaded again, and the row
                      still reaches success with the whole job's counters.
  no_early_success    (s3rver) a one-file job completed at once, five times: the row never says
                      success before the object is in S3 (a job's files whose row was not read
                      yet used not to count, so a job completed in its first seconds was
                      `success` with nothing uploaded).
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import mountlib as ml  # noqa: E402

T = ml.Suite("t_fault_pg")


def job_with_pg_outage(ctx):
    """Write a job, half of it with PostgreSQL stopped, complete it, wait for its objects;
    PostgreSQL stays down. Returns (mount, uuid, folder, files)."""
    u, folder = fl.new_job("postgresql outage")
    m = ctx.mount(on_completion=True, env=fl.pg_env())
    d = os.path.join(m.mnt, folder)
    first = {"all_products.json": os.urandom(20000), "categories.json": b"{}"}
    first.update({"products/a%02d.json" % i: os.urandom(1000 + i) for i in range(15)})
    second = {"products/b%02d.json" % i: os.urandom(2000 + i) for i in range(15)}
    second["pdfs/doc.pdf"] = os.urandom(2 * ml.MiB)
    for rel, data in first.items():
        ml.write_file(os.path.join(d, rel), data)
    fl.wait_status(u, "pending", 30, "before the outage")
    ctx.step("pg-stop, writing the second half")
    fl.env_tool("pg-stop")
    ctx.defer(lambda: fl.env_tool("pg-start"))
    for rel, data in second.items():
        ml.write_file(os.path.join(d, rel), data)     # raises on a failed write or close
    files = dict(first, **second)
    ml.check_tree(d, files, "the job read back through the mount with PostgreSQL down")
    m.complete(folder)
    ml.wait_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files), timeout=60,
               what="objects uploaded with PostgreSQL down")
    ml.check(any('msg="postgresql connection lost' in line for line in m.log_tail(1000)),
             "the daemon's log does not say it lost PostgreSQL")
    return m, u, folder, files


def check_counters(st, files):
    ml.check_eq((st.get("filesUploaded"), st.get("bytesUploaded")),
                (len(files), sum(map(len, files.values()))), "(filesUploaded, bytesUploaded)")
    ml.check_eq(st.get("errors"), [], "errors")


@T.case("pg_down_mid_job", timeout=240)
def pg_down_mid_job(ctx):
    m, u, folder, files = job_with_pg_outage(ctx)
    time.sleep(2)
    ml.check(m.alive(), "the daemon died with PostgreSQL down")
    ctx.step("pg-start")
    fl.env_tool("pg-start")
    t0 = time.monotonic()
    st = fl.wait_status(u, "success", 90, "after PostgreSQL came back")
    print("# row success %.1f s after pg-start" % (time.monotonic() - t0))
    check_counters(st, files)
    m.umount()


@T.case("pg_down_then_kill9", timeout=240)
def pg_down_then_kill9(ctx):
    m, u, folder, files = job_with_pg_outage(ctx)
    m.kill9()
    ml.lazy_unmount(m.mnt)
    fl.env_tool("pg-start")
    ctx.step("remount on the same cache dir")
    m2 = ctx.mount(on_completion=True, env=fl.pg_env())
    st = fl.wait_status(u, "success", 90, "after kill -9 and the remount")
    check_counters(st, files)
    again = [line for line in m2.log_tail(1000) if 'msg="s3 upload done"' in line]
    ml.check(not again, "the new daemon uploaded again what the journal knew was in S3: %s"
             % again[:2])
    m2.umount()


@T.case("no_early_success", timeout=120)
def no_early_success(ctx):
    m = None
    for i in range(5):
        u, folder = fl.new_job("quick %d" % i)
        m = m or ctx.mount(on_completion=True, env=fl.pg_env())
        key = ctx.prefix + folder + "/all_products.json"
        ml.write_file(os.path.join(m.mnt, folder, "all_products.json"), b"[%d]" % i)
        m.complete(folder)
        ctx.step("polling the row of job %d" % i)
        deadline = time.monotonic() + 30
        while fl.status_of(u) != "success":
            ml.check(time.monotonic() < deadline, "job %d: no success within 30 s" % i)
            time.sleep(0.02)
        ml.check(ctx.s3.exists(key), "job %d: row says success, %s is not in S3" % (i, key))
    m.umount()


if __name__ == "__main__":
    T.main()
