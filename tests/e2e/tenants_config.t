#!/bin/bash
# A tenant's own policy settings (its record's config): checked against the policy's schema when
# the saga's config step runs (a wrong type fails the tenant at "config", naming the field),
# in force for the tenant's decisions once it is active, changed at once by a PATCH, kept across
# a policy reload and a restart (merged over steward.lua's tenant_config), and taken out again
# when a provisioning fails.
. "$(dirname "$0")/../support/daemon.sh"
echo "1..7"
cat > "$D/policies/greet.lua" <<'POL'
return {
  config = { greeting = { type = "string", default = "hello" } },
  decide = function(input, ctx) return { greeting = ctx.config.greeting } end,
}
POL
daemon_config 'tenant_config = { globex = { greet = { greeting = "from steward.lua" } } },'
daemon_start || exit 1
H="Authorization: Bearer $TOKEN"
U="http://127.0.0.1:$PORT"
state() { curl -s -H "$H" "$U/v1/tenants/$1" | jx 'd["state"]' 2>/dev/null; }
is_state() { [ "$(state "$1")" = "$2" ]; }
greeting() { curl -s -H "$H" -d "{\"tenant\":\"$1\"}" "$U/v1/decide/greet" | jx 'd["result"]["greeting"]'; }

curl -s -H "$H" -o /dev/null -d '{"id":"acme","name":"Acme","config":{"greet":{"greeting":"bonjour"}}}' "$U/v1/tenants"
wait_for 20 is_state acme active
[ "$(greeting acme)" = bonjour ]
ok $? "the tenant's config is in force for its decisions once it is active"
[ "$(greeting globex)" = "from steward.lua" ] && [ "$(greeting initech)" = hello ]
ok $? "other tenants keep theirs (steward.lua's tenant_config, the default)"

curl -s -H "$H" -o /dev/null -d '{"id":"bad","name":"Bad","config":{"greet":{"greeting":5}}}' "$U/v1/tenants"
wait_for 20 is_state bad failed
r=$(curl -s -H "$H" "$U/v1/tenants/bad" | jx '"%s: %s" % (d["failed_step"], d["reason"])')
echo "$r" | grep -q '^config: .*config.greet: .*greeting: expected a string'
ok $? "a setting of the wrong type fails the tenant at config, naming the field ($r)"
[ "$(greeting bad)" = hello ]
ok $? "... and nothing of it stays in force"

v=$(curl -s -H "$H" "$U/v1/tenants/acme" | jx 'd["version"]')
curl -s -H "$H" -o /dev/null -X PATCH -d "{\"version\":$v,\"config\":{\"greet\":{\"greeting\":\"hola\"}}}" "$U/v1/tenants/acme"
[ "$(greeting acme)" = hola ]
ok $? "a PATCH of the config is in force at once"
curl -s -H "$H" -o /dev/null -X POST "$U/v1/policies/reload"
[ "$(greeting acme)" = hola ]
ok $? "... and after a policy reload"
daemon_stop
daemon_start || exit 1
U="http://127.0.0.1:$PORT"
[ "$(greeting acme)" = hola ]
ok $? "... and after a restart"
daemon_stop
exit $fail
