#!/usr/bin/python3
# The billing benchmark's client (bench/billing.sh): makes the catalogue, the tenants and their
# subscriptions through the HTTP API, then posts a month of usage events to POST
# /v1/billing/usage in batches of 1,000 over a few keep-alive connections, and writes what the
# invoices must come to, computed here with Python's decimal from the units it sent (the check
# does not trust the code it checks).
#
#   billing_load.py setup URL TOKEN SUBS FROM          -> one subscription id per line (stdout)
#   billing_load.py post  URL TOKEN SUBSFILE EVENTS CONNS FROM TO EXPECTED
#        -> "accepted=N duplicates=N late=N seconds=S" (stdout); EXPECTED gets the totals
#
# Every subscription gets EVENTS / SUBS events with timestamps spread over [FROM, TO): even
# events are api_calls (a count, priced by a graduated charge), odd ones storage_gb (a sum of
# the property "gb", a decimal string, priced by a standard charge). A batch holds one round:
# the next event of up to 1,000 subscriptions, so the subscriptions' events interleave as
# traffic from many customers does.
import http.client
import json
import sys
import threading
import time
import urllib.parse
from decimal import Decimal, ROUND_HALF_UP

PLAN_FEE = Decimal("49.00")
GB_PRICE = Decimal("0.5")
TIERS = [(Decimal(0), Decimal(1000), Decimal("0.01")), (Decimal(1000), None, Decimal("0.002"))]
CENT = Decimal("0.01")


def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=600)


def call(c, token, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    c.request(method, path, body=data, headers={"Authorization": "Bearer " + token,
                                                 "Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read()
    if r.status >= 300:
        raise SystemExit("%s %s: %d %s" % (method, path, r.status, text[:500].decode(errors="replace")))
    return json.loads(text) if text else None


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def setup(url, token, subs, start):
    c = conn(url)
    call(c, token, "POST", "/v1/billing/metrics", {"code": "api_calls", "name": "API calls", "aggregation": "count"})
    call(c, token, "POST", "/v1/billing/metrics",
         {"code": "storage_gb", "name": "Storage", "aggregation": "sum", "field": "gb"})
    ranges = [{"from_value": str(a), "per_unit_amount": str(p), "flat_amount": "0"} for a, _, p in TIERS]
    for r, (_, b, _) in zip(ranges, TIERS):
        if b is not None:
            r["to_value"] = str(b)
    call(c, token, "POST", "/v1/billing/plans", {
        "code": "bench", "name": "Bench", "interval": "monthly", "amount": str(PLAN_FEE), "currency": "EUR",
        "charges": [{"id": "calls", "metric": "api_calls", "model": "graduated", "properties": {"graduated_ranges": ranges}},
                    {"id": "storage", "metric": "storage_gb", "model": "standard", "properties": {"amount": str(GB_PRICE)}}]})
    ids = []
    for i in range(subs):
        tenant = "bench%05d" % i
        call(c, token, "POST", "/v1/tenants", {"id": tenant, "name": tenant, "plan": "basic"})
        s = call(c, token, "POST", "/v1/billing/subscriptions",
                 {"tenant": tenant, "plan": "bench", "started": rfc3339(start)})
        ids.append(s["subscription"]["id"])
    print("\n".join(ids))


def gb(s, i):
    # a deterministic decimal string with three fraction digits
    return "%d.%03d" % ((s * 7 + i) % 5, (s * 7919 + i * 104729) % 1000)


def graduated(units):
    amount = Decimal(0)
    for a, b, price in TIERS:
        if units <= a:
            break
        top = units if b is None else min(units, b)
        amount += (top - a) * price
    return amount


def post(url, token, subsfile, events, conns, start, end, expected):
    subs = [l.strip() for l in open(subsfile) if l.strip()]
    per = events // len(subs)
    span = end - start - 120
    # rounds of one event per subscription, cut in batches of at most 1,000
    def batches():
        for i in range(per):
            ts = start + 60 + (i * span) // per
            for first in range(0, len(subs), 1000):
                evs = []
                for s in range(first, min(first + 1000, len(subs))):
                    e = {"transaction_id": "t%d" % i, "subscription": subs[s], "timestamp": ts + s % 60}
                    if i % 2 == 0:
                        e["code"] = "api_calls"
                    else:
                        e["code"], e["properties"] = "storage_gb", {"gb": gb(s, i)}
                    evs.append(e)
                yield json.dumps({"events": evs}).encode()

    it = batches()
    lock = threading.Lock()
    totals = {"accepted": 0, "duplicates": 0, "late": 0}
    errors = []

    def worker():
        c = conn(url)
        while True:
            with lock:
                body = next(it, None)
            if body is None:
                return
            try:
                r = call(c, token, "POST", "/v1/billing/usage", body)
            except BaseException as e:  # reported below: the run fails
                errors.append(str(e))
                return
            with lock:
                for k in totals:
                    totals[k] += r[k]

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    if errors:
        raise SystemExit("post: " + errors[0])

    # what each invoice must come to: fee + graduated(calls) + 0.5 x gb, each line at the cent, half-up
    out, grand = {}, Decimal(0)
    calls = (per + 1) // 2
    for s, sub in enumerate(subs):
        total_gb = sum((Decimal(gb(s, i)) for i in range(1, per, 2)), Decimal(0))
        lines = [PLAN_FEE, graduated(Decimal(calls)).quantize(CENT, ROUND_HALF_UP),
                 (total_gb * GB_PRICE).quantize(CENT, ROUND_HALF_UP)]
        total = sum(lines, Decimal(0))
        out[sub] = {"calls": calls, "gb": str(total_gb), "total": str(total)}
        grand += total
    with open(expected, "w") as f:
        json.dump({"invoices": len(subs), "events": per * len(subs), "sum": str(grand), "subscriptions": out}, f,
                  sort_keys=True)
    print("accepted=%d duplicates=%d late=%d seconds=%.3f" %
          (totals["accepted"], totals["duplicates"], totals["late"], seconds))


def main(argv):
    if len(argv) >= 5 and argv[0] == "setup":
        setup(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) >= 9 and argv[0] == "post":
        post(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), int(argv[7]), argv[8])
    else:
        raise SystemExit("usage: billing_load.py setup|post ... (see the header)")


if __name__ == "__main__":
    main(sys.argv[1:])
