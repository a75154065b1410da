#!/usr/bin/env python3
"""t_mount_outage - the writer never waits for S3: with the S3 server stopped, a new job
folder is created and written through the mount at local speed, nothing is lost, and every
file arrives once the server is back (failed uploads are retried by the daemon).

  writer_during_outage  (s3rver) stop s3rver, write a 60-file job, check each create/write/close
                        returned without waiting for S3, complete the job, start s3rver again
                        → all objects byte-identical.
"""
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_outage")


env_tool = ml.env_tool


@T.case("writer_during_outage", timeout=300)
def writer_during_outage(ctx):
    m = ctx.mount(on_completion=True, env={"S3_MAX_RETRIES": "1"})
    ctx.step("stopping s3rver")
    subprocess.run([env_tool("s3rver-stop")], check=True, timeout=60)
    ctx.defer(lambda: subprocess.run([env_tool("s3rver-start")], timeout=60))
    job = ml.job_name()
    d = os.path.join(m.mnt, job)
    files = {}
    for i in range(60):
        files["products/p%02d.json" % i] = os.urandom(2000 + i)
    slowest = 0.0
    t0 = time.monotonic()
    os.makedirs(os.path.join(d, "products"))
    for rel, data in files.items():
        t = time.monotonic()
        ml.write_file(os.path.join(d, rel), data)
        slowest = max(slowest, time.monotonic() - t)
    total = time.monotonic() - t0
    print("# wrote %d files with S3 down in %.3f s (slowest file %.3f s)" % (len(files), total, slowest))
    # the client's retries to a dead server take seconds; a writer that waited on them would
    # show it here (each file would cost at least one connect-retry round)
    ml.check(slowest < 1.0, "a file took %.2f s to write with S3 down: the writer waited for S3"
             % slowest)
    ml.check_tree(d, files, "files read back through the mount with S3 down")
    m.complete(job)
    time.sleep(2)
    ctx.step("starting s3rver again")
    subprocess.run([env_tool("s3rver-start")], check=True, timeout=60)
    # failed uploads are retried by the daemon (first retry 30 s after the failure)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map(files), timeout=150,
               what="objects after the outage")
    m.umount()


if __name__ == "__main__":
    T.main()
