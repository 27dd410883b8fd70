# Shell helpers for the billing payment tests (tests/e2e/billing_{payments,webhooks,dunning}.t),
# sourced after daemon.sh: the Stripe-compatible peer (tests/support/stripe_peer.py) on a free
# port, stopped with the daemon; the invoices fixture (tests/support/billing_invoices_fixture.lua)
# as steward.billing.invoices on a Lua path of the test's own; the billing config; eval.
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

# billing_lua: the scripts with the invoices fixture as steward.billing.invoices
billing_lua() {
    mkdir -p "$D/lua"
    cp -r "$here/scripts/." "$D/lua/"
    [ -f "$here/scripts/steward/billing/invoices.lua" ] ||
        cp "$here/tests/support/billing_invoices_fixture.lua" "$D/lua/steward/billing/invoices.lua"
    export STEWARD_LUA_PATH="$D/lua"
    printf '%s\n' "$WHSEC" > "$D/whsec"
    export H7_STRIPE_KEY="$STRIPE_KEY"
}

# billing_config [dunning table] [extra fields] [extra payments fields]: payments through the peer
billing_config() {
    daemon_config "billing = { payments = { url = \"$PEER\", secret_key = \"env:H7_STRIPE_KEY\",
      webhook_secret = \"file:$D/whsec\", payment_method = \"pm_card_visa\", $3 }, ${1:+dunning = $1,} },
  $2"
}

# ev CODE: a chunk run in the live daemon; its result on stdout
ev() { "$BIN" eval --socket "$D/var/steward.sock" "$1" 2>&1; }

# invoice ID TENANT TOTAL [CURRENCY]: a finalized invoice of the fixture
invoice() {
    ev "return require('steward.billing.invoices').put{id = '$1', number = 'INV-$1', tenant = '$2', total = '$3', currency = '${4:-USD}'}.id" >/dev/null
}

# invoice_state ID: its state
invoice_state() { ev "return require('steward.billing.invoices').get('$1').state" | tr -d '"'; }

# api METHOD PATH [JSON]: the daemon's API with the admin token; body in $D/body, status on stdout
api() { curl -s -o "$D/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -X "$1" ${3:+-H 'Content-Type: application/json' -d "$3"} "http://127.0.0.1:$PORT$2"; }
