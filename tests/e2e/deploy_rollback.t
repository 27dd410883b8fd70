#!/bin/bash
# Automated rollback (issue 15's proof): a canary whose instances answer 500 to half of their
# requests is aborted by its analysis, and what it cost is bounded. A real HAProxy in front of
# instances of tests/support/rollback_app.py run by the supervisor; a constant load of 200
# requests a second through HAProxy the whole time. The canary: 20 % of the traffic, then an
# analysis of its HAProxy error rate every second with failure_limit 2.
# Asserted from the rollout's own record, not from a clock: its analysis run failed at the
# third failed measurement (failure_limit + 1) and took no measurement after it. Then: HAProxy
# gives the canary no weight and the load sees v1 only, the canary is retired after
# abort_scale_down_delay, deploy.alerts raised RolloutAborted, and the failed requests are at
# most the canary's share of the requests sent while it had traffic (weight x error rate x
# requests, x1.5 + 5 for the round robin's granularity and the requests in flight at the
# switch). The figures are printed as TAP comments (docs/performance.md has one run's).
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/rollback_stage.sh"
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed (Debian package haproxy)"; exit 0; }
trap stage_cleanup EXIT
echo "1..10"
RATE=200 INTERVAL=1 LIMIT=2 WEIGHT=20 ERR=50

stage_haproxy
ok $? "HAProxy runs with its admin socket"
stage_daemon "local deploy = require \"steward.deploy\"
return deploy.rollout_policy{
  name = \"deploy.web\", service = \"web\",
  strategy = deploy.canary{
    steps = {
      { set_weight = $WEIGHT },
      { analysis = { metrics = { { name = \"error-rate\", interval = \"${INTERVAL}s\", initial_delay = \"${INTERVAL}s\", count = 10, failure_limit = $LIMIT,
          provider = { haproxy = { metric = \"error_rate\" } },
          success_condition = function(rate) return rate < 0.05 end } } } },
      { set_weight = 50 },
      { pause = {} },
    },
    abort_scale_down_delay = \"2s\", scale_down_delay = \"1s\",
  },
}"
ok $? "steward runs with the canary policy" || exit 1

r1=$(start_rollout v1)
wait_for 60 at "$r1" "Completed 1"
ok $? "the first revision v1 is rolled out whole" || diag "$r1"

stage_load load "$RATE"
mark=$(wc -l < "$S/load")
r2=$(start_rollout v2-err$ERR)
wait_for 40 at "$r2" "Aborted 2"
ok $? "v2-err$ERR is aborted at its analysis step" || diag "$r2"
t_seen=$(date +%s.%N)

# The record: the run's measurements and the history's abort.
field "$r2" 'd' > "$S/r2.json"
/usr/bin/python3 - "$S/r2.json" "$LIMIT" > "$S/record" <<'PY'
import json, sys
d, limit = json.load(open(sys.argv[1])), int(sys.argv[2])
run = d["current"]["analysis"]
ms = run["results"]["error-rate"]["measurements"]
phases = [m["phase"] for m in ms]
failed_at = [i for i, p in enumerate(phases) if p == "Failed"]
aborted = [h for h in d["history"] if h["kind"] == "aborted"]
ok = (run["phase"] == "Failed" and len(failed_at) == limit + 1 and failed_at[-1] == len(phases) - 1
      and len(aborted) == 1)
print("ok" if ok else "bad")
print(" ".join(phases))
print(" ".join("%.2f" % m["value"] if isinstance(m.get("value"), (int, float)) else "-" for m in ms))
# the abort is in the transaction of the last measurement: its time, to the millisecond
print("%.3f" % ms[-1]["finished_at"] if ms else "")
PY
[ "$(sed -n 1p "$S/record")" = ok ]
ok $? "the analysis failed at its failure_limit+1-th failed measurement and took none after it ($(sed -n 2p "$S/record"); error rates $(sed -n 3p "$S/record"))" || diag "$r2"

# After the abort HAProxy sends the canary nothing: its servers have weight 0 (or are gone),
# and the requests started after we saw the abort all reach v1.
weights > "$S/weights"
! grep -q "^v2-err$ERR-[0-9]* [1-9]" "$S/weights"
ok $? "HAProxy gives the canary no weight after the abort ($(tr '\n' ';' < "$S/weights"))"
n_now=$(wc -l < "$S/load")
wait_for 20 sh -c "[ \$(wc -l < '$S/load') -ge $((n_now + RATE)) ]"
after=$(awk -v t="$t_seen" '$3 > t { print $1, $2 }' "$S/load" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';')
[ "$(awk -v t="$t_seen" '$3 > t && !($1 == 200 && $2 == "v1")' "$S/load" | wc -l)" = 0 ] &&
    [ "$(awk -v t="$t_seen" '$3 > t' "$S/load" | wc -l)" -gt 0 ]
ok $? "every request started after the abort was answered 200 by v1 ($after)"

wait_for 20 sh -c "api() { curl -s -m 30 -H 'Authorization: Bearer $TOKEN' \"\$@\"; }; api http://127.0.0.1:$PORT/v1/rollouts/$r2 | /usr/bin/python3 $here/tests/support/jx.py 'any(h[\"kind\"] == \"scaled_down\" for h in d[\"history\"])' >/dev/null"
sd=$?
canary_alive=0
while read -r pid _ ver; do
    [ "$ver" = "v2-err$ERR" ] && kill -0 "$pid" 2>/dev/null && canary_alive=$((canary_alive + 1))
done < "$S/starts"
canary_out() { weights > "$S/weights.after"; ! grep -q "^v2-err$ERR" "$S/weights.after"; }
wait_for 10 canary_out
[ "$sd" = 0 ] && [ "$canary_alive" = 0 ] && ! grep -q "^v2-err$ERR" "$S/weights.after"
ok $? "the canary is scaled down after abort_scale_down_delay (out of the backend, its processes gone: $canary_alive alive)" || diag "$r2"

wait_for 20 sh -c "curl -s -m 5 -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$PORT/api/v2/alerts | /usr/bin/python3 $here/tests/support/jx.py 'any(a[\"labels\"][\"alertname\"] == \"RolloutAborted\" and a[\"labels\"][\"service\"] == \"web\" and a[\"status\"][\"state\"] == \"active\" for a in d)' >/dev/null"
ok $? "rollout.aborted raised a RolloutAborted alert through deploy.alerts"

# The figures: from the first request the canary answered to the abort (its last measurement).
stage_stop_load
/usr/bin/python3 - "$S/load" "$mark" "$(sed -n 4p "$S/record")" "$WEIGHT" "$ERR" "$INTERVAL" "$LIMIT" > "$S/figures" <<'PY'
import sys
path, mark, t_abort = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
weight, err, interval, limit = int(sys.argv[4]) / 100, int(sys.argv[5]) / 100, float(sys.argv[6]), int(sys.argv[7])
rows = [l.split() for l in open(path).read().splitlines()[mark:]]
rows = [(int(s), v, float(t)) for s, v, t in rows]
canary = [t for s, v, t in rows if v.startswith("v2-")]
t0 = min(canary)
sent = sum(1 for s, v, t in rows if t0 <= t <= t_abort)
failed = sum(1 for s, v, t in rows if s != 200)
bound = weight * err * sent * 1.5 + 5
print("ok" if failed <= bound else "bad")
print("time from the canary's first answer to the abort: %.2f s (interval x (failure_limit + 1) = %.0f s, + one interval = %.0f s)"
      % (t_abort - t0, interval * (limit + 1), interval * (limit + 2)))
print("failed requests: %d of %d sent while the canary had traffic; its share %.0f%% x %.0f%% x %d = %.1f (bound with slack %.1f)"
      % (failed, sent, weight * 100, err * 100, sent, weight * err * sent, bound))
PY
[ "$(sed -n 1p "$S/figures")" = ok ]
ok $? "the failed requests are bounded by the canary's share of the traffic"
sed -n '2,$p' "$S/figures" | sed 's/^/# /'
