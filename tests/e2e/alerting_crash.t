#!/bin/bash
# gh-14: the alert engine keeps its state in memory with the store as its journal; a kill -9
# in the middle of an alert storm (many alerts across many groups, flushes and notifications
# under way) must neither lose nor double a notification. The same storm runs twice, once
# undisturbed and once with two kill -9 at random moments (seed printed; STEWARD_SEED replays
# it), and what the webhook receiver got is compared:
# - nothing missing: every group's last notification is the same in both runs (all its alerts,
#   firing or resolved), and every notification the engine committed (its outbox, the
#   alerting.notify events) reached the receiver;
# - no duplicate: the engine never commits two notifications with the same content (group
#   key, receiver, integration, status and alert set with their states) — a notification
#   with the same content is a duplicate, since the test never reaches repeat_interval —
#   and a content reaches the receiver twice only when its notify key was sent again after a
#   crash cut its send (the notify history then counts a second attempt): at least once.
# Runs on SQLite. On PostgreSQL (STEWARD_TEST_STORE) it fails intermittently, also with the
# engine before gh-14 and also without kill -9: in cluster mode an event whose transaction
# commits after a later-numbered one is offered late (a seq gap), so an alert can reach its
# group after the flush that announced the group resolved; not in alerting_pg.t until fixed.
set -u
. "$(dirname "$0")/../support/daemon.sh"
receiver_start
SEED=${STEWARD_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED
NG=40 # groups (alertname), 10 alerts each; the first half is resolved at the end

mkdir -p "$D/policies/alerting" "$D/policies/lib/alerting"
cp "$here/policies/alerting/router.lua" "$D/policies/alerting/router.lua"
cat >"$D/policies/lib/alerting/config.lua" <<CFG
return {
  route = { receiver = "team", group_by = { "alertname", "run" },
            group_wait = "1s", group_interval = "1s", repeat_interval = "1h",
            routes = { { matchers = { 'alertname="Held"' }, receiver = "held", group_wait = "0s" } } },
  receivers = {
    -- (test 1-2: a send the kill cuts; its receiver never answers the first request)
    held = { { kind = "webhook", url = "$R/webhook/held", lease = "4s", timeout = "30s", retries = 0 } },
    -- a send cut by the kill is claimed for its lease: short here, so the test is short
    team = { { kind = "webhook", url = "$R/webhook/team", send_resolved = true,
               lease = "2s", timeout = "2s", retries = 0 } },
  },
}
CFG
daemon_config 'log_level = "info",'

post() { # post JSON: until the daemon acknowledges it (it may be starting again)
    local i code
    for i in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' -d "$1" "http://127.0.0.1:$PORT/api/v2/alerts")
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    echo "# POST failed: $code"; return 1
}
round() { # round RUN I: the I-th alert of every group, firing
    /usr/bin/python3 -c "import json,sys; print(json.dumps([{'labels': {'alertname': 'A%02d' % g, 'instance': 'i%d' % int(sys.argv[2]), 'run': sys.argv[1]}} for g in range($NG)]))" "$1" "$2"
}
resolve() { # resolve RUN: every alert of the first half of the groups, resolved
    /usr/bin/python3 -c "import json,sys; print(json.dumps([{'labels': {'alertname': 'A%02d' % g, 'instance': 'i%d' % i, 'run': sys.argv[1]}, 'startsAt': '2019-12-31T00:00:00Z', 'endsAt': '2020-01-01T00:00:00Z'} for g in range($NG // 2) for i in range(10)]))" "$1"
}
kill_now() { # kill -9 after a random moment (0-800 ms) of the storm, and start again
    sleep "0.$(printf '%03d' $((RANDOM % 800)))"
    daemon_stop KILL
    daemon_start || return 1
    KILLS=$((KILLS + 1))
}

cat >"$D/check.py" <<'PY'
# check.py MODE RUN FILE...: the receiver's requests (stdin) for one run, judged.
import json, sys
mode, run = sys.argv[1], sys.argv[2]
ng = int(sys.argv[3])
reqs = [r for r in json.load(sys.stdin) if r.get("json") and any(a["labels"].get("run") == run for a in r["json"]["alerts"])]
def sig(b):
    return (b["groupKey"], b["receiver"], b["status"], tuple(sorted((a["fingerprint"], a["status"]) for a in b["alerts"])))
last = {}
for r in reqs:
    b = r["json"]
    last[b["groupLabels"]["alertname"]] = b
def final(name):
    b = last.get(name)
    if not b: return None
    return (b["status"], tuple(sorted((a["labels"]["instance"], a["status"]) for a in b["alerts"])))
if mode == "complete":
    ok = True
    for g in range(ng):
        want = "resolved" if g < ng // 2 else "firing"
        f = final("A%02d" % g)
        ok = ok and f is not None and f[0] == want and len(f[1]) == 10 and all(s == want for _, s in f[1])
    sys.exit(0 if ok else 1)
if mode == "notified":
    # every group told at least once that it fires (so its resolution is news)
    told = set(r["json"]["groupLabels"]["alertname"] for r in reqs if r["json"]["status"] == "firing")
    sys.exit(0 if all("A%02d" % g in told for g in range(ng)) else 1)
if mode == "finals":
    print(json.dumps({k: final(k) for k in sorted(last)}, sort_keys=True))
if mode == "received":
    out = {}
    for r in reqs:
        s = json.dumps(sig(r["json"]))
        out[s] = out.get(s, 0) + 1
    print(json.dumps(out))
PY

# judge.py RUN: stdin {outbox = [event data], history = [{key, attempts, status}]}, and the
# receiver's counts by content (file argv[2]); prints the problems, one a line.
cat >"$D/judge.py" <<'PY'
import json, sys
run = sys.argv[1]
got = json.load(open(sys.argv[2]))
d = json.loads(json.loads(sys.stdin.read())) # steward eval prints the JSON text as a quoted string
hist = {h["key"]: h for h in d["history"] if h.get("key")}
seen, problems = {}, []
for data in d["outbox"]:
    m = data["message"]
    if not any(a["labels"].get("run") == run for a in m["alerts"]):
        continue
    status = "firing" if any(a["status"] == "firing" for a in m["alerts"]) else "resolved"
    s = json.dumps([m["group_key"], "team", status, sorted([a["fingerprint"], a["status"]] for a in m["alerts"])])
    if s in seen and seen[s] != data["key"]:
        problems.append("the engine committed the same notification twice: keys %s and %s: %s" % (seen[s], data["key"], s))
    seen[s] = data["key"]
for s, key in seen.items():
    n, h = got.get(s, 0), hist.get(key)
    if n == 0:
        problems.append("committed but never received: key %s (history: %s)" % (key, h))
    elif n > 1 and not (h and h["attempts"] > 1):
        problems.append("received %d times without a cut send: key %s (history: %s)" % (n, key, h))
for s in got:
    if s not in seen:
        problems.append("received but not in the outbox: %s" % s)
print("\n".join(problems), end="")
PY

received() { curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 -c "
import json,sys
run = sys.argv[1]
out = {}
for r in json.load(sys.stdin):
    b = r.get('json')
    if not b or not any(a['labels'].get('run') == run for a in b['alerts']): continue
    s = json.dumps([b['groupKey'], b['receiver'], b['status'], sorted([a['fingerprint'], a['status']] for a in b['alerts'])])
    out[s] = out.get(s, 0) + 1
print(json.dumps(out))" "$1"; }

outbox() {
    "$BIN" eval --socket "$D/var/steward.sock" 'local st = require("steward.runtime.store").default()
      local json = require("steward.json")
      local out, hist = json.array({}), json.array({})
      for i, r in ipairs(assert(st:sql("SELECT data FROM events WHERE type = $1 ORDER BY seq", "alerting.notify"))) do out[i] = json.decode(r.data) end
      for i, r in ipairs(assert(st:sql("SELECT key, status, attempts FROM notify_history"))) do hist[i] = r end
      return json.encode({ outbox = out, history = hist })'
}

# storm NAME KILL1 KILL2: one run; KILLn = the round after which a kill -9 comes (-1: none;
# 10: after the resolutions). Leaves $D/NAME.finals, .problems.
storm() {
    local name=$1 k1=$2 k2=$3 run i
    run="$name-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    KILLS=0
    daemon_start || return 1
    for i in $(seq 0 9); do
        post "$(round "$run" "$i")" || return 1
        if [ "$i" = "$k1" ] || [ "$i" = "$k2" ]; then kill_now || return 1; fi
    done
    # Alertmanager's semantics: a group whose alerts all resolve before its first flush is
    # never notified. The resolutions must be news to every group, however fast the rounds
    # went in, so they wait until each group was told it fires (bounded).
    for i in $(seq 300); do
        curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 "$D/check.py" notified "$run" "$NG" && break
        sleep 0.1
    done
    post "$(resolve "$run")" || return 1
    if [ "$k1" = 10 ] || [ "$k2" = 10 ]; then kill_now || return 1; fi
    # every group told its last state (bounded: the kills' cut sends wait out their 2 s lease)
    for i in $(seq 600); do
        curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 "$D/check.py" complete "$run" "$NG" && break
        sleep 0.1
    done
    # Then a quiet while of several group_interval ticks: a duplicate would come meanwhile.
    sleep 3
    curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 "$D/check.py" complete "$run" "$NG" \
        && echo yes > "$D/$name.complete" || echo no > "$D/$name.complete"
    curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 "$D/check.py" finals "$run" "$NG" > "$D/$name.finals"
    received "$run" > "$D/$name.received"
    outbox | /usr/bin/python3 "$D/judge.py" "$run" "$D/$name.received" > "$D/$name.problems" 2>&1
    echo "# $name: $(grep -c '' "$D/$name.problems") problems, $KILLS kills, $(/usr/bin/python3 -c "import json,sys; print(sum(json.load(open(sys.argv[1])).values()))" "$D/$name.received") notifications received"
    daemon_stop
}

echo "1..8"
echo "# seed $SEED (STEWARD_SEED=$SEED replays the kill moments)"

# A send the kill cuts (the receiver got the request and never answered): after the restart
# the notification's key is still claimed by the dead run (its lease); it is sent again when
# the lease ends, not parked as a dead letter.
curl -sf -d '{"route": "webhook", "responses": [{"hold": true}]}' "$R/_control/plan" >/dev/null
daemon_start || { echo "not ok 1 - the daemon starts"; exit 1; }
post '[{"labels": {"alertname": "Held", "run": "held"}}]'
curl -sf "$R/_control/wait?route=webhook&n=1&timeout=20" >/dev/null
daemon_stop KILL
daemon_start || { echo "not ok 1 - the daemon starts again"; exit 1; }
if curl -sf "$R/_control/wait?route=webhook&n=2&timeout=30" >/dev/null \
   && curl -sf "$R/_control/requests?route=webhook" | /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if len(r) == 2 and r[1]['response']['status'] == 200 and r[0]['json']['groupKey'] == r[1]['json']['groupKey'] else 1)"; then
    echo "ok 1 - a send cut by kill -9 goes out again once its claim's lease ends"
else echo "not ok 1 - a send cut by kill -9 goes out again once its claim's lease ends"; grep -i "dead letter\|claimed" "$D/log" | tail -3 | sed 's/^/# /'; fi
dead=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/dead-letters" | jx 'len(d["dead_letters"])')
[ "$dead" = 0 ] && echo "ok 2 - and it is no dead letter" || echo "not ok 2 - and it is no dead letter ($dead)"
daemon_stop

storm calm -1 -1 || { echo "not ok 3 - the undisturbed storm runs"; exit 1; }
[ "$(cat "$D/calm.complete")" = yes ] && echo "ok 3 - undisturbed: every group ends told its last state" \
    || { echo "not ok 3 - undisturbed: every group ends told its last state"; sed 's/^/# /' "$D/calm.finals" | head -c 3000; echo; }
[ ! -s "$D/calm.problems" ] && echo "ok 4 - undisturbed: no duplicate, nothing committed is missing" \
    || { echo "not ok 4 - undisturbed: no duplicate, nothing committed is missing"; head -20 "$D/calm.problems" | sed 's/^/# /'; }

K1=$((RANDOM % 10))
K2=$(( (K1 + 1 + RANDOM % 10) % 11 ))
echo "# kills after rounds $K1 and $K2 (10 = after the resolutions)"
storm crash "$K1" "$K2" || { echo "not ok 5 - the storm with kill -9 runs"; exit 1; }
echo "ok 5 - the storm with two kill -9 runs"
[ "$(cat "$D/crash.complete")" = yes ] && echo "ok 6 - after kill -9: every group ends told its last state" \
    || { echo "not ok 6 - after kill -9: every group ends told its last state"; sed 's/^/# /' "$D/crash.finals" | head -c 3000; echo; }
if cmp -s "$D/calm.finals" "$D/crash.finals"; then
    echo "ok 7 - after kill -9: every group's last notification is the undisturbed run's"
else
    echo "not ok 7 - after kill -9: every group's last notification is the undisturbed run's"
    diff "$D/calm.finals" "$D/crash.finals" | head -c 3000 | sed 's/^/# /'; echo
fi
[ ! -s "$D/crash.problems" ] && echo "ok 8 - after kill -9: no duplicate, nothing committed is missing" \
    || { echo "not ok 8 - after kill -9: no duplicate, nothing committed is missing"; head -20 "$D/crash.problems" | sed 's/^/# /'; }
