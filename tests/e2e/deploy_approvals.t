#!/bin/bash
# Approvals and change freezes end to end (docs/deploy/approvals.md, docs/deploy/freeze.md):
# a policy requests approvals that notify a Slack-shaped receiver with signed links; they are
# decided through the API (an operator token, whose name is the approver), the REPL (steward
# eval) and a signed link (GET answers a confirm page and decides nothing; the form's POST
# decides; the same link again is 409; a tampered link 403; a link of an expired approval
# 410); a second decision is 409 naming the first; a timeout gives approval.expired; every
# decision is in the audit log with who and how; a pending approval and its timeout survive
# kill -9. Then the shipped deploy.freeze refuses a
# deploy requested in a freeze, naming the window, and admits it with a granted override.
set -u
. "$(dirname "$0")/../support/daemon.sh"
trap daemon_cleanup EXIT

n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
H="Authorization: Bearer "

receiver_start
ctl() { curl -s "$R/_control/$1"; }
wait_route() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$R/_control/wait?route=$1&n=$2&timeout=10")" = 200 ]; }

mkdir -p "$D/policies/deploy" "$D/policies/test"
cp "$here/policies/deploy/freeze.lua" "$D/policies/deploy/freeze.lua"
# What a rollout does at an approval step: ask, with the channels the operator configured.
cat > "$D/policies/test/ask.lua" <<POL
local approvals = require "steward.deploy.approvals"
local notify = require "steward.notify"
return {
  name = "test.ask", capabilities = { notify = { "slack" } },
  on = { "test.ask" },
  handle = function(ev)
    local ch = notify.channel("slack", { name = "slack-deploys", webhook_url = "$R/slack/T0/B0/deploys", retries = 1 })
    assert(approvals.request({ subject = ev.data.subject, step = "pause-1", timeout = ev.data.timeout or "1h",
      approvers = { "operator" }, notify = { ch }, reason = "canary at 20%", key = ev.data.subject }))
  end,
}
POL
# A freeze that is on now (a date range around today), for api in production; docs is excepted.
FROM=$(date -u -d '-1 day' +%Y-%m-%d)
TO=$(date -u -d '+2 days' +%Y-%m-%d)
daemon_config "alerting = { link_secret_file = \"$D/link.key\" },
  grants = { [\"deploy.freeze\"] = { [\"events.emit\"] = { \"deploy.admitted\", \"deploy.refused\" } },
             [\"test.*\"] = { notify = { \"slack\" } } },
  policy_config = { [\"deploy.freeze\"] = { windows = {
    { name = \"release-freeze\", location = \"Europe/Berlin\", reason = \"quarter close\", start = \"$FROM\", [\"end\"] = \"$TO\",
      environments = { \"production\" }, except_services = { \"docs\" } } } } },"
daemon_start || { echo "1..1"; echo "not ok 1 - the daemon starts"; exit 1; }
B="http://127.0.0.1:$PORT"
S="$D/var/steward.sock"
post_event() { curl -s -o /dev/null -w '%{http_code}' -H "$H$TOKEN" -H 'Content-Type: application/json' -d "$1" "$B/v1/events"; }
get() { curl -s -H "$H$TOKEN" "$B$1"; }
# approval_id SUBJECT: waits (bounded) until an approval of that subject exists; prints its id
approval_id() {
    local i id
    for i in $(seq 200); do
        id=$(get "/v1/approvals?subject=$1" | jx 'd["approvals"][0]["id"] if d["approvals"] else ""' 2>/dev/null)
        [ -n "$id" ] && { echo "$id"; return 0; }
        sleep 0.05
    done
    return 1
}
# wait_state ID STATE: polls the approval until it has STATE (bounded)
wait_state() {
    local i
    for i in $(seq 200); do
        [ "$(get "/v1/approvals/$1" | jx 'd["state"]' 2>/dev/null)" = "$2" ] && return 0
        sleep 0.05
    done
    return 1
}
OP=$(curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"role":"operator","name":"olga"}' "$B/v1/tokens" | jx 'd["token"]')
V=$(curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"role":"viewer","name":"vic"}' "$B/v1/tokens" | jx 'd["token"]')

# ---- through the API ----
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r1"}}' > /dev/null
A1=$(approval_id "rollout:api:r1")
ok $? "a policy's approvals.request stores a pending approval ($A1)"
get "/v1/approvals/$A1" > "$D/a1.json"
[ "$(jx 'd["state"], d["subject"], d["step"], d["approvers"]' < "$D/a1.json")" = '["pending","rollout:api:r1","pause-1",["operator"]]' ]
ok $? "GET /v1/approvals/{id}: pending, with subject, step and approvers"
wait_route slack 1 && ctl "requests?route=slack" | jx 'd[0]["valid"] and "Approval needed: rollout:api:r1" in json.dumps(d[0]["json"])' > /dev/null
ok $? "the request is sent through the notify channel (a valid Slack message)"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$V" "$B/v1/approvals/$A1/approve")
[ "$code" = 403 ]
ok $? "a viewer token may not approve: 403"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"comment": 7}' "$B/v1/approvals/$A1/approve")
[ "$code" = 400 ] && [ "$(jx 'd["error"]["details"]["errors"][0]["field"]' < "$D/e.json")" = comment ] || { echo "# $code $(cat "$D/e.json")"; false; }
ok $? "a bad body: 400 naming the field"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"comment": "canary metrics are clean"}' "$B/v1/approvals/$A1/approve")
[ "$code" = 200 ] && [ "$(jx 'd["state"], d["decided_by"], d["decided_via"], d["comment"]' < "$D/e.json")" = '["granted","olga","api","canary metrics are clean"]' ]
ok $? "an operator approves through the API: granted, by the token's name, via api, with the comment"
get "/v1/events?type=approval.granted" | jx '[e["data"]["subject"] for e in d["events"] if e["data"]["approval"] == arg[0]] == ["rollout:api:r1"]' "$A1" > /dev/null
ok $? "the decision is the event approval.granted with data.subject"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$TOKEN" "$B/v1/approvals/$A1/deny")
[ "$code" = 409 ] && jx '"already granted by olga via api" in d["error"]["message"] and d["error"]["details"]["decided_by"] == "olga"' < "$D/e.json" > /dev/null
ok $? "a second decision: 409 naming the first (who, how)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "$H$OP" "$B/v1/approvals/nope/approve")
[ "$code" = 404 ]
ok $? "an unknown approval: 404"
for q in state=maybe limit=0 colour=red; do
  [ "$(get "/v1/approvals?$q" | jx 'd["error"]["details"]["errors"][0]["field"]')" = "${q%%=*}" ]
  ok $? "GET /v1/approvals?$q: refused naming ${q%%=*}"
done

# a dry run asks nobody
curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"type":"test.ask","data":{"subject":"rollout:api:dry"}}' \
  "$B/v1/policies/test.ask/simulate" > "$D/sim.json"
jx '[e["subject"] for e in d["side_effects"] if e["kind"] == "approval"] == ["rollout:api:dry"]' < "$D/sim.json" > /dev/null &&
  [ "$(get "/v1/approvals?subject=rollout:api:dry" | jx 'len(d["approvals"])')" = 0 ]
ok $? "simulating a policy records its approval request and creates none"

# ---- through the REPL ----
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r2"}}' > /dev/null
A2=$(approval_id "rollout:api:r2")
"$BIN" eval --socket "$S" "approvals()" > "$D/r1" 2>&1
grep -q "$A2" "$D/r1" && ! grep -q "$A1" "$D/r1"
ok $? "REPL: approvals() lists the pending approval only"
"$BIN" eval --socket "$S" "approve('$A2', 'approved at the console')" > "$D/r2" 2>&1
grep -q granted "$D/r2" && [ "$(get "/v1/approvals/$A2" | jx 'd["state"], d["decided_via"], d["comment"]')" = '["granted","repl","approved at the console"]' ]
ok $? "REPL: approve(id, comment) grants, via repl"
"$BIN" eval --socket "$S" "deny('$A2')" > "$D/r3" 2>&1
grep -q "already granted by repl:" "$D/r3"
ok $? "REPL: a second decision is refused naming the first"

# ---- through a signed link ----
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r3"}}' > /dev/null
A3=$(approval_id "rollout:api:r3")
wait_route slack 3
# (Slack's text escapes & as &amp;: what a reader clicks is the unescaped link)
LINK=$(ctl "requests?route=slack" | jx '[l for r in d for l in r["json"]["text"].split("\n") if l.startswith("Approve: ") and arg[0] in l][0][9:].replace("&amp;", "&")' "$A3")
case "$LINK" in "http://127.0.0.1:$PORT/v1/approvals/$A3/approve?exp="*"&sig="*) r=0 ;; *) r=1 ;; esac
ok $r "the message carries the signed approve link ($LINK)"
code=$(curl -s -o "$D/page.html" -w '%{http_code}' "$LINK")
[ "$code" = 200 ] && grep -q '<form method="post"' "$D/page.html" && grep -q "rollout:api:r3" "$D/page.html" &&
  [ "$(get "/v1/approvals/$A3" | jx 'd["state"]')" = pending ]
ok $? "GET on the link answers a confirm page (no token) and decides nothing"
code=$(curl -s -o /dev/null -w '%{http_code}' "${LINK%?????}0000")
[ "$code" = 403 ]
ok $? "a tampered signature: 403"
DENY_LINK=$(echo "$LINK" | sed 's#/approve?#/deny?#')
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$DENY_LINK")
[ "$code" = 403 ]
ok $? "the approve signature does not deny: 403"
SIG=${LINK##*sig=}
code=$(curl -s -o "$D/done.html" -w '%{http_code}' --data-urlencode "sig=$SIG" --data-urlencode "comment=from my phone" "${LINK%%&sig=*}")
[ "$code" = 200 ] && grep -q "Approved" "$D/done.html"
ok $? "the confirm form's POST approves"
[ "$(get "/v1/approvals/$A3" | jx 'd["state"], d["decided_by"], d["decided_via"], d["comment"]')" = '["granted","link","link","from my phone"]' ]
ok $? "... granted via the link, with the comment"
code=$(curl -s -o /dev/null -w '%{http_code}' --data-urlencode "sig=$SIG" "${LINK%%&sig=*}")
[ "$code" = 409 ]
ok $? "the same link again: 409 (a link decides once)"

# ---- a timeout ----
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r4","timeout":"1s"}}' > /dev/null
A4=$(approval_id "rollout:api:r4")
wait_route slack 4
LINK4=$(ctl "requests?route=slack" | jx '[l for r in d for l in r["json"]["text"].split("\n") if l.startswith("Approve: ") and arg[0] in l][0][9:].replace("&amp;", "&")' "$A4")
wait_state "$A4" expired
ok $? "no decision within the timeout: expired (the durable timer)"
get "/v1/events?type=approval.expired" | jx '[e["data"]["subject"] for e in d["events"] if e["data"]["approval"] == arg[0]] == ["rollout:api:r4"]' "$A4" > /dev/null
ok $? "... the event approval.expired, once, with data.subject"
code=$(curl -s -o /dev/null -w '%{http_code}' "$LINK4")
[ "$code" = 410 ]
ok $? "the link of an expired approval: 410"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" "$B/v1/approvals/$A4/approve")
[ "$code" = 409 ] && jx '"expired" in d["error"]["message"]' < "$D/e.json" > /dev/null
ok $? "approving an expired approval: 409"

# ---- the audit log ----
"$BIN" audit -c "$D/steward.lua" --json --limit 1000 > "$D/audit"
grep '"command":"approval.approve"' "$D/audit" | grep "\"target\":\"$A1\"" | grep '"outcome":"ok"' | grep -q 'olga'
ok $? "audit: the API approval, with the token"
grep '"command":"approval.approve"' "$D/audit" | grep "\"target\":\"$A2\"" | grep '"outcome":"ok"' | grep '"source":"repl"' | grep -q 'via repl'
ok $? "audit: the REPL approval, from the REPL"
grep '"command":"approval.approve"' "$D/audit" | grep "\"target\":\"$A3\"" | grep '"outcome":"ok"' | grep '"actor":"link"' | grep -q 'via link sent to slack-deploys; comment: from my phone'
ok $? "audit: the link approval, by the link, with its comment" 
grep '"command":"approval.deny"' "$D/audit" | grep "\"target\":\"$A1\"" | grep -q '"outcome":"refused"'
ok $? "audit: a refused second decision is recorded as refused"
"$BIN" audit verify -c "$D/steward.lua" > /dev/null
ok $? "the audit chain verifies"

# ---- change freezes ----
post_event '{"id":"dr-1","type":"deploy.requested","data":{"service":"api","revision":"r42","environment":"production"}}' > /dev/null
for _ in $(seq 200); do get "/v1/events?type=deploy.refused" | jx 'len(d["events"]) > 0' > /dev/null 2>&1 && break; sleep 0.05; done
get "/v1/events?type=deploy.refused" > "$D/ref.json"
jx 'd["events"][0]["data"]["window"] == "release-freeze" and d["events"][0]["data"]["revision"] == "r42"' < "$D/ref.json" > /dev/null
ok $? "a deploy requested in a freeze is refused: deploy.refused names the window"
jx '"change freeze \"release-freeze\" (quarter close) until " in d["events"][0]["data"]["reason"] and "Europe/Berlin" in d["events"][0]["data"]["reason"]' < "$D/ref.json" > /dev/null
ok $? "... and says when it ends ($(jx 'd["events"][0]["data"]["reason"]' < "$D/ref.json"))"
curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"service":"api","revision":"r42","environment":"production"}' "$B/v1/decide/deploy.freeze" > "$D/dec.json"
jx 'd["result"]["allow"] == False and d["result"]["window"] == "release-freeze"' < "$D/dec.json" > /dev/null
ok $? "POST /v1/decide/deploy.freeze: allow false, the window named"
curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d '{"service":"docs","environment":"production"}' "$B/v1/decide/deploy.freeze" | jx 'd["result"]["allow"] == True' > /dev/null
ok $? "... an excepted service is allowed"
post_event '{"type":"test.ask","data":{"subject":"freeze-override:api"}}' > /dev/null
OV=$(approval_id "freeze-override:api")
curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d "{\"service\":\"api\",\"environment\":\"production\",\"override\":\"$OV\"}" "$B/v1/decide/deploy.freeze" | jx 'd["result"]["allow"] == False' > /dev/null
ok $? "an override still pending lets nothing through"
curl -s -o /dev/null -X POST -H "$H$OP" -H 'Content-Type: application/json' -d '{"comment":"hotfix for INC-7"}' "$B/v1/approvals/$OV/approve"
curl -s -H "$H$TOKEN" -H 'Content-Type: application/json' -d "{\"service\":\"api\",\"environment\":\"production\",\"override\":\"$OV\"}" "$B/v1/decide/deploy.freeze" > "$D/dec2.json"
jx 'd["result"]["allow"] == True and "overridden by approval" in d["result"]["reason"]' < "$D/dec2.json" > /dev/null
ok $? "a granted freeze-override:api lets api through, naming the freeze it overrides"
post_event "{\"id\":\"dr-2\",\"type\":\"deploy.requested\",\"data\":{\"service\":\"api\",\"revision\":\"r43\",\"environment\":\"production\",\"override\":\"$OV\"}}" > /dev/null
for _ in $(seq 200); do get "/v1/events?type=deploy.admitted" | jx 'len(d["events"]) > 0' > /dev/null 2>&1 && break; sleep 0.05; done
get "/v1/events?type=deploy.admitted" | jx 'd["events"][0]["data"]["revision"] == "r43"' > /dev/null
ok $? "... and deploy.requested with the override is admitted"

# ---- kill -9: a pending approval and its timeout survive ----
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r5","timeout":"1h"}}' > /dev/null
A5=$(approval_id "rollout:api:r5")
post_event '{"type":"test.ask","data":{"subject":"rollout:api:r6","timeout":"3s"}}' > /dev/null
A6=$(approval_id "rollout:api:r6")
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
daemon_start || { echo "not ok - the daemon restarts"; exit 1; }
B="http://127.0.0.1:$PORT"
[ "$(get "/v1/approvals/$A5" | jx 'd["state"]')" = pending ]
ok $? "after kill -9 and a restart the approval is still pending"
code=$(curl -s -o "$D/e.json" -w '%{http_code}' -X POST -H "$H$OP" "$B/v1/approvals/$A5/approve")
[ "$code" = 200 ] && [ "$(jx 'd["state"]' < "$D/e.json")" = granted ]
ok $? "... and is approved after the restart"
wait_state "$A6" expired
ok $? "a timeout armed before the kill still expires its approval after the restart"

daemon_stop
[ "$DSTATUS" = 0 ]
ok $? "the daemon stops cleanly"

echo "1..$n"
[ "$fail" = 0 ]
