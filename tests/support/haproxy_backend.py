#!/usr/bin/python3
"""A revision's instance for the HAProxy driver's tests: answers every request with its name
(the server HAProxy chose) and a chosen status; GET /slow?ms=N answers after N ms (a request
in flight while its server drains). Usage: haproxy_backend.py PORT NAME [STATUS]"""
import http.server
import socketserver
import sys
import time
import urllib.parse

PORT, NAME = int(sys.argv[1]), sys.argv[2]
STATUS = int(sys.argv[3]) if len(sys.argv) > 3 else 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/slow":
            ms = int(urllib.parse.parse_qs(u.query).get("ms", ["500"])[0])
            time.sleep(ms / 1000.0)
        body = (NAME + "\n").encode()
        self.send_response(STATUS)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("127.0.0.1", PORT), Handler).serve_forever()
