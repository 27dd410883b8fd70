# Shell helpers for the billing payment tests (tests/e2e/billing_{payments,webhooks,dunning}.t),
# sourced after daemon.sh: the Stripe-compatible peer (tests/support/stripe_peer.py) on a free
# port, stopped with the daemon; the billing config; real invoices to collect (made with
# tests/support/billing_setup.sh's tenant, plan and subscription).
. "$here/tests/support/billing_setup.sh"
STRIPE_KEY=sk_test_e2e_51H7h7h7h7h7
WHSEC=whsec_e2e_h7h7h7h7h7h7h7h7
PEERPID=
billing_cleanup() { [ -n "$PEERPID" ] && kill "$PEERPID" 2>/dev/null; daemon_cleanup; }
trap billing_cleanup EXIT

# peer_start: sets PEERPID and PEER (its base URL)
peer_start() {
    /usr/bin/python3 "$here/tests/support/stripe_peer.py" "$STRIPE_KEY" >"$D/peer.port" 2>"$D/peer.err" &
    PEERPID=$!
    wait_for 10 grep -q '^[0-9]' "$D/peer.port" || { echo "# the Stripe peer did not start"; return 1; }
    PEER="http://127.0.0.1:$(head -1 "$D/peer.port")"
}

# peer METHOD PATH [JSON]: a control request to the peer; the answer on stdout
peer() { curl -s -X "$1" ${3:+-H 'Content-Type: application/json' -d "$3"} "$PEER$2"; }

# peer_webhook: the peer's events go to the daemon's webhook endpoint
peer_webhook() { peer POST /_peer/webhook "{\"url\":\"http://127.0.0.1:$PORT/v1/billing/webhooks/stripe\",\"secret\":\"$WHSEC\"}" >/dev/null; }

# billing_secrets: the webhook secret's file and the API key's variable, as the config names them
billing_secrets() {
    printf '%s\n' "$WHSEC" > "$D/whsec"
    export H7_STRIPE_KEY="$STRIPE_KEY"
}

# billing_config [dunning table] [extra fields] [extra payments fields]: payments through the peer
billing_config() {
    daemon_config "tenants = { plans = { basic = {} } },
  billing = { currency = \"EUR\", grace_period = \"0s\", payments = { url = \"$PEER\", secret_key = \"env:H7_STRIPE_KEY\",
      webhook_secret = \"file:$D/whsec\", payment_method = \"pm_card_visa\", $3 }, ${1:+dunning = $1,} },
  $2"
}

# ev CODE: a chunk run in the live daemon; its result on stdout
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$1" 2>&1; }

# payments_tenant ID: the tenant, active, with a contact address and its branding (name, footer)
payments_tenant() {
    curl -s -o "$D/tenant.out" -H "Authorization: Bearer $TOKEN" -d "{\"id\":\"$1\",\"name\":\"$1 corp\",\"plan\":\"basic\",
      \"contact\":{\"email\":\"ops@$1.test\"},\"branding\":{\"name\":\"$1 Cloud\",\"footer\":\"$1 Cloud billing, 1 Main St\"}}" \
      "http://127.0.0.1:$PORT/v1/tenants" >/dev/null
    tenant_active() {
        curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/tenants/$1" | jx 'd["state"] == "active"' >/dev/null
    }
    wait_for 20 tenant_active "$1"
}

# invoices_for TENANT N: the tenant (active, with billing details), subscribed to the plan pro
# (100 EUR a month) since N months ago (made with payments_tenant), and its invoices of those N whole months built and
# finalized (steward.billing.invoices); their ids on stdout, oldest first, one a line
invoices_for() {
    payments_tenant "$1"
    local sub
    sub=$(billing_subscribe "$1" "$(month_start "-$2")" | tr -d '"')
    local i
    for i in $(seq "$2" -1 1); do
        beval "local st = require('steward.runtime.store').default()
          local invoices = require('steward.billing.invoices')
          local inv = assert(invoices.build(st, '$sub', { from = $(month_start "-$i"), to = $(month_start "-$((i - 1))") }))
          return assert(invoices.finalize(st, inv.id)).id" | tr -d '"'
    done
}

# invoice_state ID: its state
invoice_state() { ev "return require('steward.billing.invoices').get('$1').state" | tr -d '"'; }

# invoice_payment ID: the id of the payment that paid it
invoice_payment() { ev "local i = require('steward.billing.invoices').get('$1'); return i.payment and i.payment.id or 'none'" | tr -d '"'; }

# invoice_total ID: its total, an exact string
invoice_total() { ev "return require('steward.decimal').string(require('steward.billing.invoices').get('$1').total)" | tr -d '"'; }

# events_of TYPE: how many events of that type the log has
events_of() { ev "return #require('steward.runtime.store').default().db:query(\"SELECT id FROM events WHERE type = '$1'\")"; }

# api METHOD PATH [JSON]: the daemon's API with the admin token; body in $D/body, status on stdout
api() { curl -s -o "$D/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -X "$1" ${3:+-H 'Content-Type: application/json' -d "$3"} "http://127.0.0.1:$PORT$2"; }
