#!/usr/bin/python3
"""The service of the blue-green and rollback tests: answers its VERSION (its revision) and
fails a configured share of requests, decided by the revision's name so that the supervisor's
`env = {VERSION = "{revision}"}` is the only knob:
  v2-err50   answers 500 to every second request (50 %, counted, not random: the bound a test
             asserts must not depend on luck);
  v2-live50  the same, but only to requests without an X-Server header: real traffic, not the
             smoke requests a test sends to the preview through HAProxy (a bug smoke tests miss).
GET /healthz is 200 whatever the revision. --starts FILE: each start appends "pid port version"."""
import http.server
import os
import re
import sys
import threading

VERSION = os.environ.get("VERSION", "dev")
m = re.search(r"-(err|live)(\d+)$", VERSION)
KIND, RATE = (m.group(1), int(m.group(2))) if m else (None, 0)
port = int(sys.argv[sys.argv.index("--port") + 1])
if "--starts" in sys.argv:
    with open(sys.argv[sys.argv.index("--starts") + 1], "a") as f:
        f.write("%d %d %s\n" % (os.getpid(), port, VERSION))
lock = threading.Lock()
count = [0]


def failing(headers):
    if KIND is None or (KIND == "live" and headers.get("X-Server")):
        return False
    with lock:
        count[0] += 1
        n = count[0]
    # the n-th request fails when it crosses a multiple of 100/RATE: exactly RATE % of them
    return n * RATE // 100 != (n - 1) * RATE // 100


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path == "/healthz" or not failing(self.headers) else 500
        body = (VERSION + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
