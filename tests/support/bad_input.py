# Sends bad input to a steward daemon and checks each answer; prints TAP (no plan).
# Used by tests/e2e/daemon_bad_input.t. Every case uses a fresh connection.
# argv: port token tap-offset daemon-pid
import json, socket, sys, threading, time

port, token, offset = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
dpid = int(sys.argv[4]) if len(sys.argv) > 4 else None
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


def post(body, ctype="application/json", extra=b"", path="/v1/events"):
    if isinstance(body, str):
        body = body.encode()
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % (path, token)).encode()
    if ctype is not None:
        head += ("Content-Type: %s\r\n" % ctype).encode()
    head += ("Content-Length: %d\r\nConnection: close\r\n" % len(body)).encode()
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
    ("a time of -1e300", '{"type": "a.b", "time": -1e300}', 400, "invalid_events", "time"),
    ("a time of 1e300", '{"type": "a.b", "time": 1e300}', 400, "invalid_events", "time"),
    ("a time before 1970", '{"type": "a.b", "time": "1969-12-31T23:59:59Z"}', 400, "invalid_events", "time"),
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
st, doc, resp = post("x" * (8 * 1024 * 1024 + 1024))
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

# Duplicate keys: which one would count is not defined, so the body is refused, naming the key.
for name, body, key in [
        ("a duplicate id", '{"type": "a.b", "id": "a", "id": "b"}', "id"),
        ("a duplicate key spelled with an escape", '{"type": "a.b", "data": {"k": 1, "\\u006b": 2}}', "k"),
        ("a duplicate key in the second event of a batch", '[{"type": "a.b"}, {"type": "a.b", "type": "c.d"}]', "type")]:
    st, doc, resp = post(body)
    ok(st == 400 and err_code(doc) == "invalid_json" and (doc["error"].get("details") or {}).get("key") == key
       and ('"%s"' % key) in doc["error"]["message"], "%s: 400 naming the key" % name, resp[:400])
st, doc, resp = post('{"type": "a.b", "data": {"x": {"k": 1}, "y": {"k": 2}}}')
ok(st == 202, "the same key in two different objects is fine", resp[:300])

# Nesting and size bounds, named in the answer (limits.max_json_depth is 64 by default,
# limits.max_json_values is 2000 in daemon_bad_input.t).
st, doc, resp = post('{"type":"a.b","data":' + '{"a":' * 80 + "1" + "}" * 80 + "}")
ok(st == 400 and err_code(doc) == "invalid_json" and doc["error"]["details"]["limit"] == "limits.max_json_depth",
   "nesting deeper than limits.max_json_depth: 400 naming the limit", resp[:400])
st, doc, resp = post('{"type":"a.b","data":{"l":[' + ",".join(["1"] * 3000) + ']}}')
ok(st == 413 and err_code(doc) == "json_too_large" and doc["error"]["details"]["limit"] == "limits.max_json_values",
   "more values than limits.max_json_values: 413 naming the limit", resp[:400])

# A chunk whose size line declares 2^63 bytes is refused from that line, without waiting for it.
resp = raw(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() +
           b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n8000000000000000\r\n{\"type\"")
ok(resp.startswith(b"HTTP/1.1 413") and b"max_body_bytes" in resp, "a chunk size of 2^63: 413 from the chunk header", resp[:300])

# A bad token is refused when the headers are complete: 401 comes without a byte of the body.
resp = raw(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bogus\r\n"
           b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 401") and b"www-authenticate" in resp.lower(),
   "a bad token with a body announced: 401 before the body is sent", resp[:300])
resp = raw(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 401"), "no token and Expect: 100-continue: 401, no 100 Continue", resp[:300])
resp = raw(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
ok(resp.startswith(b"HTTP/1.1 401"), "a body to an unknown path without a token: 401 before the body", resp[:300])

# curl -d sends application/x-www-form-urlencoded: every JSON route reads it as JSON, as it
# does a body without a Content-Type.
FORM = "application/x-www-form-urlencoded"
for ctype in (FORM, None):
    label = ctype or "no Content-Type"
    st, doc, resp = post('{"type": "form.sent", "id": "form-%s"}' % (ctype or "none"), ctype=ctype)
    ok(st == 202 and doc["accepted"] == 1, "POST /v1/events with %s: 202" % label, resp[:300])
    st, doc, resp = post('{"role": "viewer"}', ctype=ctype, path="/v1/tokens")
    ok(st == 201 and doc.get("role") == "viewer", "POST /v1/tokens with %s: 201" % label, resp[:300])
    st, doc, resp = post('{"x": 1}', ctype=ctype, path="/v1/decide/badinput")
    ok(st == 200 and doc["result"] == {"got": 1}, "POST /v1/decide/{policy} with %s: 200" % label, resp[:300])
    st, doc, resp = post('{"type": "bad.input.sim"}', ctype=ctype, path="/v1/policies/badinput/simulate")
    ok(st == 200, "POST /v1/policies/{name}/simulate with %s: 200" % label, resp[:300])
    st, doc, resp = post('[{"labels": {"alertname": "FormSent"}}]', ctype=ctype, path="/api/v2/alerts")
    ok(st == 200, "POST /api/v2/alerts with %s: 200" % label, resp[:300])
    st, doc, resp = post('{"matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": "2020-01-01T00:00:00Z",'
                         ' "endsAt": "2099-01-01T00:00:00Z", "createdBy": "t", "comment": "c"}', ctype=ctype, path="/api/v2/silences")
    ok(st == 200, "POST /api/v2/silences with %s: 200" % label, resp[:300])
    st, doc, resp = post('{"version": "nope"}', ctype=ctype, path="/v1/policies/badinput/rollback")
    ok(st not in (400, 415), "POST /v1/policies/{name}/rollback with %s: the body is read (%d)" % (label, st), resp[:300])
    st, doc, resp = post('{"assignee": "ana"}', ctype=ctype, path="/v1/incidents/nope/reassign")
    ok(st == 404, "POST /v1/incidents/{id}/reassign with %s: the body is read (404: no such incident)" % label, resp[:300])
st, doc, resp = post("role=viewer", ctype=FORM, path="/v1/tokens")
ok(st == 400 and err_code(doc) == "invalid_json", "a real form body to a JSON route: 400 invalid_json", resp[:300])
st, doc, resp = post('{"role": "viewer"}', ctype="text/plain", path="/v1/tokens")
ok(st == 415, "text/plain to /v1/tokens: 415 as on /v1/events", resp[:300])


def get_healthz(deadline):
    """GET /healthz on a fresh connection; the answer, or b"" when none came before deadline."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=max(0.1, deadline - time.monotonic()))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        s.close()
        return out
    except OSError:
        return b""


# Six bodies of 800,000 keys each (8 MB), sent at once: each is refused by the scan before
# the decode (413 naming limits.max_json_values) and /healthz answers meanwhile. Unbounded, their
# decode blocked the loop for seconds. The deadline is generous: it bounds, it does not time.
keys = ",".join('"%x":0' % i for i in range(800000))
big = ('{"type": "a.b", "data": {' + keys + '}}').encode()
answers = [None] * 6


def send_big(i):
    st, doc, resp = post(big)
    answers[i] = (st, err_code(doc))


threads = [threading.Thread(target=send_big, args=(i,)) for i in range(6)]
for t in threads:
    t.start()
health = []
deadline = time.monotonic() + 20
waits = []
while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
    t0 = time.monotonic()
    health.append(get_healthz(t0 + 1).startswith(b"HTTP/1.1 200"))
    waits.append(round(time.monotonic() - t0, 3))
for t in threads:
    t.join(30)
ok(all(a == (413, "json_too_large") for a in answers), "six 800,000-key bodies at once: each 413 json_too_large", answers)
ok(all(health), "/healthz answered within 1 s each time while they were sent and parsed (%d probes)" % len(health),
   "%d of them did not answer; the slowest took %.3f s" % (health.count(False), max(waits or [0])))

# Bodies in flight share a byte budget (limits.max_body_bytes_in_flight, 48 MiB here): six
# 8 MiB bodies being received hold it; one more gets 503 with Retry-After from its headers.
held = []
for i in range(6):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n[" % (token, 8 * 1024 * 1024)).encode())
    held.append(s)
probe = ("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
         "Content-Length: 65536\r\nConnection: close\r\n\r\n" % token).encode() + b"x" * 65536
resp = b""
for attempt in range(100):  # until the held heads have reached the daemon (else: 400, not JSON)
    resp = raw(probe)
    if resp.startswith(b"HTTP/1.1 503"):
        break
    time.sleep(0.05)
ok(resp.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in resp.lower() and b"max_body_bytes_in_flight" in resp,
   "a body over limits.max_body_bytes_in_flight: 503 with Retry-After, naming the limit", resp[:400])
for s in held:
    s.close()
st = 0
for attempt in range(100):  # the budget comes back when those connections close
    st, doc, resp = post('{"type": "budget.back"}')
    if st == 202:
        break
    time.sleep(0.05)
ok(st == 202, "the budget is given back when those connections close", resp[:300])


def rss_kib():
    with open("/proc/%d/status" % dpid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# 300 connections with a bogus token announce 8 MiB bodies and send what the socket takes:
# the token is checked at the end of the headers, so nothing of those bodies is buffered.
# Memory, not time: RSS after stays within a few MiB of RSS before.
if dpid:
    before = rss_kib()
    conns = []
    head = ("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bogus-%d\r\n"
            "Content-Type: application/json\r\nContent-Length: 8388608\r\n\r\n")
    chunk = b"[" + b"0," * 32767
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall((head % i).encode())
        s.setblocking(False)
        conns.append(s)
    for _ in range(16):  # up to 1 MiB each, as far as the socket buffers take it
        for s in conns:
            try:
                s.send(chunk)
            except OSError:
                pass
    answered = 0
    for s in conns:
        s.setblocking(True)
        s.settimeout(10)
        try:
            if s.recv(64).startswith(b"HTTP/1.1 401"):
                answered += 1
        except OSError:
            pass
    after = rss_kib()
    for s in conns:
        s.close()
    grew = (after - before) / 1024.0
    ok(answered == 300 and grew < 16, "300 connections with a bogus token and 8 MiB bodies: all 401, RSS grew %.1f MiB (< 16)"
       % grew, "answered=%d before=%d KiB after=%d KiB" % (answered, before, after))

sys.exit(1 if failed else 0)
