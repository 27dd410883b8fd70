#!/usr/bin/python3
"""A constant-rate load through HAProxy for the blue-green and rollback tests: RATE requests a
second, on a fixed schedule (a late request is not made up by a burst), each on its own
connection, from THREADS threads; one line per request to OUT: "status version start_time"
(status 0: no answer, version "-"). With --server NAME[,NAME...] every request carries
"X-Server: NAME" (taken in turn), which the tests' HAProxy sends to that server whatever its
weight: the smoke requests of a blue-green preview. Runs until killed.
Usage: rollback_load.py PORT RATE OUT [--server NAMES] [--threads N]"""
import http.client
import sys
import threading
import time

port, rate, out = int(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3], "a", buffering=1)
servers = sys.argv[sys.argv.index("--server") + 1].split(",") if "--server" in sys.argv else []
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 4
lock = threading.Lock()


def worker(k):
    period = threads / rate
    start = time.time() + k / rate
    i = 0
    while True:
        due = start + i * period
        i += 1
        now = time.time()
        if due > now:
            time.sleep(due - now)
        elif now - due > period:
            continue  # behind schedule: skip this slot rather than burst
        headers = {"X-Server": servers[i % len(servers)]} if servers else {}
        t = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/", headers=headers)
            r = c.getresponse()
            status, body = r.status, r.read().decode().strip() or "-"
            c.close()
        except Exception:
            status, body = 0, "-"
        with lock:
            out.write("%d %s %.3f\n" % (status, body, t))


for k in range(threads):
    threading.Thread(target=worker, args=(k,), daemon=True).start()
while True:
    time.sleep(3600)
