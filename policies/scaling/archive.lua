-- scaling.archive: once a day, events and decision-log rows older than `older_than` leave the
-- store for compressed archive files under <var_dir>/archive (docs/archive.md), where
-- events.replay and `steward archive` still read them. Events a policy has not handled yet stay.
-- Needs the `archive` capability, which the operator grants in steward.lua:
--   grants = { ["scaling.archive"] = { archive = true } }
local archive = require "steward.archive"

local tostring = tostring

return {
  capabilities = { "archive" },
  schedule = "17 3 * * *", -- 03:17 every day, off the hour when other jobs start
  key = function() return "archive" end,
  timeout = "1h",          -- a first run over a large store may take long
  config = { older_than = "30d", events = true, decisions = true },
  handle = function(_, ctx)
    local cfg = ctx.config
    if ctx.dry_run then return { would = "archive", older_than = cfg.older_than } end
    local rep, err = archive.run({ older_than = cfg.older_than, events = cfg.events, decisions = cfg.decisions,
      actor = "policy:" .. tostring(ctx.policy) })
    if not rep then error(err, 0) end
    return { events = rep.events, decisions = rep.decisions, files = #rep.files, held = rep.held }
  end,
}
