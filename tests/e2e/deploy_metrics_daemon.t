#!/usr/bin/env bash
# The events and SLO metric providers inside the daemon: a policy gates on an analysis over
# steward's own events (posted through the HTTP API, stored, read back through the sandboxed
# steward.events), and the run it keeps in kv between decisions resumes where it was.
. "$(dirname "$0")/../support/daemon.sh"

echo "1..7"
cat > "$D/policies/gate.lua" <<'LUA'
-- The canary gate: the error ratio of the requests over the last hour, and the SLO's burn rate.
local analysis = require "steward.deploy.analysis"
local emetrics = require "steward.deploy.metrics.events"
local smetrics = require "steward.deploy.metrics.slo"
local slo = require "steward.slo"
local time = require "steward.time"

local checkout = slo.define { name = "checkout", objective = 0.9, period = "1d",
  source = slo.events { type = "http.request", good = function(ev) return ev.data.code < 500 end } }

local spec = { metrics = {
  { name = "error-ratio", interval = "1m", failure_limit = 0,
    provider = emetrics.provider { type = "http.request", window = "1h", ratio = function(ev) return ev.data.code >= 500 end },
    failure_condition = function(v) return v > 0.1 end },
  { name = "burn", interval = "1m", dry_run = true,
    provider = smetrics.provider { slo = checkout, window = "5m" },
    success_condition = function(v) return v <= 1 end },
} }

return {
  decide = function(input, ctx)
    local ns = ctx.kv()
    local run = ns:get("run")
    if input.fresh or not run then run = analysis.run(spec) end
    -- each decision is a tick a minute later than the last (a durable timer in a rollout)
    local now = (run.next_due or time.now())
    run = analysis.step(run, now, spec)
    assert(ns:put("run", run))
    local r = run.results["error-ratio"]
    return { phase = run.phase, count = r.count, value = r.measurements[#r.measurements].value,
      burn = run.results.burn and run.results.burn.measurements[1].value, message = run.message }
  end,
}
LUA
daemon_config
daemon_start || { echo "not ok 1 - the daemon starts"; exit 1; }
echo "ok 1 - the daemon starts with the policy"

post() { curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d "$1" "http://127.0.0.1:$PORT$2"; }
requests() { # requests N CODE: N http.request events with that code
    /usr/bin/python3 -c 'import json,sys; print(json.dumps([{"type": "http.request", "data": {"code": int(sys.argv[2])}} for _ in range(int(sys.argv[1]))]))' "$1" "$2"
}

r=$(post "$(requests 18 200)" /v1/events); echo "$r" | jx 'd["accepted"] == 18' >/dev/null &&
    echo "ok 2 - 18 good requests accepted" || echo "not ok 2 - 18 good requests accepted # $r"
post "$(requests 2 503)" /v1/events >/dev/null

got=$(post '{"fresh": true}' /v1/decide/gate)
if echo "$got" | jx 'd["result"]["phase"] == "Running" and d["result"]["count"] == 1 and abs(d["result"]["value"] - 0.1) < 1e-9' >/dev/null; then
    echo "ok 3 - 2 errors in 20: ratio 0.1, within the condition: the run goes on"
else echo "not ok 3 - first measurement # $got"; fi
if echo "$got" | jx 'abs(d["result"]["burn"] - 1) < 1e-9' >/dev/null; then
    echo "ok 4 - the SLO provider reads the same events: burn rate 1 (10% errors, 10% allowed)"
else echo "not ok 4 - burn rate # $got"; fi

got=$(post '{}' /v1/decide/gate)
echo "$got" | jx 'd["result"]["phase"] == "Running" and d["result"]["count"] == 2' >/dev/null &&
    echo "ok 5 - the next decision resumes the stored run: a second measurement" || echo "not ok 5 - resume # $got"

post "$(requests 10 500)" /v1/events >/dev/null
got=$(post '{}' /v1/decide/gate)
if echo "$got" | jx 'd["result"]["phase"] == "Failed" and d["result"]["count"] == 3 and abs(d["result"]["value"] - 0.4) < 1e-9' >/dev/null; then
    echo "ok 6 - 12 errors in 30: ratio 0.4, the run fails"
else echo "not ok 6 - failure # $got"; fi
echo "$got" | jx '"metric \"error-ratio\" assessed Failed due to failed (1) > failure_limit (0)" == d["result"]["message"]' >/dev/null &&
    echo "ok 7 - the message names the metric and the limit" || echo "not ok 7 - message # $got"
daemon_stop
