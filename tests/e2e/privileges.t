#!/bin/bash
# gh-12.3: `steward run` started as root becomes the unprivileged service user before it
# opens the store: the process's uids are the user's (/proc/PID/status), everything it
# created in its var dir is the user's, and a policy's process runs as that user. A missing
# user or a root user is refused with the reason; allow_root keeps root, with a warning.
set -u
. "$(dirname "$0")/../support/daemon.sh"
if [ "$(id -u)" != 0 ]; then echo "1..0 # SKIP needs root (it tests the switch away from root)"; exit 0; fi
if ! id steward >/dev/null 2>&1; then echo "1..0 # SKIP no steward user (deps/install creates it)"; exit 0; fi
unset STEWARD_ALLOW_ROOT
echo "1..9"
uid=$(id -u steward)
chmod 711 "$D"
chmod -R a+rX "$D/policies"
cat > "$D/policies/whoami.lua" <<'POL'
local proc = require "steward.proc"
return { capabilities = { "proc" }, name = "whoami", on = { "w.*" }, handle = function() end,
  decide = function() return { uid = proc.run({ cmd = { "/usr/bin/id", "-u" } }).stdout:match("%d+") } end }
POL
chmod a+r "$D/policies/whoami.lua"
daemon_config 'grants = { ["whoami"] = { proc = { "/usr/bin/id" } } },'
sed -i "s|store = \"sqlite:$D/steward.db\"|store = \"sqlite:$D/var/steward.db\"|" "$D/steward.lua"
if daemon_start; then echo "ok 1 - started as root with a steward user: it starts"; else echo "not ok 1 - it starts"; exit 1; fi
uids=$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$DPID/status" | tr -s '[:space:]' ' ')
[ "$uids" = "$uid $uid $uid $uid " ] && echo "ok 2 - the process runs as steward (Uid: $uids)" || echo "not ok 2 - the process runs as steward (Uid: $uids, want $uid)"
grep -q "msg=\"dropped root\".*user=steward" "$D/log" && echo "ok 3 - and says so in the log" || echo "not ok 3 - and says so in the log"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"type":"w.x"}' "http://127.0.0.1:$PORT/v1/events")
[ "$code" = 202 ] && echo "ok 4 - it serves and commits events" || echo "not ok 4 - it serves and commits events ($code)"
others=$(find "$D/var" ! -user steward | head -5)
[ -z "$others" ] && echo "ok 5 - everything in its var dir is steward's" || { echo "not ok 5 - everything in its var dir is steward's"; echo "$others" | sed 's/^/#   /'; }
got=$(curl -s -H "Authorization: Bearer $TOKEN" -d '{}' "http://127.0.0.1:$PORT/v1/decide/whoami")
case "$got" in *"\"uid\":\"$uid\""*) echo "ok 6 - a policy's process runs as steward";; *) echo "not ok 6 - a policy's process runs as steward ($got)";; esac
daemon_stop

daemon_config 'user = "no-such-user-here"'
"$BIN" run -c "$D/steward.lua" > "$D/out" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "no such user: no-such-user-here" "$D/out" && echo "ok 7 - an unknown user is refused, named" \
    || { echo "not ok 7 - an unknown user is refused, named (rc $rc)"; sed 's/^/#   /' "$D/out"; }
daemon_config 'user = "root"'
"$BIN" run -c "$D/steward.lua" > "$D/out" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "root is root" "$D/out" && echo "ok 8 - user = root is refused" \
    || { echo "not ok 8 - user = root is refused (rc $rc)"; sed 's/^/#   /' "$D/out"; }
daemon_config 'allow_root = true'
: > "$D/log"
daemon_start
uids=$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$DPID/status" | tr -s '[:space:]' ' ')
[ "$uids" = "0 0 0 0 " ] && grep -q "running as root (allow_root = true)" "$D/log" \
    && echo "ok 9 - allow_root = true keeps root, with a warning" || echo "not ok 9 - allow_root = true keeps root, with a warning ($uids)"
daemon_stop
