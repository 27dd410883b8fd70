#!/usr/bin/env bash
# steward.deploy.metrics.prometheus against a real Prometheus (Debian's 2.42, scraping itself):
# scalar and single-sample vector answers are numbers; no data, several series and a bad query
# are errors with Prometheus's reason; an analysis run gates on a scraped series.
. "$(dirname "$0")/../support/daemon.sh"
. "$(dirname "$0")/../support/prometheus.sh"
trap 'prom_stop; daemon_cleanup' EXIT

echo "1..10"
cat > "$D/prometheus.yml" <<'YML'
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["PROM_TARGET"]
YML
PROM_TARGET_PORT=$(prom_free_port)
# Prometheus scrapes itself: its own port is only known once picked, so pick it here.
prom_free_port() { echo "$PROM_TARGET_PORT"; }
sed -i "s/PROM_TARGET/127.0.0.1:$PROM_TARGET_PORT/" "$D/prometheus.yml"
if prom_start "$D/prometheus.yml"; then echo "ok 1 - Prometheus starts"
else
    echo "not ok 1 - Prometheus starts"
    for i in 2 3 4 5 6 7 8 9 10; do echo "not ok $i - # SKIP no Prometheus"; done
    exit 1
fi

cat > "$D/check.lua" <<'LUA'
local prometheus = require "steward.deploy.metrics.prometheus"
local analysis = require "steward.deploy.analysis"
local time = require "steward.time"
local t = require "steward.tap"
local url = arg[1]
local function q(query) return prometheus.provider { url = url, query = query, timeout = "5s" }() end

t.is(q("vector(0.97)"), 0.97, "a single-sample vector is its number")
local v = q("scalar(vector(42))")
t.is(v, 42, "a scalar is its number")
local _, err = q('nonexistent_metric{job="none"}')
t.like(err or "", "^prometheus: no data %(empty result or NaN%) for: nonexistent_metric", "an empty vector is an error: no data")
_, err = q('label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")')
t.like(err or "", "returned 2 series, one expected", "two series are an error")
_, err = q("sum(")
t.like(err or "", "query failed %(HTTP 400, bad_data: .*%): sum%(", "a bad query: Prometheus's reason")

-- The first scrape of itself: poll, bounded.
local deadline = time.monotonic() + 30
local up
repeat
  up = q('up{job="prometheus"}')
  if up ~= 1 then time.sleep(0.1) end
until up == 1 or time.monotonic() > deadline
t.is(up, 1, "a scraped series: up{job=\"prometheus\"} is 1")

local spec = { metrics = {
  { name = "up", interval = "1s", count = 3, provider = prometheus.provider { url = url, query = 'up{job="prometheus"}' },
    success_condition = function(x) return x == 1 end },
  { name = "absent", provider = prometheus.provider { url = url, query = 'nonexistent_metric{job="none"}' },
    consecutive_error_limit = 0, dry_run = true },
} }
local run = analysis.run(spec)
local due = time.now()
while due do
  if due > time.now() then time.sleep(due - time.now()) end
  run, due = analysis.step(run, time.now(), spec)
end
t.is(run.phase, "Successful", "an analysis of three measurements 1 s apart succeeds (" .. analysis.describe(run) .. ")")
t.is(run.results.up.count, 3, "three measurements were taken")
t.is(run.results.absent.phase, "Error", "the dry-run metric errored (no data) and did not decide the run")
LUA
STEWARD_TAP_OFFSET=1 "$BIN" script "$D/check.lua" "$PROM_URL"
