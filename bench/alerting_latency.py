#!/usr/bin/python3
"""bench/alerting.sh's latency probe: time from POST /api/v2/alerts to the first webhook
notification, with group_wait 0. Each sample is a new group (a new alertname), sent alone;
the next is sent once the previous one's notification arrived (or after a timeout).

Usage: alerting_latency.py sink DIR           -- a receiver answering 200 to everything, until
                                                killed; writes its port to DIR/port
       alerting_latency.py serve DIR          -- starts the webhook receiver on port 0, writes
                                                DIR/port, then waits for DIR/go (JSON
                                                {"url": ..., "token": ..., "n": N, "prefix": P})
Prints "p50_ms=... p99_ms=... max_ms=... samples=N lost=L".
"""
import json
import math
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

arrived = {}
cond = threading.Condition()


class H(BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
        try:
            for a in json.loads(body).get("alerts", []):
                name = a.get("labels", {}).get("alertname")
                with cond:
                    arrived.setdefault(name, t)
                    cond.notify_all()
        except ValueError:
            pass

    def log_message(self, *a):
        pass


def main():
    d = sys.argv[2]
    ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs under bursts (1 s retransmit)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open(os.path.join(d, "port.tmp"), "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
    if sys.argv[1] == "sink":
        while True:
            time.sleep(3600)
    go = os.path.join(d, "go")
    while not os.path.exists(go):
        time.sleep(0.02)
    with open(go) as f:
        cfg = json.load(f)
    os.unlink(go)
    lat, lost = [], 0
    for i in range(cfg["n"]):
        name = "%s%d" % (cfg["prefix"], i)
        body = json.dumps([{"labels": {"alertname": name, "instance": "lat", "job": "bench"}}]).encode()
        req = urllib.request.Request(cfg["url"] + "/api/v2/alerts", data=body, method="POST")
        req.add_header("content-type", "application/json")
        if cfg.get("token"):
            req.add_header("authorization", "Bearer " + cfg["token"])
        t0 = time.perf_counter()
        urllib.request.urlopen(req, timeout=10).read()
        deadline = t0 + 5
        with cond:
            while name not in arrived and time.perf_counter() < deadline:
                cond.wait(deadline - time.perf_counter())
            t1 = arrived.get(name)
        if t1 is None:
            lost += 1
        else:
            lat.append((t1 - t0) * 1000)
    lat.sort()

    def pct(p):  # nearest rank
        return lat[max(0, math.ceil(p / 100 * len(lat)) - 1)] if lat else float("nan")
    print("p50_ms=%.2f p99_ms=%.2f max_ms=%.2f samples=%d lost=%d" % (pct(50), pct(99), lat[-1] if lat else float("nan"), len(lat), lost))
    with open(os.path.join(d, "done"), "w") as f:
        f.write("1")


if __name__ == "__main__":
    main()
