#!/usr/bin/python3
"""Sends N requests through HAProxy, one connection each, and prints a JSON object: how many
answers each server name gave, per status, and how many requests failed (no answer).
Usage: haproxy_load.py PORT N [PATH]"""
import http.client
import json
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else "/"
by_name, by_status, failed = {}, {}, 0
for _ in range(n):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode().strip()
        c.close()
        by_name[body] = by_name.get(body, 0) + 1
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    except Exception:
        failed += 1
print(json.dumps({"by_name": by_name, "by_status": by_status, "failed": failed}, sort_keys=True))
