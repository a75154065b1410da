#!/usr/bin/python3
"""t_mount_secrets.py - secrets never show: not in logs (at debug level, -v), not in `ps`, not in
`s3jobfs status --json`, not in `s3jobfs check`, not in error messages, not in the database.

Every secret is a recognisable value starting with MARK (S3_SECRET_ACCESS_KEY,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, the password in DATABASE_URL); every output is
searched for MARK, so even a part of a secret (its first characters) counts. There is no
S3_SESSION_TOKEN: a session token comes with the AWS_* variables only.

Cases:
  uploads       (s3rver, which does not check signatures, so any secret works) an upload-on-
                close mount with S3_SECRET_ACCESS_KEY and a DATABASE_URL with a password
                (trust auth: any password works) writes a job, fsync()s it, `status --json`,
                `check`; then a mount with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
                AWS_SESSION_TOKEN does the same; then a mount whose DATABASE_URL points at a
                closed port (connection errors logged). Outputs searched: daemon logs, ps
                (args of every s3jobfs process), status, check, the s3jobfs_files ledger.
  container_credentials (s3rver) credentials from the ECS container endpoint
                (tests/fake_metadata.py, with a recognisable AWS_CONTAINER_AUTHORIZATION_TOKEN):
                the secret key and session token it hands out are searched for too; s3rver
                does not know their key id, so the uploads fail (InvalidAccessKeyId) and the
                error paths are searched as well.
  failed_upload (Swift, which checks signatures) S3_SECRET_ACCESS_KEY wrong: fsync() fails with
                EIO, `status --json` lists the failed files with S3's error, `check` fails with
                SignatureDoesNotMatch; the same outputs searched.
"""
import errno
import os
import subprocess
import sys
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402
import t_mount_pg as pg  # noqa: E402  (its jobs table and psql helpers)

T = ml.Suite("t_mount_secrets")
MARK = "Qx7v"


def secret(role):
    return MARK + role + uuid.uuid4().hex


def database_url(password, port=None):
    e = os.environ
    return "postgresql://%s:%s@127.0.0.1:%s/%s" % (e["PGUSER"], password, port or e["PGPORT"],
                                                   e["PGDATABASE"])


class Outputs:
    """Collects (what, text) of every output of a case, then searches them all for MARK."""

    def __init__(self, marks=(MARK,)):
        self.items = []
        self.marks = marks

    def add(self, what, text):
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        self.items.append((what, text))

    def add_mount(self, m, job_dir, what):
        """The mount's own outputs: ps args of its processes, status --json, check."""
        pids = [m.proc.pid] if m.proc else m.pids
        r = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "-p", ",".join(map(str, pids))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.add(what + ": ps", r.stdout)
        ml.check(str(pids[0]).encode() in r.stdout, "ps did not show the daemon: %r" % r.stdout)
        st = m.cmd("status", "--json", "--cache-dir", m.cache, check_rc=False)
        self.add(what + ": status --json", st.stdout)
        ml.check(os.path.basename(job_dir).encode() in st.stdout,
                 "status --json does not show the job: %r" % st.stdout[:300])
        self.add(what + ": check", m.cmd("check", "--env-file", "/dev/null", check_rc=False).stdout)
        return st

    def add_log(self, m, what):
        with open(m.log, "rb") as f:
            text = f.read()
        ml.check(b"level=debug" in text, "%s: the daemon log has no debug lines" % what)
        self.add(what + ": daemon log (-v)", text)

    def check(self):
        leaks = []
        for what, text in self.items:
            for mark in self.marks:
                i = text.find(mark)
                if i >= 0:
                    leaks.append("%s: ...%s..." % (what, text[max(0, i - 60):i + 40].replace("\n", "|")))
        ml.check(not leaks, "secrets shown in %d outputs: %s" % (len(leaks), " ;; ".join(leaks)))
        ml.check(len(self.items) >= 5, "only %d outputs searched" % len(self.items))


def write_job(m, n=5):
    """A job folder with a jobs row (so the job's status is written there): (job, dir, uuid)."""
    u = str(uuid.uuid4())
    pg.setup_table()
    pg.sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', 'secrets', 'running', "
           "'{\"saveFiles\": true}')", u)
    job = pg.job_folder(u)
    d = os.path.join(m.mnt, job)
    for i in range(n):
        ml.write_file(os.path.join(d, "f%d.json" % i), b'{"i": %d}' % i)
    return job, d, u


def database_text():
    """Everything s3jobfs wrote to the database: the jobs rows and its ledger."""
    return pg.sql("SELECT t::text FROM jobs t") + "\n" + pg.sql("SELECT t::text FROM s3jobfs_files t")


@T.case("uploads", servers=("s3rver",), timeout=180)
def uploads(ctx):
    out = Outputs()
    flavours = [
        ("S3_ variables", {"S3_SECRET_ACCESS_KEY": secret("s3sk"),
                           "DATABASE_URL": database_url(secret("pgpw"))}, "connected to postgresql"),
        ("AWS_ variables", {"S3_ACCESS_KEY_ID": "", "S3_SECRET_ACCESS_KEY": "",
                            "AWS_ACCESS_KEY_ID": os.environ["S3RVER_ACCESS_KEY_ID"],
                            "AWS_SECRET_ACCESS_KEY": secret("awssk"),
                            "AWS_SESSION_TOKEN": secret("token"),
                            "DATABASE_URL": database_url(secret("pgpw"))}, "connected to postgresql"),
        ("unreachable database", {"S3_SECRET_ACCESS_KEY": secret("s3sk"),
                                  "DATABASE_URL": database_url(secret("pgpw"), port=9)},
         "cannot connect to postgresql"),
    ]
    for n, (what, env, db_line) in enumerate(flavours):
        ctx.step("mount with %s" % what)
        m = ctx.mount(env=env, cache=os.path.join(ctx.tmp, "cache%d" % n),
                      mnt=os.path.join(ctx.tmp, "mnt%d" % n))
        job, d, u = write_job(m)
        ml.fsync_dir(d)
        ml.check(ctx.s3.exists(ctx.prefix + job + "/f0.json"), "%s: f0.json not in S3" % what)
        if "unreachable" not in what:
            ml.wait_for(lambda: pg.status_of(u), 30, "%s: no status in the job's row" % what)
        out.add_mount(m, d, what)
        m.umount()
        out.add_log(m, what)
        ml.check(db_line in out.items[-1][1], "%s: the log lacks %r" % (what, db_line))
    out.add("the database", database_text())
    out.check()


def expect_failed_fsync(d):
    try:
        ml.fsync_path(d)
    except OSError as e:
        ml.check(e.errno == errno.EIO, "fsync(): %s, expected EIO" % ml.errname(e))
        return
    ml.fail("fsync() of the job directory succeeded with credentials the server refuses")


def failing_upload(ctx, out, env, what, code):
    """Mount with env and write a job whose upload fails with S3's error code; collect ps,
    status --json (which must show code), check, then the log (which must too) and the
    database into out. Returns check's output."""
    m = ctx.mount(env=env)
    job, d, u = write_job(m, 3)
    ctx.step("fsync of the job directory (must fail)")
    expect_failed_fsync(d)
    st = out.add_mount(m, d, what)
    ml.check(code.encode() in st.stdout, "status --json lacks S3's error %s: %r" % (code, st.stdout[:600]))
    chk = out.items[-1][1]
    m.umount()
    out.add_log(m, what)
    ml.check(code in out.items[-1][1], "the log does not show the failed upload (%s)" % code)
    out.add("the database", database_text())
    return chk


@T.case("container_credentials", servers=("s3rver",), timeout=180)
def container_credentials(ctx):
    # the secret key and token fake_metadata.py hands out start with these
    out = Outputs((MARK, "fakeSecretKey", "fakeSessionToken"))
    auth = secret("ecsauth")
    fake = subprocess.Popen([sys.executable, os.path.join(ml.TOP, "tests", "fake_metadata.py"),
                             "--auth", auth, "--exit-on-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ctx.defer(lambda: (fake.kill(), fake.wait()))
    port = int(fake.stdout.readline())
    env = {"S3_ACCESS_KEY_ID": "", "S3_SECRET_ACCESS_KEY": "", "S3_MAX_RETRIES": "0",
           "S3JOBFS_TEST_ECS_BASE": "http://127.0.0.1:%d" % port,
           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/ecs/creds",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": auth,
           "DATABASE_URL": database_url(secret("pgpw"))}
    chk = failing_upload(ctx, out, env, "container credentials", "InvalidAccessKeyId")
    ml.check("credentials  from ECS container credentials" in chk,
             "check did not get the container credentials: %r" % chk[-600:])
    out.check()


@T.case("failed_upload", servers=("swift",), timeout=180)
def failed_upload(ctx):
    out = Outputs()
    env = {"S3_SECRET_ACCESS_KEY": secret("wrong"), "S3_MAX_RETRIES": "0",
           "DATABASE_URL": database_url(secret("pgpw"))}
    chk = failing_upload(ctx, out, env, "wrong secret", "SignatureDoesNotMatch")
    ml.check("SignatureDoesNotMatch" in chk and "S3_SECRET_ACCESS_KEY" in chk,
             "check does not explain the wrong secret: %r" % chk[-400:])
    out.check()


if __name__ == "__main__":
    T.main()
