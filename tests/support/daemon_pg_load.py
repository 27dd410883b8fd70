"""Load generator for tests/e2e/daemon_pg.t: workers POST batches of events with client-chosen
ids to a daemon until the file STOP exists. A batch answered 503 is sent again, same ids (the
log's unique id makes the retry safe), after a short pause. Writes OUT as JSON: the ids
acknowledged with a 202 (OUT.progress, rewritten every 0.1 s while it runs, has their count), a status count, whether every 503 carried Retry-After and the
error code store_unavailable, and how many retries the daemon reported as duplicates.

usage: daemon_pg_load.py PORT TOKEN OUT STOP [WORKERS]
"""
import http.client
import json
import os
import random
import sys
import threading
import time

port, token, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
workers = int(sys.argv[5]) if len(sys.argv) > 5 else 4
progress = out + ".progress"

lock = threading.Lock()
acked = []
statuses = {}
bad_503 = []          # 503 answers without Retry-After or with another error code
retry_after = set()
duplicates_on_retry = 0
transport_errors = 0


def post(conn, body):
    conn.request("POST", "/v1/events", body=body,
                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.getheader("Retry-After"), r.read()


def worker(k):
    global duplicates_on_retry, transport_errors
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    rnd = random.Random(k)
    while not os.path.exists(stop):
        size = rnd.choice([1, 1, 5, 20])
        ids = ["w%d-%d" % (k, n + i) for i in range(size)]
        n += size
        body = json.dumps([{"id": i, "type": "load.x", "data": {"w": k}} for i in ids])
        retried = False
        while not os.path.exists(stop):
            try:
                status, ra, raw = post(conn, body)
            except (OSError, http.client.HTTPException):
                # A keep-alive connection closed under us: reconnect and send it again.
                with lock:
                    transport_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                retried = True
                time.sleep(0.05)
                continue
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 503:
                    try:
                        code = json.loads(raw)["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = None
                    if ra is None or code != "store_unavailable":
                        bad_503.append({"retry_after": ra, "code": code})
                    else:
                        retry_after.add(ra)
            if status == 202:
                res = json.loads(raw)
                with lock:
                    acked.extend(res["ids"])
                    if retried:
                        duplicates_on_retry += res["duplicates"]
                break
            if status != 503:
                break  # counted; the test fails on any status but 202 and 503
            retried = True
            time.sleep(0.05)


def report(path, full):
    with lock:
        data = {"acked": list(acked) if full else len(acked),
                "statuses": {str(k): v for k, v in statuses.items()},
                "bad_503": bad_503, "retry_after": sorted(retry_after),
                "duplicates_on_retry": duplicates_on_retry, "transport_errors": transport_errors}
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    report(progress, False)
    time.sleep(0.1)
report(out, True)
