#!/usr/bin/python3
"""A host that accepts slowly, for tests/e2e/http_burst.t (gh issue 13 §7): python's http.server
with a listen backlog of 5 whose accept loop pauses --accept-delay seconds (default 0.02)
before each accept, so a client that opens many connections at once overflows the accept
queue. Each accepted connection is served in its own thread, with HTTP/1.1 keep-alive.
Prints its port as the first line, then closes stdout.

GET /n/<anything>  200, body "ok <anything>"
GET /slow/<ms>     200 after <ms> milliseconds
GET /_stats        200, JSON {"connections": accepted so far, "requests": answered so far,
                   "max_open": most connections open at one time}
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"connections": 0, "requests": 0, "open": 0, "max_open": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with lock:
            stats["connections"] += 1
            stats["open"] += 1
            stats["max_open"] = max(stats["max_open"], stats["open"])

    def finish(self):
        with lock:
            stats["open"] -= 1
        super().finish()

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                body = json.dumps({k: stats[k] for k in ("connections", "requests", "max_open")}).encode()
        elif self.path.startswith("/slow/"):
            time.sleep(int(self.path[6:]) / 1000.0)
            body = b"slow done"
        else:
            with lock:
                stats["requests"] += 1
            body = ("ok " + self.path[3:]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SlowServer(ThreadingHTTPServer):
    request_queue_size = 5  # the listen backlog
    daemon_threads = True
    accept_delay = 0.02

    def get_request(self):
        time.sleep(self.accept_delay)
        return super().get_request()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--accept-delay", type=float, default=0.02)
    a = ap.parse_args()
    SlowServer.accept_delay = a.accept_delay
    srv = SlowServer(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    sys.stdout.close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
