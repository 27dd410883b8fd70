#!/usr/bin/python3
"""A small HTTP service for the supervisor's tests: GET /healthz answers 200, any other path
answers the revision (VERSION). Modes: ok (serve), crash (exit 1 at start), ignore-term (serve,
and ignore SIGTERM: only SIGKILL stops it). --term-delay S: on SIGTERM, finish within S seconds
(a drain), then exit 0. Every start appends "pid port" to --starts FILE when given."""
import argparse
import http.server
import os
import signal
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", default="ok", choices=["ok", "crash", "ignore-term"])
p.add_argument("--term-delay", type=float, default=0)
p.add_argument("--starts")
a = p.parse_args()

if a.starts:
    with open(a.starts, "a") as f:
        f.write("%d %d\n" % (os.getpid(), a.port))

if a.mode == "crash":
    print("crashing at start", file=sys.stderr, flush=True)
    sys.exit(1)

version = os.environ.get("VERSION", "unknown")


class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (b"ok\n" if self.path == "/healthz" else (version + "\n").encode())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)


def on_term(signum, frame):
    if a.mode == "ignore-term":
        print("ignoring SIGTERM", file=sys.stderr, flush=True)
        return
    print("draining", file=sys.stderr, flush=True)

    def drain():
        time.sleep(a.term_delay)
        srv.shutdown()

    threading.Thread(target=drain, daemon=True).start()


signal.signal(signal.SIGTERM, on_term)
print("serving on %d" % a.port, file=sys.stderr, flush=True)
srv.serve_forever()
print("drained", file=sys.stderr, flush=True)
sys.exit(0)
