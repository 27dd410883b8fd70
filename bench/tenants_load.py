#!/usr/bin/python3
"""Load for bench/tenants_noisy.sh, open-loop and paced (a slow answer does not lower the offered
rate, so the percentiles see it):
  tenants_load.py quiet PORT TOKEN POLICY RATE SECS: RATE requests/s over one keep-alive
    connection, alternating POST /v1/events (one event) and POST /v1/decide/POLICY; prints
    ingest_p50_ms= ingest_p99_ms= decide_p50_ms= decide_p99_ms= n= errors=
  tenants_load.py flood PORT TOKEN RATE SECS [CONNS]: RATE single-event POST /v1/events per
    second spread over CONNS (4) connections; prints sent= rps= accepted= limited= other="""
import http.client, json, sys, threading, time


def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def paced(rate, secs, fn):
    start = time.monotonic()
    i = 0
    while True:
        due = start + i / rate
        if due - start >= secs:
            return i
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        fn(i, due)
        i += 1


def quiet(port, token, policy, rate, secs):
    c = conn(port)
    hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    lat = {"ingest": [], "decide": []}
    errors = [0]

    def one(i, due):
        kind = "ingest" if i % 2 == 0 else "decide"
        t0 = time.monotonic()
        if kind == "ingest":
            c.request("POST", "/v1/events", json.dumps({"type": "bench.quiet", "data": {"i": i}}), hdr)
        else:
            c.request("POST", "/v1/decide/" + policy, json.dumps({"i": i}), hdr)
        r = c.getresponse()
        r.read()
        # From when the request was due: waiting behind a slow answer counts.
        lat[kind].append((time.monotonic() - min(t0, due)) * 1000)
        if r.status not in (200, 202):
            errors[0] += 1

    n = paced(rate, secs, one)
    print("ingest_p50_ms=%.3f ingest_p99_ms=%.3f decide_p50_ms=%.3f decide_p99_ms=%.3f n=%d errors=%d" % (
        pct(lat["ingest"], 50), pct(lat["ingest"], 99), pct(lat["decide"], 50), pct(lat["decide"], 99), n, errors[0]))


def flood(port, token, rate, secs, conns):
    hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    counts = {"sent": 0, "202": 0, "429": 0, "other": 0}
    lock = threading.Lock()

    def worker():
        c = conn(port)

        def one(i, due):
            c.request("POST", "/v1/events", '{"type":"bench.flood","data":{"i":1}}', hdr)
            r = c.getresponse()
            r.read()
            with lock:
                counts["sent"] += 1
                k = str(r.status)
                counts[k if k in counts else "other"] += 1

        paced(rate / conns, secs, one)

    t0 = time.monotonic()
    ths = [threading.Thread(target=worker) for _ in range(conns)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    took = time.monotonic() - t0
    print("sent=%d rps=%.0f accepted=%d limited=%d other=%d" % (
        counts["sent"], counts["sent"] / took, counts["202"], counts["429"], counts["other"]))


if sys.argv[1] == "quiet":
    quiet(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
else:
    flood(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]) if len(sys.argv) > 6 else 4)
