# Posts batches of events to a steward daemon until the connection fails, appending the ids
# of every acknowledged (202) batch to a file. Used by tests/e2e/daemon_crash.t.
import http.client, json, sys

port, token, prefix, ackfile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
batch = 20
n = 0
try:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with open(ackfile, "a") as ack:
        while True:
            ids = ["%s-%d" % (prefix, n + i) for i in range(batch)]
            n += batch
            body = json.dumps([{"id": i, "type": "crash.test", "data": {"n": i}} for i in ids])
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/json",
                                                      "Authorization": "Bearer " + token})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 202:
                ack.write("\n".join(ids) + "\n")
                ack.flush()
            elif resp.status not in (503,):
                sys.stderr.write("unexpected status %d: %s\n" % (resp.status, data[:200]))
                sys.exit(2)
except (ConnectionError, OSError, http.client.HTTPException):
    pass  # the daemon was killed: the cycle is over
