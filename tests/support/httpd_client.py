#!/usr/bin/python3
"""Raw-socket probes of steward's HTTP server for tests/e2e/httpd_server.t.

usage: httpd_client.py PORT SMALL_PORT
Prints TAP test lines (no plan: the .t script adds its own tests and the plan) and exits
with the number of tests run as the first line of stderr-free stdout count."""
import json
import socket
import struct
import sys

PORT, SMALL = int(sys.argv[1]), int(sys.argv[2])
n = 0


def ok(cond, name):
    global n
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, name), flush=True)
    return cond


def connect(port=None):
    s = socket.create_connection(("127.0.0.1", port or PORT), timeout=10)
    return s


class Reader:
    """Reads HTTP/1.1 responses off a socket (Content-Length framed, as the server sends)."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def fill(self):
        try:
            d = self.s.recv(65536)
        except ConnectionResetError:
            d = b""
        self.buf += d
        return bool(d)

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            if not self.fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self.fill():
                return None
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def at_eof(self):
        """True when the server closes the connection with nothing more to read."""
        while True:
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                return not self.buf
            if not d:
                return not self.buf
            self.buf += d


def get(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, extra)).encode()


# keep-alive: two requests on one connection
s = connect()
r = Reader(s)
s.sendall(get("/hello"))
a = r.response()
s.sendall(get("/fast/2"))
b = r.response()
ok(a and a[0] == 200 and a[2] == b"hello" and "connection" not in a[1],
   "keep-alive: first answer without Connection: close")
ok(b and b[0] == 200 and b[2] == b"fast:2", "keep-alive: second request on the same socket")
s.close()

# pipelining: the slow first answer holds back the fast ones
s = connect()
r = Reader(s)
s.sendall(get("/slow?ms=300&tag=p") + get("/fast/1") + get("/fast/2"))
bodies = [r.response()[2] for _ in range(3)]
ok(bodies == [b"slow:p", b"fast:1", b"fast:2"], "pipelined answers in request order: %r" % bodies)
s.close()

# chunked upload
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"5\r\nhello\r\n")
s.sendall(b"6\r\n world\r\n0\r\n\r\n")
a = r.response()
ok(a and a[0] == 200 and a[2] == b"hello world", "chunked request body decoded")
s.close()

# 100-continue within the limit
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
a = r.response()
ok(a and a[0] == 100, "Expect: 100-continue within the limit: 100 Continue first")
s.sendall(b"data")
a = r.response()
ok(a and a[0] == 200 and a[2] == b"data", "then the body and the final answer")
s.close()

# 100-continue over the limit: 413 without reading the body
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
          b"Content-Length: 5000\r\n\r\n")
a = r.response()
ok(a and a[0] == 413 and json.loads(a[2])["error"]["code"] == "body_too_large",
   "Expect: 100-continue over the limit: 413 at once")
ok(r.at_eof(), "and the connection closes")
s.close()

# 431
s = connect()
r = Reader(s)
s.sendall(get("/hello", "X-Big: %s\r\n" % ("a" * 2000)))
a = r.response()
ok(a and a[0] == 431 and json.loads(a[2])["error"]["details"]["limit"] == "max_header_bytes",
   "headers over max_header_bytes: 431 naming the limit")
ok(r.at_eof(), "431 closes the connection")
s.close()

# 413 by Content-Length, body sent anyway
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000)
a = r.response()
ok(a and a[0] == 413, "Content-Length over max_body_bytes: 413 (the client still reads it)")
ok(r.at_eof(), "413 closes the connection")
s.close()

# 413 while reading chunks
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
for _ in range(3):
    s.sendall(b"200\r\n" + b"y" * 512 + b"\r\n")
a = r.response()
ok(a and a[0] == 413, "chunked body over max_body_bytes: 413")
ok(r.at_eof(), "and close")
s.close()

# 408: half a request
s = connect()
r = Reader(s)
s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
a = r.response()
ok(a and a[0] == 408 and json.loads(a[2])["error"]["code"] == "request_timeout",
   "headers never finished: 408 after header_timeout")
ok(r.at_eof(), "408 closes the connection")
s.close()

# 408: body too slow
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
a = r.response()
ok(a and a[0] == 408 and json.loads(a[2])["error"]["details"]["limit"] == "body_timeout",
   "body never finished: 408 naming body_timeout")
s.close()

# 400 for garbage
s = connect()
r = Reader(s)
s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
a = r.response()
ok(a and a[0] == 400 and json.loads(a[2])["error"]["code"] == "bad_request",
   "garbage bytes: 400 with a JSON error")
ok(r.at_eof(), "400 closes the connection")
s.close()
s = connect()
r = Reader(s)
s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
a = r.response()
ok(a and a[0] == 400, "both Content-Length and Transfer-Encoding: 400")
s.close()

# 404 / 405
s = connect()
r = Reader(s)
s.sendall(get("/nowhere") + b"DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n")
a, b = r.response(), r.response()
ok(a and a[0] == 404 and json.loads(a[2])["error"]["code"] == "not_found", "unknown path: 404")
ok(b and b[0] == 405 and b[1].get("allow") == "GET, HEAD", "wrong method: 405 with Allow")
s.close()

# a handler error: 500, and the server goes on
s = connect()
r = Reader(s)
s.sendall(get("/boom") + get("/hello"))
a, b = r.response(), r.response()
ok(a and a[0] == 500 and json.loads(a[2])["error"]["code"] == "handler_error",
   "handler error: 500 with a JSON error")
ok(b and b[0] == 200 and b[2] == b"hello", "the same connection keeps serving")
s.close()

# 503 over max_connections (the small server allows 2)
held = []
for i in range(2):
    c = connect(SMALL)
    rr = Reader(c)
    c.sendall(get("/hello"))
    held.append((c, rr.response()))
ok(all(x[1] and x[1][0] == 200 for x in held), "two connections served by the small server")
c = connect(SMALL)
rr = Reader(c)
a = rr.response()
ok(a and a[0] == 503 and a[1].get("retry-after") == "1" and
   json.loads(a[2])["error"]["code"] == "too_many_connections",
   "a third connection: 503 with Retry-After: 1")
ok(rr.at_eof(), "and it is closed")
c.close()
for c, _ in held:
    c.close()

# connections closed while their handler runs: the answer is dropped, nothing breaks
s = connect()
s.sendall(get("/slow?ms=150&tag=gone1"))
s.close()  # plain close: the server sees EOF, answers into a dead socket
ctl = connect()
cr = Reader(ctl)
s = connect()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
s.sendall(get("/hold/gone2"))
ctl.sendall(get("/started/gone2"))
a = cr.response()
ok(a and a[0] == 200, "the held handler is running")
s.close()  # reset while the handler runs
ctl.sendall(get("/await/gone1") + get("/release/gone2"))
a, b = cr.response(), cr.response()
ok(a and a[0] == 200 and b and b[0] == 200, "the server finished both orphaned handlers")
st = json.loads(b[2])
ok(st["dropped"] >= 1, "the reset connection's answer was dropped (dropped=%s)" % st["dropped"])
ctl.close()

# graceful shutdown: a request in flight still gets its answer
s = connect()
r = Reader(s)
s.sendall(get("/slow?ms=300&tag=last"))
t = connect()
tr = Reader(t)
t.sendall(b"POST /shutdown HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
ok(tr.response()[0] == 200, "shutdown requested")
a = r.response()
ok(a and a[0] == 200 and a[2] == b"slow:last" and a[1].get("connection") == "close",
   "a request in flight during close is answered with Connection: close")
ok(r.at_eof(), "then its connection closes")
s.close()
t.close()
sys.stderr.write("%d\n" % n)
