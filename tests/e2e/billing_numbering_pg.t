#!/bin/bash
# Gap-free invoice numbers across instances: three steward daemons share one PostgreSQL (a
# throwaway 15, tests/support/pg.sh; skipped when it is not installed). 300 subscriptions get a
# draft each for last month; then the three instances finalize all 300 at once, each in its own
# shuffled order, 300 tasks per instance — every invoice raced by three instances. Afterwards
# the series INV holds exactly the numbers 1..300: none twice, none missing, every invoice
# finalized once, and the series counter says 300. 60 credit notes created at once from the
# three instances (20 each) are CN 1..60.
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STEWARD_BIN:-$here/build/steward}
export STEWARD_LUA_PATH=${STEWARD_LUA_PATH:-$here/scripts}
. "$here/tests/support/pg.sh"
PY=/usr/bin/python3
T=$(mktemp -d /tmp/steward-num.XXXXXX)
declare -A PID PORTS
cleanup() {
    for i in "${!PID[@]}"; do [ -n "${PID[$i]}" ] && kill -9 "${PID[$i]}" 2>/dev/null; done
    wait 2>/dev/null
    pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
pg_start || { echo "1..1"; echo "not ok 1 - PostgreSQL starts"; exit 1; }
echo "1..7"
n=0
fail=0
tap() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
TOKEN=numbering-test-admin-token-0123456789
N=300
mkdir -p "$T/policies"
# (policy_stall: the test's own REPL chunks sort with a Lua callback inside table.sort, a C
# call the stall guard times; under ASan on a loaded machine one such sort took over 0.2 s)
CONF='tenants = { plans = { basic = {} } }, limits = { repl_cpu = 60, policy_stall = 5 },
  billing = { currency = "EUR", grace_period = "90d", taxes = { rates = { { country = "FR", rate = "20", name = "TVA" } } } }'
for i in a b c; do instance_start "$i" "$CONF" & done
wait
for i in a b c; do
    PORTS[$i]=$(sed -n 's/.*msg=listening address=127.0.0.1:\([0-9]*\).*/\1/p' "$T/$i/log" | tail -1)
    PID[$i]=$(sed -n 's/.*msg="cluster: instance registered".* instance=[^ ]*-\([0-9]*\)-[0-9a-f]*.*/\1/p' "$T/$i/log" | tail -1)
done
ok=0; for i in a b c; do [ -n "${PORTS[$i]}" ] && [ -n "${PID[$i]}" ] || ok=1; done
tap $ok "three instances on one database"
[ $ok = 0 ] || { for i in a b c; do sed 's/^/# /' "$T/$i/log"; done; exit 1; }
ev() { "$BIN" eval --socket "$T/$1/var/steward.sock" - | sed 's/^"\(.*\)"$/\1/'; }

curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" \
  -d '{"id":"acme","name":"Acme","plan":"basic","config":{"billing":{"country":"FR","legal_name":"Acme SAS"}}}' \
  "http://127.0.0.1:${PORTS[a]}/v1/tenants"
for _ in $(seq 400); do
    curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORTS[a]}/v1/tenants/acme" | grep -q '"state":"active"' && break
    sleep 0.05
done
LAST=$($PY -c 'import datetime as d
n=d.datetime.now(d.timezone.utc); m=n.year*12+n.month-2
print(int(d.datetime(m//12, m%12+1, 1, tzinfo=d.timezone.utc).timestamp()))')
ev a > "$T/seed.out" 2>&1 <<LUA
local st = require("steward.runtime.store").default()
assert(require("steward.billing.metrics").create(st, { code = "api_calls", name = "API calls", aggregation = "count" }))
assert(require("steward.billing.plans").create(st, { code = "pro", name = "Pro", interval = "monthly", amount = "100",
  currency = "EUR", charges = { { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.05" } } } }))
local subs = require "steward.billing.subscriptions"
for i = 1, $N do assert(subs.create(st, { tenant = "acme", plan = "pro", started = $LAST + i * 60 })) end
return "seeded"
LUA
grep -q seeded "$T/seed.out"
tap $? "a plan and $N subscriptions since last month" || sed 's/^/# /' "$T/seed.out"

# the drafts, built in 6 parts across the instances (each builds what it is given)
for part in 0 1 2 3 4 5; do
    inst=$(echo a b c | cut -d' ' -f$((part % 3 + 1)))
    ev "$inst" > "$T/build$part.out" 2>&1 <<LUA &
local st = require("steward.runtime.store").default()
local inv = require "steward.billing.invoices"
local list = assert(require("steward.billing.subscriptions").list(st, { tenant = "acme", limit = 1000 }))
table.sort(list, function(x, y) return x.id < y.id end)
local built = 0
for i = 1 + $part * 50, ($part + 1) * 50 do
  local p = require("steward.billing.periods").bounds("monthly", $LAST, $LAST)
  assert(inv.build(st, list[i].id, { from = p.from, to = p.to }))
  built = built + 1
end
return "built " .. built
LUA
done
wait
drafts=$(echo 'return #assert(require("steward.billing.invoices").list({ state = "draft", limit = 1000 }))' | ev a)
[ "$drafts" = "$N" ]
tap $? "$N drafts ($drafts)" || cat "$T"/build*.out | head -20 | sed 's/^/# /'

# the race: every instance finalizes every draft, 300 tasks each, in its own order, all three
# starting at the same moment (a start time two seconds ahead, not a sleep to wait for a result)
START=$($PY -c 'import time; print(time.time() + 2)')
for i in a b c; do
    ev "$i" > "$T/fin_$i.out" 2>&1 <<LUA &
local task = require "steward.task"
local time = require "steward.time"
local inv = require "steward.billing.invoices"
local list = assert(inv.list({ state = "draft", limit = 1000 }))
if $START > time.now() then time.sleep($START - time.now()) end
math.randomseed(${RANDOM})
for k = #list, 2, -1 do local j = math.random(k); list[k], list[j] = list[j], list[k] end
local hs = {}
for k, d in ipairs(list) do hs[k] = task.spawn(function() return inv.finalize(d.id) end) end
local mine, errs = 0, {}
for k = 1, #hs do
  local ok, r, changed = hs[k]:join()
  if ok and r and changed then mine = mine + 1 elseif not (ok and r) then errs[#errs + 1] = tostring(changed or r) end
end
return "of " .. #list .. " finalized " .. mine .. " errors " .. #errs .. " " .. (errs[1] or "")
LUA
done
wait
for i in a b c; do echo "# $i: $(cat "$T/fin_$i.out")"; done
won=0; for i in a b c; do w=$(sed -n 's/.*finalized \([0-9]*\) errors 0 .*/\1/p' "$T/fin_$i.out"); won=$((won + ${w:-100000})); done
[ "$won" = "$N" ]
tap $? "three instances raced: each invoice finalized by exactly one of them ($won in all), no errors"

check() {
    echo "local st = require('steward.runtime.store').default()
local rows = assert(st.db:query(\"SELECT seq, number, state FROM $1 WHERE series = '$2' ORDER BY seq\"))
local want, bad = 1, nil
for _, r in ipairs(rows) do
  if r.seq ~= want or r.number ~= string.format('$2-%06d', want) then bad = bad or (tostring(r.seq) .. ' ' .. tostring(r.number) .. ' where ' .. want .. ' was due') end
  want = want + 1
end
local last = assert(st.db:query(\"SELECT last FROM billing_numbering WHERE series = '$2'\"))[1]
return string.format('%d numbers, counter %s, %s', #rows, last and last.last or 'none', bad or 'in order')" | ev b
}
res=$(check billing_invoices INV)
[ "$res" = "$N numbers, counter $N, in order" ]
tap $? "INV holds exactly 1..$N, each once, and its counter says $N ($res)"

# credit notes at once from three instances: 60 of the invoices, one credit note each
START2=$($PY -c 'import time; print(time.time() + 2)')
for i in a b c; do
    ev "$i" > "$T/cn_$i.out" 2>&1 <<LUA &
local task = require "steward.task"
local inv = require "steward.billing.invoices"
local cn = require "steward.billing.credit_notes"
local time = require "steward.time"
local list = assert(inv.list({ state = "finalized", limit = 1000 }))
table.sort(list, function(x, y) return x.id < y.id end)
if $START2 > time.now() then time.sleep($START2 - time.now()) end
local hs = {}
for k = 1, 20 do
  local d = list[k + (("$i"):byte() - 97) * 20]
  hs[k] = task.spawn(function() return cn.create(d.id, { amount = "1.00", reason = "goodwill $i" }) end)
end
local made, errs = 0, {}
for k = 1, #hs do
  local ok, r, err = hs[k]:join()
  if ok and r then made = made + 1 else errs[#errs + 1] = tostring(err or r) end
end
return "made " .. made .. " errors " .. #errs .. " " .. (errs[1] or "")
LUA
done
wait
for i in a b c; do echo "# credit notes $i: $(cat "$T/cn_$i.out")"; done
res=$(check billing_credit_notes CN)
[ "$res" = "60 numbers, counter 60, in order" ]
tap $? "60 credit notes from three instances at once: CN 1..60 ($res)"
states=$(echo 'return #assert(require("steward.billing.invoices").list({ state = "finalized", limit = 1000 }))' | ev c)
[ "$states" = "$N" ]
tap $? "every invoice is finalized, seen from the third instance"
exit $fail
