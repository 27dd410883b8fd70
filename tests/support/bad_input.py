# Sends bad input to a steward daemon and checks each answer; prints TAP (no plan).
# Used by tests/e2e/daemon_bad_input.t. Every case uses a fresh connection.
import json, socket, sys

port, token, offset = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
n = offset
failed = 0


def ok(cond, name, detail=""):
    global n, failed
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, name))
    if not cond:
        failed += 1
        for line in str(detail).splitlines()[:10]:
            print("#   " + line)
    sys.stdout.flush()


def raw(data, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    s.close()
    return out


def post(body, ctype="application/json", extra=b""):
    if isinstance(body, str):
        body = body.encode()
    head = ("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n" % (token, ctype, len(body))).encode()
    resp = raw(head + extra + b"\r\n" + body)
    status = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else 0
    payload = resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in resp else b""
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        doc = None
    return status, doc, resp


def err_code(doc):
    return doc.get("error", {}).get("code") if isinstance(doc, dict) else None


def first_field(doc):
    try:
        return doc["error"]["details"]["errors"][0]["field"]
    except (KeyError, IndexError, TypeError):
        return None


cases = [
    ("malformed JSON", '{"type": "a.b",', 400, "invalid_json", None),
    ("JSON with trailing garbage", '{"type":"a.b"} x', 400, "invalid_json", None),
    ("a number as the body", "5", 400, "invalid_body", None),
    ("null as the body", "null", 400, "invalid_body", None),
    ("a string as the body", '"hello"', 400, "invalid_body", None),
    ("type of the wrong type", '{"type": 5}', 400, "invalid_events", "type"),
    ("data that is not an object", '{"type": "a.b", "data": [1]}', 400, "invalid_events", "data"),
    ("an unknown field", '{"type": "a.b", "colour": "red"}', 400, "invalid_events", "colour"),
    ("time of the wrong type", '{"type": "a.b", "time": true}', 400, "invalid_events", "time"),
    ("an unparsable time", '{"type": "a.b", "time": "yesterday"}', 400, "invalid_events", "time"),
    ("an id that is too long", json.dumps({"type": "a.b", "id": "x" * 500}), 400, "invalid_events", "id"),
    ("a NUL byte in the type", '{"type": "a\\u0000b"}', 400, "invalid_events", "type"),
    ("a number too large for a double", '{"type": "a.b", "data": {"n": 1e400}}', 400, "invalid_events", "data"),
    ("nesting deeper than the limit", '{"type":"a.b","data":' + '{"a":' * 300 + "1" + "}" * 300 + "}", 400, "invalid_json", None),
    ("NaN is not JSON", '{"type": "a.b", "data": {"n": NaN}}', 400, "invalid_json", None),
    ("hex numbers are not JSON", '{"type": "a.b", "data": {"n": 0x10}}', 400, "invalid_json", None),
]
for name, body, status, code, field in cases:
    st, doc, resp = post(body)
    good = st == status and err_code(doc) == code and (field is None or first_field(doc) == field)
    ok(good, "%s: %d %s%s" % (name, status, code, (" naming " + field) if field else ""), resp[:400])

st, doc, resp = post(b'{"type": "a.b", "data": {"s": "\xff\xfe"}}')
ok(st == 400 and err_code(doc) == "invalid_json" and "UTF-8" in doc["error"]["message"],
   "invalid UTF-8: 400 naming the byte offset", resp[:300])
st, doc, resp = post('{"type": "a.b"}', ctype="text/plain")
ok(st == 415, "a non-JSON content type: 415", resp[:300])
st, doc, resp = post("x" * (70 * 1024))
ok(st == 413 and err_code(doc) == "body_too_large", "a body over max_body_bytes: 413", resp[:300])

# Garbage bytes and broken HTTP on the socket.
resp = raw(b"\x00\x01\x02garbage\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 400"), "garbage bytes: 400", resp[:200])
resp = raw(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
ok(resp.startswith(b"HTTP/1.1 400"), "two Content-Length headers: 400", resp[:200])
resp = raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 431"), "a request head over the limit: 431", resp[:200])
resp = raw(b"PUT /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 405") and b"allow:" in resp.lower(), "a wrong method: 405 with Allow", resp[:300])
resp = raw(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 404"), "an unknown path: 404", resp[:200])
resp = raw(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() +
           b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n")
ok(resp.startswith(b"HTTP/1.1 400"), "a broken chunk size: 400", resp[:200])
resp = raw(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n"
           b"Content-Length: 2\r\n\r\n{}")
ok(resp.startswith(b"HTTP/1.1 401"), "a token with binary bytes: 401", resp[:200])

# Still serving, and nothing bad was stored.
resp = raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 200"), "the daemon still answers /healthz", resp[:200])
st, doc, resp = post('{"type": "bad.input.after", "id": "after-1"}')
ok(st == 202 and doc["accepted"] == 1, "and still accepts a valid event", resp[:300])
st, doc, resp = post('[{"type": "a.b", "id": "partial-1"}, {"type": 7}]')
resp = raw(("GET /v1/events?type=a.b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n" % token).encode())
body = resp.split(b"\r\n\r\n", 1)[1]
ok(st == 400 and b"partial-1" not in body, "a refused batch stored nothing", resp[:300])
sys.exit(1 if failed else 0)
