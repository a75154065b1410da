"""peers_selftest.py - checks that bench/peers.py's peers, clients and sink work here.

For each FUSE peer (s3jobfs uploading on close, s3fs, rclone): mount a prefix, write three
files (one of 3 MiB, one in a subdirectory), unmount, and check S3 holds them with the right
sizes and content. Then the AWS CLI and the curl clients on 20 files, and s3jobfs uploading
20 files into the nginx sink without errors. One PASS/FAIL line per check; exit status 1 when
any failed. Nothing stays mounted or running afterwards.

With DATABASE_URL set (with-env.sh without --no-pg), the s3jobfs mounts use it (the sink's
does not), after creating the jobs table there if missing.

usage: tests/with-env.sh --no-swift [--no-pg] -- python3 bench/peers_selftest.py [--keep]
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MiB = 1 << 20


def files_of(seed, big=3 * MiB):
    """{rel: bytes}: three files, one of big bytes, one in a subdirectory."""
    rnd = hashlib.sha256(seed.encode()).digest()
    return {"small.txt": b"hello from %s\n" % seed.encode(),
            "big.bin": (rnd * (big // len(rnd) + 1))[:big],
            "sub/dir/c.json": json.dumps({"peer": seed, "n": list(range(50))}).encode()}


def write_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            for i in range(0, len(data), 128 * 1024):
                f.write(data[i:i + 128 * 1024])


def check_s3(cfg, prefix, files):
    """S3 under prefix holds files (directory markers 'x/' aside): sizes by listing, content
    by a GET of each."""
    got = {k[len(prefix):]: s for k, s in peers.list_keys(cfg, prefix) if not k.endswith("/")}
    want = {k: len(v) for k, v in files.items()}
    if got != want:
        raise AssertionError("under %s: listed %s, expected %s" % (prefix, got, want))
    out = os.path.join(cfg["workdir"], "get.out")
    for rel, data in files.items():
        peers.curl_get(cfg, prefix + rel, out=out)
        with open(out, "rb") as f:
            if f.read() != data:
                raise AssertionError("GET %s%s: content differs" % (prefix, rel))


def log_errors(peer):
    """s3jobfs's error and warning lines in its log ([] for the other peers)."""
    if peer.name != "s3jobfs":
        return []
    with open(peer.log, errors="replace") as f:
        return [ln for ln in f if "level=err" in ln or "level=warn" in ln]


def make_jobs_table(url):
    """The scraper's jobs table, which s3jobfs reads and updates but never creates (as
    tests/integration/mountlib.py's setup_jobs_table() makes it)."""
    subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                    "CREATE TABLE IF NOT EXISTS jobs (id uuid PRIMARY KEY, name text, status text, "
                    "config jsonb, output jsonb, created_at timestamptz DEFAULT now(), "
                    "updated_at timestamptz DEFAULT now())"], check=True, timeout=60)


class Runner:
    def __init__(self):
        self.failed = 0

    def check(self, name, fn):
        t0 = time.monotonic()
        try:
            note = fn()
        except Exception as e:
            self.failed += 1
            print("FAIL: %s: %s: %s" % (name, type(e).__name__, str(e).replace("\n", " | ")),
                  flush=True)
            traceback.print_exc(file=sys.stdout)
            return
        print("PASS: %s (%.1f s)%s" % (name, time.monotonic() - t0, "  " + note if note else ""),
              flush=True)


def peer_case(cfg, peer, root, big=3 * MiB, job=None):
    """Mount, write files_of() (under the folder job, which is then completed, when given),
    unmount, check S3."""
    def run():
        prefix = "selftest/%d-%s-%s/" % (os.getpid(), peer.name, job or big)
        mnt = os.path.join(root, "mnt-" + peer.name)
        files = files_of(peer.name, big)
        if job:
            files = {job + "/" + k: v for k, v in files.items()}
        try:
            peer.mount(mnt, prefix)
            write_tree(mnt, files)
            if job:
                peer.complete(job)
            res = peer.unmount()
        finally:
            peer.close()
        if res["rc"] != 0:
            raise AssertionError("%s exited %d; log:\n%s" % (peer.name, res["rc"], peer.log_tail()))
        errs = log_errors(peer)
        if errs:
            raise AssertionError("%s logged errors: %s" % (peer.name, errs[:5]))
        check_s3(cfg, prefix, files)
        return "peak RSS %d KiB" % res["rss_kib"]
    return run


def clients_case(cfg, root):
    def run():
        src = os.path.join(root, "src20")
        files = {("d%d/" % (i % 3) if i % 2 else "") + "f %02d+é.bin" % i:
                 os.urandom(1000 * i + 1) for i in range(19)}
        files["large.bin"] = os.urandom(20 * MiB)
        write_tree(src, files)
        notes = []
        r = peers.aws_cp_recursive(cfg, src, "selftest/aws/")
        check_s3(cfg, "selftest/aws/", files)
        notes.append("aws %.2f s %d KiB" % (r["seconds"], r["rss_kib"]))
        items = [(os.path.join(src, rel), "selftest/curl/" + rel) for rel in files]
        s = peers.curl_put_parallel(cfg, items, parallel=8)
        check_s3(cfg, "selftest/curl/", files)
        notes.append("curl put %.2f s" % s)
        s = peers.curl_get_ranged(cfg, "selftest/curl/large.bin", 20 * MiB, part=4 * MiB)
        notes.append("ranged get 20 MiB %.2f s" % s)
        s = peers.curl_get(cfg, "selftest/curl/large.bin")
        notes.append("get %.2f s" % s)
        return ", ".join(notes)
    return run


def listing_case(cfg):
    def run():
        n = 2500                   # > 2 pages of 1000: the markers must work
        s = peers.put_many_empty(cfg, "selftest/many/", n, parallel=16)
        keys = peers.list_keys(cfg, "selftest/many/")
        want = [("selftest/many/f%05d" % i, 1) for i in range(n)]
        if keys != want:
            raise AssertionError("listed %d keys, expected %d (first %s)" % (len(keys), n, keys[:2]))
        return "%d PUTs in %.2f s" % (n, s)
    return run


def sink_case(cfg, root):
    def run():
        sink = peers.Sink(cfg["workdir"])
        ep = sink.start()
        scfg = dict(cfg, endpoint=ep, database_url=None)
        peer = peers.S3jobfs(scfg, on_completion=False, env={"S3JOBFS_SETTLE_MS": "0"}, verbose=True)
        mnt = os.path.join(root, "mnt-sink")
        try:
            peer.mount(mnt, "selftest/sink/")
            write_tree(mnt, {"job/f%02d.bin" % i: os.urandom(4096 * (i + 1)) for i in range(19)})
            write_tree(mnt, {"job/big.bin": os.urandom(40 * MiB)})  # multipart (s3jobfs's default)
            deadline = time.monotonic() + 60
            while True:
                st = json.loads(peer.status())
                done = _uploaded(st)
                if done >= 20 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            res = peer.unmount()
        finally:
            peer.close()
            sink.stop()
        errs = log_errors(peer)
        if done < 20 or errs or res["rc"] != 0:
            raise AssertionError("uploaded %d of 20, rc %d, log errors: %s; status: %s"
                                 % (done, res["rc"], errs[:5], json.dumps(st)[:800]))
        return "20 files uploaded, peak RSS %d KiB" % res["rss_kib"]
    return run


def _uploaded(st):
    """Uploads done according to `s3jobfs status --json`; ValueError on any failed one."""
    if st.get("uploadsFailed") or st.get("filesFailed"):
        raise ValueError("s3jobfs reports failed uploads: %s" % json.dumps(st)[:800])
    return st.get("uploadsOk", 0)


def main():
    keep = "--keep" in sys.argv[1:]
    e = os.environ
    root = tempfile.mkdtemp(prefix="s3jobfs-peers-")
    cfg = {"endpoint": e["S3RVER_ENDPOINT"], "bucket": e["S3RVER_BUCKET"],
           "access_key": e["S3RVER_ACCESS_KEY_ID"], "secret_key": e["S3RVER_SECRET_ACCESS_KEY"],
           "region": e.get("S3RVER_REGION", "us-east-1"), "database_url": e.get("DATABASE_URL"),
           "workdir": os.path.join(root, "work"), "top": TOP}
    os.makedirs(cfg["workdir"])
    if cfg["database_url"]:
        make_jobs_table(cfg["database_url"])
    r = Runner()
    try:
        r.check("s3jobfs", peer_case(cfg, peers.S3jobfs(cfg, on_completion=False,
                                                         env={"S3JOBFS_SETTLE_MS": "0"}, verbose=True), root))
        r.check("s3jobfs-complete", peer_case(cfg, peers.S3jobfs(cfg, on_completion=True, verbose=True), root,
                                              job="20260101_000000_job"))
        r.check("s3fs", peer_case(cfg, peers.S3fs(cfg), root))
        r.check("s3fs-multipart", peer_case(cfg, peers.S3fs(cfg), root, big=40 * MiB))
        r.check("rclone", peer_case(cfg, peers.Rclone(cfg), root))
        r.check("clients", clients_case(cfg, root))
        r.check("listing", listing_case(cfg))
        r.check("sink", sink_case(cfg, root))
    finally:
        left = [mp for mp in peers.fuse_mounts() if mp.startswith(root + "/")]
        if left:
            r.failed += 1
            print("FAIL: cleanup: still mounted: %s" % left)
        elif keep:
            print("# kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if r.failed else 0)


if __name__ == "__main__":
    main()
