#!/bin/bash
# The read-only commands against a live daemon: steward status, policy list, policy show, decide
# (argument and stdin, errors and exit codes), and the REPL's policy.decide (a dry run: nothing
# logged, side effects recorded) and decisions{} (the latest decisions, filtered).
set -u
. "$(dirname "$0")/../support/daemon.sh"
n=0
check() { n=$((n + 1)); if eval "$1"; then echo "ok $n - $2"; else echo "not ok $n - $2"; echo "# out: $(head -c 600 "$D/out" 2>/dev/null)"; echo "# err: $(head -c 600 "$D/err" 2>/dev/null)"; fi; }
cat > "$D/policies/gate.lua" <<'POL'
return { capabilities = { "http" },
  name = "deploy.gate", on = { "deploy.*" },
  handle = function() end,
  decide = function(input, ctx)
    if input.boom then error("boom requested") end
    require("steward.http").request{ url = "http://127.0.0.1:1/hook", timeout = 1 }
    return { allow = input.service ~= "frozen", limit = ctx.config.limit }
  end,
  config = { limit = 3 },
}
POL
printf 'return { name = "broken", on = { "x" }, handle = function( }\n' > "$D/policies/broken.lua"
daemon_config ''
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon started"; exit 1; }
sed "s/127.0.0.1:0/127.0.0.1:$PORT/" "$D/steward.lua" > "$D/cli.lua"
run() { "$BIN" "$@" -c "$D/cli.lua" > "$D/out" 2> "$D/err"; }

run status; rc=$?
check '[ $rc -eq 0 ] && grep -q "^daemon 127.0.0.1:$PORT: ready" "$D/out" &&
       grep -q "^policies: 1 loaded, 1 failing to load" "$D/out" && grep -q "broken.lua:1:" "$D/out" &&
       grep -q "^dead letters: 0" "$D/out"' "status: ready, policies loaded and failing, dead letters"

run policy list; rc=$?
check '[ $rc -eq 1 ] && grep -q "^name  *version  *loaded_at" "$D/out" && grep -q "^deploy.gate  *[0-9a-f]\{12\}  *20[0-9-]*T.* handle,decide" "$D/out" &&
       grep -q "^failed to load: .*broken.lua:1:" "$D/out"' "policy list: one row per policy, the failing file, exit 1 while one fails"

run policy show deploy.gate; rc=$?
check '[ $rc -eq 0 ] && grep -q "^name: *deploy.gate" "$D/out" && grep -q "^on: *deploy\.\*" "$D/out" &&
       grep -q "^file: .*gate.lua" "$D/out" && grep -q "(running)" "$D/out"' "policy show: file, events, versions with the running one"
run policy show nosuch; rc=$?
check '[ $rc -eq 1 ] && grep -q "no policy nosuch" "$D/err"' "policy show of an unknown policy: exit 1 naming it"

run decide deploy.gate '{"service":"frozen"}'; rc=$?
check '[ $rc -eq 0 ] && [ "$(wc -l < "$D/out")" -eq 1 ] && grep -q "\"allow\":false" "$D/out" && grep -q "\"limit\":3" "$D/out" && grep -q "^# deploy.gate version [0-9a-f]*, decision " "$D/err"' \
      "decide NAME JSON: the result as JSON on stdout, the decision id on stderr"
echo '{"service":"api"}' | "$BIN" decide deploy.gate - -c "$D/cli.lua" > "$D/out" 2> "$D/err"; rc=$?
check '[ $rc -eq 0 ] && grep -q "\"allow\":true" "$D/out"' "decide NAME -: the input from stdin"
run decide deploy.gate '{"boom":true}'; rc=$?
check '[ $rc -eq 1 ] && grep -q "boom requested" "$D/err"' "decide: an error in the policy exits 1 with it"
run decide nosuch '{}'; rc=$?
check '[ $rc -eq 1 ] && grep -q "no policy nosuch" "$D/err"' "decide with an unknown policy: exit 1"
run decide deploy.gate '{"a":'; rc=$?
check '[ $rc -eq 2 ] && grep -q "JSON" "$D/err"' "decide with bad JSON: exit 2, nothing sent"

# The REPL helpers.
S=$D/var/steward.sock
ev() { "$BIN" eval --socket "$S" "$@" > "$D/out" 2> "$D/err"; }
before=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/decisions?policy=deploy.gate" | grep -o '"decision_id"' | wc -l)
ev --json 'policy.decide("deploy.gate", {service = "api"})'; rc=$?
check '[ $rc -eq 0 ] && grep -q "\"result\":{[^}]*\"allow\":true" "$D/out" && grep -q "\"kind\":\"http\"" "$D/out" && grep -q "127.0.0.1:1.*hook" "$D/out"' \
      "policy.decide: the result and the side effects it would have had"
after=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/decisions?policy=deploy.gate" | grep -o '"decision_id"' | wc -l)
check '[ "$before" -eq 3 ] && [ "$after" -eq 3 ]' "policy.decide is a dry run: no decision is logged ($before, $after)"
ev --json 'policy.decide("deploy.gate", {boom = true})'; rc=$?
check '[ $rc -eq 0 ] && grep -q "boom requested" "$D/out"' "policy.decide reports the policy's error"
ev 'policy.decide("nosuch", {})'; rc=$?
check 'grep -q "no policy named nosuch" "$D/out" "$D/err"' "policy.decide of an unknown policy: nil, err"
ev 'policy.decide("deploy.gate")'; rc=$?
check '[ $rc -eq 1 ] && grep -q "policy.decide: input" "$D/err"' "policy.decide without an input is misuse naming the argument"
ev 'decisions{policy = "deploy.gate", n = 2}'; rc=$?
check '[ $rc -eq 0 ] && head -1 "$D/out" | grep -q "^decision_id  *time  *policy  *version  *outcome" && [ "$(grep -c "deploy.gate" "$D/out")" -eq 2 ] &&
       tail -1 "$D/out" | grep -q "error: .*boom requested"' "decisions{policy, n}: the n latest, the last one last"
ev --json 'decisions{outcome = "ok"}'; rc=$?
check '[ $rc -eq 0 ] && [ "$(grep -o "\"outcome\":\"ok\"" "$D/out" | wc -l)" -eq 2 ] && ! grep -q "\"outcome\":\"error\"" "$D/out"' "decisions{outcome}: filtered"
ev 'decisions{n = 0}'; rc=$?
check '[ $rc -eq 1 ] && grep -q "decisions: n:" "$D/err"' "decisions with a bad n is misuse naming it"
ev 'help()'; rc=$?
check 'grep -q "policy.decide(name, input)" "$D/out" && grep -q "^decisions{" "$D/out"' "help() lists policy.decide and decisions"

daemon_stop
run status; rc=$?
check '[ $rc -eq 1 ] && grep -q "does not answer" "$D/err"' "status with no daemon: exit 1, says it does not answer"
echo "1..$n"
