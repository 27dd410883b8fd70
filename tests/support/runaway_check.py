#!/usr/bin/python3
"""Small HTTP checks for tests/e2e/policy_runaway.t (in Python: a fresh machine has no JSON command-line tool).

runaway_check.py PORT TOKEN get PATH            -> prints the body (exit 1 on HTTP error)
runaway_check.py PORT TOKEN post PATH JSON      -> posts JSON
runaway_check.py PORT TOKEN decisions POLICY    -> one line per decision: outcome<TAB>error
runaway_check.py PORT TOKEN count TYPE          -> number of events of TYPE in the log
runaway_check.py PORT TOKEN depths TYPE         -> the events' depths, sorted, space separated
runaway_check.py PORT TOKEN metric NAME LABELS  -> the value of one /metrics series (0 if absent)
runaway_check.py PORT - healthz SECONDS         -> exit 0 if GET /healthz answers 200 within SECONDS
runaway_check.py PORT - probe SECONDS STOPFILE  -> GET /healthz again and again until STOPFILE
                                                   exists; prints "answered missed" (a miss: no
                                                   200 within SECONDS)
"""
import os
import time
import json
import signal
import sys
import urllib.request

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `grep -q` may stop reading early
port, token, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
base = "http://127.0.0.1:%s" % port


def call(method, path, body=None, timeout=30):
    req = urllib.request.Request(base + path, method=method, data=body)
    if token != "-":
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def events(typ):
    out, cursor = [], None
    while True:
        q = "/v1/events?type=%s&limit=1000" % typ + ("&cursor=" + cursor if cursor else "")
        page = json.loads(call("GET", q)[1])
        out += page["events"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


if cmd == "get":
    print(call("GET", sys.argv[4])[1])
elif cmd == "post":
    print(call("POST", sys.argv[4], sys.argv[5].encode())[1])
elif cmd == "decisions":
    page = json.loads(call("GET", "/v1/decisions?limit=1000&policy=" + sys.argv[4])[1])
    for d in page["decisions"]:
        print("%s\t%s" % (d.get("outcome"), (d.get("error") or "").replace("\n", " ")))
elif cmd == "count":
    print(len(events(sys.argv[4])))
elif cmd == "depths":
    print(" ".join(str(d) for d in sorted(e.get("depth", -1) for e in events(sys.argv[4]))))
elif cmd == "metric":
    name, labels = sys.argv[4], sys.argv[5]
    text = call("GET", "/metrics")[1]
    want = name + ("{" + labels + "}" if labels else "")
    val = 0
    for line in text.splitlines():
        if line.startswith(want + " "):
            val = line.split()[-1]
    print(val)
elif cmd == "probe":
    answered = missed = 0
    while not os.path.exists(sys.argv[5]):
        try:
            status, _ = call("GET", "/healthz", timeout=float(sys.argv[4]))
            if status == 200:
                answered += 1
            else:
                missed += 1
        except Exception:
            missed += 1
        time.sleep(0.02)
    print(answered, missed)
elif cmd == "healthz":
    try:
        status, _ = call("GET", "/healthz", timeout=float(sys.argv[4]))
        sys.exit(0 if status == 200 else 1)
    except Exception as e:  # a timeout or a refused connection
        print("# healthz: %s" % e)
        sys.exit(1)
