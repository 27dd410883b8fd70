# Helpers of the billing invoice tests (source after tests/support/daemon.sh): the shipped
# billing policies into the test's policy directory, and one tenant with a subscription of a
# metered plan that started `days` ago, made in the live daemon through `steward eval`.

# billing_policies: policies/billing/*.lua (not the specs) into $D/policies/billing
billing_policies() {
    mkdir -p "$D/policies/billing"
    for f in "$here"/policies/billing/*.lua; do
        case "$f" in *_spec.lua) ;; *) cp "$f" "$D/policies/billing/" ;; esac
    done
}

# beval CODE: runs CODE in the live daemon, prints its result (a string without its quotes)
beval() { "$BIN" eval --socket "$D/var/steward.sock" "$1" | sed 's/^"\(.*\)"$/\1/'; }

# billing_tenant ID COUNTRY: a tenant with billing details, active
billing_tenant() {
    curl -s -o "$D/tenant.out" -H "Authorization: Bearer $TOKEN" -d "{\"id\":\"$1\",\"name\":\"$1 corp\",\"plan\":\"basic\",
      \"config\":{\"billing\":{\"country\":\"$2\",\"legal_name\":\"$1 SAS\",\"email\":\"billing@$1.example\"}}}" \
      "http://127.0.0.1:$PORT/v1/tenants" >/dev/null
    tenant_active() {
        curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tenants/$1" | jx 'd["state"] == "active"' >/dev/null
    }
    wait_for 20 tenant_active "$1"
}

# billing_catalog: the metric api_calls (count) and the plan pro (monthly 100 EUR, calls at 0.05)
billing_catalog() {
    beval 'local st = require("steward.runtime.store").default()
      assert(require("steward.billing.metrics").create(st, { code = "api_calls", name = "API calls", aggregation = "count" }))
      assert(require("steward.billing.plans").create(st, { code = "pro", name = "Pro", interval = "monthly", amount = "100",
        currency = "EUR", charges = { { id = "calls", metric = "api_calls", model = "standard", properties = { amount = "0.05" } } } }))
      return "catalog"' >/dev/null
}

# billing_subscribe TENANT STARTED (Unix seconds): prints the subscription's id
billing_subscribe() {
    beval "local st = require('steward.runtime.store').default()
      return assert(require('steward.billing.subscriptions').create(st, { tenant = '$1', plan = 'pro', started = $2 })).id"
}

# month_start OFFSET: the Unix time of the first day (UTC) of this month + OFFSET months
month_start() {
    /usr/bin/python3 -c 'import sys,datetime as d
n=d.datetime.now(d.timezone.utc); m=n.year*12+n.month-1+int(sys.argv[1])
print(int(d.datetime(m//12, m%12+1, 1, tzinfo=d.timezone.utc).timestamp()))' "$1"
}
