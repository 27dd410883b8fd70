#!/usr/bin/python3
"""The small HTTP service of the rollout tests (the same as docs/deployments.md's app.py, plus
--starts): answers its VERSION, 500 when the version ends in -broken (GET /healthz is 200
whatever the version). --starts FILE: each start appends "pid port version" to FILE, so a test
counts the supervisor's spawns."""
import http.server
import os
import sys

VERSION = os.environ.get("VERSION", "dev")
BROKEN = VERSION.endswith("-broken")
port = int(sys.argv[sys.argv.index("--port") + 1])
if "--starts" in sys.argv:
    with open(sys.argv[sys.argv.index("--starts") + 1], "a") as f:
        f.write("%d %d %s\n" % (os.getpid(), port, VERSION))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path == "/healthz" or not BROKEN else 500
        body = (VERSION + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
