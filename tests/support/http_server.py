#!/usr/bin/python3
"""Test peer for steward.http: a threaded HTTP/1.1 server on 127.0.0.1, port chosen by the
OS and printed as the first line of stdout. With --cert/--key it speaks TLS.

Routes: /echo (method, path, headers, body as JSON), /status/N, /slow?ms=N, /slowbody,
/broken (closes mid-body), /redirect/N, /loop (redirects to itself), /large?n=BYTES,
/chunked, /multi (repeated and Set-Cookie headers), /conn (the client's port, for
keep-alive), /nolength (body ended by closing the connection)."""
import argparse
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        parts = u.path.strip("/").split("/")
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        route = parts[0]
        if route == "echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("utf-8", "replace")}
            self.send(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
        elif route == "status":
            code = int(parts[1])
            extra = [("Retry-After", "7")] if code == 429 else []
            self.send(code, ("status %d" % code).encode(), extra)
        elif route == "slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self.send(200, b"slow done")
        elif route == "slowbody":
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            time.sleep(int(q.get("ms", "2000")) / 1000.0)
            self.wfile.write(b"0123456789")
        elif route == "broken":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
        elif route == "redirect":
            left = int(parts[1])
            if left > 0:
                self.send(302, b"", [("Location", "/redirect/%d" % (left - 1))])
            else:
                self.send(200, b"landed")
        elif route == "loop":
            self.send(302, b"", [("Location", "/loop")])
        elif route == "large":
            self.send(200, b"a" * int(q.get("n", "1048576")))
        elif route == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"alpha-", b"beta-", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif route == "multi":
            self.send(200, b"ok", [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2"),
                                   ("X-Thing", "one"), ("X-Thing", "two")])
        elif route == "conn":
            self.send(200, str(self.client_address[1]).encode())
        elif route == "nolength":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        else:
            self.send(404, b"no such route")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # Clients that abort on purpose (max_body, cancellation, TLS refusal) reset the
        # connection; that is the test working, not a server fault.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    sys.stdout.close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
