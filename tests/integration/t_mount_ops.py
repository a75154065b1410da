#!/usr/bin/env python3
"""t_mount_ops - operating s3jobfs: status, metrics, the mount helper and fstab, the demo,
the man page.

  status_modes   (s3rver, PostgreSQL) a job with a jobs row: `status JOB` as plain lines
                 (not a terminal) and with a progress bar on a pty (80 columns), pending →
                 success; --json carries the row's uploadToS3 and ledger counts; screenshots are
                 skipped and have no s3Urls entry; an unknown job exits 1; after the daemon is
                 gone `status JOB` still answers from the database.
  metrics        (s3rver) --metrics-addr: after uploads the counters, bytes, histogram and
                 gauges match what was written; with the server stopped, failed uploads and
                 network retries are counted; other paths get 404.
  mount_helper   (s3rver, root) `mount -t fuse.s3jobfs -o env_file=,cache_dir=,_netdev
                 s3://BUCKET/PREFIX/ DIR` and an fstab line (LIBMOUNT_FSTAB) mount through
                 scripts/mount.s3jobfs; files written there reach S3 under that prefix.
  demo           (s3rver, PostgreSQL) scripts/demo.sh (what `make demo` runs) ends with the
                 job's uploadToS3 status success and every file in the bucket.
  umount_logs_left  (s3rver) umount before a job completes logs each file left and why;
                 the next mount uploads them when the job completes.
  systemd_unit   scripts/s3jobfs.service passes systemd-analyze verify; its options exist.
  man_page       docs/s3jobfs.1 is what scripts/gen-man.sh makes (every variable of
                 `check --print-config`), and every subcommand's --help works.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import socket

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_ops")
TOP = os.path.dirname(ml.BIN)


def status(m, *args, check_rc=True):
    """`s3jobfs status` of mount m (stdout a pipe); (rc, stdout, stderr)."""
    r = subprocess.run([ml.BIN, "status", "--cache-dir", m.cache, "--env-file", "/dev/null"] +
                       list(args), env=m.env, capture_output=True, text=True, timeout=60)
    if check_rc:
        ml.check(r.returncode == 0, "status %s exited %d: %s" % (" ".join(args), r.returncode,
                                                                  r.stderr.strip()))
    return r.returncode, r.stdout, r.stderr


def run_pty(argv, env, timeout=60):
    """Run argv with stdout/stderr on a pseudo-terminal of 24x80 (as a user at a terminal);
    (exit status, output). A program waiting for the terminal (a pager) fails the case."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.environ.clear()
            os.environ.update(env)
            os.environ.update(COLUMNS="80", LINES="24", TERM="xterm")
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    try:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    except OSError:
        pass
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGTERM)      # lets a script's cleanup trap run
            for _ in range(100):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.2)
            else:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)
            ml.fail("%s still runs after %d s on a terminal (waiting for input?): %r"
                    % (" ".join(argv), timeout, out[-600:]))
        r, _, _ = select.select([fd], [], [], 1)
        if not r:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace").replace("\r\n", "\n")


def status_tty(m, *args):
    """`s3jobfs status` with stdout on a terminal of 80 columns; its output."""
    return run_pty([ml.BIN, "status", "--cache-dir", m.cache, "--env-file", "/dev/null"] +
                   list(args), m.env)[1]


def kv(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


@T.case("status_modes", timeout=180)
def status_modes(ctx):
    ml.need_db()
    ml.setup_jobs_table()
    u = str(uuid.uuid4())
    ml.sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'status test', 'running', "
           "'{\"saveFiles\": true}')", u)
    m = ctx.mount(on_completion=True, env={"DATABASE_URL": os.environ["DATABASE_URL"],
                                           "S3JOBFS_PG_POLL_SECONDS": "1"})
    folder = ml.job_folder(u)
    files = {"all_products.json": b"[" + b"1," * 5000 + b"1]", "categories.json": b"{}",
             "products/p1.json": os.urandom(30000), "pdfs/a.pdf": os.urandom(200000),
             "screenshots/s.png": os.urandom(5000)}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, folder, rel), data)
    # the row is read within a second or so: then screenshots/ counts as skipped
    ml.wait_for(lambda: "skipped=1" in status(m, folder)[1], 15, "status shows 1 skipped")
    _, out, _ = status(m, folder)
    lines = out.splitlines()
    job = [kv(x) for x in lines if x.startswith("job=")]
    ml.check(len(job) == 1 and job[0]["state"] == "pending" and job[0]["files"] == "0/4",
             "plain status before completion: %r" % out)
    db = [kv(x) for x in lines if x.startswith("db job=")]
    ml.check(len(db) == 1 and db[0]["job"] == u and db[0]["row_status"] == "running",
             "plain status shows the jobs row: %r" % out)
    tty = status_tty(m, folder)
    ml.check("[" in tty and "%" in tty and folder in tty and "pending" in tty,
             "terminal status has a progress bar: %r" % tty)
    ml.check(all(len(x) <= 80 for x in tty.splitlines()),
             "terminal status fits 80 columns: %r" % [x for x in tty.splitlines() if len(x) > 80])

    ml.sql("UPDATE jobs SET status = 'completed' WHERE id = :'v1'", u)
    ml.wait_for(lambda: "state=success" in status(m, folder)[1] and
                "s3_status=success" in status(m, folder)[1], 30, "status success")
    tty = status_tty(m, u)          # by uuid this time
    ml.check("success" in tty and "100%" in tty, "terminal status at the end: %r" % tty)
    _, out, _ = status(m, folder, "--json")
    a = json.loads(out)
    ml.check_eq([j["job"] for j in a["jobs"]], [folder], "--json lists only JOB")
    ml.check_eq((a["jobs"][0]["clean"], a["jobs"][0]["skipped"]), (4, 1), "--json clean, skipped")
    d = a["database"][u]
    ml.check_eq(d["uploadToS3"]["status"], "success", "database uploadToS3.status")
    ml.check_eq(d["uploadToS3"]["filesUploaded"], 4, "database uploadToS3.filesUploaded")
    ml.check_eq(d["ledger"], {"uploaded": 4, "skipped": 1}, "database ledger counts")
    ml.check("screenshots_dir" not in d["uploadToS3"]["s3Urls"] and
             "pdfs_dir" in d["uploadToS3"]["s3Urls"],
             "s3Urls names what was uploaded only: %r" % d["uploadToS3"]["s3Urls"])
    rc, out, err = status(m, "20200101_000000_" + str(uuid.uuid4()), check_rc=False)
    ml.check(rc == 1 and "no job" in err, "status of an unknown job: rc %d, %r" % (rc, err))
    m.umount()
    # no daemon any more: the database still answers
    rc, out, err = status(m, u, check_rc=False)
    ml.check(rc == 0 and "s3_status=success" in out,
             "status JOB without a daemon answers from the database: rc %d %r %r" % (rc, out, err))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        ml.check(r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
                 "metrics Content-Type: %r" % r.headers.get("Content-Type"))
        text = r.read().decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, v = line.rsplit(" ", 1)
        vals[name] = float(v)
    return vals, text


@T.case("metrics", timeout=300)
def metrics(ctx):
    port = free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    m = ctx.mount(env={"S3_MAX_RETRIES": "1"}, args=["--metrics-addr", "127.0.0.1:%d" % port])
    files = {"plain/f%d.bin" % i: os.urandom(1000 * (i + 1)) for i in range(5)}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, rel), data)
    ml.wait_s3(ctx.s3, ctx.prefix + "plain/", ml.digest_map({k[6:]: v for k, v in files.items()}),
               timeout=30)
    total = sum(len(v) for v in files.values())
    ml.wait_for(lambda: scrape(url)[0]["s3jobfs_uploads_succeeded_total"] == 5, 10,
                "uploads_succeeded_total 5")
    v, text = scrape(url)
    ml.check_eq(v["s3jobfs_uploaded_bytes_total"], total, "uploaded_bytes_total")
    ml.check_eq(v["s3jobfs_uploads_started_total"], 5, "uploads_started_total")
    ml.check_eq(v["s3jobfs_uploads_failed_total"], 0, "uploads_failed_total")
    ml.check_eq(v["s3jobfs_upload_queue_depth"], 0, "upload_queue_depth")
    ml.check_eq(v["s3jobfs_cache_clean_bytes"], total, "cache_clean_bytes")
    ml.check_eq(v["s3jobfs_cache_dirty_bytes"], 0, "cache_dirty_bytes")
    ml.check_eq(v["s3jobfs_upload_duration_seconds_count"], 5, "histogram count")
    ml.check_eq(v['s3jobfs_upload_duration_seconds_bucket{le="+Inf"}'], 5, "histogram +Inf bucket")
    buckets = [(float(re.search(r'le="([^"]+)"', k).group(1)), n) for k, n in v.items()
               if k.startswith("s3jobfs_upload_duration_seconds_bucket") and "+Inf" not in k]
    ml.check(len(buckets) >= 8 and all(a[1] <= b[1] for a, b in zip(sorted(buckets), sorted(buckets)[1:])),
             "histogram buckets cumulative: %r" % sorted(buckets))
    for cause in ("throttle", "server", "timeout", "network"):
        ml.check('s3jobfs_s3_retries_total{cause="%s"}' % cause in v, "retries by cause %s" % cause)
    ml.check_eq(v["s3jobfs_postgresql_connected"], 0, "postgresql_connected without DATABASE_URL")
    ml.check("# TYPE s3jobfs_upload_duration_seconds histogram" in text, "histogram TYPE line")
    try:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=10)
        ml.fail("GET /other answered 200")
    except urllib.error.HTTPError as e:
        ml.check_eq(e.code, 404, "GET /other")

    ctx.step("stopping s3rver: failures and retries are counted")
    subprocess.run([ml.env_tool("s3rver-stop")], check=True, timeout=60)
    ctx.defer(lambda: subprocess.run([ml.env_tool("s3rver-start")], timeout=60))
    ml.write_file(os.path.join(m.mnt, "plain/down.bin"), b"x" * 3000)
    ml.wait_for(lambda: scrape(url)[0]["s3jobfs_uploads_failed_total"] >= 1, 60,
                "uploads_failed_total after the server stopped")
    v, _ = scrape(url)
    ml.check(v['s3jobfs_s3_retries_total{cause="network"}'] >= 1,
             "network retries counted: %r" % v['s3jobfs_s3_retries_total{cause="network"}'])
    ml.check(v["s3jobfs_cache_dirty_bytes"] >= 3000, "the failed file counts as dirty bytes")
    with open(m.log, errors="replace") as f:
        failed = [x for x in f if 'msg="s3 upload failed"' in x and "plain/down.bin" in x]
    ml.check(failed and "code=ConnectionRefused" in failed[0] and 'hint="nothing answers at S3_ENDPOINT'
             in failed[0], "the failure's log line has S3's code and a hint: %r" % failed[:1])
    subprocess.run([ml.env_tool("s3rver-start")], check=True, timeout=60)
    m.umount()


@T.case("mount_helper", timeout=180)
def mount_helper(ctx):
    if os.geteuid() != 0:
        raise ml.Skip("mount(8) runs helpers from /sbin: needs root to install one there")
    if not os.access("/sbin", os.W_OK):
        raise ml.Skip("/sbin is not writable")
    links = []
    for name in ("mount.fuse.s3jobfs", "mount.s3jobfs"):
        path = os.path.join("/sbin", name)
        if os.path.lexists(path):
            raise ml.Skip("%s exists already (an installed s3jobfs): not replacing it" % path)
        os.symlink(os.path.join(TOP, "scripts", "mount.s3jobfs"), path)
        links.append(path)
    ctx.defer(lambda: [os.unlink(p) for p in links if os.path.lexists(p)])
    cache = os.path.join(ctx.tmp, "hcache")
    mnt = os.path.join(ctx.tmp, "hmnt")
    os.makedirs(mnt)
    env_file = os.path.join(ctx.tmp, "s3jobfs.env")
    e = ctx.env(False, cache)
    with open(env_file, "w") as f:
        for k, v in e.items():
            if k.startswith("S3") and k not in ("S3_BUCKET_NAME", "S3_PREFIX"):
                f.write("%s=%s\n" % (k, v))
    os.chmod(env_file, 0o600)
    penv = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "S3JOBFS_BIN": ml.BIN,
            "HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    source = "s3://%s/%s" % (ctx.s3.bucket, ctx.prefix)

    def umount():
        if ml.is_mounted(mnt):
            subprocess.run([ml.BIN, "umount", mnt], env=penv, timeout=60)
    ctx.defer(umount)
    ctx.step("mount -t fuse.s3jobfs")
    r = subprocess.run(["mount", "-t", "fuse.s3jobfs", "-o",
                        "env_file=%s,cache_dir=%s,_netdev,nosuid,nodev" % (env_file, cache),
                        source, mnt], env=penv, capture_output=True, text=True, timeout=60)
    ml.check(r.returncode == 0, "mount -t fuse.s3jobfs exited %d: %s" % (r.returncode, r.stderr))
    info = ml.mountinfo().get(os.path.realpath(mnt))
    ml.check(info is not None and info[0] == "fuse.s3jobfs", "mountinfo: %r" % (info,))
    ml.write_file(os.path.join(mnt, "helper/one.json"), b'{"via": "mount -t"}')
    ml.wait_s3(ctx.s3, ctx.prefix + "helper/", ml.digest_map({"one.json": b'{"via": "mount -t"}'}),
               timeout=30, what="object written through mount -t")
    r = subprocess.run([ml.BIN, "umount", mnt], env=penv, capture_output=True, text=True, timeout=60)
    ml.check(r.returncode == 0 and not ml.is_mounted(mnt), "s3jobfs umount: %s" % r.stderr)

    ctx.step("an fstab line, mounted by its mountpoint")
    fstab = os.path.join(ctx.tmp, "fstab")
    with open(fstab, "w") as f:
        f.write("# test fstab\n%s %s fuse.s3jobfs noauto,_netdev,nofail,env_file=%s,cache_dir=%s 0 0\n"
                % (source, mnt, env_file, cache))
    r = subprocess.run(["mount", mnt], env=dict(penv, LIBMOUNT_FSTAB=fstab), capture_output=True,
                       text=True, timeout=60)
    ml.check(r.returncode == 0, "mount %s from fstab exited %d: %s" % (mnt, r.returncode, r.stderr))
    ml.check(ml.is_mounted(mnt), "fstab mount is in mountinfo")
    ml.check_eq(ml.read_file(os.path.join(mnt, "helper/one.json")), b'{"via": "mount -t"}',
                "the file written before, read through the fstab mount")
    ml.write_file(os.path.join(mnt, "helper/two.json"), b'{"via": "fstab"}')
    ml.wait_s3(ctx.s3, ctx.prefix + "helper/", ml.digest_map({"one.json": b'{"via": "mount -t"}',
                                                              "two.json": b'{"via": "fstab"}'}),
               timeout=30, what="objects written through the fstab mount")
    umount()
    ml.check(not ml.is_mounted(mnt), "unmounted")


@T.case("demo", timeout=240)
def demo(ctx):
    ml.need_db()
    # on a terminal, as `make demo` runs for a user (psql would page there if not told not to)
    rc, out = run_pty([os.path.join(TOP, "scripts", "demo.sh")], dict(os.environ), timeout=200)
    ml.check(rc == 0, "demo.sh exited %d: %s" % (rc, out[-2000:]))
    ml.check('"status": "success"' in out, "the demo shows uploadToS3.status success: %s" % out[-1500:])
    files = re.search(r'"filesUploaded": (\d+)', out)
    objs = re.search(r"\.\.\. (\d+) objects", out)
    ml.check(files and objs and files.group(1) == objs.group(1) and int(files.group(1)) > 0,
             "filesUploaded equals the objects listed: %r %r" % (files and files.group(0),
                                                                 objs and objs.group(0)))
    ml.check("unmounted" in out, "the demo unmounts")


@T.case("umount_logs_left", timeout=120)
def umount_logs_left(ctx):
    """umount of a job not yet complete: the log names each file left and why; the next
    mount on the same cache uploads them once the job completes."""
    m = ctx.mount(on_completion=True)
    job = ml.job_name()
    files = {"all_products.json": b"[]", "products/p1.json": b"{}"}
    for rel, data in files.items():
        ml.write_file(os.path.join(m.mnt, job, rel), data)
    m.umount()
    with open(m.log, errors="replace") as f:
        log = f.read()
    for rel in files:
        ml.check(re.search(r'msg="s3 upload left for the next mount" path="?%s/%s"? '
                           r'reason="job not completed"' % (re.escape(job), re.escape(rel)), log),
                 "the log names %s as left (job not completed)" % rel)
    ml.check('msg="files not in S3 stay in the cache" files=2' in log, "the log counts 2 files left")
    m2 = ctx.mount(on_completion=True, cache=m.cache)
    m2.complete(job)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map(files), timeout=30,
               what="objects left by the first mount")
    m2.umount()


@T.case("systemd_unit", timeout=60)
def systemd_unit(ctx):
    """scripts/s3jobfs.service passes `systemd-analyze verify` (with ExecStart pointing at this
    build), and its ExecStart is a valid `s3jobfs mount` command line."""
    if not shutil.which("systemd-analyze"):
        raise ml.Skip("systemd-analyze is not installed")
    with open(os.path.join(TOP, "scripts", "s3jobfs.service")) as f:
        unit = f.read().replace("/usr/local/bin/s3jobfs", ml.BIN)
    path = os.path.join(ctx.tmp, "s3jobfs.service")
    with open(path, "w") as f:
        f.write(unit)
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=30)
    problems = [x for x in (r.stdout + r.stderr).splitlines()
                if x.strip() and "man s3jobfs(1)" not in x]     # the man page is not installed here
    ml.check(not problems, "systemd-analyze verify: %r" % problems)
    start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    ml.check_eq(start[1], "mount", "ExecStart runs `s3jobfs mount`")
    h = subprocess.run([start[0], "mount", "--help"], capture_output=True, text=True, timeout=10)
    for opt in (o for o in start[2:] if o.startswith("--")):
        ml.check(opt in h.stdout, "ExecStart option %s is one `s3jobfs mount` knows" % opt)


@T.case("man_page", timeout=60)
def man_page(ctx):
    r = subprocess.run([os.path.join(TOP, "scripts", "gen-man.sh"), ml.BIN], capture_output=True,
                       text=True, timeout=30)
    ml.check(r.returncode == 0, "gen-man.sh: %s" % r.stderr)
    with open(os.path.join(TOP, "docs", "s3jobfs.1")) as f:
        ml.check(f.read() == r.stdout, "docs/s3jobfs.1 is out of date: run `make man`")
    cfg = subprocess.run([ml.BIN, "check", "--print-config"], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin"}).stdout
    names = re.findall(r"^  ([A-Z][A-Z0-9_]+)", cfg, re.M)
    ml.check(len(names) > 20 and all(".B %s\n" % n in r.stdout for n in names),
             "man page lists every variable: %r" % [n for n in names if ".B %s\n" % n not in r.stdout])
    if shutil.which("man"):
        mr = subprocess.run(["man", "--warnings", "-l", os.path.join(TOP, "docs", "s3jobfs.1")],
                            capture_output=True, text=True, timeout=30, env=dict(os.environ, MANWIDTH="80"))
        ml.check(mr.returncode == 0 and "S3_UPLOAD_ON_COMPLETION" in mr.stdout and not mr.stderr.strip(),
                 "man renders without warnings: %s" % mr.stderr[:500])
    for sub in ("mount", "umount", "complete", "upload", "status", "check"):
        h = subprocess.run([ml.BIN, sub, "--help"], capture_output=True, text=True, timeout=10)
        ml.check(h.returncode == 0 and ("usage: s3jobfs " + sub) in h.stdout,
                 "s3jobfs %s --help: rc %d %r" % (sub, h.returncode, h.stdout[:200]))
        ml.check(sub in r.stdout, "man page describes %s" % sub)


if __name__ == "__main__":
    T.main()
