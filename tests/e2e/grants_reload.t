#!/bin/bash
# gh-12.2: grants follow the configuration on reload. A policy granted http uses it; the grant
# is withdrawn in steward.lua and the daemon reloads (SIGHUP): the new version does not load
# (it declares http) and the version that keeps running loses http at once; granted again, it
# loads and uses it. Each refusal is counted in /metrics.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cat > "$D/policies/caller.lua" <<'POL'
local http = require "steward.http"
return { name = "grants.caller", capabilities = { "http" },
  decide = function()
    local res, err = http.request{ url = "http://127.0.0.1:9/", timeout = 1 }
    return { denied = type(err) == "string" and err:match("^capability 'http' not granted") ~= nil }
  end }
POL
with_grant='grants = { ["grants.*"] = { http = { "127.0.0.1" } } },'
daemon_config "$with_grant"
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
echo "1..6"
decide() { curl -s -H "Authorization: Bearer $TOKEN" -d '{}' "http://127.0.0.1:$PORT/v1/decide/grants.caller"; }
# until_decide WANT: polls the decision until it contains WANT (10 s at most).
until_decide() {
    for _ in $(seq 100); do case "$(decide)" in *"$1"*) return 0;; esac; sleep 0.1; done
    return 1
}
case "$(decide)" in *'"denied":false'*) echo "ok 1 - granted: the policy makes its HTTP call";; *) echo "not ok 1 - granted: the policy makes its HTTP call ($(decide))";; esac

daemon_config 'grants = {},'
kill -HUP "$DPID"
if until_decide '"denied":true'; then echo "ok 2 - the grant withdrawn (SIGHUP): the running version loses http at once"
else echo "not ok 2 - the grant withdrawn: the running version loses http ($(decide))"; fi
pol=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies")
case "$pol" in *"capabilities not granted to grants.caller: 'http'"*) echo "ok 3 - and its new version did not load, saying why";;
    *) echo "not ok 3 - and its new version did not load, saying why"; echo "$pol" | cut -c1-400 | sed 's/^/# /';; esac
grep -q 'a grant was withdrawn: the running version of the policy loses it.*capabilities=http' "$D/log.new" \
    && echo "ok 4 - the withdrawal is logged" || echo "not ok 4 - the withdrawal is logged"
curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" \
    | grep -q 'steward_capability_denied_total{policy="grants.caller",capability="http"} [1-9]' \
    && echo "ok 5 - the refused call is counted" || echo "not ok 5 - the refused call is counted"

daemon_config "$with_grant"
kill -HUP "$DPID"
if until_decide '"denied":false'; then echo "ok 6 - granted again: it loads and calls"
else echo "not ok 6 - granted again: it loads and calls ($(decide))"; fi
daemon_stop
