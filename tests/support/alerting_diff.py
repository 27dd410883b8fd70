#!/usr/bin/python3
"""Driver of tests/e2e/alerting_diff.t: one scripted stream of alerts, silences and
inhibitions sent to two alerting systems (Alertmanager 0.25 as the reference, and steward),
each notifying a webhook receiver of its own; then the notifications are compared per
receiver and group key.

Usage: alerting_diff.py DIR FIRST_TEST_NUMBER
  1. starts the two webhook receivers ("ref" and "test") on 127.0.0.1, port 0;
  2. writes DIR/alertmanager.yml (receivers -> the "ref" receiver), DIR/config.lua (the same
     routing for steward's policies/lib/alerting/config.lua -> the "test" receiver) and
     DIR/alertmanager_test.yml (the same as a second Alertmanager -> "test": the self-check
     run, ALERTING_DIFF_SELF=1, which proves the stream itself is deterministic), then the
     file DIR/ready;
  3. waits for DIR/go: JSON {"ref": {"url": ...}, "test": {"url": ..., "token": ...}};
  4. plays the stream (ticks of one second), waits for the last notifications, and prints
     TAP lines numbered from FIRST_TEST_NUMBER; writes the last number to DIR/last (the test
     script adds its own lines and the plan). Exits 1 on a mismatch.

Comparison: for each (receiver, groupKey) the ordered notifications, each as (status, sorted
firing alerts, sorted resolved alerts), must be equal, and each notification's arrival time
must be within ALERTING_DIFF_TOL seconds (default 1.5) of the reference's. A mismatch prints
both sequences side by side with the stream time of each notification.

The stream is built so that the reference's outcome does not depend on scheduling jitter:
every group starts on a tick t = 0 (mod 4), so with group_wait 1s and group_interval 4s it
flushes at t = 1 (mod 4); every change to an existing group (new alert, resolution, endsAt
passing, silence, inhibition source) happens at t = 3 (mod 4), two seconds from any flush.
repeat_interval is 10s, not 12s: 12s is exactly three group intervals, and whether
Alertmanager then repeats depends on a few milliseconds (the notification log's timestamp
is taken after the send, the next flush's "now" by a timer).
"""
import datetime
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOL = float(os.environ.get("ALERTING_DIFF_TOL", "1.5"))
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = 1, 4, 10

# ---- the scenario ----

# Alerts by short name (used in diffs).
ALERTS = {
    "hl1": {"alertname": "HighLoad", "instance": "i1"},
    "hl2": {"alertname": "HighLoad", "instance": "i2"},
    "hl3": {"alertname": "HighLoad", "instance": "i3"},
    "lat-c1-warn": {"alertname": "Latency", "cluster": "c1", "severity": "warning"},
    "lat-c2-warn": {"alertname": "Latency", "cluster": "c2", "severity": "warning"},
    "lat-c1-crit": {"alertname": "Latency", "cluster": "c1", "severity": "critical"},
    "lat-c3-crit": {"alertname": "Latency", "cluster": "c3", "severity": "critical"},
    "err-c3-warn": {"alertname": "Errors", "cluster": "c3", "severity": "warning"},
    "q1": {"alertname": "Queue", "team": "a", "instance": "q1"},
    "q2": {"alertname": "Queue", "team": "a", "instance": "q2"},
    "d1": {"alertname": "Disk", "team": "b", "instance": "d1"},
    "d2": {"alertname": "Disk", "team": "b", "instance": "d2"},
    "old": {"alertname": "Old", "instance": "o1"},
    "late1": {"alertname": "Late", "instance": "l1"},
    "late2": {"alertname": "Late", "instance": "l2"},
    "blip": {"alertname": "Blip", "instance": "b1"},
}

# (tick, action, args). Actions:
#   fire NAME [end=T] [starts=OFFSET]: a new firing alert; re-sent at every tick = 3 (mod 4)
#       while firing, with endsAt now+12s, or the fixed endsAt T (it then expires by endsAt);
#       starts: startsAt relative to the tick (default 0).
#   resolve NAME: sent with endsAt = now (explicit resolution).
#   resolved NAME: a first send that is already resolved (startsAt -5s, endsAt -1s).
#   silence ID MATCHERS [end=T]: created with startsAt now, endsAt T (default +1h).
#   expire ID: DELETE /api/v2/silence/{id}.
STREAM = [
    (0, "fire", "hl1", {"end": 27}),            # expires by endsAt
    (0, "fire", "hl2", {}),
    (0, "fire", "lat-c1-warn", {}),
    (0, "fire", "lat-c2-warn", {"end": 39}),
    (0, "fire", "err-c3-warn", {}),
    (0, "fire", "q1", {}),                      # team a: route team-a (continue) and team-b (group_by ...)
    (0, "fire", "q2", {}),
    (0, "fire", "d1", {}),                      # team b: group_by ['...'], a group per alert
    (0, "fire", "d2", {}),
    (3, "fire", "hl3", {}),                     # joins an existing group
    (7, "fire", "lat-c1-crit", {}),             # inhibits lat-c1-warn (same group)
    (7, "fire", "lat-c3-crit", {}),             # inhibits err-c3-warn (another group: all of it)
    (8, "fire", "old", {"starts": -3600}),      # startsAt long past: flushed without group_wait
    (11, "silence", "s1", ['alertname="HighLoad"', 'instance="i2"']),
    (15, "resolve", "q1", {}),
    (16, "fire", "late1", {"end": 31}),         # a group started mid-way
    (16, "fire", "late2", {}),
    (19, "resolve", "hl3", {}),
    (23, "expire", "s1", {}),
    (26, "resolve", "old", {}),                 # the Old group flushes at t = 0 (mod 4)
    (27, "resolve", "lat-c1-crit", {}),         # inhibition lifts
    (27, "resolve", "lat-c3-crit", {}),
    (31, "silence", "s2", ['alertname="Disk"', 'instance="d1"'], {"end": 43}),   # a whole group, expires by time
    (32, "resolved", "blip", {}),               # resolved before it was ever notified: no notification
    (35, "resolve", "d2", {}),
    (51, "resolve", "hl2", {}),
    (51, "resolve", "lat-c1-warn", {}),
    (51, "resolve", "err-c3-warn", {}),
    (51, "resolve", "q2", {}),
    (51, "resolve", "d1", {}),
    (51, "resolve", "late2", {}),
]
END_TICK = 56          # the last flushes are at 53
RESEND_PHASE = 3

# Groups the reference must have notified (a check of the harness itself): (receiver, alertname).
EXPECTED_GROUPS = {("default", "HighLoad"), ("default", "Latency"), ("default", "Errors"), ("default", "Old"),
                   ("default", "Late"), ("team-a", "Queue"), ("team-b", "Queue"), ("team-b", "Disk")}

ROUTES_YAML = """route:
  receiver: default
  group_by: [alertname]
  group_wait: {gw}s
  group_interval: {gi}s
  repeat_interval: {ri}s
  routes:
    - matchers: ['team="a"']
      receiver: team-a
      continue: true
    - matchers: ['team=~"a|b"']
      receiver: team-b
      group_by: ['...']
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
receivers:
"""

CONFIG_LUA = """-- Written by tests/support/alerting_diff.py: the routing of the alertmanager.yml it writes.
local function hook(name)
  return { { kind = "webhook", url = "@BASE@/" .. name, send_resolved = true } }
end
return {
  route = { receiver = "default", group_by = { "alertname" },
            group_wait = "@GW@s", group_interval = "@GI@s", repeat_interval = "@RI@s",
            routes = {
              { matchers = { 'team="a"' }, receiver = "team-a", continue = true },
              { matchers = { 'team=~"a|b"' }, receiver = "team-b", group_by = { "..." } },
            } },
  inhibit_rules = {
    { source_matchers = { 'severity="critical"' }, target_matchers = { 'severity="warning"' },
      equal = { "cluster" } },
  },
  receivers = { default = hook("default"), ["team-a"] = hook("team-a"), ["team-b"] = hook("team-b") },
}
"""
RECEIVERS = ("default", "team-a", "team-b")


def alertmanager_yml(base):
    out = ROUTES_YAML.format(gw=GROUP_WAIT, gi=GROUP_INTERVAL, ri=REPEAT_INTERVAL)
    for r in RECEIVERS:
        out += "  - name: %s\n    webhook_configs:\n      - url: %s/%s\n        send_resolved: true\n" % (r, base, r)
    return out


# ---- webhook receivers ----

class Recorder:
    def __init__(self, name):
        self.name = name
        self.records = []
        self.cond = threading.Condition()

    def serve(self):
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                t = time.time()
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"invalid": body.decode("utf-8", "replace")}
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                with rec.cond:
                    rec.records.append({"t": t, "path": self.path, "body": data})
                    rec.cond.notify_all()

            def log_message(self, *a):
                pass

        # A deep accept queue: Alertmanager sends all due groups at once, and with the default
        # backlog of 5 a dropped SYN costs a 1 s retransmission, i.e. a late notification.
        ThreadingHTTPServer.request_queue_size = 128
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def snapshot(self):
        with self.cond:
            return list(self.records)


# ---- sending ----

def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        "%03dZ" % int(round((t % 1) * 1000) % 1000)


class System:
    def __init__(self, name, url, token=None):
        self.name, self.url, self.token = name, url.rstrip("/"), token
        self.silences = {}
        self.errors = []

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            self.errors.append("%s %s: %d %s" % (method, path, e.code, e.read()[:200]))
        except Exception as e:  # noqa: BLE001 - any failure to deliver is reported as a test failure
            self.errors.append("%s %s: %s" % (method, path, e))
        return None


def play(systems, t0, log):
    """Plays STREAM against every system; returns nothing (errors are kept per system)."""
    firing = {}  # name -> {"starts": abs time, "end": abs time or None}
    by_tick = {}
    for ev in STREAM:
        by_tick.setdefault(ev[0], []).append(ev)
    for tick in range(0, END_TICK + 1):
        delay = t0 + tick - time.time()
        if delay > 0:
            time.sleep(delay)  # the stream is a schedule: ticks are wall-clock instants
        now = t0 + tick
        batch = []
        for ev in by_tick.get(tick, []):
            _, action, name = ev[0], ev[1], ev[2]
            opts = ev[3] if len(ev) > 3 and isinstance(ev[3], dict) else {}
            if action == "fire":
                a = {"starts": now + opts.get("starts", 0), "end": (t0 + opts["end"]) if "end" in opts else None}
                firing[name] = a
                batch.append(payload(name, a, now))
            elif action == "resolve":
                a = firing.pop(name)
                batch.append({"labels": ALERTS[name], "startsAt": rfc3339(a["starts"]), "endsAt": rfc3339(now)})
            elif action == "resolved":
                batch.append({"labels": ALERTS[name], "startsAt": rfc3339(now - 5), "endsAt": rfc3339(now - 1)})
            elif action == "silence":
                opts = ev[4] if len(ev) > 4 else {}
                end = t0 + opts["end"] if "end" in opts else now + 3600
                matchers = []
                for m in ev[3]:
                    n, v = m.split("=", 1)
                    matchers.append({"name": n, "value": json.loads(v), "isRegex": False, "isEqual": True})
                for s in systems:
                    r = s.call("POST", "/api/v2/silences", {"matchers": matchers, "startsAt": rfc3339(now),
                                                            "endsAt": rfc3339(end), "createdBy": "alerting_diff",
                                                            "comment": name})
                    if r and r.get("silenceID"):
                        s.silences[name] = r["silenceID"]
                log("t=%d silence %s" % (tick, name))
            elif action == "expire":
                for s in systems:
                    sid = s.silences.get(name)
                    if sid is None:
                        s.errors.append("silence %s was not created" % name)
                    else:
                        s.call("DELETE", "/api/v2/silence/" + sid)
                log("t=%d expire %s" % (tick, name))
        # Re-sends, as Prometheus re-sends firing alerts; an alert whose fixed endsAt has
        # passed is no longer sent (it expires).
        if tick % 4 == RESEND_PHASE:
            sent = {b["labels"]["__name"] for b in batch if "__name" in b["labels"]}
            for name, a in sorted(firing.items()):
                if name not in sent and (a["end"] is None or a["end"] > now):
                    batch.append(payload(name, a, now))
        for name in [n for n, a in firing.items() if a["end"] is not None and a["end"] <= now]:
            del firing[name]
        if batch:
            for b in batch:
                b["labels"].pop("__name", None)
            for s in systems:
                s.call("POST", "/api/v2/alerts", batch)


def payload(name, a, now):
    labels = dict(ALERTS[name])
    labels["__name"] = name  # removed before sending; marks what this tick already sent
    return {"labels": labels, "annotations": {"summary": name}, "startsAt": rfc3339(a["starts"]),
            "endsAt": rfc3339(a["end"] if a["end"] is not None else now + 12), "generatorURL": "http://prom/" + name}


# ---- comparison ----

NAMES = {tuple(sorted(v.items())): k for k, v in ALERTS.items()}


def short(labels):
    return NAMES.get(tuple(sorted(labels.items())), json.dumps(labels, sort_keys=True))


def notifications(records, t0):
    """-> {(receiver, groupKey): [(status, firing tuple, resolved tuple, t)]}, fingerprints"""
    out, fps = {}, {}
    for r in records:
        b = r["body"]
        key = (b.get("receiver", r["path"].strip("/")), b.get("groupKey", "?"))
        firing, resolved = [], []
        for a in b.get("alerts", []):
            n = short(a.get("labels", {}))
            fps.setdefault(n, set()).add(a.get("fingerprint"))
            (firing if a.get("status") == "firing" else resolved).append(n)
        out.setdefault(key, []).append((b.get("status"), tuple(sorted(firing)), tuple(sorted(resolved)),
                                        r["t"] - t0))
    return out, fps


def fmt(n):
    if n is None:
        return "-"
    return "t=%5.2f %-8s firing [%s] resolved [%s]" % (n[3], n[0], " ".join(n[1]), " ".join(n[2]))


def main():
    out_dir, first = sys.argv[1], int(sys.argv[2])
    self_check = os.environ.get("ALERTING_DIFF_SELF") == "1"
    ref, test = Recorder("ref"), Recorder("test")
    ref_base, test_base = ref.serve(), test.serve()
    with open(os.path.join(out_dir, "alertmanager.yml"), "w") as f:
        f.write(alertmanager_yml(ref_base))
    with open(os.path.join(out_dir, "alertmanager_test.yml"), "w") as f:
        f.write(alertmanager_yml(test_base))
    with open(os.path.join(out_dir, "config.lua"), "w") as f:
        f.write(CONFIG_LUA.replace("@BASE@", test_base).replace("@GW@", str(GROUP_WAIT))
                .replace("@GI@", str(GROUP_INTERVAL)).replace("@RI@", str(REPEAT_INTERVAL)))
    open(os.path.join(out_dir, "ready"), "w").close()
    go = os.path.join(out_dir, "go")
    deadline = time.time() + 120
    while not os.path.exists(go):  # the test script writes it once both systems are up
        if time.time() > deadline:
            print("# alerting_diff.py: no go file after 120 s")
            sys.exit(1)
        time.sleep(0.05)
    time.sleep(0.05)
    with open(go) as f:
        cfg = json.load(f)
    ref_sys = System("Alertmanager", cfg["ref"]["url"])
    test_name = "Alertmanager (self-check)" if self_check else "steward"
    test_sys = System(test_name, cfg["test"]["url"], cfg["test"].get("token"))
    n = [first - 1]

    def ok(cond, name, diag=()):
        n[0] += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", n[0], name))
        for line in diag:
            print("#   " + line)
        sys.stdout.flush()
        return cond

    verbose = os.environ.get("ALERTING_DIFF_VERBOSE") == "1"

    def log(msg):
        if verbose:
            print("# " + msg)
            sys.stdout.flush()

    # Start on a whole second plus a margin, so ticks are comfortably spaced from now.
    t0 = float(int(time.time()) + 2)
    play([ref_sys, test_sys], t0, log)
    ok(not ref_sys.errors and not test_sys.errors, "the stream was delivered to both systems",
       ["%s: %s" % (s.name, e) for s in (ref_sys, test_sys) for e in s.errors])

    # Await the last notifications: the reference's are complete once its final flush has
    # passed; then give the tested system until each group has as many notifications as the
    # reference's (or a deadline).
    ref_n, _ = notifications(ref.snapshot(), t0)
    deadline = time.time() + 4 + TOL
    with test.cond:
        while time.time() < deadline:
            got, _ = notifications(list(test.records), t0)
            if all(len(got.get(k, [])) >= len(v) for k, v in ref_n.items()):
                break
            test.cond.wait(deadline - time.time())
    # A short settle so that a surplus notification (tested system sending more) is seen too.
    time.sleep(TOL)
    ref_n, ref_fps = notifications(ref.snapshot(), t0)
    test_n, test_fps = notifications(test.snapshot(), t0)
    if verbose or os.environ.get("ALERTING_DIFF_DUMP"):
        for k in sorted(ref_n):
            log("reference %s %s" % k)
            for x in ref_n[k]:
                log("   " + fmt(x))

    covered = {(rcv, a) for (rcv, gk) in ref_n for a in ALERTS_BY_GROUPKEY(gk)}
    ok(EXPECTED_GROUPS <= covered and not any("Blip" in gk for _, gk in ref_n),
       "Alertmanager notified every group the stream drives (%d groups, %d notifications), none for the never-notified Blip"
       % (len(ref_n), sum(len(v) for v in ref_n.values())),
       ["missing: %s" % sorted(EXPECTED_GROUPS - covered)] if not EXPECTED_GROUPS <= covered else [])

    mismatches = 0
    worst = [0.0]
    for key in sorted(set(ref_n) | set(test_n)):
        a, b = ref_n.get(key, []), test_n.get(key, [])
        same_seq = [x[:3] for x in a] == [x[:3] for x in b]
        late = [i for i in range(min(len(a), len(b))) if abs(a[i][3] - b[i][3]) > TOL]
        good = same_seq and not late
        diag = []
        if not good:
            mismatches += 1
            diag.append("%-4s %-62s %s" % ("#", "Alertmanager", test_name))
            for i in range(max(len(a), len(b))):
                x = a[i] if i < len(a) else None
                y = b[i] if i < len(b) else None
                mark = ""
                if x is None or y is None or x[:3] != y[:3]:
                    mark = "  <-- differs"
                elif i in late:
                    mark = "  <-- %.2f s apart (tolerance %.1f s)" % (abs(x[3] - y[3]), TOL)
                diag.append("%-4d %-62s %s%s" % (i + 1, fmt(x), fmt(y), mark))
        dt = max([abs(a[i][3] - b[i][3]) for i in range(min(len(a), len(b)))] or [0])
        worst[0] = max(worst[0], dt)
        ok(good, "receiver %s, group %s: %d notifications, %s (max |dt| %.2f s)" % (
            key[0], key[1], len(a), "same sequence and times" if good else "MISMATCH", dt), diag)

    # Fingerprints: the tested system must send Alertmanager's fingerprint of each alert.
    bad = ["%s: Alertmanager %s, %s %s" % (k, sorted(ref_fps[k]), test_name, sorted(v))
           for k, v in sorted(test_fps.items()) if k in ref_fps and v != ref_fps[k]]
    ok(not bad, "each alert carries Alertmanager's fingerprint", bad)
    with open(os.path.join(out_dir, "last"), "w") as f:
        f.write(str(n[0]))
    # The raw records, for a closer look after a failure.
    with open(os.path.join(out_dir, "records.json"), "w") as f:
        json.dump({"t0": t0, "ref": ref.snapshot(), "test": test.snapshot()}, f, indent=1)
    sys.exit(0 if mismatches == 0 else 1)


def ALERTS_BY_GROUPKEY(gk):
    """The alertnames a group key's label part names (for the harness check)."""
    out = set()
    for a in {v["alertname"] for v in ALERTS.values()}:
        if 'alertname="%s"' % a in gk:
            out.add(a)
    return out


if __name__ == "__main__":
    main()
