#!/bin/bash
# Wallets and coupons through the HTTP API on a real daemon (issue 18 §2): a wallet with
# prepaid credits at a rate, top-ups once per key, the balance and every transaction; a
# tenant's token sees its own wallets only; coupons created, applied to a tenant (twice: a
# 409), listed with what is left of them; refusals name the field.
. "$(dirname "$0")/../support/daemon.sh"
echo "1..11"
daemon_config 'tenants = { plans = { basic = {} } }, billing = { currency = "EUR" },'
daemon_start || exit 1
. "$here/tests/support/billing_api.sh"
billing_two_tenants
ok $? "two tenants"

code=$(req "$H" POST /v1/billing/wallets '{"tenant":"acme","rate_amount":"0.50","paid_credits":"100","granted_credits":"20"}')
W=$(jx 'd["wallet"]["id"]' <"$D/body")
[ "$code" = 201 ] && jx 'd["wallet"]["balance"] == "120" and d["wallet"]["balance_amount"] == "60" and d["wallet"]["currency"] == "EUR"' <"$D/body" >/dev/null
ok $? "POST /v1/billing/wallets: 120 credits worth 60 EUR, as strings ($code)"
code=$(req "$H" POST /v1/billing/wallets '{"tenant":"acme","rate_amount":0.5}')
[ "$code" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "rate_amount"' <"$D/body" >/dev/null
ok $? "a rate sent as a JSON number with a fraction: 400 naming rate_amount ($code)"
code=$(req "$H" POST /v1/billing/wallets '{"tenant":"acme"}')
[ "$code" = 409 ]
ok $? "a second active EUR wallet for acme: 409 ($code)"
code=$(req "$H" POST /v1/billing/wallets/$W/top_up '{"paid_credits":"30","key":"order-1"}')
code2=$(req "$H" POST /v1/billing/wallets/$W/top_up '{"paid_credits":"30","key":"order-1"}')
[ "$code$code2" = 200200 ] && jx 'd["wallet"]["balance"] == "150"' <"$D/body" >/dev/null
ok $? "top_up twice with one key: credited once ($code $code2)"
code=$(req "Authorization: Bearer $ATOK" GET /v1/billing/wallets/$W)
[ "$code" = 200 ] && jx '[t["kind"] for t in d["wallet"]["transactions"]] == ["purchased","granted","purchased"] and d["wallet"]["transactions"][2]["balance_after"] == "150"' <"$D/body" >/dev/null
ok $? "acme's token reads its wallet with every transaction ($code)"
code=$(req "Authorization: Bearer $GTOK" GET /v1/billing/wallets/$W)
code2=$(req "Authorization: Bearer $GTOK" GET /v1/billing/wallets)
[ "$code" = 404 ] && [ "$code2" = 200 ] && jx 'd["wallets"] == []' <"$D/body" >/dev/null
ok $? "globex's token: acme's wallet is a 404, its list is empty ($code $code2)"
code=$(req "Authorization: Bearer $ATOK" POST /v1/billing/wallets/$W/top_up '{"granted_credits":"1000"}')
[ "$code" = 403 ]
ok $? "a tenant cannot top itself up ($code)"

code=$(req "$H" POST /v1/billing/coupons '{"code":"WELCOME","kind":"fixed","amount":"25.00","frequency":"once"}')
code2=$(req "$H" POST /v1/billing/coupons '{"code":"TEN","kind":"percentage","percentage":"10","frequency":"recurring"}')
[ "$code" = 201 ] && [ "$code2" = 400 ] && jx 'd["error"]["details"]["errors"][0]["field"] == "duration"' <"$D/body" >/dev/null
ok $? "coupons: created; a recurring one without a duration is a 400 naming it ($code $code2)"
code=$(req "$H" POST /v1/billing/coupons/WELCOME/apply '{"tenant":"acme"}')
code2=$(req "$H" POST /v1/billing/coupons/WELCOME/apply '{"tenant":"acme"}')
code3=$(req "$H" POST /v1/billing/coupons/NOPE/apply '{"tenant":"acme"}')
[ "$code$code2$code3" = 201409404 ]
ok $? "apply: 201, again 409, an unknown coupon 404 ($code $code2 $code3)"
code=$(req "Authorization: Bearer $ATOK" GET /v1/billing/coupons)
[ "$code" = 200 ] && jx 'd["applied"][0]["coupon"] == "WELCOME" and d["applied"][0]["amount_remaining"] == "25" and "coupons" not in d' <"$D/body" >/dev/null
ok $? "acme's token sees the coupons applied to it, with what is left ($code)"
exit $fail
