#!/bin/bash
# Hot reload of what a policy depends on (issue 13 §4): a policies/lib module it requires and
# its policy_config in steward.lua. Each change reloads exactly the affected policies, gives
# them a new version and new behaviour without a restart; a broken lib keeps the old version
# running with the error's file and line; a key that needs a restart is named in the log;
# `steward config show` redacts secrets; GET /v1/policies/{name} shows the merged config.
set -u
. "$(dirname "$0")/../support/daemon.sh"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
api() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }
# field FILE-or-JSON PYTHON-EXPR: evaluates EXPR over the parsed JSON (d), prints the result.
field() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
version() { field "$(api "http://127.0.0.1:$PORT/v1/policies/$1")" 'd["version"]'; }
decide() { field "$(api -X POST -d '{}' "http://127.0.0.1:$PORT/v1/decide/uses")" 'd["result"]["'"$1"'"]'; }
reload() { api -X POST "http://127.0.0.1:$PORT/v1/policies/reload"; }
# until_true CMD...: polls CMD for up to 10 s (the watcher is debounced).
until_true() { for _ in $(seq 400); do "$@" && return 0; sleep 0.025; done; return 1; }

mkdir -p "$D/policies/lib/greet"
write_lib() { printf '%s\n' "$1" > "$D/policies/lib/greet/words.lua.tmp"; mv "$D/policies/lib/greet/words.lua.tmp" "$D/policies/lib/greet/words.lua"; }
write_lib 'return { word = "hello" }'
cat > "$D/policies/uses.lua" <<'POL'
local words = require "greet.words"
return {
  config = { who = "world", api_token = "default-token" },
  decide = function(input, ctx) return { word = words.word, who = ctx.config.who } end,
}
POL
# A module first required from decide (not at load time) is tracked too.
printf 'return { word = "early" }\n' > "$D/policies/lib/greet/later.lua"
cat > "$D/policies/lazy.lua" <<'POL'
return { decide = function() return { word = require("greet.later").word } end }
POL
cat > "$D/policies/other.lua" <<'POL'
return { decide = function() return { ok = true } end }
POL
daemon_config 'policy_config = { uses = { who = "ops", api_token = "s3cr3t-policy-token" } },'
daemon_start || { echo "1..1"; echo "not ok 1 - daemon started"; exit 1; }

v0=$(version uses); o0=$(version other)
first=$(api -X POST -d '{}' "http://127.0.0.1:$PORT/v1/decide/uses")
first_id=$(field "$first" 'd["decision_id"]')
[ "$(decide word) $(decide who)" = "hello ops" ] && ok "the policy runs with its lib and policy_config" \
    || nok "the policy runs with its lib and policy_config" "$(decide word) $(decide who)"

# GET /v1/policies/{name}: the merged config (secrets redacted) and the lib modules.
doc=$(api "http://127.0.0.1:$PORT/v1/policies/uses")
[ "$(field "$doc" '"%s %s %s" % (d["config"]["who"], d["config"]["api_token"], [l["name"] for l in d["libs"]])')" = "ops *** ['greet.words']" ] \
    && ok "GET /v1/policies/uses shows the merged config, secrets redacted, and its lib modules" \
    || nok "GET /v1/policies/uses shows the merged config" "$doc"
case "$doc" in *s3cr3t*) nok "the policy's secret is not in the API's answer" "$doc" ;; *) ok "the policy's secret is not in the API's answer" ;; esac

# 1. Edit the lib module: the watcher reloads the policy that required it, and only that one.
write_lib 'return { word = "bonjour" }'
word_is() { [ "$(decide word)" = "$1" ]; }
until_true word_is bonjour && ok "a lib module edit is picked up without a restart" \
    || nok "a lib module edit is picked up without a restart" "$(decide word)"
v1=$(version uses)
[ "$v1" != "$v0" ] && ok "the version of the policy that requires it changed ($v0 -> $v1)" || nok "its version changed" "$v0 $v1"
[ "$(version other)" = "$o0" ] && ok "a policy that does not require it keeps its version" || nok "other kept its version" "$o0 $(version other)"
grep -q 'msg="policies loaded" changed=uses .*reason="file change"' "$D/log.new" \
    && ok "the reload log names the policy as changed" \
    || nok "the reload log names the policy as changed" "$(grep 'policies loaded' "$D/log.new" | tail -3)"
# The decision log tells the two behaviours apart.
out=$(api -X POST -d '{}' "http://127.0.0.1:$PORT/v1/decide/uses")
[ "$(field "$out" 'd["policy"]["version"]')" = "$v1" ] && ok "decisions carry the new version" || nok "decisions carry the new version" "$out"

# The same edit through the API reports the change there too.
write_lib 'return { word = "hallo" }'
out=$(reload)
case "$out" in *'"changed":["uses"]'*) ok "POST /v1/policies/reload reports the policy as changed" ;;
    *'"changed":[]'*) # the watcher was quicker: then the log has it
        until_true word_is hallo; grep -q 'changed=uses ' "$D/log.new" && ok "POST /v1/policies/reload reports the policy as changed (by the watcher)" \
            || nok "reload reports the change" "$out" ;;
    *) nok "POST /v1/policies/reload reports the policy as changed" "$out" ;; esac
[ "$(decide word)" = "hallo" ] && ok "the new behaviour is seen at once" || nok "the new behaviour is seen at once" "$(decide word)"

# A lib module required from decide: changing it reloads that policy too.
lazy_word() { field "$(api -X POST -d '{}' "http://127.0.0.1:$PORT/v1/decide/lazy")" 'd["result"]["word"]'; }
l0=$(lazy_word)
printf 'return { word = "late" }\n' > "$D/policies/lib/greet/later.lua"
lazy_is() { reload > /dev/null; [ "$(lazy_word)" = "$1" ]; }
until_true lazy_is late && ok "a lib module a policy required from decide reloads it ($l0 -> late)" \
    || nok "a lib module required from decide reloads the policy" "$l0 $(lazy_word)"

# 2. A broken lib module: the old version keeps running; the error names the lib's file and line.
v2=$(version uses)
write_lib $'local x = {\n  word = "oops"\n  missing = "comma"\n}\nreturn x'
out=$(reload)
case "$out" in *'"failed":["'*uses.lua'"]'*) ok "a broken lib module fails the policy's reload" ;; *) nok "a broken lib module fails the policy's reload" "$out" ;; esac
[ "$(version uses) $(decide word)" = "$v2 hallo" ] && ok "the previous version keeps running" || nok "the previous version keeps running" "$(version uses) $(decide word)"
doc=$(api "http://127.0.0.1:$PORT/v1/policies/uses")
err=$(field "$doc" '"%s:%s" % (d["last_error"]["file"], d["last_error"]["line"])')
[ "$err" = "$D/policies/lib/greet/words.lua:3" ] && ok "last_error names the lib module's file and line" || nok "last_error names the lib's file and line" "$doc"
write_lib 'return { word = "hello again" }'
reload > /dev/null
[ "$(decide word)" = "hello again" ] && ok "a fixed lib module loads" || nok "a fixed lib module loads" "$(decide word)"

# 3. policy_config in steward.lua + SIGHUP: new behaviour and version, no restart.
v3=$(version uses); o3=$(version other)
daemon_config 'policy_config = { uses = { who = "sre", api_token = "s3cr3t-policy-token" } },'
kill -HUP "$DPID"
who_is() { [ "$(decide who)" = "$1" ]; }
until_true who_is sre && ok "SIGHUP applies a policy_config change" || nok "SIGHUP applies a policy_config change" "$(decide who)"
[ "$(version uses)" != "$v3" ] && ok "the policy's version changed with its config" || nok "the version changed with the config" "$v3"
[ "$(version other)" = "$o3" ] && ok "other policies keep their versions" || nok "other policies keep their versions" "$o3 $(version other)"
until_true grep -q 'msg="config reloaded" changed=policy_config reason=SIGHUP' "$D/log.new" && ok "the log names the config keys applied" \
    || nok "the log names the config keys applied" "$(tail -5 "$D/log.new")"
# and through the API, which answers with the keys it applied
daemon_config 'policy_config = { uses = { who = "api", api_token = "s3cr3t-policy-token" } },'
out=$(reload)
[ "$(field "$out" '"%s %s %s" % (d["changed"], d["config"], d["restart_required"])')" = "['uses'] ['policy_config'] []" ] \
    && ok "POST /v1/policies/reload re-reads steward.lua" || nok "POST /v1/policies/reload re-reads steward.lua" "$out"
[ "$(decide who)" = "api" ] && ok "the new config is in effect" || nok "the new config is in effect" "$(decide who)"

# A config that breaks the policy's schema: that policy keeps its version, with the reason.
v4=$(version uses)
daemon_config 'policy_config = { uses = { who = 42 } },'
out=$(reload)
case "$out" in *'"failed":["'*uses.lua'"]'*) ok "a policy_config its schema refuses fails that policy" ;; *) nok "a bad policy_config fails the policy" "$out" ;; esac
[ "$(version uses) $(decide who)" = "$v4 api" ] && ok "...and its previous version keeps running" || nok "previous version keeps running" "$(version uses) $(decide who)"
# A steward.lua that does not load: nothing changes, the reload says why.
printf 'return { listen = \n' > "$D/steward.lua"
out=$(reload)
[ "$(field "$out" 'd["error"]["code"]')" = reload_failed ] || out="not refused: $out"
case "$out" in *'steward.lua:2: '*) ok "a steward.lua that does not load refuses the reload, naming the file" ;; *) nok "a broken steward.lua refuses the reload" "$out" ;; esac

# explain() in the REPL: what a decision's version was made of, the old one included.
out=$("$BIN" eval --socket "$D/var/steward.sock" "local e = explain('$first_id'); return e.config.who, e.config.api_token, e.libs[1]")
case "$out" in *'"ops"'*'"***"'*'greet.words '*) ok "explain shows the merged config and lib modules of the decision's version" ;;
    *) nok "explain shows the merged config and lib modules of the decision's version" "$out" ;; esac

# 4. listen changed + SIGHUP: named as needing a restart; the daemon keeps serving.
daemon_config 'listen_placeholder = 1,'
sed -i -e 's/127.0.0.1:0/127.0.0.1:1/' -e '/listen_placeholder/d' "$D/steward.lua"
kill -HUP "$DPID"
until_true grep -q 'msg="restart required: listen" reason=SIGHUP' "$D/log.new" && ok "the log says: restart required: listen" \
    || nok "the log says: restart required: listen" "$(tail -5 "$D/log.new")"
curl -fs "http://127.0.0.1:$PORT/healthz" > /dev/null && ok "the daemon keeps serving on its address" || nok "the daemon keeps serving"
out=$(reload)
[ "$(field "$out" 'd["restart_required"]')" = "['listen']" ] && ok "the API names the key that needs a restart" || nok "the API names listen" "$out"

# steward reload names it too.
sed "s/127.0.0.1:1\"/127.0.0.1:$PORT\"/" "$D/steward.lua" > "$D/cli.lua"
out=$("$BIN" reload -c "$D/cli.lua"); rc=$?
case "$rc:$out" in 0:reloaded:*'restart required: listen'*) ok "steward reload says: restart required: listen" ;;
    *) nok "steward reload says: restart required: listen ($rc)" "$out" ;; esac

# 5. steward config show: the effective config, secrets redacted.
daemon_config 'admin_token = "0123456789abcdef-admin", policy_config = { uses = { who = "x", api_token = "s3cr3t-policy-token" } },'
out=$(STEWARD_STORE="postgres://steward:pgpass123@127.0.0.1:5432/steward" "$BIN" config show -c "$D/steward.lua"); rc=$?
case "$rc:$out" in 0:*'who = "x"'*'store = "postgres://steward:***@127.0.0.1:5432/steward"'*) ok "steward config show prints the effective config" ;;
    *) nok "steward config show prints the effective config ($rc)" "$out" ;; esac
case "$out" in *pgpass123*|*s3cr3t*|*0123456789abcdef-admin*) nok "steward config show redacts secrets" "$out" ;;
    *'admin_token = "***"'*'api_token = "***"'*) ok "steward config show redacts secrets" ;; *) nok "steward config show redacts secrets" "$out" ;; esac
out=$("$BIN" config show --json -c "$D/steward.lua")
[ "$(field "$out" 'd["admin_token"], d["policy_config"]["uses"]["who"]')" = "('***', 'x')" ] && ok "steward config show --json" || nok "steward config show --json" "$out"
"$BIN" config show -c "$D/nosuch.lua" 2>/dev/null; rc=$?
[ $rc -eq 2 ] && ok "steward config show of a missing file exits 2" || nok "config show of a missing file exits 2 ($rc)"

daemon_stop TERM
[ "$DSTATUS" -eq 0 ] && ok "the daemon stops cleanly" || nok "the daemon stops cleanly ($DSTATUS)"
echo "1..$n"
