#!/bin/bash
# Tenants under two worker processes sharing one store: requests land on either worker, the
# leader runs every saga (a worker that is not the leader leaves its sagas to the leader's scan),
# each step runs once, and both workers see the new states (tenants.state's cache) and serve
# the tenants' tokens.
. "$(dirname "$0")/../support/daemon.sh"
echo "1..4"
daemon_config ''
STEWARD_WORKERS=2 daemon_start || exit 1
H="Authorization: Bearer $TOKEN"
for i in 1 2 3 4 5 6; do
    curl -s -o "$D/c$i" -H "$H" -d "{\"id\":\"w$i\",\"name\":\"W$i\"}" "http://127.0.0.1:$PORT/v1/tenants"
done
active() { [ "$(curl -s -H "$H" "http://127.0.0.1:$PORT/v1/tenants?state=active" | jx 'len(d["tenants"])' 2>/dev/null)" = 6 ]; }
wait_for 30 active
ok $? "six tenants requested across the workers are all active"
runs=$(for i in 1 2 3 4 5 6; do curl -s -H "$H" "http://127.0.0.1:$PORT/v1/tenants/w$i/saga" | jx '"".join(str(s["runs"]) for s in d["steps"])'; done | sort -u)
[ "$runs" = 111111 ]
ok $? "each step of each saga ran once ($runs)"
# New connections spread over the workers (SO_REUSEPORT): every one answers the tenants' tokens
# once it has read the token table again (NOTIFY on PostgreSQL, else the periodic refresh: 5 s).
all_tokens() {
    good=0
    for i in 1 2 3 4 5 6; do
        tok=$(jx 'd["admin_token"]["token"]' <"$D/c$i")
        for _ in 1 2 3; do
            [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT/v1/tenants/w$i")" = 200 ] && good=$((good + 1))
        done
    done
    [ "$good" = 18 ]
}
wait_for 20 all_tokens
ok $? "every tenant's token works on whichever worker answers ($good/18)"
[ "$(grep -c 'msg="tenant provisioning stopped' "$D/log.new")" = 0 ]
ok $? "no saga stopped with an error"
daemon_stop
exit $fail
