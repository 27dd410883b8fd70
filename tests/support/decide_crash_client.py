# Posts decisions to a steward daemon from several connections until the daemon goes away,
# appending "<cycle> <policy> <decision_id> <arrival time>" for every answered (200) decision to a
# file. The arrival time is taken when the answer has been read. Used by
# tests/e2e/decision_log_crash.t.
import http.client, json, sys, threading, time

port, token, outfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
policies = sys.argv[4].split(",")
conns = int(sys.argv[5])
cycle = sys.argv[6]
lock = threading.Lock()
bad = []

def run(k, out):
    policy = policies[k % len(policies)]
    n = 0
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            n += 1
            body = json.dumps({"tenant": "t%d" % k, "n": n, "value": n % 7})
            conn.request("POST", "/v1/decide/" + policy, body, {"Content-Type": "application/json",
                                                               "Authorization": "Bearer " + token})
            resp = conn.getresponse()
            data = resp.read()
            now = time.time()
            if resp.status == 200:
                ref = json.loads(data)["decision_id"]
                with lock:
                    out.write("%s %s %s %.6f\n" % (cycle, policy, ref, now))
            elif resp.status != 503:
                bad.append("unexpected status %d: %s" % (resp.status, data[:200]))
                return
    except (ConnectionError, OSError, http.client.HTTPException, ValueError):
        pass  # the daemon was killed: the cycle is over

with open(outfile, "a") as out:
    threads = [threading.Thread(target=run, args=(k, out)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
for b in bad:
    sys.stderr.write(b + "\n")
sys.exit(2 if bad else 0)
