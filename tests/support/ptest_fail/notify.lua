-- Fixture policy for tests/e2e/steward_test.t's failing specs: posts every alert to a URL.
local http = require "steward.http"

return {
  name = "ptest.notify",
  capabilities = { "http" },
  on = "alert.*",
  config = { url = "https://alerts.example.org/hook" },
  handle = function(ev, ctx)
    if ev.data.swallow then
      -- a policy that hides the failure must not hide it from the spec
      pcall(http.request, { url = ctx.config.url, method = "POST", body = ev.type })
      return
    end
    local res, err = http.request{ url = ctx.config.url, method = "POST", body = ev.type }
    if not res then error(err) end
    return res.status
  end,
}
