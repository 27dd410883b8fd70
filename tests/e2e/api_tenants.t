#!/bin/bash
# The HTTP API's trust boundary (gh-12.5): a role x tenant matrix over every route, taken
# from GET /v1/routes (tests/support/tenant_matrix.py): a tenant's token acts only as its
# tenant, whatever the body says; global routes refuse it; no token creates a token beyond
# itself; decisions are filtered by tenant.
set -u
. "$(dirname "$0")/../support/daemon.sh"
cat > "$D/policies/matrix.lua" <<'POL'
return { name = "matrix.policy", on = { "m.*" },
  config = { secret = "none" },
  handle = function(ev) if ev.type == "m.fail" then error("always fails: " .. tostring(ev.tenant)) end end,
  decide = function(input, ctx) return { secret = ctx.config.secret } end }
POL
daemon_config 'tenant_config = { acme = { ["matrix.policy"] = { secret = "acme-secret" } },
                   globex = { ["matrix.policy"] = { secret = "globex-secret" } } },
  limits = { retry_attempts = 1 },'
daemon_start || { echo "1..0 # SKIP the daemon did not start"; exit 0; }
/usr/bin/python3 "$here/tests/support/tenant_matrix.py" "$PORT" "$TOKEN"
rc=$?
daemon_stop
exit $rc
