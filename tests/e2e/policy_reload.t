#!/bin/bash
# Hot reload under load: while a client posts events continuously, the policy is rewritten
# and reloaded 100 times, broken versions included. Afterwards no acknowledged event was lost
# or handled twice, and the decision log shows each handled once by exactly one version.
set -u
. "$(dirname "$0")/../support/daemon.sh"
export RECORD_FILE="$D/handled.txt"
write_policy() { # $1 = version mark, $2 = "broken" to write a file that does not compile
    if [ "${2:-}" = broken ]; then printf 'return { name = "swap", on = { "crash.*" }, handle = function(ev)\n' > "$D/policies/swap.lua.tmp"
    else cat > "$D/policies/swap.lua.tmp" <<POL
local fs = require "steward.fs"
return { capabilities = { "fs.read", "fs.write" }, name = "swap", on = { "crash.*" },
  handle = function(ev) assert(fs.write(os.getenv("RECORD_FILE"), ev.id .. " $1\n", { append = true })) end }
POL
    fi
    mv "$D/policies/swap.lua.tmp" "$D/policies/swap.lua"
}
write_policy v0
daemon_config ''
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }
/usr/bin/python3 "$here/tests/support/crash_client.py" "$PORT" "$TOKEN" "r" "$D/acked.txt" &
client=$!
n=0; bad=0; failed_seen=0
for i in $(seq 100); do
    if [ $((i % 9)) -eq 0 ]; then write_policy "v$i" broken; else write_policy "v$i"; fi
    out=$(curl -fs -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/reload") || bad=1
    case "$out" in *'"failed":["'*) failed_seen=$((failed_seen + 1)) ;; esac
done
n=$((n + 1)); if [ $bad -eq 0 ]; then echo "ok $n - 100 reloads answered"; else echo "not ok $n - 100 reloads answered"; fi
n=$((n + 1)); if [ $failed_seen -ge 5 ]; then echo "ok $n - broken versions were reported as failed ($failed_seen)"; else echo "not ok $n - broken versions were reported as failed ($failed_seen)"; fi
out=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/swap")
n=$((n + 1)); case "$out" in *'"last_error":null'*) echo "ok $n - the last version loaded cleanly" ;; *) echo "not ok $n - the last version loaded cleanly: $out" ;; esac
write_policy v-broken broken
curl -fs -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/reload" > /dev/null
out=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/swap")
n=$((n + 1)); case "$out" in *'"last_error":{'*'"line":'*) echo "ok $n - a failed load shows last_error with its line" ;; *) echo "not ok $n - a failed load shows last_error: $out" ;; esac
write_policy v-final
curl -fs -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/reload" > /dev/null
final=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/swap" | sed 's/.*"version":"\([0-9a-f]*\)".*/\1/')
out=$(curl -fs -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/swap/rollback")
n=$((n + 1)); case "$out" in *'"version":"'*) [ "$out" != "${out#*$final}" ] && echo "not ok $n - rollback restores an earlier version: $out" || echo "ok $n - rollback restores an earlier version" ;; *) echo "not ok $n - rollback: $out" ;; esac
n=$((n + 1)); grep -q ' v100' "$D/policies/swap.lua" && echo "ok $n - rollback writes the restored source back to the file" || { echo "not ok $n - rollback writes the restored source back"; sed 's/^/# /' "$D/policies/swap.lua"; }
out=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -d '{"version":"0000000000000000"}' "http://127.0.0.1:$PORT/v1/policies/swap/rollback")
n=$((n + 1)); case "$out" in *not_found*) echo "ok $n - rollback to an unknown version: 404" ;; *) echo "not ok $n - rollback to an unknown version: $out" ;; esac
# The CLI: steward reload and steward policy rollback talk to the daemon with the admin token.
sed "s/127.0.0.1:0/127.0.0.1:$PORT/" "$D/steward.lua" > "$D/cli.lua"
out=$("$BIN" reload -c "$D/cli.lua"); rc=$?
n=$((n + 1)); case "$rc:$out" in 0:reloaded:*) echo "ok $n - steward reload" ;; *) echo "not ok $n - steward reload ($rc: $out)" ;; esac
out=$("$BIN" policy rollback swap -c "$D/cli.lua"); rc=$?
n=$((n + 1)); case "$rc:$out" in "0:swap is now at version "*) echo "ok $n - steward policy rollback" ;; *) echo "not ok $n - steward policy rollback ($rc: $out)" ;; esac
out=$("$BIN" policy rollback nosuch -c "$D/cli.lua" 2>&1); rc=$?
n=$((n + 1)); [ $rc -eq 1 ] && echo "ok $n - rolling back an unknown policy fails" || echo "not ok $n - rolling back an unknown policy fails ($rc: $out)"
# The file watcher reloads on its own: a new policy appears without SIGHUP or the API.
cat > "$D/policies/watched.lua" <<'POL'
return { name = "watched", on = { "nothing.*" }, handle = function() end }
POL
seen=0
for _ in $(seq 200); do
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/policies/watched" > /dev/null && { seen=1; break; }
    sleep 0.025
done
n=$((n + 1)); [ $seen -eq 1 ] && echo "ok $n - a file change is picked up by the watcher" || echo "not ok $n - a file change is picked up by the watcher"
kill "$client" 2>/dev/null; wait "$client" 2>/dev/null
acked=$(sort -u "$D/acked.txt" | wc -l)
for _ in $(seq 1200); do
    done_n=$(cut -d' ' -f1 "$RECORD_FILE" 2>/dev/null | sort -u | grep -cxFf <(sort -u "$D/acked.txt") || true)
    [ "${done_n:-0}" -ge "$acked" ] && break
    sleep 0.05
done
daemon_stop TERM
n=$((n + 1)); if [ "$DSTATUS" -eq 0 ]; then echo "ok $n - the daemon stops cleanly"; else echo "not ok $n - the daemon stops cleanly ($DSTATUS)"; fi
STEWARD_TAP_OFFSET=$n "$BIN" script "$here/tests/support/reload_check.lua" "sqlite:$D/steward.db" "$D/acked.txt" "$RECORD_FILE" > "$D/check"
rc=$?
cat "$D/check"
m=$(grep -cE '^(not )?ok' "$D/check")
echo "1..$((n + m))"
exit $rc
