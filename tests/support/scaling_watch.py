#!/usr/bin/python3
"""Watches an HAProxy backend for the autoscaling tests, from outside steward: every 50 ms it
reads `show stat BACKEND 4 -1` on the admin socket and appends "time server req_tot" lines to
OUT (wall-clock seconds), until killed. analyse OUT FIRST_SERVER TARGET DECISION_T prints, as
JSON, when FIRST_SERVER's request rate between two samples first rose above TARGET (the metric
crossing the threshold: HAProxy's cumulative counter, as the autoscaler's haproxy source reads
it), and when each other server answered its first request."""
import json
import socket
import sys
import time


def show_stat(sock_path, backend):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(sock_path)
    s.sendall(("show stat %s 4 -1\n" % backend).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    lines = data.decode().splitlines()
    if not lines or not lines[0].startswith("#"):
        return {}
    head = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        if not line:
            continue
        row = dict(zip(head, line.split(",")))
        if row.get("svname") in ("BACKEND", "FRONTEND"):
            continue
        out[row["svname"]] = int(row.get("req_tot") or 0)
    return out


def watch(sock_path, backend, out):
    f = open(out, "a", buffering=1)
    while True:
        t = time.time()
        try:
            for name, req in show_stat(sock_path, backend).items():
                f.write("%.3f %s %d\n" % (t, name, req))
        except OSError:
            pass
        time.sleep(0.05)


def analyse(path, first, target):
    hist = {}
    for line in open(path):
        t, name, req = line.split()
        hist.setdefault(name, []).append((float(t), int(req)))
    res = {"crossed_at": None, "first_request": {}}
    samples = hist.get(first, [])
    for i in range(1, len(samples)):
        # the rate between two consecutive samples (50 ms apart): the earliest moment the load
        # above the target is visible from outside, so the delay measured from it is an upper
        # bound (the source's own 1 s window needs target/rate of a second of such load)
        (t0, r0), (t, req) = samples[i - 1], samples[i]
        if t > t0 and (req - r0) / (t - t0) > target:
            res["crossed_at"] = t
            break
    for name, s in hist.items():
        if name == first:
            continue
        for t, req in s:
            if req > 0:
                res["first_request"][name] = t
                break
    print(json.dumps(res))


if __name__ == "__main__":
    if sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        analyse(sys.argv[2], sys.argv[3], float(sys.argv[4]))
