#!/usr/bin/python3
"""For tests/e2e/load_*.t: evaluates a Python expression over a `steward load --json` report
(r, or None when the file is empty) and the counts of tests/support/load_counter.py (c,
fetched from 127.0.0.1:PORT/__counts); exit 0 when it is true, else 1 with both printed."""
import json
import sys
import urllib.request

report, port, expr = sys.argv[1], sys.argv[2], sys.argv[3]
with open(report) as f:
    text = f.read()
r = json.loads(text) if text.strip() else None
with urllib.request.urlopen("http://127.0.0.1:%s/__counts" % port, timeout=10) as resp:
    c = json.loads(resp.read())
try:
    ok = eval(expr, {"r": r, "c": c, "sum": sum, "all": all, "len": len})
except Exception as e:  # a malformed report fails the check, visibly
    ok = False
    print("error: %r" % e, file=sys.stderr)
if not ok:
    print("expression: %s\ncounts: %s\nreport: %s" % (expr, json.dumps(c), text[:3000]), file=sys.stderr)
sys.exit(0 if ok else 1)
