#!/bin/bash
# steward run end to end: tokens and roles, tenant scoping, ingest validation, duplicates,
# queries with cursors, dispatch, retries, dead letters and requeue, metrics, readiness,
# SIGHUP reload and a clean SIGTERM. The checks are in tests/support/daemon_api_client.lua.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cat > "$D/policies/record.lua" <<'POL'
-- Appends each handled event id to a file; fails on purpose for data.fail = true.
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" },
  name = "test.record", on = { "test.*" },
  handle = function(ev)
    if ev.data.fail then error("asked to fail") end
    assert(fs.write(os.getenv("RECORD_FILE"), ev.id .. "\n", { append = true }))
  end,
}
POL
cat > "$D/policies/threshold.lua" <<'POL'
-- decide: a threshold check, as in ../shared/bench/policy.lua
return {
  name = "test.threshold",
  config = { label = { type = "string", default = "base" } },
  limits = { cpu = "100ms" },
  decide = function(input, ctx)
    if input.explode then error("asked to explode") end
    if input.spin then while true do end end
    if input.label then return { label = ctx.config.label } end
    local sev = input.value >= 0.05 and "critical" or (input.value >= 0.02 and "warning" or "ok")
    return { severity = sev, policy = ctx.policy }
  end,
}
POL
cat > "$D/policies/runaway.lua" <<'POL'
-- A handler that never ends: its CPU budget stops it.
return { name = "test.runaway", on = { "test.spin" }, limits = { cpu = "100ms" },
  handle = function(ev) local n = 0; while true do n = n + 1 end end }
POL
cat > "$D/policies/effects.lua" <<'POL'
-- Side effects of every kind, for the simulate (dry run) test.
local http = require "steward.http"
local time = require "steward.time"
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write", "http" }, name = "test.effects", on = { "test.effects" },
  handle = function(ev, ctx)
    local res = http.request({ method = "POST", url = "http://127.0.0.1:9/hook", body = "hi" })
    ctx.kv():put("seen", { id = ev.id })
    time.after("1h", { type = "test.later" }, { key = "later:" .. ev.id })
    assert(fs.write(os.getenv("RECORD_FILE"), ev.id .. "\n", { append = true }))
    return { dry_run = ctx.dry_run, status = res.status }
  end }
POL
cat > "$D/policies/slow.lua" <<'POL'
-- A handler that waits longer than its own timeout.
return { name = "test.slow", on = { "test.slow" }, timeout = "100ms",
  handle = function() require("steward.time").sleep(30) end }
POL
cat > "$D/policies/picky.lua" <<'POL'
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "test.picky", on = { "test.pick" },
  when = function(ev) return ev.data.pick == true end,
  handle = function(ev) assert(fs.write(os.getenv("RECORD_FILE"), "picked:" .. ev.id .. "\n", { append = true })) end }
POL
export RECORD_FILE="$D/handled.txt"
daemon_config 'decision_mask = { "/input/secret" },
  policy_config = { ["test.threshold"] = { label = "env" } },
  tenant_config = { acme = { ["test.threshold"] = { label = "acme" } } }, limits = { retry_attempts = 2, retry_base = "10ms", retry_max = "20ms", max_batch = 50 },'
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }
export POLICY_DIR="$D/policies" DAEMON_PID=$DPID
"$BIN" script "$here/tests/support/daemon_api_client.lua" > "$D/tap"
rc=$?
cat "$D/tap"
n=$(grep -cE '^(not )?ok' "$D/tap")
daemon_stop TERM

if [ "$DSTATUS" -eq 0 ] && grep -q 'msg=stopped' "$D/log"; then
    echo "ok - SIGTERM stops the daemon cleanly (exit 0)"
else
    echo "not ok - SIGTERM stops the daemon cleanly (exit $DSTATUS)"; sed 's/^/# /' "$D/log" | tail -20; rc=1
fi
if grep -q "Sanitizer\|runtime error" "$D/log"; then
    echo "not ok - no sanitizer reports"; grep -A20 "Sanitizer\|runtime error" "$D/log" | sed 's/^/# /'; rc=1
else
    echo "ok - no sanitizer reports"
fi
echo "1..$((n + 2))"
exit $rc
