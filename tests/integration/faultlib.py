"""faultlib.py - what the t_fault_*.py scenarios share beyond mountlib: a row in the scraper's
`jobs` table per job (through t_mount_pg's psql helpers), waiting for its upload status, and
the helper scripts of tests/with-env.sh. Python 3 standard library only."""
import json
import os
import subprocess
import sys
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402
from t_mount_pg import status_of  # noqa: E402,F401

job_folder, setup_table, sql, need_pg = ml.job_folder, ml.setup_jobs_table, ml.sql, ml.need_db


def new_job(name="fault scenario", output=None):
    """Insert a running job's row (output {"saveFiles": true} unless given); (uuid, folder)."""
    need_pg()
    setup_table()
    u = str(uuid.uuid4())
    sql("INSERT INTO jobs (id, name, status, output) VALUES (:'v1', :'v2', 'running', :'v3')",
        u, name, json.dumps(output or {"saveFiles": True}))
    return u, job_folder(u)


def pg_env(extra=None):
    """Mount variables for job status in PostgreSQL (completion polled every second)."""
    return dict({"DATABASE_URL": os.environ["DATABASE_URL"], "S3JOBFS_PG_POLL_SECONDS": "1"},
                **(extra or {}))


def upload_state(u):
    """The row's output->'uploadToS3' (a dict; {} when there is none yet)."""
    return json.loads(sql("SELECT coalesce(output->'uploadToS3', '{}') FROM jobs WHERE id = :'v1'",
                          u) or "{}")


def wait_status(u, want, timeout, what=""):
    """Wait until the row's uploadToS3.status is want; Failure naming the last state seen."""
    last = {}

    def reached():
        last.update(upload_state(u))
        return last.get("status") == want
    try:
        ml.wait_for(reached, timeout, "", interval=0.25)
    except ml.Failure:
        ml.fail("jobs row %s: uploadToS3.status not %r %s within %g s; last: %s"
                % (u, want, what, timeout, ml.short(last, 600)))
    return last


def env_tool(name, *args):
    """Run one of tests/with-env.sh's helper scripts (pg-stop, pg-start, s3rver-stop...)."""
    subprocess.run([ml.env_tool(name)] + list(args),
                   check=True, timeout=60, stdout=subprocess.DEVNULL)
