-- steward's configuration (docs/configuration.md). Every key is optional; these are the
-- defaults. config/<env>.lua and STEWARD_<KEY> environment variables override this file.
return {
  listen       = "127.0.0.1:8080",
  store        = "sqlite:var/steward.db",
  policies     = "policies",
  admin_socket = "var/steward.sock",
  env          = "development",
  -- workers   = 2,   -- worker processes sharing listen and store; default: the number of cores
  -- admin_token = os.getenv("MY_SECRET"),  -- else generated into var/admin.token (0600)
  -- What policies may do beyond computation, kv, log, metrics and their own events
  -- (docs/policies.md#capabilities): the shipped alerting policies act on the alerting state,
  -- and deploy.alerts raises alerts in it (docs/deploy/services.md#alerts).
  grants = {
    ["alerting.*"] = { alerting = true },
    -- change freezes answer deploy requests; promotion requests the next environment's deploy
    ["deploy.freeze"] = { ["events.emit"] = { "deploy.admitted", "deploy.refused" } },
    ["deploy.promote"] = { ["events.emit"] = { "deploy.requested", "deploy.promote.*" } },
    ["deploy.alerts"] = { alerting = true },
    ["scaling.quota_alerts"] = { alerting = true }, -- a refused scale-up is an alert (docs/scaling/quotas.md)
    ["scaling.capacity"] = { alerting = true }, -- capacity forecasts as alerts (docs/scaling/capacity.md)
    ["scaling.archive"] = { archive = true }, -- old events and decisions into var/archive (docs/archive.md)
    ["success.*"] = { success = true, alerting = true, notify = { "email", "log" } }, -- docs/customer-success.md
    ["billing.usage"] = { billing = true }, ["billing.subscriptions"] = { billing = true }, -- docs/billing/usage.md
    ["billing.invoicing"] = { billing = true }, -- docs/billing/invoices.md
    ["tenants.alerts"] = { alerting = true }, -- a failed tenant provisioning is an alert (docs/tenants.md)
  },
  limits = {
    max_body_bytes = 8 * 1024 * 1024,
    dispatch_concurrency = 256,
  },
}
