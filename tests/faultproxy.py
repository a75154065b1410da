#!/usr/bin/env python3
"""faultproxy.py - an HTTP proxy between s3jobfs and a local S3 server that injects faults.

It reads each request whole (keep-alive, Content-Length or chunked bodies), counts it under
(method, key) and then does what the first matching rule says, else forwards it unchanged
(Host and every other header as sent, so SigV4 signatures stay valid on Swift) over a
keep-alive connection of its own to the upstream server:

  pass    forward                          500    answer 500 InternalError (S3 XML error body)
  503     answer 503 SlowDown (S3 XML)     drop   close the connection without an answer
  reset   close with RST (SO_LINGER 0)     cut    forward, send the first half of the
  stall   answer nothing for `seconds`             answer's bytes, then close
          (default: until the rule is      delay  wait `seconds`, then forward
          cleared or the proxy stops), then close

A rule matches a request by method, a regular expression searched in the key (the path after
/bucket/, unquoted) and one searched in the query string; `times` limits how many requests
it takes, `rate` is the chance that a matching request takes it (seeded random). Rules are
tried in order. down() closes the listening socket (new connections are refused) and resets
every open connection; up() listens again on the same port.

Imported (mountlib.Ctx.fault_proxy() starts one per case): FaultProxy(upstream).start(), then
add_rule(), error_rate(), clear(), down(), up(), count(), counts(), injected(), stop().
Standalone, for manual runs: faultproxy.py --upstream http://127.0.0.1:PORT [--port N]
[--control-port N]; the control port takes POST /rules (JSON list of add_rule() arguments,
replacing the rules), POST /down, POST /up, POST /reset-counts, GET /counts.
Python 3 standard library only.
"""
import argparse
import http.client
import json
import random
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTIONS = ("pass", "500", "503", "drop", "reset", "cut", "stall", "delay")
ERRORS = {"500": ("Internal Server Error", "InternalError",
                  "We encountered an internal error. Please try again."),
          "503": ("Slow Down", "SlowDown", "Please reduce your request rate.")}


class Rule:
    def __init__(self, action, key=None, query=None, method=None, times=None, rate=1.0,
                 seconds=None):
        if action not in ACTIONS:
            raise ValueError("unknown action %r (one of %s)" % (action, ", ".join(ACTIONS)))
        self.action, self.method, self.times, self.rate, self.seconds = \
            action, method, times, rate, seconds
        self.key = re.compile(key) if key else None
        self.query = re.compile(query) if query else None

    def matches(self, method, key, query):
        return ((self.method is None or self.method == method)
                and (self.key is None or self.key.search(key))
                and (self.query is None or self.query.search(query))
                and (self.times is None or self.times > 0))


class _Request:
    """One request read off a client connection: head lines and raw body."""

    def __init__(self, method, target, headers, body):
        self.method, self.target, self.headers, self.body = method, target, headers, body
        u = urllib.parse.urlsplit(target)
        parts = urllib.parse.unquote(u.path).split("/", 2)
        self.bucket = parts[1] if len(parts) > 1 else ""
        self.key = parts[2] if len(parts) > 2 else ""
        self.query = u.query

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class _Conn:
    """Buffered reads from a client socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        data = self.sock.recv(256 * 1024)
        if not data:
            raise EOFError()
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise EOFError()
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self):
        line = self.line()
        while not line:                 # tolerate blank lines between requests
            line = self.line()
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = []
        while True:
            h = self.line().decode("latin-1")
            if not h:
                break
            k, _, v = h.partition(":")
            headers.append((k.strip(), v.strip()))
        req = _Request(method, target, headers, b"")
        if (req.header("transfer-encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.line().split(b";")[0], 16)
                chunks.append(self.exactly(size))
                self.line()
                if size == 0:
                    break
            req.body = b"".join(chunks)
            req.headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
            req.headers.append(("Content-Length", str(len(req.body))))
        else:
            req.body = self.exactly(int(req.header("content-length") or 0))
        return req


def _rst(sock):
    """Close sock with a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _free_port():
    """A port free on 127.0.0.1 below the ephemeral range, so no outgoing connection takes it
    while the proxy is down (as tests/with-env.sh picks its services' ports)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", random.randint(10000, low - 1) if low > 11000 else 0))
            return s.getsockname()[1]
        except OSError:
            pass
        finally:
            s.close()
    raise OSError("no free port on 127.0.0.1")


class FaultProxy:
    """The proxy. Thread safe; all methods may be called while requests are in flight."""

    def __init__(self, upstream, port=None, seed=None):
        u = urllib.parse.urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.port = port or _free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.rules = []                 # protected by lock
        self.seen = {}                  # (method, key) -> requests; protected by lock
        self.faults = {}                # (method, key, action) -> injected; protected by lock
        self.rng = random.Random(seed)  # protected by lock
        self.clients = set()            # open client sockets; protected by lock
        self.listener = None            # protected by lock
        self.stopping = threading.Event()
        self.epoch = 0                  # bumped by clear(), down(), stop(): ends stalls
        self.thread = None

    # ---- control

    def start(self):
        self.up()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="faultproxy")
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.down()
        if self.thread:
            self.thread.join(10)

    def add_rule(self, action, key=None, query=None, method=None, times=None, rate=1.0,
                 seconds=None):
        """Append a rule (see the module's docstring); returns it."""
        r = Rule(action, key, query, method, times, rate, seconds)
        with self.lock:
            self.rules.append(r)
        return r

    def error_rate(self, rate, actions=("500", "503", "reset", "cut", "drop"), key=None):
        """Each request (matching key) fails with probability rate, in one of actions (each
        rate/len(actions): rule i is drawn only when rules 0..i-1 were not)."""
        share = rate / len(actions)
        for i, a in enumerate(actions):
            self.add_rule(a, key=key, rate=share / (1 - i * share))

    def clear(self):
        """Drop every rule (ends the stalls in progress)."""
        with self.lock:
            self.rules = []
            self.epoch += 1

    def down(self):
        """Refuse new connections and reset the open ones (an S3 server that went away)."""
        with self.lock:
            self.epoch += 1
            ls, self.listener = self.listener, None
            clients, self.clients = self.clients, set()
        if ls:
            ls.close()
        for s in clients:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self):
        """Listen again on the same port."""
        with self.lock:
            if self.listener:
                return
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):
            try:
                ls.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            ls.close()
            raise OSError("faultproxy: cannot listen on 127.0.0.1:%d again" % self.port)
        ls.listen(128)
        with self.lock:
            self.listener = ls

    def count(self, key, method="PUT"):
        """Requests seen for key (whatever happened to them)."""
        with self.lock:
            return self.seen.get((method, key), 0)

    def counts(self, method="PUT"):
        """{key: requests seen} for method."""
        with self.lock:
            return {k: n for (m, k), n in self.seen.items() if m == method}

    def injected(self):
        """{action: faults injected}."""
        out = {}
        with self.lock:
            for (_, _, a), n in self.faults.items():
                out[a] = out.get(a, 0) + n
        return out

    def reset_counts(self):
        with self.lock:
            self.seen, self.faults = {}, {}

    # ---- serving

    def _accept_loop(self):
        while not self.stopping.is_set():
            with self.lock:
                ls = self.listener
            if ls is None:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([ls], [], [], 0.1)
                if not r:
                    continue
                sock, _ = ls.accept()
            except (OSError, ValueError):
                continue                # closed by down()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.listener is None:
                    _rst(sock)
                    continue
                self.clients.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _decide(self, req):
        with self.lock:
            k = (req.method, req.key)
            self.seen[k] = self.seen.get(k, 0) + 1
            for r in self.rules:
                if r.matches(req.method, req.key, req.query) and self.rng.random() < r.rate:
                    if r.times is not None:
                        r.times -= 1
                    if r.action != "pass":
                        f = k + (r.action,)
                        self.faults[f] = self.faults.get(f, 0) + 1
                    return r.action, r.seconds, self.epoch
        return "pass", None, self.epoch

    def _serve(self, sock):
        conn, upstream, close = _Conn(sock), None, True
        try:
            while not self.stopping.is_set():
                try:
                    req = conn.request()
                except (EOFError, OSError, ValueError):
                    return
                action, seconds, epoch = self._decide(req)
                if action in ("stall", "delay"):
                    end = time.monotonic() + (seconds if seconds is not None else 1e9)
                    while (time.monotonic() < end and self.epoch == epoch
                           and not self.stopping.is_set()):
                        time.sleep(0.05)
                    if action == "stall":
                        return
                if action == "drop":
                    return
                if action == "reset":
                    close = False
                    _rst(sock)
                    return
                if action in ERRORS:
                    sock.sendall(self._error(req, action))
                    continue
                raw = None
                for fresh in (upstream is None, True):      # a stale keep-alive: once more
                    if fresh:
                        if upstream is not None:
                            upstream.close()
                        upstream = http.client.HTTPConnection(self.up_host, self.up_port,
                                                              timeout=300)
                    try:
                        raw, keep = self._forward(upstream, req)
                        break
                    except (OSError, http.client.HTTPException):
                        if fresh:
                            break
                if raw is None:
                    return
                if action == "cut":
                    sock.sendall(raw[:max(1, len(raw) // 2)])
                    return
                sock.sendall(raw)
                if not keep:
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.clients.discard(sock)
            if close:
                try:
                    sock.close()
                except OSError:
                    pass
            if upstream is not None:
                upstream.close()

    def _forward(self, upstream, req):
        """Send req upstream; (raw answer bytes for the client, keep the connection)."""
        upstream.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for k, v in req.headers:
            upstream.putheader(k, v)
        upstream.endheaders(req.body if req.body else None)
        r = upstream.getresponse()
        body = r.read()
        keep = not r.will_close
        if r.will_close:
            upstream.close()
        lines = ["HTTP/1.1 %d %s" % (r.status, r.reason)]
        for k, v in r.getheaders():
            if k.lower() in ("transfer-encoding", "connection") or (
                    k.lower() == "content-length" and req.method != "HEAD"):
                continue
            lines.append("%s: %s" % (k, v))
        if req.method != "HEAD":
            lines.append("Content-Length: %d" % len(body))
        lines.append("Connection: %s" % ("keep-alive" if keep else "close"))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, keep

    def _error(self, req, action):
        reason, code, message = ERRORS[action]
        rid = uuid.uuid4().hex[:16].upper()
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                '<Resource>%s</Resource><RequestId>%s</RequestId></Error>'
                % (code, message, req.target.split("?")[0], rid)).encode()
        head = ("HTTP/1.1 %s %s\r\nContent-Type: application/xml\r\nx-amz-request-id: %s\r\n"
                "Content-Length: %d\r\n\r\n" % (action, reason, rid, len(body)))
        return head.encode() + (b"" if req.method == "HEAD" else body)


def _control_server(proxy, port):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, obj):
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with proxy.lock:
                seen = {"%s %s" % k: n for k, n in proxy.seen.items()}
            self._answer({"requests": seen, "injected": proxy.injected()})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/rules":
                proxy.clear()
                for r in json.loads(body or b"[]"):
                    proxy.add_rule(**r)
            elif self.path in ("/down", "/up", "/reset-counts"):
                getattr(proxy, self.path[1:].replace("-", "_"))()
            else:
                self.send_error(404)
                return
            self._answer({"ok": True})

        def log_message(self, fmt, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    return srv


def main():
    ap = argparse.ArgumentParser(description="fault-injecting HTTP proxy for S3 (see the source)")
    ap.add_argument("--upstream", required=True, help="http://host:port of the S3 server")
    ap.add_argument("--port", type=int, default=0, help="proxy port (default: a free one)")
    ap.add_argument("--control-port", type=int, default=0, help="control port (default: a free one)")
    ap.add_argument("--seed", type=int)
    a = ap.parse_args()
    proxy = FaultProxy(a.upstream, a.port or None, a.seed).start()
    srv = _control_server(proxy, a.control_port)
    print("proxy %s control http://127.0.0.1:%d" % (proxy.endpoint, srv.server_address[1]), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    proxy.stop()


if __name__ == "__main__":
    main()
