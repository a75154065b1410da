"""peers.py - the filesystems and clients `make bench` measures s3jobfs against, for bench/bench.py.

Each FUSE peer (S3jobfs, S3fs, Rclone) mounts one bucket prefix with the same interface: mount()
starts the daemon in the foreground as a child in a session of its own (log in cfg['workdir'])
and returns once the mount is in /proc/self/mountinfo; unmount() unmounts the way the peer is
meant to be stopped (s3jobfs: `s3jobfs umount`, which drains its upload queue; the others:
fusermount3 -u), reaps the daemon with os.wait4() and reports its peak RSS. Every mount gets a
fresh cache directory, so reads after a remount are cold.

The plain clients are the yardsticks: Debian's AWS CLI (/usr/bin/aws, never an `aws` first on
PATH), and one curl process with --parallel and --aws-sigv4 (the server's raw limit, a minimal
client). Sink is an nginx on 127.0.0.1 that answers just enough of S3 for s3jobfs to upload
into it, to take the S3 server's own speed out of a measurement.

cfg is a dict: endpoint, bucket, access_key, secret_key, region, database_url (or None),
workdir (a temp dir this module makes subdirectories and files in), top (the repo root).
Python 3 standard library only. Errors raise PeerError with what failed and the log's end.
"""
import itertools
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import urllib.parse
import xml.etree.ElementTree as ET

AWS = "/usr/bin/aws"
CURL = "curl"
FUSERMOUNT = "fusermount3"
NGINX = "/usr/sbin/nginx"
MOUNT_TIMEOUT = 30
UNMOUNT_TIMEOUT = 120
_seq = itertools.count(1)          # makes every log, cache and config path of a run unique


class PeerError(Exception):
    """A peer or client did not do what was asked; the message says what and shows its log."""


def _next(workdir, stem):
    """A path under workdir that no other call returns: WORKDIR/STEM-N."""
    return os.path.join(workdir, "%s-%d" % (stem, next(_seq)))


def _tail(path, n):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def fuse_mounts():
    """{mountpoint: fstype} of every mount in /proc/self/mountinfo whose type starts 'fuse'."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, _, b = line.partition(" - ")
            fstype = b.split()[0]
            if fstype.startswith("fuse"):
                mp = a.split()[4]
                out[mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                      .replace("\\134", "\\")] = fstype
    return out


def _wait_reap(pid, timeout):
    """os.wait4(pid) polled until timeout seconds: (exit code or -signal, ru_maxrss KiB) or None."""
    deadline = time.monotonic() + timeout
    while True:
        p, status, ru = os.wait4(pid, os.WNOHANG)
        if p == pid:
            return os.waitstatus_to_exitcode(status), ru.ru_maxrss
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _vm_hwm(pid="self"):
    """VmHWM (peak RSS, KiB) of a process from /proc; 0 when it is gone or a zombie."""
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class _RssWatch:
    """The peak RSS of a child we spawned, in KiB. ru_maxrss from wait4() alone is not it: the
    kernel carries the RSS peak of the pre-exec image into it, and Popen's vfork/fork child runs
    in (a copy of) this Python process, so a daemon smaller than this process would be reported
    at this process's size. So: when ru_maxrss exceeds this process's own peak taken right after
    the spawn, it is the child's true peak; otherwise the child's VmHWM, sampled every 50 ms
    until it exits (only growth in its last 50 ms can be missed)."""

    def __init__(self, pid):
        self.pid = pid
        self.parent_hwm = _vm_hwm()
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            self.peak = max(self.peak, _vm_hwm(self.pid))
            if self.done.wait(0.05):
                return

    def result(self, ru_maxrss):
        """The child's peak RSS in KiB, given wait4()'s ru_maxrss once it was reaped."""
        self.done.set()
        self.thread.join()
        return ru_maxrss if ru_maxrss > self.parent_hwm else self.peak


def _run(argv, env=None, timeout=60):
    """Run argv; CompletedProcess with text stdout+stderr; PeerError when it does not end in time."""
    try:
        return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerError("'%s' did not return within %d s" % (" ".join(argv), timeout)) from None


def _base_env():
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": "/nonexistent", "LANG": "C.UTF-8"}


# ---------------------------------------------------------------------------------------------
# FUSE peers

class Peer:
    """One FUSE filesystem over S3. Subclasses fill _command() and may replace _stop()."""

    name = "peer"

    def __init__(self, cfg):
        self.cfg = cfg
        self.proc = None           # Popen of the foreground daemon while mounted
        self.pid = None
        self.mnt = None
        self.log = None
        self.rss = None            # _RssWatch of the daemon
        os.makedirs(cfg["workdir"], exist_ok=True)

    def _command(self, mnt, prefix):
        """(argv, env) that runs the daemon in the foreground for prefix on mnt."""
        raise NotImplementedError

    def _stop(self, timeout):
        """Ask the daemon to unmount and exit within timeout s (unmount() reaps it)."""
        self._fusermount(["-u"])

    def _fusermount(self, flags, tries=25):
        """fusermount3 FLAGS MNT, retried for a few seconds while the mount is busy."""
        r = None
        for _ in range(tries):
            r = _run([FUSERMOUNT] + flags + [self.mnt], timeout=30)
            if r.returncode == 0 or os.path.realpath(self.mnt) not in fuse_mounts():
                return
            time.sleep(0.2)
        raise PeerError("%s %s %s: %s" % (FUSERMOUNT, " ".join(flags), self.mnt, r.stdout.strip()))

    def mount(self, mnt, prefix):
        """Mount bucket/prefix on mnt (made if missing); returns once it is a FUSE mount."""
        if self.proc is not None:
            raise PeerError("%s is already mounted on %s" % (self.name, self.mnt))
        os.makedirs(mnt, exist_ok=True)
        self.mnt = os.path.realpath(mnt)
        if self.mnt in fuse_mounts():
            raise PeerError("%s is already a FUSE mount" % self.mnt)
        argv, env = self._command(self.mnt, prefix)
        self.log = _next(self.cfg["workdir"], self.name) + ".log"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(argv, env=env, cwd=self.cfg["workdir"],
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.rss = _RssWatch(self.pid)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while self.mnt not in fuse_mounts():
            rc = self.proc.poll()
            if rc is not None or time.monotonic() > deadline:
                what = ("exited %d before mounting" % rc if rc is not None
                        else "not mounted after %d s" % MOUNT_TIMEOUT)
                self._force_down()
                raise PeerError("%s on %s %s; log %s:\n%s"
                                % (self.name, self.mnt, what, self.log, self.log_tail()))
            time.sleep(0.05)

    def unmount(self, timeout=UNMOUNT_TIMEOUT):
        """Unmount cleanly and reap the daemon: {"rss_kib": its peak RSS (see _RssWatch),
        "rc": exit code or -signal}.
        When it has not exited within timeout seconds: kill -9, lazy unmount, PeerError."""
        if self.proc is None:
            raise PeerError("%s is not mounted" % self.name)
        t0 = time.monotonic()
        try:
            self._stop(timeout)
        except PeerError as e:
            if self.proc.poll() is not None or time.monotonic() > t0 + timeout:
                self._force_down()
                raise PeerError("%s: %s; log:\n%s" % (self.name, e, self.log_tail())) from None
        got = _wait_reap(self.pid, max(1.0, timeout - (time.monotonic() - t0)))
        if got is None:
            self._force_down()
            raise PeerError("%s (pid %d) did not exit within %d s of unmounting %s; killed; log:\n%s"
                            % (self.name, self.pid, timeout, self.mnt, self.log_tail()))
        rc, ru_maxrss = got
        self.proc.returncode = rc  # reaped here, not by Popen
        self.proc = None
        rss = self.rss.result(ru_maxrss)
        if self.mnt in fuse_mounts():
            self._fusermount(["-uz"])
            raise PeerError("%s exited %d but %s was still mounted (lazily unmounted now)"
                            % (self.name, rc, self.mnt))
        return {"rss_kib": rss, "rc": rc}

    def _force_down(self):
        """Cleanup whatever the state: kill -9 the daemon's session, reap it, lazy unmount."""
        if self.proc is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
            self.proc = None
        if self.rss is not None:
            self.rss.done.set()
        if self.mnt and self.mnt in fuse_mounts():
            _run([FUSERMOUNT, "-uz", self.mnt], timeout=30)

    def close(self):
        """For `finally:` blocks: whatever is still mounted or running goes, without questions."""
        self._force_down()

    def log_tail(self, n=20):
        return _tail(self.log, n) if self.log else ""


class S3jobfs(Peer):
    """s3jobfs itself: `s3jobfs mount -f` (-v with verbose) on a fresh cache dir, configured by environment
    (as tests/integration/mountlib.py does). S3JOBFS_DRAIN_TIMEOUT defaults to an hour here, so
    unmount() measures a complete drain (pass a longer unmount timeout for big runs)."""

    name = "s3jobfs"

    def __init__(self, cfg, on_completion=True, env=None, verbose=False):
        super().__init__(cfg)
        self.verbose = verbose     # -v: debug log lines per S3 request (slower)
        self.bin = os.path.join(cfg["top"], "s3jobfs")
        self.on_completion = on_completion
        self.extra_env = dict(env or {})
        self.cache = None
        self.env = None

    def _command(self, mnt, prefix):
        c = self.cfg
        self.cache = _next(c["workdir"], "cache")
        os.makedirs(self.cache, mode=0o700)
        env = _base_env()
        env.update({
            "AWS_EC2_METADATA_DISABLED": "true",
            "S3_ENABLED": "true", "S3_BUCKET_NAME": c["bucket"], "S3_ENDPOINT": c["endpoint"],
            "S3_FORCE_PATH_STYLE": "true", "S3_REGION": c["region"],
            "S3_ACCESS_KEY_ID": c["access_key"], "S3_SECRET_ACCESS_KEY": c["secret_key"],
            "S3_PREFIX": prefix, "S3_UPLOAD_ON_COMPLETION": "true" if self.on_completion else "false",
            "S3JOBFS_CACHE_DIR": self.cache, "S3JOBFS_DRAIN_TIMEOUT": "3600",
        })
        if c.get("database_url"):
            env["DATABASE_URL"] = c["database_url"]
        env.update(self.extra_env)
        self.env = env
        return ([self.bin, "mount", "-f"] + (["-v"] if self.verbose else [])
                + ["--env-file", "/dev/null", "--cache-dir", self.cache, mnt], env)

    def cli(self, *argv, timeout=60):
        """`s3jobfs ARGV...` with the mount's environment: CompletedProcess (text, stderr in
        stdout); PeerError when it exits non-zero."""
        r = _run([self.bin] + list(argv), env=self.env, timeout=timeout)
        if r.returncode != 0:
            raise PeerError("'s3jobfs %s' exited %d: %s"
                            % (" ".join(argv), r.returncode, r.stdout.strip()[-600:]))
        return r

    def _stop(self, timeout):
        # drains the queue, unmounts, waits for the daemon (it stays our child: we reap it)
        self.cli("umount", self.mnt, timeout=timeout)

    def complete(self, job_folder):
        """`s3jobfs complete --cache-dir CACHE JOB_FOLDER` (a top-level folder's name); returns
        when the daemon acknowledged (the uploads then run)."""
        self.cli("complete", "--cache-dir", self.cache, job_folder)

    def status(self):
        """`s3jobfs status --json` of this mount, as text (peers_selftest.py reads it)."""
        return self.cli("status", "--cache-dir", self.cache, "--json").stdout


class S3fs(Peer):
    """Debian's s3fs-fuse (1.90), foreground. Options and why:
    bucket:/path   mounts the prefix (s3fs's syntax for a sub-path; no trailing slash);
    url, use_path_request_style, endpoint=REGION   the local server, path style, SigV4 region;
    passwd_file    KEY:SECRET in a 0600 file in workdir (s3fs refuses other modes);
    no use_cache   s3fs's default: no local object cache, only temp files for pending writes;
    tmpdir         those temp files under workdir instead of /tmp;
    dbglevel=warn  errors and warnings in the log, not every request.
    Multipart: s3fs's defaults (files above 25 MB go multipart in 10 MB parts, 5 at a time);
    s3rver handles those, so no nomultipart."""

    name = "s3fs"

    def __init__(self, cfg, options=None):
        super().__init__(cfg)
        self.options = list(options or [])

    def _command(self, mnt, prefix):
        c = self.cfg
        pw = _next(c["workdir"], "s3fs-passwd")
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("%s:%s\n" % (c["access_key"], c["secret_key"]))
        tmp = _next(c["workdir"], "s3fs-tmp")
        os.makedirs(tmp)
        src = c["bucket"] + (":/" + prefix.strip("/") if prefix.strip("/") else "")
        opts = ["url=" + c["endpoint"], "use_path_request_style", "endpoint=" + c["region"],
                "passwd_file=" + pw, "tmpdir=" + tmp, "dbglevel=warn"] + self.options
        return ["s3fs", src, mnt, "-f", "-o", ",".join(opts)], _base_env()


class Rclone(Peer):
    """Debian's rclone (1.60) `rclone mount` with a write cache that uploads right after close
    (--vfs-cache-mode writes --vfs-write-back 0s), configured only through RCLONE_CONFIG_BENCH_*
    variables (--config "" keeps the config in memory: nothing in $HOME is read). A remote-control
    listener on a free 127.0.0.1 port lets wait_idle() see the upload queue. rclone's unmount
    does not wait for queued uploads, so unmount() waits for wait_idle() first."""

    name = "rclone"
    REMOTE = "BENCH"

    def __init__(self, cfg, options=None):
        super().__init__(cfg)
        self.options = list(options or [])
        self.rc_addr = None
        self.env = None

    def _command(self, mnt, prefix):
        c = self.cfg
        cache = _next(c["workdir"], "rclone-cache")
        os.makedirs(cache)
        self.rc_addr = "127.0.0.1:%d" % free_port()
        r = "RCLONE_CONFIG_%s_" % self.REMOTE
        env = _base_env()
        env.update({r + "TYPE": "s3", r + "PROVIDER": "Other", r + "ENDPOINT": c["endpoint"],
                    r + "ACCESS_KEY_ID": c["access_key"], r + "SECRET_ACCESS_KEY": c["secret_key"],
                    r + "REGION": c["region"], r + "FORCE_PATH_STYLE": "true",
                    r + "NO_CHECK_BUCKET": "true"})
        self.env = env
        path = c["bucket"] + ("/" + prefix.strip("/") if prefix.strip("/") else "")
        return (["rclone", "--config", "", "mount", "%s:%s" % (self.REMOTE, path), mnt,
                 "--vfs-cache-mode", "writes", "--vfs-write-back", "0s", "--cache-dir", cache,
                 "--rc", "--rc-addr", self.rc_addr, "--rc-no-auth", "--log-level", "NOTICE"]
                + self.options, env)

    def _vfs_stats(self):
        """rclone's `vfs/stats` over its remote-control HTTP listener."""
        req = urllib.request.Request("http://%s/vfs/stats" % self.rc_addr, data=b"{}",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except (OSError, ValueError) as e:
            raise PeerError("rclone vfs/stats at %s: %s" % (self.rc_addr, e)) from None

    def wait_idle(self, timeout):
        """Wait until rclone's write-back queue is empty (nothing queued or uploading);
        PeerError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            d = self._vfs_stats().get("diskCache", {})
            if d.get("uploadsInProgress", 0) == 0 and d.get("uploadsQueued", 0) == 0:
                return
            if time.monotonic() > deadline:
                raise PeerError("rclone still uploading after %g s: %s" % (timeout, d))
            time.sleep(0.05)

    def unmount(self, timeout=UNMOUNT_TIMEOUT):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.wait_idle(timeout)
            except PeerError:
                self._force_down()
                raise
        return super().unmount(timeout)


# ---------------------------------------------------------------------------------------------
# Plain clients

def _aws_env(cfg, s3_config=None):
    """Environment for /usr/bin/aws: credentials and region from cfg, a config file in workdir
    that asks for path-style addressing (plus s3_config, e.g. {"max_concurrent_requests": 32}),
    no shared credentials file, no instance metadata."""
    conf = _next(cfg["workdir"], "aws-config")
    lines = ["[default]", "s3 =", "  addressing_style = path"]
    lines += ["  %s = %s" % kv for kv in sorted((s3_config or {}).items())]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = _base_env()
    env.update({"AWS_ACCESS_KEY_ID": cfg["access_key"], "AWS_SECRET_ACCESS_KEY": cfg["secret_key"],
                "AWS_DEFAULT_REGION": cfg["region"], "AWS_CONFIG_FILE": conf,
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(cfg["workdir"], "no-such-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
                "HOME": cfg["workdir"]})
    return env


def aws_cp_recursive(cfg, src_dir, prefix, s3_config=None):
    """`aws s3 cp --recursive SRC_DIR s3://bucket/prefix`: {"seconds", "rss_kib" (its peak
    RSS, see _RssWatch), "rc"}.
    PeerError (with its stderr) when it fails."""
    err = _next(cfg["workdir"], "aws") + ".log"
    argv = [AWS, "s3", "cp", "--recursive", "--only-show-errors", "--no-progress",
            "--endpoint-url", cfg["endpoint"], src_dir, "s3://%s/%s" % (cfg["bucket"], prefix)]
    with open(err, "wb") as ef:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, env=_aws_env(cfg, s3_config), stdin=subprocess.DEVNULL,
                             stdout=ef, stderr=ef)
        watch = _RssWatch(p.pid)
        _, status, ru = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    rss = watch.result(ru.ru_maxrss)
    if rc != 0:
        raise PeerError("aws s3 cp exited %d: %s" % (rc, _tail(err, 20)))
    return {"seconds": seconds, "rss_kib": rss, "rc": rc}


def _url(cfg, key="", query=""):
    """Path-style URL of bucket/key; the key percent-encoded except '/'."""
    u = "%s/%s" % (cfg["endpoint"].rstrip("/"), cfg["bucket"])
    if key:
        u += "/" + urllib.parse.quote(key, safe="/~")
    return u + ("?" + query if query else "")


def _cq(s):
    """A value for a curl -K config file: double-quoted, backslash and quote escaped."""
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def _curl_batch(cfg, ops, parallel):
    """One curl process runs every op (a list of (option, value) pairs, one transfer each) with
    up to parallel transfers at once, signed with SigV4. Wall seconds; PeerError unless every
    transfer got a 2xx."""
    if not ops:
        return 0.0
    common = [("user", "%s:%s" % (cfg["access_key"], cfg["secret_key"])),
              ("aws-sigv4", "aws:amz:%s:s3" % cfg["region"]), ("header", "Expect:"),
              ("header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"),
              ("write-out", "%{http_code} %{url_effective}\\n")]
    fd, conf = tempfile.mkstemp(prefix="curl-", suffix=".conf", dir=cfg["workdir"])
    try:
        with os.fdopen(fd, "w") as f:
            f.write("parallel\nparallel-max = %d\n" % parallel)
            for i, op in enumerate(ops):
                if i:
                    f.write("next\n")
                for k, v in common + op:
                    f.write(k + "\n" if v is None else "%s = %s\n" % (k, _cq(v)))
        t0 = time.monotonic()
        r = subprocess.run([CURL, "-sS", "-K", conf], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        seconds = time.monotonic() - t0
    finally:
        os.unlink(conf)
    codes = [ln.split(" ", 1) for ln in r.stdout.splitlines() if ln[:3].isdigit()]
    bad = [c for c in codes if not c[0].startswith("2")]
    if r.returncode != 0 or bad or len(codes) != len(ops):
        raise PeerError("curl: exit %d, %d of %d transfers answered, failed: %s; %s"
                        % (r.returncode, len(codes), len(ops), bad[:3], r.stderr.strip()[-400:]))
    return seconds


def curl_put_parallel(cfg, items, parallel=16):
    """PUT every (local_path, key) of items with one curl process, parallel transfers at once:
    the server's raw limit with a minimal client. Wall seconds."""
    return _curl_batch(cfg, [[("upload-file", path), ("url", _url(cfg, key)),
                              ("output", "/dev/null")] for path, key in items], parallel)


def curl_get_ranged(cfg, key, size, part=8 << 20, parallel=8, out="/dev/null"):
    """GET all size bytes of key as parallel ranged GETs of part bytes into out (/dev/null:
    the parts are not assembled). Wall seconds."""
    ops = [[("url", _url(cfg, key)), ("range", "%d-%d" % (o, min(o + part, size) - 1)),
            ("output", out)] for o in range(0, size, part)]
    return _curl_batch(cfg, ops, parallel)


def curl_get(cfg, key, out="/dev/null"):
    """One plain GET of key into out. Wall seconds."""
    return _curl_batch(cfg, [[("url", _url(cfg, key)), ("output", out)]], 1)


def list_keys(cfg, prefix):
    """[(key, size)] of every object under prefix, in key order. ListObjects version 1 pages
    with markers, not V2: s3rver 3.7.1 on Node 20 answers 500 to the second page of a
    ListObjectsV2 (its continuation token needs DES, gone from OpenSSL 3)."""
    out, marker = [], None
    while True:
        q = [("prefix", prefix), ("max-keys", "1000")] + ([("marker", marker)] if marker else [])
        r = subprocess.run([CURL, "-sS", "--fail", "--user", "%s:%s" % (cfg["access_key"],
                            cfg["secret_key"]), "--aws-sigv4", "aws:amz:%s:s3" % cfg["region"],
                            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                            _url(cfg, query=urllib.parse.urlencode(q, quote_via=urllib.parse.quote))],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if r.returncode != 0:
            raise PeerError("list %s: curl exit %d: %s"
                            % (prefix, r.returncode, r.stderr.decode(errors="replace").strip()))
        root = ET.fromstring(r.stdout)
        for el in root.iter():                  # drop the namespace
            el.tag = el.tag.rpartition("}")[2]
        page = [(c.findtext("Key"), int(c.findtext("Size"))) for c in root.findall("Contents")]
        out += page
        marker = root.findtext("NextMarker") or (page[-1][0] if page else None)
        if root.findtext("IsTruncated") != "true" or not marker:
            return out


def put_many_empty(cfg, prefix, n, parallel=16):
    """n 1-byte objects prefix+"f00000".. (for the listing test). Wall seconds of the PUTs."""
    one = os.path.join(cfg["workdir"], "one-byte")
    with open(one, "wb") as f:
        f.write(b"x")
    return curl_put_parallel(cfg, [(one, "%sf%05d" % (prefix, i)) for i in range(n)], parallel)


def free_port():
    """A TCP port on 127.0.0.1 free right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Sink

_ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML = '<?xml version="1.0" encoding="UTF-8"?>\\n'

# The conf's S3 dispatch: which operation a request is, from its method and query names.
_SINK_CONF = r"""
daemon off;
master_process on;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    client_max_body_size 0;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    default_type application/xml;

    map $args $q_uploads  { "~(^|&)uploads(=|&|$)" 1; default 0; }
    map $args $q_uploadid { "~(^|&)uploadId="      1; default 0; }
    map $args $q_delete   { "~(^|&)delete(=|&|$)"  1; default 0; }
    map "$request_method $q_uploads$q_uploadid$q_delete" $s3op {
        default    list_objects;
        "~^PUT "   put;
        "~^HEAD "  head;
        "~^DELETE " delete;
        "POST 100" initiate;
        "~^POST .1" complete;
        "POST 001" delete_objects;
        "GET 100"  list_uploads;
        "~^GET .1" list_parts;
    }

    server {
        listen 127.0.0.1:%(port)d;
        location / {
            if ($s3op = put) {
                add_header ETag '%(etag)s' always;
                return 200 "";
            }
            if ($s3op = head) {
                add_header ETag '%(etag)s' always;
                return 200 "";
            }
            if ($s3op = delete) {
                return 204;
            }
            if ($s3op = initiate) {
                return 200 '%(xml)s<InitiateMultipartUploadResult xmlns="%(ns)s"><Bucket>sink</Bucket><Key>sink</Key><UploadId>sink-upload-1</UploadId></InitiateMultipartUploadResult>';
            }
            if ($s3op = complete) {
                return 200 '%(xml)s<CompleteMultipartUploadResult xmlns="%(ns)s"><Location>sink</Location><Bucket>sink</Bucket><Key>sink</Key><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e-1&quot;</ETag></CompleteMultipartUploadResult>';
            }
            if ($s3op = delete_objects) {
                return 200 '%(xml)s<DeleteResult xmlns="%(ns)s"></DeleteResult>';
            }
            if ($s3op = list_uploads) {
                return 200 '%(xml)s<ListMultipartUploadsResult xmlns="%(ns)s"><Bucket>sink</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker></NextKeyMarker><NextUploadIdMarker></NextUploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>';
            }
            if ($s3op = list_parts) {
                return 200 '%(xml)s<ListPartsResult xmlns="%(ns)s"><Bucket>sink</Bucket><Key>sink</Key><UploadId>sink-upload-1</UploadId><PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>0</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated></ListPartsResult>';
            }
            return 200 '%(xml)s<ListBucketResult xmlns="%(ns)s"><Name>sink</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>';
        }
    }
}
"""


class Sink:
    """A minimal, fast S3 sink: nginx on a free 127.0.0.1 port that accepts every upload and
    forgets it (PUT, multipart) and answers listings, HEAD and DELETE with empty successes.
    Signatures are not checked; any bucket name works. Its prefix dir, conf, pid and logs are
    in WORKDIR/sink-N; nginx runs in the foreground (daemon off) as our child."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.dir = None
        self.proc = None
        self.endpoint = None

    def start(self):
        """Start nginx; returns the endpoint "http://127.0.0.1:PORT" once it accepts connections."""
        self.dir = _next(self.workdir, "sink")
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.makedirs(os.path.join(self.dir, "logs"))  # nginx opens prefix/logs/error.log first
        last = ""
        for _ in range(5):                           # the free port may be taken meanwhile
            port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(_SINK_CONF % {"dir": self.dir, "port": port, "etag": _ETAG,
                                      "xml": _XML, "ns": _XMLNS})
            log = open(os.path.join(self.dir, "stderr.log"), "ab")
            with log:
                self.proc = subprocess.Popen([NGINX, "-p", self.dir + "/", "-c", conf],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    self.endpoint = "http://127.0.0.1:%d" % port
                    return self.endpoint
                except OSError:
                    time.sleep(0.05)
            last = _tail(os.path.join(self.dir, "stderr.log"), 10) + _tail(
                os.path.join(self.dir, "error.log"), 10)
            self.stop()
        raise PeerError("sink: nginx did not start: %s" % last)

    def stop(self):
        """Stop nginx (fast shutdown) and reap it."""
        if self.proc is None:
            return
        try:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
