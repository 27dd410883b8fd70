#!/usr/bin/python3
"""Test peer for `steward load` (tests/e2e/load_*.t): a threaded HTTP/1.1 server on 127.0.0.1
that counts the requests it receives per X-Steward-Load-Phase header, per "METHOD PATH" and per
Host header, and the most requests it was handling at once; answers 200 (or the status in
?status=N) after ?delay_ms=N. Its port is the first line of stdout. GET /__counts answers the counts as JSON and is not counted itself."""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
counts = {"total": 0, "phase": {}, "request": {}, "host": {}, "in_flight": 0, "max_in_flight": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        u = urlsplit(self.path)
        if u.path == "/__counts":
            with lock:
                body = json.dumps(counts).encode()
        else:
            with lock:
                counts["total"] += 1
                counts["in_flight"] += 1
                counts["max_in_flight"] = max(counts["max_in_flight"], counts["in_flight"])
                for key, val in (("phase", self.headers.get("X-Steward-Load-Phase", "none")),
                                 ("request", self.command + " " + self.path),
                                 ("host", self.headers.get("Host", ""))):
                    counts[key][val] = counts[key].get(val, 0) + 1
            body = b"ok\n"
            time.sleep(int(parse_qs(u.query).get("delay_ms", ["0"])[0]) / 1000.0)
            with lock:
                counts["in_flight"] -= 1
        status = int(parse_qs(u.query).get("status", ["200"])[0])
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


srv = Server(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
sys.stdout.close()
srv.serve_forever()
