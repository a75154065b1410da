#!/usr/bin/env python3
"""t_fault_s3 - S3 misbehaving behind tests/faultproxy.py: the mount's S3_ENDPOINT is the
proxy, which counts every request per key and injects the faults. Each job has a row in the
`jobs` table (PostgreSQL), whose uploadToS3 status is checked.

  error_rate        (s3rver, swift) 10% of all requests fail (500 InternalError, 503 SlowDown,
                    connection reset, answer cut in the middle, connection dropped), S3_MAX_RETRIES=5:
                    an 82-file job completes with status success, every object byte-identical,
                    no object PUT more than S3_MAX_RETRIES+1 times (counted at the proxy), and
                    faults were really injected.
  retries_exhausted (s3rver) every PUT of one file answers 503 SlowDown, S3_MAX_RETRIES=2: the job
                    goes `partial` with exactly that file in errors (code SlowDown, 3 attempts),
                    the proxy saw exactly 3 PUTs of it, the other files are in S3 and it is not;
                    `s3jobfs status` names it; the fault cleared, `s3jobfs upload JOB
                    --only-failed` brings the job to success with one more PUT.
  dead_connection   (s3rver) S3_MAX_RETRIES=2; every PUT of one key read whole and then dropped
                    (FIN), of another reset (RST): exactly 3 PUTs of each reach the proxy, though
                    the first went over a reused keep-alive connection.
  stall_once        (s3rver) upload-on-close; the first PUT of one file is read whole by the
                    proxy and never answered: the other files arrive meanwhile, and the hung one
                    after curl's low-speed timeout (30 s) and a retry: 2 PUTs, status success.
  s3_down_30s       (s3rver) upload-on-close; half a job uploaded, then the proxy refuses every
                    connection for 30 s while the other half is written (every write and close
                    succeeds; the daemon logs the failed uploads); after it is back every object
                    arrives and the status is success.
"""
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as fl  # noqa: E402
import mountlib as ml  # noqa: E402

T = ml.Suite("t_fault_s3")


def write_files(root, files):
    for rel, data in files.items():
        ml.write_file(os.path.join(root, rel), data)


@T.case("error_rate", servers=ml.SERVERS, timeout=600)
def error_rate(ctx):
    retries = 5
    u, folder = fl.new_job("flaky S3")
    px = ctx.fault_proxy()
    m = ctx.mount(on_completion=True, proxy=True, env=fl.pg_env({"S3_MAX_RETRIES": str(retries)}))
    files = ml.job_bytes(ml.scraper_job(11, 60, 10, 0))
    px.error_rate(0.10)
    ctx.step("writing %d files with 10%% of the requests failing" % len(files))
    write_files(os.path.join(m.mnt, folder), files)
    m.complete(folder)
    fl.wait_status(u, "success", 400, "with 10% injected errors")
    px.clear()
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files))
    puts = px.counts("PUT")
    keys = [ctx.prefix + folder + "/" + rel for rel in files]
    over = {k: puts.get(k, 0) for k in keys if puts.get(k, 0) > retries + 1}
    ml.check(not over, "objects PUT more than S3_MAX_RETRIES+1 = %d times (at the proxy): %s"
             % (retries + 1, ml.short(over)))
    injected = px.injected()
    retried = sum(1 for k in keys if puts.get(k, 0) > 1)
    print("# faults injected: %s; %d of %d objects needed more than one PUT, at most %d"
          % (injected, retried, len(keys), max(puts.get(k, 0) for k in keys)))
    ml.check(injected, "no fault injected")      # 0.9^(about 95 requests): 1 run in 20,000
    m.umount()


@T.case("retries_exhausted", timeout=240)
def retries_exhausted(ctx):
    u, folder = fl.new_job("one bad key")
    bad = "pdfs/bad.pdf"
    key = ctx.prefix + folder + "/" + bad
    px = ctx.fault_proxy()
    px.add_rule("503", key=re.escape(key) + "$", method="PUT")
    m = ctx.mount(on_completion=True, proxy=True, env=fl.pg_env({"S3_MAX_RETRIES": "2"}))
    files = {"all_products.json": b"[1, 2, 3]", "pdfs/good.pdf": os.urandom(30000),
             bad: os.urandom(40000), "products/p1.json": b'{"id": 1}'}
    write_files(os.path.join(m.mnt, folder), files)
    m.complete(folder)
    st = fl.wait_status(u, "partial", 90, "with every PUT of %s answered 503" % bad)
    ml.check_eq(px.count(key), 3, "PUTs of %s seen at the proxy (S3_MAX_RETRIES=2)" % bad)
    errs = st.get("errors") or []
    ml.check_eq([e.get("file") for e in errs], [bad], "files in uploadToS3.errors")
    ml.check_eq(errs[0].get("code"), "SlowDown", "errors[0].code")
    ml.check_eq(errs[0].get("attempts"), 3, "errors[0].attempts")
    good = {k: v for k, v in files.items() if k != bad}
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(good),
                what="objects of a partial job")
    ml.check_eq(st.get("filesUploaded"), len(good), "filesUploaded of the partial job")
    out = m.cmd("status", "--cache-dir", m.cache).stdout.decode(errors="replace")
    print("# s3jobfs status:\n#   " + out.strip().replace("\n", "\n#   "))
    ml.check("partial" in out and "bad.pdf" in out and "SlowDown" in out,
             "'s3jobfs status' does not show the partial job, bad.pdf and SlowDown: %r" % out)
    ctx.step("fault cleared, s3jobfs upload --only-failed")
    px.clear()
    m.cmd("upload", "--cache-dir", m.cache, folder, "--only-failed")
    fl.wait_status(u, "success", 30, "after upload --only-failed")
    ml.check_eq(px.count(key), 4, "PUTs of %s after upload --only-failed" % bad)
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files))
    m.umount()


@T.case("s3_down_30s", timeout=300)
def s3_down_30s(ctx):
    u, folder = fl.new_job("S3 outage")
    px = ctx.fault_proxy()
    m = ctx.mount(on_completion=False, proxy=True, env=fl.pg_env())
    d = os.path.join(m.mnt, folder)
    before = {"products/a%02d.json" % i: os.urandom(3000 + i) for i in range(20)}
    during = {"products/b%02d.json" % i: os.urandom(5000 + i) for i in range(20)}
    during["pdfs/big.pdf"] = os.urandom(3 * ml.MiB)
    write_files(d, before)
    ml.fsync_dir(d)
    ml.check_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(before), what="objects before the outage")
    ctx.step("S3 down (proxy refuses connections) for 30 s, writing the second half")
    px.down()
    t0 = time.monotonic()
    write_files(d, during)      # raises on any failed write or close
    ml.check_tree(d, dict(before, **during), "the job read back through the mount during the outage")
    ml.wait_for(lambda: any('msg="s3 upload failed"' in line for line in m.log_tail(400)), 25,
                "no 's3 upload failed' line in the daemon's log during the outage")
    time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    px.up()
    ctx.step("S3 back: waiting for the second half")
    ml.wait_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(dict(before, **during)), timeout=180,
               what="objects after a 30 s outage")
    print("# all objects in S3 %.1f s after the outage ended" % (time.monotonic() - t0 - 30))
    fl.wait_status(u, "success", 30, "after the outage")
    m.umount()


@T.case("dead_connection", timeout=180)
def dead_connection(ctx):
    """Connections closed (FIN, or RST) after the whole PUT was read, never answered:
    exactly S3_MAX_RETRIES+1 PUTs reach the server, also when the first went over a reused
    keep-alive connection (curl would send it again by itself)."""
    px = ctx.fault_proxy()
    keys = {a: ctx.prefix + "dead/%s.bin" % a for a in ("drop", "reset")}
    for action, key in keys.items():
        px.add_rule(action, key=re.escape(key) + "$", method="PUT")
    m = ctx.mount(on_completion=False, proxy=True, env={"S3_MAX_RETRIES": "2"})
    d = os.path.join(m.mnt, "dead")
    warm = {"warm%d.bin" % i: os.urandom(1000) for i in range(8)}
    write_files(d, warm)        # keep-alive connections in the pool
    ml.fsync_dir(d)
    for action in keys:
        ml.write_file(os.path.join(d, action + ".bin"), os.urandom(5000))
    ml.wait_for(lambda: sum('msg="s3 upload failed"' in line for line in m.log_tail(500)) >= 2, 90,
                "two 's3 upload failed' lines in the daemon's log")
    ml.check_eq({a: px.count(k) for a, k in keys.items()}, {"drop": 3, "reset": 3},
                "PUTs at the proxy per key (S3_MAX_RETRIES=2)")
    m.umount()


@T.case("stall_once", timeout=240)
def stall_once(ctx):
    u, folder = fl.new_job("S3 hangs once")
    hung = ctx.prefix + folder + "/pdfs/hung.pdf"
    px = ctx.fault_proxy()
    px.add_rule("stall", key=re.escape(hung) + "$", method="PUT", times=1)
    m = ctx.mount(on_completion=False, proxy=True, env=fl.pg_env())
    others = {"products/p%02d.json" % i: os.urandom(4000 + i) for i in range(10)}
    files = dict(others, **{"pdfs/hung.pdf": os.urandom(200000)})
    write_files(os.path.join(m.mnt, folder), files)
    ctx.step("the other files arrive while the PUT of hung.pdf hangs")
    ml.wait_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(others), timeout=60, exact=False,
               what="objects uploaded beside a hung PUT")
    ml.check(not ctx.s3.exists(hung) and px.injected().get("stall") == 1,
             "hung.pdf is in S3, or its PUT was not stalled: %s" % px.injected())
    ctx.step("waiting for the hung PUT to time out and be retried")
    ml.wait_s3(ctx.s3, ctx.prefix + folder + "/", ml.digest_map(files), timeout=150,
               what="objects after a PUT that hung")
    ml.check_eq(px.count(hung), 2, "PUTs of hung.pdf at the proxy")
    fl.wait_status(u, "success", 30, "after the hung PUT was retried")
    m.umount()


if __name__ == "__main__":
    T.main()
