#!/usr/bin/python3
"""bench.py - s3jobfs against s3fs, rclone mount and upload-after-job, side by side.

Run by `make bench` (bench/run.sh), inside tests/with-env.sh (s3rver + PostgreSQL). Each
workload runs every tool in turn, BENCH_RUNS times (default 5), and reports the median with
min and max, and each result against its target as a ratio (docs/BENCHMARKS.md).

  W1  the standard scraper job: 320 files, 16 MiB, 8 KiB (JSON) and 64 KiB (binary) writes;
      writer time and time until every object is durable in S3 (s3jobfs: until the job's
      status is `success` in PostgreSQL)
  W2  ten such jobs written at once by ten processes
  W3  one 1 GiB file: write, upload, cold sequential read, warm read
  W4  listing a prefix of 10,000 objects cold and warm; small-file creates per second
  W5  peak RSS of each daemon during W1-W3 (ru_maxrss of the daemon process)

Limits: local disk for the writer; the server's raw rate (curl --parallel PUT/GET of the same
objects, no file system) for time-to-durable; and a sink (nginx answering every PUT at once)
that takes the S3 server's own speed out of s3jobfs's numbers.

Environment: BENCH_RUNS (5), BENCH_QUICK=1 (2 runs, 128 MiB instead of 1 GiB, 2,000 objects
instead of 10,000: to try the harness, not to report), BENCH_ONLY=W1,W3 (a subset),
BENCH_TOOLS=s3jobfs,s3fs (a subset), BENCH_OUT (bench/out), BENCH_REPORT (a markdown file whose
part between the bench markers is replaced by the tables), BENCH_FROM (an earlier run's
results.json: its numbers for the workloads BENCH_ONLY leaves out go into the report too).
"""
import concurrent.futures
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.environ.get("BENCH_QUICK") == "1"
RUNS = int(os.environ.get("BENCH_RUNS", "2" if QUICK else "5"))
BIG = 128 * MiB if QUICK else GiB
NLIST = 2000 if QUICK else 10000
NCREATE = 2000
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
TOOLS = set(filter(None, os.environ.get("BENCH_TOOLS", "").split(",")))
OUT = os.environ.get("BENCH_OUT", os.path.join(TOP, "bench", "out"))
DURABLE_TIMEOUT = 600

results = {}            # (workload, tool, metric) -> [values]
measured = {}           # workload -> when it ran (UTC)


def say(msg):
    print("bench: %s" % msg, flush=True)


def want(workload, tool=None):
    return (not ONLY or workload in ONLY) and (tool is None or not TOOLS or tool in TOOLS)


def record(workload, tool, metric, value):
    results.setdefault((workload, tool, metric), []).append(value)
    measured[workload] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the scraper's jobs table, one row per job, polled for output->'uploadToS3'

def psql(q, *args):
    cmd = ["psql", os.environ["DATABASE_URL"], "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"]
    for i, a in enumerate(args):
        cmd += ["-v", "v%d=%s" % (i + 1, a)]
    r = subprocess.run(cmd, input=q, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql: %s" % r.stderr.strip())
    return r.stdout.strip()


def setup_db():
    psql("""CREATE TABLE IF NOT EXISTS jobs (id uuid PRIMARY KEY, name text, status text,
            config jsonb, output jsonb, created_at timestamptz DEFAULT now(),
            updated_at timestamptz DEFAULT now())""")


def new_job_row():
    """A job as the scraper starts one: its row, then its folder name."""
    u = str(uuid.uuid4())
    # screenshots too: the peers upload every file, so s3jobfs must as well (the guide's default
    # keeps screenshots/ out of S3)
    psql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'bench', 'running', "
         "'{\"uploadToS3\": {\"enabled\": true, \"uploadScreenshots\": true}}')", u)
    return u, time.strftime("%Y%m%d_%H%M%S_") + u


class Poller:
    """One psql session kept open for polling: a query costs about a millisecond and no new
    process (a psql started every 10 ms took CPU from the S3 server on this 2-core machine and
    slowed down the uploads being timed)."""

    def __init__(self):
        self.p = None

    def rows(self, q):
        if self.p is None or self.p.poll() is not None:
            self.p = subprocess.Popen(["psql", os.environ["DATABASE_URL"], "-X", "-A", "-t", "-q"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      bufsize=1)
        self.p.stdin.write(q.rstrip().rstrip(";") + ";\nSELECT 'END-OF-ROWS';\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql session ended")
            line = line.rstrip("\n")
            if line == "END-OF-ROWS":
                return out
            out.append(line)


POLLER = Poller()


def wait_status(uuids, t0, timeout=DURABLE_TIMEOUT):
    """Poll the rows until every job's uploadToS3 status is success; seconds since t0.
    Raises on failed/partial or on timeout."""
    ids = ",".join("'%s'" % u for u in uuids)
    deadline = time.monotonic() + timeout
    while True:
        st = POLLER.rows("SELECT output->'uploadToS3'->>'status' FROM jobs WHERE id IN (%s)" % ids)
        if len(st) == len(uuids) and all(s == "success" for s in st):
            return time.monotonic() - t0
        bad = [s for s in st if s in ("failed", "partial")]
        if bad:
            raise RuntimeError("job status %s" % bad[0])
        if time.monotonic() > deadline:
            raise RuntimeError("jobs not success after %d s: %s" % (timeout, st))
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# The standard job: 320 files, 16 MiB

def job_spec(seed):
    """[(rel, size, write size)] of a scraper job: 320 files, 16 MiB in all."""
    rng = random.Random(seed)
    spec = [("all_products.json", MiB, 8 * KiB), ("categories.json", 16 * KiB, 8 * KiB)]
    for i in range(250):
        spec.append(("products/SKU-%05d.json" % i, int(KiB * 8 ** rng.random()), 8 * KiB))
    bins = []
    for i in range(30):
        bins.append("pdfs/SKU-%05d.pdf" % i)
    for i in range(38):
        bins.append("screenshots/page_%02d/SKU-%05d.png" % (i // 10, i))
    weights = [20 * KiB * 50 ** rng.random() for _ in bins]
    left = 16 * MiB - sum(s for _, s, _ in spec)
    sizes = [int(left * w / sum(weights)) for w in weights]
    sizes[-1] += left - sum(sizes)
    spec += [(rel, size, 64 * KiB) for rel, size in zip(bins, sizes)]
    assert len(spec) == 320 and sum(s for _, s, _ in spec) == 16 * MiB
    return spec


POOL = random.Random(1).randbytes(2 * MiB)


def write_files(root, spec):
    """Write spec under root with plain write(2)s of each entry's write size; seconds."""
    t0 = time.monotonic()
    made = set()
    for rel, size, chunk in spec:
        d = os.path.dirname(os.path.join(root, rel))
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        fd = os.open(os.path.join(root, rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            off = 0
            while off < size:
                n = min(chunk, size - off)
                p = (off + len(rel)) % (len(POOL) - chunk)
                off += os.write(fd, POOL[p:p + n])
        finally:
            os.close(fd)
    return time.monotonic() - t0


def write_jobs_parallel(roots, spec):
    """One forked writer per root, released together; (wall seconds, [each writer's])."""
    r_go, w_go = os.pipe()
    kids = []
    for root in roots:
        r_out, w_out = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w_go)
            os.close(r_out)
            code = 1
            try:
                os.read(r_go, 1)
                t = write_files(root, spec)
                os.write(w_out, b"%.6f" % t)
                code = 0
            except BaseException as e:  # noqa: BLE001 - the child reports and exits
                os.write(2, ("writer %s: %s\n" % (root, e)).encode())
            os._exit(code)
        os.close(w_out)
        kids.append((pid, r_out))
    os.close(r_go)
    time.sleep(0.05)
    t0 = time.monotonic()
    os.write(w_go, b"x" * len(roots))
    each = []
    for pid, r_out in kids:
        data = b""
        while True:
            b = os.read(r_out, 64)
            if not b:
                break
            data += b
        os.close(r_out)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError("a writer failed")
        each.append(float(data))
    wall = time.monotonic() - t0
    os.close(w_go)
    return wall, each


def local_items(root, spec, prefix):
    return [(os.path.join(root, rel), prefix + rel) for rel, _, _ in spec]


def verify(cfg, prefix, spec):
    """Every file of spec is an object under prefix with its size."""
    got = dict(peers.list_keys(cfg, prefix))
    missing = [rel for rel, size, _ in spec if got.get(prefix + rel) != size]
    if missing:
        raise RuntimeError("%d objects missing or of the wrong size under %s, e.g. %s (%s)"
                           % (len(missing), prefix, missing[0], got.get(prefix + missing[0])))


def wait_objects(cfg, prefix, spec, t0, timeout=DURABLE_TIMEOUT):
    """Poll the listing until every object of spec is there; seconds since t0."""
    want_ = {prefix + rel: size for rel, size, _ in spec}
    deadline = time.monotonic() + timeout
    while True:
        got = dict(peers.list_keys(cfg, prefix))
        if all(got.get(k) == s for k, s in want_.items()):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise RuntimeError("objects not all in S3 after %d s" % timeout)
        time.sleep(0.05)          # each look is a curl process and a listing: not too often


# ---------------------------------------------------------------------------------------------
# S3 chores with curl (the bucket of a run, deleting the big objects)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def curl_s3(cfg, method, path):
    r = subprocess.run(["curl", "-sS", "--fail", "-X", method, "--aws-sigv4",
                        "aws:amz:%s:s3" % cfg["region"], "--user",
                        "%s:%s" % (cfg["access_key"], cfg["secret_key"]),
                        "-H", "x-amz-content-sha256: " + EMPTY_SHA256, cfg["endpoint"].rstrip("/") + "/" + path],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("curl %s /%s: %s" % (method, path, r.stderr.strip()))


def create_bucket(cfg):
    curl_s3(cfg, "PUT", cfg["bucket"])


def delete_keys(cfg, keys):
    for k in keys:
        curl_s3(cfg, "DELETE", cfg["bucket"] + "/" + urllib.parse.quote(k))


def aws_cp_many(cfg, pairs):
    """`aws s3 cp --recursive` of each (dir, prefix), all at once."""
    with concurrent.futures.ThreadPoolExecutor(len(pairs)) as ex:
        return list(ex.map(lambda p: peers.aws_cp_recursive(cfg, p[0], p[1]), pairs))


# ---------------------------------------------------------------------------------------------
# Runs

class Bench:
    def __init__(self):
        self.base = {
            "endpoint": os.environ["S3RVER_ENDPOINT"], "bucket": os.environ["S3RVER_BUCKET"],
            "access_key": os.environ["S3RVER_ACCESS_KEY_ID"],
            "secret_key": os.environ["S3RVER_SECRET_ACCESS_KEY"],
            "region": os.environ.get("S3RVER_REGION", "us-east-1"),
            "database_url": os.environ.get("DATABASE_URL"), "top": TOP,
        }
        self.work = tempfile.mkdtemp(prefix="s3jobfs-bench-", dir=os.environ.get("BENCH_TMP", "/var/tmp"))
        self.base["workdir"] = self.work
        self.nbucket = 0
        self.sink = None

    def cfg(self, fresh_bucket=True, endpoint=None):
        """A cfg for one run: by default in a bucket of its own (s3rver slows down and then
        fails with tens of thousands of objects in one bucket)."""
        c = dict(self.base)
        if endpoint:
            c["endpoint"] = endpoint
        if fresh_bucket and not endpoint:
            self.nbucket += 1
            c["bucket"] = "bench-%03d" % self.nbucket
            create_bucket(c)
        return c

    def tmpdir(self, name):
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def peer(self, tool, cfg):
        if tool == "s3jobfs":
            return peers.S3jobfs(cfg, on_completion=True)
        if tool == "s3jobfs-on-close":
            return peers.S3jobfs(cfg, on_completion=False)
        if tool == "s3jobfs-sink":
            return peers.S3jobfs(cfg, on_completion=True)
        if tool == "s3fs":
            return peers.S3fs(cfg)
        if tool == "rclone":
            return peers.Rclone(cfg)
        raise ValueError(tool)

    def sink_endpoint(self):
        if self.sink is None:
            self.sink = peers.Sink(self.work)
            self.endpoint_sink = self.sink.start()
        return self.endpoint_sink

    def close(self):
        if self.sink:
            self.sink.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- W1 / W2 ----------------------------------------------------------------------------

    def jobs(self, wl, njobs):
        """W1 (njobs=1) and W2 (njobs=10)."""
        spec = job_spec(42)
        for run in range(RUNS):
            say("%s run %d/%d" % (wl, run + 1, RUNS))
            d = self.tmpdir("local")
            roots = [os.path.join(d, "job%d" % i) for i in range(njobs)]
            wall, _ = write_jobs_parallel(roots, spec)
            if want(wl, "local"):
                record(wl, "local disk", "writer", wall)
            if want(wl, "raw"):
                c = self.cfg()
                items = sum((local_items(r, spec, "raw/j%d/" % i) for i, r in enumerate(roots)), [])
                record(wl, "raw PUT (curl)", "durable", peers.curl_put_parallel(c, items, parallel=16))
                verify(c, "raw/j0/", spec)
                c = self.cfg(endpoint=self.sink_endpoint())
                record(wl, "raw PUT → sink", "durable", peers.curl_put_parallel(c, items, parallel=16))
            if want(wl, "aws"):
                # what the scraper does today: write the job to local disk, then upload the
                # folder (ten jobs: ten uploads at once)
                c = self.cfg()
                d2 = self.tmpdir("aws")
                roots = [os.path.join(d2, "job%d" % i) for i in range(njobs)]
                t0 = time.monotonic()
                wall, _ = write_jobs_parallel(roots, spec)
                rs = aws_cp_many(c, [(r, "aws/j%d/" % i) for i, r in enumerate(roots)])
                t = time.monotonic() - t0
                name = "upload after job (aws s3 cp)"
                record(wl, name, "writer", wall)
                record(wl, name, "durable", t)
                record(wl, name, "after writer", t - wall)
                record(wl, name, "rss", max(a["rss_kib"] for a in rs))
                for i in range(njobs):
                    verify(c, "aws/j%d/" % i, spec)
            for tool in ("s3jobfs", "s3jobfs-on-close", "s3jobfs-sink", "s3fs", "rclone"):
                if not want(wl, tool):
                    continue
                self.jobs_mount(wl, tool, njobs, spec)

    def jobs_mount(self, wl, tool, njobs, spec):
        sink = tool == "s3jobfs-sink"
        c = self.cfg(endpoint=self.sink_endpoint() if sink else None)
        p = self.peer(tool, c)
        mnt = self.tmpdir("mnt-" + tool)
        pre = "jobs/"
        p.mount(mnt, pre)
        try:
            uuids, folders = [], []
            for _ in range(njobs):
                if tool.startswith("s3jobfs"):
                    u, f = new_job_row()
                    uuids.append(u)
                else:
                    f = time.strftime("%Y%m%d_%H%M%S_") + str(uuid.uuid4())
                folders.append(f)
            t0 = time.monotonic()
            wall, _ = write_jobs_parallel([os.path.join(mnt, f) for f in folders], spec)
            if tool == "s3jobfs" or sink:
                for f in folders:          # the scraper marks its job completed
                    p.complete(f)
            if tool.startswith("s3jobfs"):
                dur = wait_status(uuids, t0)
            elif tool == "s3fs":
                dur = wall                 # s3fs uploads in close(): durable when the writer returns
            else:
                dur = max(wait_objects(c, pre + f + "/", spec, t0) for f in folders)
        finally:
            u = p.unmount()
        name = {"s3jobfs": "s3jobfs", "s3jobfs-on-close": "s3jobfs (upload on close)",
                "s3jobfs-sink": "s3jobfs → sink", "s3fs": "s3fs", "rclone": "rclone mount"}[tool]
        record(wl, name, "writer", wall)
        record(wl, name, "durable", dur)
        record(wl, name, "after writer", dur - wall)
        record(wl, name, "rss", u["rss_kib"])
        if not sink:
            for f in folders:
                verify(c, pre + f + "/", spec)

    # -- W3 ---------------------------------------------------------------------------------

    def big(self):
        wl = "W3"
        spec = [("big.bin", BIG, MiB)]
        for run in range(RUNS):
            say("W3 run %d/%d" % (run + 1, RUNS))
            c = self.cfg()
            if want(wl, "local"):
                d = self.tmpdir("local")
                record(wl, "local disk", "write", write_files(d, spec))
                record(wl, "local disk", "warm read", read_file(os.path.join(d, "big.bin")))
                if want(wl, "raw"):
                    t = peers.curl_put_parallel(c, [(os.path.join(d, "big.bin"), "raw/big.bin")], 1)
                    record(wl, "raw (curl)", "upload", t)
                    record(wl, "raw (curl)", "cold read",
                           peers.curl_get_ranged(c, "raw/big.bin", BIG, part=8 * MiB, parallel=8))
                    record(wl, "raw (curl, one GET)", "cold read", peers.curl_get(c, "raw/big.bin"))
                    delete_keys(c, ["raw/big.bin"])
            for tool in ("s3jobfs", "s3fs", "rclone"):
                if want(wl, tool):
                    self.big_mount(wl, tool, c, spec)
            shutil.rmtree(os.path.join(self.work, "local"), ignore_errors=True)

    def big_mount(self, wl, tool, c, spec):
        name = {"s3jobfs": "s3jobfs", "s3fs": "s3fs", "rclone": "rclone mount"}[tool]
        pre = tool + "/"
        mnt = self.tmpdir("mnt-" + tool)
        p = self.peer(tool, c)
        p.mount(mnt, pre)
        try:
            folder = "20250101_000000_" + str(uuid.uuid4())
            if tool == "s3jobfs":
                u, folder = new_job_row()
            path = os.path.join(mnt, folder, "big.bin")
            t0 = time.monotonic()
            wr = write_files(os.path.join(mnt, folder), spec)
            if tool == "s3jobfs":
                t1 = time.monotonic()
                p.complete(folder)
                up = wait_status([u], t1)
            elif tool == "s3fs":
                up = 0.0                   # inside the write time: s3fs uploads in close()
            else:
                up = wait_objects(c, pre + folder + "/", spec, t0) - wr
        finally:
            rss = p.unmount()["rss_kib"]
        record(wl, name, "write", wr)
        record(wl, name, "upload", up)
        verify(c, pre + folder + "/", spec)
        p = self.peer(tool, c)                  # a new mount, a new cache: the read is cold
        p.mount(mnt, pre)
        try:
            record(wl, name, "cold read", read_file(path))
            record(wl, name, "warm read", read_file(path))
        finally:
            rss = max(rss, p.unmount()["rss_kib"])
        record(wl, name, "rss", rss)
        delete_keys(c, [pre + folder + "/big.bin"])

    # -- W4 ---------------------------------------------------------------------------------

    def listing(self):
        wl = "W4"
        c = self.cfg()
        say("W4: putting %d objects" % NLIST)
        peers.put_many_empty(c, "list/20250101_000000_list/", NLIST, parallel=16)
        for run in range(RUNS):
            say("W4 run %d/%d" % (run + 1, RUNS))
            if want(wl, "raw"):
                # the server's own listing time: ListObjects pages with curl, nothing else
                t0 = time.monotonic()
                n = len(peers.list_keys(c, "list/20250101_000000_list/"))
                record(wl, "raw list (curl)", "ls cold", time.monotonic() - t0)
                if n != NLIST:
                    raise RuntimeError("raw list: %d of %d keys" % (n, NLIST))
            if want(wl, "local"):
                d = self.tmpdir("local")
                record(wl, "local disk", "creates/s", creates(d, NCREATE))
                d = tempfile.mkdtemp(dir="/dev/shm")
                try:
                    record(wl, "local tmpfs", "creates/s", creates(os.path.join(d, "c"), NCREATE))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            for tool in ("s3jobfs", "s3fs", "rclone"):
                if not want(wl, tool):
                    continue
                name = {"s3jobfs": "s3jobfs", "s3fs": "s3fs", "rclone": "rclone mount"}[tool]
                mnt = self.tmpdir("mnt-" + tool)
                p = self.peer(tool, c)
                p.mount(mnt, "list/")
                try:
                    d = os.path.join(mnt, "20250101_000000_list")
                    for phase in ("cold", "warm"):
                        t0 = time.monotonic()
                        names = os.listdir(d)
                        t1 = time.monotonic()
                        for n in names:
                            os.lstat(os.path.join(d, n))
                        t2 = time.monotonic()
                        if len(names) != NLIST:
                            raise RuntimeError("%s listed %d of %d" % (tool, len(names), NLIST))
                        record(wl, name, "ls %s" % phase, t1 - t0)
                        record(wl, name, "ls -l %s" % phase, t2 - t0)
                    if tool == "s3jobfs" and os.path.isdir("/dev/shm"):
                        record(wl, "s3jobfs, cache on tmpfs", "creates/s", self.creates_tmpfs(c))
                    n = NCREATE if tool != "s3fs" else 200   # s3fs PUTs each empty file
                    cdir = os.path.join(mnt, "20250101_000000_" + str(uuid.uuid4()))
                    record(wl, name, "creates/s", creates(cdir, n))
                finally:
                    p.unmount()


    def creates_tmpfs(self, c):
        """creates/s of s3jobfs with its cache on tmpfs: FUSE's own cost without the disk's."""
        shm = tempfile.mkdtemp(prefix="s3jobfs-bench-", dir="/dev/shm")
        mnt = self.tmpdir("mnt-shm")
        p = peers.S3jobfs(dict(c, workdir=shm), on_completion=True)
        p.mount(mnt, "list/")
        try:
            return creates(os.path.join(mnt, "20250101_000000_" + str(uuid.uuid4())), NCREATE)
        finally:
            p.unmount()
            shutil.rmtree(shm, ignore_errors=True)


def read_file(path):
    """Read path sequentially in 1 MiB reads; seconds."""
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, MiB):
            pass
    finally:
        os.close(fd)
    return time.monotonic() - t0


def creates(d, n):
    """Create n empty files in d (open O_CREAT + close); files per second."""
    os.makedirs(d, exist_ok=True)
    t0 = time.monotonic()
    for i in range(n):
        os.close(os.open(os.path.join(d, "f%05d.json" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return n / (time.monotonic() - t0)


# ---------------------------------------------------------------------------------------------
# Report

def med(v):
    return statistics.median(v)


def fmt(metric, v):
    if metric == "rss":
        return "%.1f MiB" % (v / 1024)
    if metric == "creates/s":
        return "%.0f" % v
    if v < 1:
        return "%.0f ms" % (v * 1000)
    return "%.2f s" % v


def cell(wl, tool, metric):
    v = results.get((wl, tool, metric))
    if not v:
        return "-"
    if len(v) == 1:
        return fmt(metric, v[0])
    return "%s (%s–%s)" % (fmt(metric, med(v)), fmt(metric, min(v)), fmt(metric, max(v)))


def m(wl, tool, metric):
    v = results.get((wl, tool, metric))
    return med(v) if v else None


def table(wl, title, metrics):
    tools = []
    for (w, t, _) in results:
        if w == wl and t not in tools:
            tools.append(t)
    if not tools:
        return []
    out = ["### %s" % title, "", "| tool | " + " | ".join(metrics) + " |",
           "|---|" + "---|" * len(metrics)]
    for t in tools:
        out.append("| %s | %s |" % (t, " | ".join(cell(wl, t, x) for x in metrics)))
    return out + [""]


def ratio_rows():
    """[(target text, measured ratio text, met)] for every target the results allow."""
    rows = []

    def add(text, num, den, limit, higher_better=False):
        if num is None or den is None or den == 0:
            return
        r = num / den
        ok = r >= limit if higher_better else r <= limit
        rows.append((text, "%.2f×" % r, "yes" if ok else "**no**"))

    for wl in ("W1", "W2"):
        loc = m(wl, "local disk", "writer")
        raw = m(wl, "raw PUT (curl)", "durable")
        aws = m(wl, "upload after job (aws s3 cp)", "durable")
        for t in ("s3jobfs", "s3jobfs (upload on close)"):
            add("%s %s writer ≤ 3× local disk" % (wl, t), m(wl, t, "writer"), loc, 3)
            add("%s %s durable ≤ 1.1× raw PUT" % (wl, t), m(wl, t, "durable"), raw, 1.1)
            add("%s %s durable ≤ 0.5× upload after job" % (wl, t), m(wl, t, "durable"), aws, 0.5)
    for t in ("s3jobfs", "s3jobfs (upload on close)"):
        w1, w2 = m("W1", t, "writer"), m("W2", t, "writer")
        add("W2 %s ten-job writer time ÷ one job's ≤ 10 (flat per job: bytes ×10)" % t, w2, w1, 10)
        d1, d2 = m("W1", t, "durable"), m("W2", t, "durable")
        add("W2 %s ten-job durable ÷ (10 × one job's) ≤ 1 (no worse than linear)" % t, d2,
            d1 * 10 if d1 else None, 1)
    add("W3 1 GiB write ≥ 0.8× local disk (speed)", m("W3", "local disk", "write"), m("W3", "s3jobfs", "write"), 0.8, True)
    add("W3 cold read ≥ 0.9× raw ranged GET (speed; 8 × 8 MiB ranges in parallel)", m("W3", "raw (curl)", "cold read"), m("W3", "s3jobfs", "cold read"), 0.9, True)
    add("W3 cold read ≥ 0.9× one plain GET (speed)", m("W3", "raw (curl, one GET)", "cold read"), m("W3", "s3jobfs", "cold read"), 0.9, True)
    add("W3 warm read ≥ 0.8× local disk (speed)", m("W3", "local disk", "warm read"), m("W3", "s3jobfs", "warm read"), 0.8, True)
    add("W4 ls cold ÷ the server's own listing (raw list) (≤ 1.1)", m("W4", "s3jobfs", "ls cold"),
        m("W4", "raw list (curl)", "ls cold"), 1.1)
    lc, lw = m("W4", "s3jobfs", "ls cold"), m("W4", "s3jobfs", "ls warm")
    if lc is not None:
        rows.append(("W4 ls of %d objects cold ≤ 1 s" % NLIST, fmt("", lc), "yes" if lc <= 1 else "**no**"))
        rows.append(("W4 ls of %d objects warm ≤ 50 ms" % NLIST, fmt("", lw), "yes" if lw <= 0.05 else "**no**"))
    cr = m("W4", "s3jobfs", "creates/s")
    if cr is not None:
        rows.append(("W4 creates ≥ 5,000/s", "%.0f/s" % cr, "yes" if cr >= 5000 else "**no**"))
    rss = m("W2", "s3jobfs", "rss")
    if rss is not None:
        rows.append(("W5 s3jobfs RSS ≤ 64 MiB with ten jobs", fmt("rss", rss), "yes" if rss <= 65536 else "**no**"))
    return rows


def versions():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().split("\n")[0]
        except OSError as e:
            return "not found (%s)" % e.strerror
    return [
        ("s3jobfs", first([os.path.join(TOP, "s3jobfs"), "--version"])),
        ("s3fs", first(["s3fs", "--version"])),
        ("rclone", first(["rclone", "version"])),
        ("aws", first(["/usr/bin/aws", "--version"])),
        ("curl", first(["curl", "--version"])),
        ("s3rver", first([os.path.join(TOP, "tests/node_modules/.bin/s3rver"), "--version"])),
        ("nginx (sink)", first(["/usr/sbin/nginx", "-v"])),
        ("PostgreSQL", first(["psql", "--version"])),
        ("kernel", platform.release()),
        ("cpu", first(["sh", "-c", "echo $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"])),
        ("memory", first(["sh", "-c", "free -h | awk '/^Mem/ {print $2}'"])),
    ]


def report():
    when = "; ".join("%s %s" % (w, measured[w]) for w in sorted(measured))
    lines = ["<!-- bench:begin (written by bench/bench.py; edit outside the markers) -->", "",
             "%d runs per tool, median (min–max)%s. Measured: %s." %
             (RUNS, "; BENCH_QUICK=1 (smaller sizes, not for reporting)" if QUICK else "", when), "",
             "| component | version |", "|---|---|"]
    lines += ["| %s | %s |" % v for v in versions()]
    lines += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += ["| %s | %s | %s |" % r for r in ratio_rows()]
    lines.append("")
    lines += table("W1", "W1: one standard job (320 files, 16 MiB)", ["writer", "durable", "after writer", "rss"])
    lines += table("W2", "W2: ten jobs at once (3,200 files, 160 MiB)", ["writer", "durable", "after writer", "rss"])
    lines += table("W3", "W3: one %d MiB file" % (BIG // MiB), ["write", "upload", "cold read", "warm read", "rss"])
    lines += table("W4", "W4: listing %d objects; creating empty files" % NLIST,
                   ["ls cold", "ls warm", "ls -l cold", "ls -l warm", "creates/s"])
    lines.append("<!-- bench:end -->")
    return lines


def chart(path):
    """A PNG of W1/W2 writer and durable times per tool (gnuplot)."""
    rows = []
    for wl in ("W1", "W2"):
        for t in ("local disk", "raw PUT (curl)", "s3jobfs", "s3jobfs (upload on close)", "s3jobfs → sink",
                  "s3fs", "rclone mount", "upload after job (aws s3 cp)"):
            w, d = m(wl, t, "writer"), m(wl, t, "durable")
            if w is None and d is None:
                continue
            label = t.replace("→", "to").replace("upload after job (aws s3 cp)", "aws s3 cp after job")
            rows.append('"%s %s" %.4f %.4f' % (wl, label, w or 0, d or 0))
    if not rows or not shutil.which("gnuplot"):
        return False
    data = os.path.join(OUT, "chart.dat")
    with open(data, "w") as f:
        f.write("\n".join(rows) + "\n")
    script = """set terminal pngcairo size 1200,680 font 'DejaVu Sans,10'
set bmargin 12
set rmargin 16
set output '%s'
set title 'Standard scraper job (W1) and ten at once (W2): median seconds, log scale'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel 'seconds'
set xtics rotate by -35 scale 0
set key top left
set grid ytics
plot '%s' using 2:xtic(1) title 'writer done', '' using 3 title 'all objects durable'
""" % (path, data)
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        say("gnuplot: %s" % r.stderr.strip())
        return False
    return True


def write_outputs():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"runs": RUNS, "quick": QUICK, "big": BIG, "nlist": NLIST, "measured": measured,
                   "results": [{"workload": w, "tool": t, "metric": x, "values": v}
                               for (w, t, x), v in results.items()]}, f, indent=1)
    text = "\n".join(report()) + "\n"
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write(text)
    png = os.environ.get("BENCH_CHART", os.path.join(OUT, "benchmarks.png"))
    chart(png)
    rep = os.environ.get("BENCH_REPORT")
    if rep and os.path.exists(rep):
        with open(rep) as f:
            doc = f.read()
        a, b = doc.find("<!-- bench:begin"), doc.find("<!-- bench:end -->")
        if a >= 0 and b > a:
            doc = doc[:a] + text.rstrip("\n") + doc[b + len("<!-- bench:end -->"):]
            with open(rep, "w") as f:
                f.write(doc)
            say("tables written into %s" % rep)
    sys.stdout.write(text)


def load_previous(path):
    """Results of an earlier run (its results.json) for every workload this run leaves out
    (BENCH_ONLY): re-measure one workload and keep the others' numbers in the report."""
    with open(path) as f:
        old = json.load(f)
    for r in old["results"]:
        if not want(r["workload"]):
            results[(r["workload"], r["tool"], r["metric"])] = r["values"]
            measured.setdefault(r["workload"], old.get("measured", {}).get(r["workload"], "an earlier run"))


def main():
    if os.environ.get("BENCH_FROM"):
        load_previous(os.environ["BENCH_FROM"])
    if os.geteuid() != 0 and not os.access("/dev/fuse", os.R_OK | os.W_OK):
        sys.exit("bench: needs /dev/fuse")
    setup_db()
    b = Bench()
    try:
        t0 = time.monotonic()
        if want("W1"):
            b.jobs("W1", 1)
        if want("W2"):
            b.jobs("W2", 10)
        if want("W3"):
            b.big()
        if want("W4"):
            b.listing()
        say("all workloads done in %.0f s" % (time.monotonic() - t0))
    finally:
        b.close()
        write_outputs()


if __name__ == "__main__":
    main()
