#!/usr/bin/python3
"""t_mount_security.py - who can reach what: the cache dir, the control socket, the mount.

Run as root; the other user is `nobody` (setpriv --reuid/--regid/--clear-groups). SKIP when
not root or setpriv/nobody are missing.

Cases (s3rver):
  cache_perms        a cache dir made 0755 beforehand is 0700 once mounted; the control socket
                     is 0600; no other file directly in the cache dir (journal, lock, log) is
                     readable or writable by group or others. Staged files under data/ keep the
                     mode the writer gave them (the design: data/ is inside the 0700 dir, so
                     they are still out of reach; the case checks nobody cannot read one).
  ctl_other_uid      with the cache dir opened up (0711) and the socket 0666, so nothing but the
                     daemon's SO_PEERCRED check stands in the way, `s3jobfs complete` and
                     `s3jobfs status` run as nobody exit 1 with a message (not killed by
                     SIGPIPE when the daemon hangs up; status says it was refused even with the
                     job's row in PostgreSQL to fall back to), the job stays unuploaded, and the
                     daemon logs the refusal; the same `complete` as root then uploads it.
  no_allow_other     by default the mount's options lack allow_other and nobody gets EACCES on
                     stat() of the mount root (in a 0755 parent); with `-o allow_other` the
                     same stat() succeeds (so the check can tell the two apart).
"""
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_security")


def nobody():
    """argv prefix that runs a command as nobody; Skip when that cannot be done here."""
    if os.geteuid() != 0:
        raise ml.Skip("needs root to run a client as another user")
    if not shutil.which("setpriv"):
        raise ml.Skip("setpriv (util-linux) is missing")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise ml.Skip("no user 'nobody'")
    return ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--clear-groups", "--"]


def open_dir(ctx, name):
    """A 0755 directory outside ctx.tmp (which is 0700), removed after the case."""
    d = tempfile.mkdtemp(prefix="s3jobfs-%s-" % name)
    os.chmod(d, 0o755)
    ctx.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def as_nobody(argv, **kw):
    return subprocess.run(nobody() + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60, **kw)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@T.case("cache_perms", timeout=90)
def cache_perms(ctx):
    nobody()
    cache = os.path.join(ctx.tmp, "cache")
    os.makedirs(cache)
    os.chmod(cache, 0o755)
    m = ctx.mount(cache=cache)
    job = ml.job_name()
    ml.write_file(os.path.join(m.mnt, job, "public.json"), b"{}")
    os.chmod(os.path.join(m.mnt, job, "public.json"), 0o644)
    ml.check(mode(cache) == 0o700, "cache dir mode %o, expected 700" % mode(cache))
    sock = os.path.join(cache, "ctl.sock")
    ml.check(stat.S_ISSOCK(os.lstat(sock).st_mode) and mode(sock) == 0o600,
             "ctl.sock mode %o, expected a 600 socket" % mode(sock))
    loose = ["%s (%o)" % (n, mode(os.path.join(cache, n))) for n in os.listdir(cache)
             if n != "data" and not os.path.isdir(os.path.join(cache, n))
             and mode(os.path.join(cache, n)) & 0o077]
    ml.check(not loose, "files in the cache dir open to group/others: %s" % loose)
    staged = os.path.join(cache, "data", job, "public.json")
    ml.check(os.path.exists(staged), "test assumption: staged file at %s" % staged)
    print("# staged file %s has mode %o (the writer's; data/ is %o, inside the 0700 cache dir)"
          % (staged, mode(staged), mode(os.path.join(cache, "data"))))
    r = as_nobody(["cat", staged])
    ml.check(r.returncode != 0, "nobody read a staged file: %r" % r.stdout[:200])
    m.umount()


@T.case("ctl_other_uid", timeout=120)
def ctl_other_uid(ctx):
    nobody()
    bindir = open_dir(ctx, "bin")
    shutil.copy2(ml.BIN, os.path.join(bindir, "s3jobfs"))
    binary = os.path.join(bindir, "s3jobfs")
    m = ctx.mount(on_completion=True, cache=os.path.join(open_dir(ctx, "cache"), "cache"))
    job = ml.job_name()
    ml.write_file(os.path.join(m.mnt, job, "a.json"), b'{"a": 1}')
    key = ctx.prefix + job + "/a.json"
    if "DATABASE_URL" in os.environ:
        # a row status could fall back to: a refused `status` must still fail, not show it
        ml.setup_jobs_table()
        ml.sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'refused', 'running', "
               "'{\"uploadToS3\": {\"status\": \"pending\"}}') ON CONFLICT DO NOTHING", job[16:])
    # only the daemon's own check is left: the cache dir passable, the socket writable by all
    os.chmod(m.cache, 0o711)
    os.chmod(os.path.join(m.cache, "ctl.sock"), 0o666)
    for argv in (["complete", "--cache-dir", m.cache, job], ["status", "--json", "--cache-dir", m.cache]):
        r = as_nobody([binary] + argv, cwd="/")
        # refused with a message and exit 1, not killed (e.g. by SIGPIPE: a negative status)
        ml.check(r.returncode == 1 and r.stdout.startswith(b"s3jobfs: "),
                 "'s3jobfs %s' as nobody: exit %d, output %r; expected exit 1 with a message"
                 % (argv[0], r.returncode, r.stdout[:300]))
        if argv[0] == "status":
            ml.check(b"refused" in r.stdout, "'s3jobfs status' as nobody does not say it was "
                     "refused: %r" % r.stdout[:300])
        print("# as nobody, s3jobfs %s: exit %d: %s" % (argv[0], r.returncode,
                                                      r.stdout.decode(errors="replace").strip()[:200]))
    ml.check(b"refused a caller" in open(m.log, "rb").read(), "the daemon did not log a refusal")
    os.chmod(m.cache, 0o700)
    os.chmod(os.path.join(m.cache, "ctl.sock"), 0o600)
    ml.check(not ctx.s3.exists(key), "%s uploaded after nobody's 'complete'" % key)
    m.complete(job)
    ml.wait_for(lambda: ctx.s3.exists(key), 30, "%s not uploaded after root's 'complete'" % key)
    m.umount()


def stat_as_nobody(path):
    return as_nobody(["stat", "-c", "%F", path])


def mount_options(mnt):
    """The mount's options and its superblock options (sets) from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, _, b = line.partition(" - ")
            if a.split()[4] == mnt:
                found.append(set(a.split()[5].split(",")) | set(b.split()[2].split(",")))
    ml.check(len(found) == 1, "%d mountinfo lines for %s" % (len(found), mnt))
    return found[0]


@T.case("no_allow_other", timeout=120)
def no_allow_other(ctx):
    nobody()
    top = open_dir(ctx, "mnt")
    for n, extra in enumerate(([], ["-o", "allow_other"])):
        mnt = os.path.join(top, "m%d" % n)
        os.makedirs(mnt)
        os.chmod(mnt, 0o755)
        m = ctx.mount(cache=os.path.join(ctx.tmp, "cache%d" % n), mnt=mnt, args=extra)
        opts = mount_options(mnt)
        r = stat_as_nobody(mnt)
        if not extra:
            ml.check("allow_other" not in opts, "allow_other set by default: %s" % sorted(opts))
            ml.check(r.returncode != 0 and b"Permission denied" in r.stdout,
                     "nobody's stat of the mount: exit %d %r, expected Permission denied"
                     % (r.returncode, r.stdout))
        else:
            ml.check("allow_other" in opts, "-o allow_other not in the options: %s" % sorted(opts))
            ml.check(r.returncode == 0, "with -o allow_other nobody's stat failed: %r" % r.stdout)
        m.umount()


if __name__ == "__main__":
    T.main()
