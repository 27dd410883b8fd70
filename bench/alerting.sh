#!/bin/bash
# steward's alerting side by side with Alertmanager 0.25 (Debian's) on this machine, in this
# run: (a) alerts/s ingested through POST /api/v2/alerts in batches of 100, cycling through
# 100,000 distinct alerts (ALERTS; re-sends after the first pass, as from Prometheus), routed to one
# webhook receiver with group_wait 30s (no notification during the load); (b) RSS under that
# load (peak VmHWM, and VmRSS at the end); (c) time from POST to the first webhook
# notification with group_wait 0, each sample a new group. Prints table rows for bench/run.
# Both systems are pinned to core 0 (CPUS), wrk (2 threads, 32 connections) to core 1.
# ST_DB_DIR puts steward's SQLite file elsewhere (e.g. on tmpfs, to see what fsync costs).
# steward runs the shipped policies/alerting/router.lua with the config written below; a
# steward without it is measured on ingest only (marked "no engine").
# shellcheck disable=SC2154  # the figures are assigned with eval by load()
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${STEWARD_BIN:-build/steward}
SECS=${SECS:-10}
CPUS=${CPUS:-0}
WRK_CPU=${WRK_CPU:-1}
SAMPLES=${SAMPLES:-100}
ALERTS=${ALERTS:-100000}   # distinct alerts the load cycles through (read by bench/alerting_wrk.lua)
export ALERTS
. tests/support/alertmanager.sh
tmp=$(mktemp -d)
spid=""
lpid=""
kpid=""
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null
    [ -n "$lpid" ] && kill "$lpid" 2>/dev/null
    [ -n "$kpid" ] && kill "$kpid" 2>/dev/null
    am_stop_all
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
row() { printf '%-44s %14s  %s\n' "$1" "$2" "$3"; }
val() { sed -n "s/.*$1=\([0-9.na]*\).*/\1/p" "$2" | head -1; }
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
free_port() { am_free_port; }

if [ ! -x "$AM_BIN" ]; then row "alerting: Alertmanager not installed" "-" ""; exit 0; fi
if ! command -v wrk >/dev/null; then row "alerting: wrk not installed" "-" ""; exit 0; fi
ENGINE=1
[ -f policies/alerting/router.lua ] || ENGINE=0

# configs: $1 = group_wait, $2 = webhook URL
am_config() {
    cat > "$tmp/am.yml" <<YML
route:
  receiver: hook
  group_by: [alertname]
  group_wait: $1
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: $2
YML
}
steward_config() {
    rm -rf "$tmp/st"
    [ -n "${ST_DB_DIR:-}" ] && mkdir -p "$ST_DB_DIR" && rm -f "$ST_DB_DIR"/steward.db*
    mkdir -p "$tmp/st/policies/lib/alerting" "$tmp/st/policies/alerting"
    if [ "$ENGINE" = 1 ]; then
        cp policies/alerting/router.lua "$tmp/st/policies/alerting/"
        cat > "$tmp/st/policies/lib/alerting/config.lua" <<LUA
return {
  route = { receiver = "hook", group_by = { "alertname" }, group_wait = "$1",
            group_interval = "5m", repeat_interval = "4h" },
  receivers = { hook = { { kind = "webhook", url = "$2" } } },
}
LUA
    fi
    sport=$(free_port)
    cat > "$tmp/st/steward.lua" <<CFG
return { listen = "127.0.0.1:$sport", store = "sqlite:${ST_DB_DIR:-$tmp/st}/steward.db", policies = "$tmp/st/policies",
         var_dir = "$tmp/st/var", admin_socket = "$tmp/st/var/steward.sock",
         log_level = "warn", metrics_public = true, limits = { max_connections = 2000 },
         -- the shipped alerting policies declare the alerting capability; the operator grants it
         grants = { ["alerting.*"] = { alerting = true } } }
CFG
}
steward_start() {
    : > "$tmp/st.log"
    taskset -c "$CPUS" "$BIN" run -c "$tmp/st/steward.lua" 2>>"$tmp/st.log" &
    spid=$!
    local up=""
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$sport/readyz" >/dev/null 2>&1 && { up=1; break; }
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$up" ]; then echo "bench/alerting.sh: steward did not start" >&2; cat "$tmp/st.log" >&2; exit 1; fi
    SURL="http://127.0.0.1:$sport"
    STOKEN=$(cat "$tmp/st/var/admin.token")
}
steward_stop() { kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=""; }

metric() { curl -fs "$SURL/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
# load NAME URL TOKEN PID: wrk for SECS seconds; samples the process's VmRSS meanwhile, and
# for steward (NAME st) the dispatch backlog every 10 s and the events the engine handled.
load() {
    local name=$1 url=$2 token=$3 pid=$4 w peak=0 r t0 next=10 el
    t0=$(date +%s.%N)
    if [ "$name" = st ] || [ "$name" = paced ]; then
        st_backlog="$(metric steward_dispatch_queue_depth)@0s"
        st_handled0=$(metric 'steward_handled_events_total{policy="alerting.router"')
    fi
    TOKEN=$token CONNS=${LOAD_CONNS:-32} taskset -c "$WRK_CPU" wrk -t2 -c"${LOAD_CONNS:-32}" -d"${LOAD_SECS:-$SECS}s" \
        --timeout 10s -s bench/alerting_wrk.lua "$url/api/v2/alerts" > "$tmp/wrk.$name" 2>&1 &
    w=$!
    while kill -0 "$w" 2>/dev/null; do
        r=$(kb "$pid" VmRSS); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
        if [ "$name" = st ] || [ "$name" = paced ]; then
            el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%d", b - a}')
            if [ "$el" -ge "$next" ]; then
                st_backlog="$st_backlog $(metric steward_dispatch_queue_depth)@${el}s"
                next=$((next + 10))
            fi
        fi
        sleep 0.25
    done
    if [ "$name" = st ] || [ "$name" = paced ]; then
        st_load_secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
        st_backlog="$st_backlog $(metric steward_dispatch_queue_depth)@end"
        st_handled1=$(metric 'steward_handled_events_total{policy="alerting.router"')
    fi
    wait "$w"
    eval "${name}_rss_end=$(kb "$pid" VmRSS) ${name}_hwm=$(kb "$pid" VmHWM) ${name}_peak=$peak"
    eval "${name}_aps=$(awk -v r="$(val ok_rps "$tmp/wrk.$name")" 'BEGIN {printf "%.0f", r * 100}')"
    eval "${name}_lat='$(val p50_ms "$tmp/wrk.$name") / $(val p99_ms "$tmp/wrk.$name")'"
    eval "${name}_err='$(sed -n 's/.*errors=\([0-9]*\) non2xx=\([0-9]*\).*/\1 \/ \2/p' "$tmp/wrk.$name")'"
}

# ---- (a) + (b): ingest under load ----
# A receiver that answers 200 (a dead one would make both systems retry).
mkdir -p "$tmp/sink"
/usr/bin/python3 bench/alerting_latency.py sink "$tmp/sink" &
kpid=$!
for _ in $(seq 200); do [ -f "$tmp/sink/port" ] && break; sleep 0.02; done
SINK="http://127.0.0.1:$(cat "$tmp/sink/port")/hook"
am_config 30s "$SINK"
am_start "$tmp/am.yml" ingest || exit 1
# Pin the Go process and its threads after start (taskset -a: all threads).
taskset -a -p -c "$CPUS" "$(am_pid ingest)" >/dev/null
am_idle=$(kb "$(am_pid ingest)" VmRSS)
load am "$(am_url ingest)" "" "$(am_pid ingest)"
am_count=$(curl -fs "$(am_url ingest)/api/v2/alerts" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
am_stop ingest

steward_config 30s "$SINK"
steward_start
st_idle=$(kb "$spid" VmRSS)
t_load=$(date +%s.%N)
load st "$SURL" "$STOKEN" "$spid"
# The engine handles the alert.firing events after the API accepted them: wait until the
# dispatch queue is empty (at most DRAIN_MAX seconds) for its end-to-end rate.
drained=""
t_end=$(date +%s.%N)
for _ in $(seq $((${DRAIN_MAX:-120} * 4))); do
    [ "$(metric steward_dispatch_queue_depth)" = 0 ] && { drained=1; break; }
    sleep 0.25
done
t_drain=$(date +%s.%N)
st_runs=$(metric 'steward_handled_events_total{policy="alerting.router"')
st_batches=$(metric 'steward_handler_runs_total{policy="alerting.router"')
st_hwm_drain=$(kb "$spid" VmHWM)
st_count=$(curl -fs -H "authorization: Bearer $STOKEN" "$SURL/api/v2/alerts" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
steward_stop
kill "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null; kpid=""

tag=""; [ "$ENGINE" = 0 ] && tag=" (no engine)"
row "alerting ingest, batches of 100, 32 conns" "$am_aps / $st_aps" "alerts/s: Alertmanager / steward$tag"
row "  ratio steward / Alertmanager" "$(awk -v a="$am_aps" -v s="$st_aps" 'BEGIN {printf "%.2f", s / a}')" "x (target >= 5)"
row "  POST latency p50 / p99, Alertmanager" "$am_lat" "ms"
row "  POST latency p50 / p99, steward" "$st_lat" "ms"
row "  alerts held after the load" "$am_count / $st_count" "Alertmanager / steward (of $ALERTS)"
[ "$am_err" = "0 / 0" ] && [ "$st_err" = "0 / 0" ] || row "  socket errors / non-2xx" "$am_err | $st_err" "Alertmanager | steward"
row "  RSS idle" "$(mib "$am_idle") / $(mib "$st_idle")" "MiB: Alertmanager / steward"
row "  RSS peak under load (VmHWM)" "$(mib "$am_hwm") / $(mib "$st_hwm")" "MiB: Alertmanager / steward"
row "  RSS at end of load (VmRSS)" "$(mib "$am_rss_end") / $(mib "$st_rss_end")" "MiB: Alertmanager / steward"
if [ "$ENGINE" = 1 ]; then
    row "  steward engine: alert events handled" "$(awk -v n="$st_runs" -v a="$t_load" -v b="$t_drain" 'BEGIN {printf "%.0f", n / (b - a)}')" "events/s, load start to queue drained ($st_runs events in $st_batches runs$([ -z "$drained" ] && echo ", NOT drained after ${DRAIN_MAX:-120} s"))"
    row "  steward engine: handled during the load" "$(awk -v a="$st_handled0" -v b="$st_handled1" -v s="$st_load_secs" 'BEGIN {printf "%.0f", (b - a) / s}')" "events/s (ingest: $st_aps alerts/s)"
    row "  steward dispatch backlog during the load" "$st_backlog" "events queued @ seconds into the load"
    row "  steward backlog drained after the load" "$(awk -v a="$t_end" -v b="$t_drain" 'BEGIN {printf "%.1f", b - a}')" "s"
    row "  steward RSS peak until drained (VmHWM)" "$(mib "$st_hwm_drain")" "MiB"
fi
row "  ratio RSS peak steward / Alertmanager" "$(awk -v a="$am_hwm" -v s="$st_hwm" 'BEGIN {printf "%.2f", s / a}')" "(target <= 0.33)"

# ---- (a2): the engine under a paced load ----
# At Alertmanager's maximum ingest rate of this run (PACE overrides it), every alert new (so
# every one is an alert.firing event for the engine) for PACED_SECS (default SECS): the
# dispatch backlog every 10 s must not grow.
if [ "$ENGINE" = 1 ]; then
    pace=${PACE:-$am_aps}
    psecs=${PACED_SECS:-$SECS}
    palerts=$(awk -v r="$pace" -v s="$psecs" 'BEGIN {n = int(r * s * 1.2 / 100 + 1) * 100; if (n > 400000) n = 400000; print n}')
    rm -f "$tmp/sink/port"
    /usr/bin/python3 bench/alerting_latency.py sink "$tmp/sink" &
    kpid=$!
    for _ in $(seq 200); do [ -f "$tmp/sink/port" ] && break; sleep 0.02; done
    steward_config 30s "http://127.0.0.1:$(cat "$tmp/sink/port")/hook"
    steward_start
    t_load=$(date +%s.%N)
    ALERTS=$palerts RATE=$pace LOAD_CONNS=16 LOAD_SECS=$psecs load paced "$SURL" "$STOKEN" "$spid"
    t_end=$(date +%s.%N)
    drained=""
    for _ in $(seq $((${DRAIN_MAX:-120} * 4))); do
        [ "$(metric steward_dispatch_queue_depth)" = 0 ] && { drained=1; break; }
        sleep 0.25
    done
    t_drain=$(date +%s.%N)
    p_hwm=$(kb "$spid" VmHWM)
    steward_stop
    kill "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null; kpid=""
    row "alerting engine, paced load of new alerts" "$paced_aps" "alerts/s ingested by steward for ${psecs} s (pace $pace = Alertmanager's max above; $palerts distinct)"
    row "  engine events handled during the load" "$(awk -v a="$st_handled0" -v b="$st_handled1" -v s="$st_load_secs" 'BEGIN {printf "%.0f", (b - a) / s}')" "events/s"
    row "  dispatch backlog during the load" "$st_backlog" "events queued @ seconds into the load"
    row "  backlog drained after the load" "$(awk -v a="$t_end" -v b="$t_drain" 'BEGIN {printf "%.1f", b - a}')$([ -z "$drained" ] && echo " NOT")" "s"
    row "  steward RSS peak (VmHWM)" "$(mib "$p_hwm")" "MiB ($palerts alerts)"
fi

# ---- (c): POST -> first notification, group_wait 0 ----
# latency NAME URL TOKEN: the probe's receiver must be up before the system's config is written.
lat_start() {
    rm -f "$tmp/lat/"*; mkdir -p "$tmp/lat"
    /usr/bin/python3 bench/alerting_latency.py serve "$tmp/lat" > "$tmp/lat.out" &
    lpid=$!
    for _ in $(seq 200); do [ -f "$tmp/lat/port" ] && break; sleep 0.02; done
    LPORT=$(cat "$tmp/lat/port")
}
lat_run() {
    printf '{"url": "%s", "token": "%s", "n": %d, "prefix": "%s"}' "$1" "$2" "$SAMPLES" "$3" > "$tmp/lat/go.tmp"
    mv "$tmp/lat/go.tmp" "$tmp/lat/go"
    wait "$lpid"; lpid=""
    cat "$tmp/lat.out"
}
lat_start
am_config 0s "http://127.0.0.1:$LPORT/hook"
am_start "$tmp/am.yml" latency || exit 1
taskset -a -p -c "$CPUS" "$(am_pid latency)" >/dev/null
lat_run "$(am_url latency)" "" AmLat > "$tmp/lat.am"
am_stop latency

if [ "$ENGINE" = 1 ]; then
    lat_start
    steward_config 0s "http://127.0.0.1:$LPORT/hook"
    steward_start
    lat_run "$SURL" "$STOKEN" StLat > "$tmp/lat.st"
    steward_stop
    stl="$(val p50_ms "$tmp/lat.st") / $(val p99_ms "$tmp/lat.st")"
    stlost=$(val lost "$tmp/lat.st")
else
    stl="- (no engine)"; stlost=-
fi
row "alerting POST -> first notification, gw 0" "$(val p50_ms "$tmp/lat.am") / $(val p99_ms "$tmp/lat.am")" "ms p50 / p99, Alertmanager ($SAMPLES new groups, lost $(val lost "$tmp/lat.am"))"
row "" "$stl" "ms p50 / p99, steward (lost $stlost)"
