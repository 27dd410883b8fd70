# Load generator for tests/e2e/cluster_pg.t and bench/cluster_pg.sh: threads post events to
# several steward instances in turn. Each key's events carry n = 1, 2, ... in data; a key's
# next event is posted only after the previous one was acknowledged (202), so per-key order
# is defined. A failed post (instance killed, 503) is retried with the same id on the next
# instance: ids make retries idempotent. Acknowledged "key n" lines go to the ack file.
# Runs until the stop file exists. Usage: cluster_load.py TOKEN ACKFILE STOPFILE THREADS KEYS PORT...
import http.client, json, os, sys, threading, time

token, ackfile, stopfile = sys.argv[1], sys.argv[2], sys.argv[3]
threads, keys = int(sys.argv[4]), int(sys.argv[5])
ports = [int(p) for p in sys.argv[6:]]
lock = threading.Lock()
ack = open(ackfile, "a")
errors = []


def worker(t):
    mine = ["k%02d" % k for k in range(keys) if k % threads == t]
    nxt = {k: 1 for k in mine}
    pi = t % len(ports)
    conn = None
    while not os.path.exists(stopfile):
        for key in mine:
            n = nxt[key]
            body = json.dumps({"id": "%s-%d" % (key, n), "type": "cl.ev", "data": {"key": key, "n": n}})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", ports[pi], timeout=10)
                conn.request("POST", "/v1/events", body, {"Content-Type": "application/json",
                                                          "Authorization": "Bearer " + token})
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 202
                if not ok and resp.status != 503:
                    errors.append("status %d" % resp.status)
            except (ConnectionError, OSError, http.client.HTTPException):
                ok = False
            if ok:
                with lock:
                    ack.write("%s %d\n" % (key, n))
                    ack.flush()
                nxt[key] = n + 1
            else:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            # every post goes to the next instance, so all of them ingest
            pi = (pi + 1) % len(ports)
            if conn is not None:
                conn.close()
                conn = None


ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for th in ts:
    th.start()
for th in ts:
    th.join()
if errors:
    sys.stderr.write("unexpected answers: %s\n" % errors[:5])
    sys.exit(2)
