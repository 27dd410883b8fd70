#!/bin/bash
# Blue-green with zero downtime (issue 15's proof): a constant load of 200 requests a second
# through a real HAProxy to instances of tests/support/rollback_app.py run by the supervisor,
# while three blue-green rollouts run. The preview gets no weight; smoke requests reach it
# through HAProxy all the same (an X-Server header, see tests/support/rollback_stage.sh), so
# the pre-promotion analysis reads the preview's own HAProxy counters, as Argo's analysis
# reads a preview Service.
#   v2         passes its pre-promotion analysis, is promoted after auto_promotion_seconds,
#              passes its post-promotion analysis: 0 failed requests over the whole rollout,
#              v1 stopped after scale_down_delay (not before).
#   v3-err50   fails half of its smoke requests: never switched, 0 failed requests.
#   v4-live50  passes the smoke requests but fails half of the real ones once it is active: the
#              post-promotion analysis switches the traffic back to v2; the failed requests are
#              counted (TAP comment) and bounded by half of those sent while v4 was active.
set -u
. "$(dirname "$0")/../support/daemon.sh"
. "$here/tests/support/rollback_stage.sh"
command -v haproxy >/dev/null || { echo "1..0 # SKIP haproxy is not installed (Debian package haproxy)"; exit 0; }
trap stage_cleanup EXIT
echo "1..17"
RATE=200

stage_haproxy
ok $? "HAProxy runs with its admin socket"
stage_daemon 'local deploy = require "steward.deploy"
local function errors(name)
  return { metrics = { { name = name, interval = "1s", initial_delay = "1s", count = 2, failure_limit = 0,
    provider = { haproxy = { metric = "error_rate" } },
    success_condition = function(rate) return rate < 0.05 end } } }
end
return deploy.rollout_policy{
  name = "deploy.web", service = "web",
  strategy = deploy.blue_green{
    pre_promotion_analysis = errors("preview-errors"),
    post_promotion_analysis = errors("active-errors"),
    auto_promotion_seconds = 2,
    scale_down_delay = "3s",
    abort_scale_down_delay = "2s",
  },
}'
ok $? "steward runs with the blue-green policy" || exit 1

r1=$(start_rollout v1)
wait_for 60 at "$r1" "Completed 1"
ok $? "the first revision v1 is rolled out whole" || diag "$r1"
stage_load load "$RATE"

kinds() { field "$1" '" ".join(h["kind"] for h in d["history"] if h["kind"] in ("analysis_started", "analysis_successful", "analysis_failed", "paused", "promoted", "completed", "aborted", "scaled_down"))'; }
alive() { # alive VERSION: how many of its started processes still run
    local c=0 pid ver
    while read -r pid _ ver; do [ "$ver" = "$1" ] && kill -0 "$pid" 2>/dev/null && c=$((c + 1)); done < "$S/starts"
    echo "$c"
}
gone() { ! weights | grep -q "^$1-[0-9]"; }
scaled_down() { field "$1" "any(h['kind'] == 'scaled_down' and h['data']['revision'] == '$2' for h in d['history'])" > /dev/null 2>&1; }
# seen FROM TO: the main load's lines FROM..TO as "count status version;..."
seen() { awk -v from="$1" -v to="$2" 'NR >= from && NR <= to { print $1, $2 }' "$S/load" | sort | uniq -c | sed 's/^ *//' | tr '\n' ';'; }

# 1. v2: the whole blue-green path
mark=$(( $(wc -l < "$S/load") + 1 ))
stage_load smoke2 20 --server v2-1,v2-2
r2=$(start_rollout v2)
wait_for 40 at "$r2" "Completed 5"
ok $? "v2: preview, pre-promotion analysis, auto-promotion pause, switch, post-promotion analysis: Completed" || diag "$r2"
stage_stop_load
v1_at_completion=$(alive v1)
[ "$(kinds "$r2")" = "analysis_started analysis_successful paused promoted analysis_started analysis_successful completed" ] &&
    grep -q '^200 v2 ' "$S/smoke2"
ok $? "v2's history: the preview's analysis (of the smoke requests v2 answered at weight 0) passed, the 2 s auto-promotion pause, the switch, the active's analysis passed ($(kinds "$r2"))"
[ "$v1_at_completion" = 2 ]
ok $? "the old colour v1 still runs when v2 completes ($v1_at_completion instances), for its scale_down_delay"
wait_for 20 scaled_down "$r2" v1 && wait_for 10 gone v1 && wait_for 10 sh -c "[ \$(awk -v v=v1 '\$3 == v' '$S/starts' | while read -r p _; do kill -0 \$p 2>/dev/null && echo \$p; done | wc -l) = 0 ]"
ok $? "v1 is stopped after the delay: out of HAProxy's backend, its processes gone" || diag "$r2"
n_now=$(wc -l < "$S/load")
wait_for 20 sh -c "[ \$(wc -l < '$S/load') -ge $((n_now + RATE / 2)) ]"
to=$(wc -l < "$S/load"); f=$(failed "$S/load" "$mark" "$to"); t=$(( to - mark + 1 ))
[ "$f" = 0 ] && [ "$t" -gt "$RATE" ]
ok $? "the v2 rollout failed none of the $t requests sent during it ($(seen "$mark" "$to"))"
[ "$(awk -v from="$((n_now + 1))" 'NR >= from && !($1 == 200 && $2 == "v2")' "$S/load" | wc -l)" = 0 ]
ok $? "all the traffic is on v2"

# 2. v3-err50: its preview fails the smoke requests; no switch
mark=$(( $(wc -l < "$S/load") + 1 ))
stage_load smoke3 20 --server v3-err50-1,v3-err50-2
r3=$(start_rollout v3-err50)
wait_for 40 at "$r3" "Aborted 2"
ok $? "v3-err50 is aborted by its pre-promotion analysis (step 2)" || diag "$r3"
stage_stop_load
[ "$(kinds "$r3")" = "analysis_started analysis_failed aborted" ]
ok $? "v3-err50 was never switched ($(kinds "$r3"))"
wait_for 20 scaled_down "$r3" v3-err50 && wait_for 10 gone v3-err50
ok $? "the failed preview is scaled down after abort_scale_down_delay" || diag "$r3"
to=$(wc -l < "$S/load"); f=$(failed "$S/load" "$mark" "$to"); t=$(( to - mark + 1 ))
[ "$f" = 0 ] && [ "$(awk -v from="$mark" -v to="$to" 'NR >= from && NR <= to && $2 != "v2"' "$S/load" | wc -l)" = 0 ]
ok $? "the v3-err50 rollout failed none of the $t requests and v2 answered them all ($(seen "$mark" "$to"))"

# 3. v4-live50: passes the preview, fails as the active colour
mark=$(( $(wc -l < "$S/load") + 1 ))
stage_load smoke4 20 --server v4-live50-1,v4-live50-2
r4=$(start_rollout v4-live50)
wait_for 40 at "$r4" "Aborted 5"
ok $? "v4-live50 is aborted by its post-promotion analysis (step 5)" || diag "$r4"
t_seen=$(date +%s.%N)
stage_stop_load
[ "$(kinds "$r4")" = "analysis_started analysis_successful paused promoted analysis_started analysis_failed aborted" ]
ok $? "v4-live50 passed its preview, was switched, then failed ($(kinds "$r4"))"
n_now=$(wc -l < "$S/load")
wait_for 20 sh -c "[ \$(wc -l < '$S/load') -ge $((n_now + RATE / 2)) ]"
[ "$(awk -v t="$t_seen" '$3 > t && !($1 == 200 && $2 == "v2")' "$S/load" | wc -l)" = 0 ] &&
    [ "$(awk -v t="$t_seen" '$3 > t' "$S/load" | wc -l)" -gt 0 ]
ok $? "the traffic is switched back: every request started after the abort was answered 200 by v2"
field "$r4" 'd' > "$S/r4.json"
stage_stop_load # the main load: the figures below read what it logged
/usr/bin/python3 - "$S/load" "$mark" "$S/r4.json" > "$S/figures" <<'PY'
import json, sys
path, mark, rec = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
rows = [l.split() for l in open(path).read().splitlines()[mark - 1:]]
rows = [(int(s), v, float(t)) for s, v, t in rows]
ms = rec["current"]["analysis"]["results"]["active-errors"]["measurements"]
t_abort = ms[-1]["finished_at"]  # the abort is in the transaction of the failed measurement
t0 = min(t for s, v, t in rows if v == "v4-live50")
sent = sum(1 for s, v, t in rows if t0 <= t <= t_abort)
failed = sum(1 for s, v, t in rows if s != 200)
bound = 0.5 * sent * 1.5 + 5
print("ok" if failed <= bound and failed > 0 else "bad")
print("v4-live50 was the active colour %.2f s (post-promotion analysis: initial delay 1 s, failure_limit 0)" % (t_abort - t0))
print("failed requests: %d of %d sent while it was active; its share 50%% x %d = %.1f (bound with slack %.1f)"
      % (failed, sent, sent, 0.5 * sent, bound))
PY
[ "$(sed -n 1p "$S/figures")" = ok ]
ok $? "the failed requests of the switched-back release are bounded by its error rate over its time as active"
sed -n '2,$p' "$S/figures" | sed 's/^/# /'
