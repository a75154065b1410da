#!/usr/bin/env python3
"""fake_metadata.py - a loopback stand-in for the ECS credentials endpoint and EC2 IMDSv2.

Listens on 127.0.0.1 on a free port, prints the port as the first line of stdout, then serves
until killed (with --exit-on-eof also when its stdin reaches end of file, so it never outlives
the test that started it and holds the pipe's other end).
Every credentials document it hands out has the next AccessKeyId (ASIATEST0001, ASIATEST0002,
...) and an Expiration --ttl seconds from now, so a test sees when a refresh happened.

  GET  /ecs/creds        ECS credentials; with --auth TOKEN the Authorization header must match
  GET  /ecs/slow         answers nothing for --slow seconds (client timeouts)
  PUT  /latest/api/token IMDSv2 session token; needs X-aws-ec2-metadata-token-ttl-seconds
  GET  /latest/meta-data/iam/security-credentials/[ROLE]
                         role name, then its credentials; needs X-aws-ec2-metadata-token
  GET  /_stats           JSON: {"METHOD /path": count, ..., "401": refusals} (not counted)

Python 3 standard library only.
"""
import argparse
import datetime
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREDS_PATH = "/latest/meta-data/iam/security-credentials/"


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.counts = {}
        self.issued = 0
        self.tokens = set()

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def next_creds(self, with_code):
        with self.lock:
            self.issued += 1
            n = self.issued
        exp = datetime.datetime.now(datetime.timezone.utc) + \
            datetime.timedelta(seconds=self.args.ttl)
        doc = {
            "AccessKeyId": "ASIATEST%04d" % n,
            "SecretAccessKey": "fakeSecretKey/%04d+notReal" % n,
            "Token": "fakeSessionToken%04d" % n + "x" * 200,
            "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if with_code:
            doc.update({"Code": "Success", "Type": "AWS-HMAC",
                        "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        else:
            doc["RoleArn"] = "arn:aws:iam::123456789012:role/" + self.args.role
        return doc


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-metadata/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        if status == 401:
            self.server.state.count("401")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def reply_json(self, doc):
        self.reply(200, json.dumps(doc), "application/json")

    def do_PUT(self):
        st = self.server.state
        st.count("PUT " + self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path != "/latest/api/token":
            return self.reply(404, "not found")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.reply(400, "missing or invalid X-aws-ec2-metadata-token-ttl-seconds")
        token = secrets.token_urlsafe(32)
        with st.lock:
            st.tokens.add(token)
        self.reply(200, token)

    def do_GET(self):
        st = self.server.state
        if self.path == "/_stats":
            with st.lock:
                doc = dict(st.counts)
            return self.reply_json(doc)
        st.count("GET " + self.path)
        if self.path.startswith("/ecs/"):
            return self.ecs()
        if self.path.startswith(CREDS_PATH):
            return self.imds()
        self.reply(404, "not found")

    def ecs(self):
        args = self.server.state.args
        if self.path == "/ecs/slow":
            time.sleep(args.slow)
            return self.reply(503, "too late")
        if self.path != "/ecs/creds":
            return self.reply(404, "not found")
        if args.auth is not None and self.headers.get("Authorization") != args.auth:
            return self.reply(401, '{"code":"Unauthorized"}', "application/json")
        self.reply_json(self.server.state.next_creds(False))

    def imds(self):
        st = self.server.state
        with st.lock:
            ok = self.headers.get("X-aws-ec2-metadata-token") in st.tokens
        if not ok:
            return self.reply(401, "")
        role = self.path[len(CREDS_PATH):]
        if role == "":
            return self.reply(200, st.args.role)
        if role != st.args.role:
            return self.reply(404, "not found")
        self.reply_json(st.next_creds(True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auth", help="required ECS Authorization header value")
    ap.add_argument("--ttl", type=int, default=3600, help="seconds until Expiration")
    ap.add_argument("--role", default="s3jobfs-role", help="IMDS role name")
    ap.add_argument("--slow", type=float, default=30, help="seconds /ecs/slow waits")
    ap.add_argument("--exit-on-eof", action="store_true", help="stop when stdin closes")
    args = ap.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(args)
    print(srv.server_address[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except OSError:
            pass
        srv.shutdown()

    if args.exit_on_eof:
        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
