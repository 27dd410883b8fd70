-- billing.subscriptions: starts pending subscriptions when their start timer fires (a new
-- subscription dated later, or a downgrade at the end of the current period, which ends the
-- subscription it replaces in the same change). The timer is armed in the batch that creates
-- the subscription, and fires after a restart, so a start is never lost; starting twice
-- changes nothing. docs/billing/subscriptions.md.
local subscriptions = require "steward.billing.subscriptions"

local type, tostring, error = type, tostring, error

return {
  capabilities = { billing = true },
  on = { "billing.subscription.timer" },
  key = function(ev) return type(ev.data) == "table" and ev.data.subscription or "-" end,
  handle = function(ev, ctx)
    local id = type(ev.data) == "table" and ev.data.subscription
    if type(id) ~= "string" then return { skipped = "no subscription in the timer's data" } end
    if ctx.dry_run then return { would = "activate", subscription = id } end
    local s, err = subscriptions.activate(id, ev.time)
    if s == nil then
      if tostring(err):match("^not found") then return { skipped = err } end
      error(err, 0)
    end
    return s and { activated = id } or { unchanged = id }
  end,
}
