-- steward.success: customer success as formulas in Lua (docs/customer-success.md) — tickets
-- with routing, SLA and CSAT (steward.success.tickets), health scores and their history
-- (steward.success.health), onboarding milestones (steward.success.onboarding), usage
-- analytics (steward.success.usage). The formulas themselves are the shipped policies in
-- policies/success/.
return {
  tickets = require "steward.success.tickets",
  health = require "steward.success.health",
  onboarding = require "steward.success.onboarding",
  inbound = require "steward.success.inbound",
  usage = require "steward.success.usage",
}
