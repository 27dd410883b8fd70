-- steward.scaling.api: GET /v1/scaling — each loaded autoscaler: its spec, the last tick (on the
-- leader), the last logged decision and the decision state (from the store, so every worker
-- answers). ?service= narrows to one service.
local json = require "steward.json"
local view = require "steward.scaling.view"

local M = {}

function M.install(add, ctx)
  local api = require "steward.runtime.daemon.api"
  add("GET", "/v1/scaling", "read", function(c, req)
    local q = api.parse_query(req.query)
    for k in pairs(q) do
      if k ~= "service" then return api.fail(400, "invalid_query", k .. ": unknown parameter (service)") end
    end
    local ok, list = pcall(view.all, c.policies, c.store, q.service)
    if not ok then return api.unavailable(tostring(list)) end
    for _, a in ipairs(list) do a.spec.metrics = json.array(a.spec.metrics) end
    return api.reply(200, { autoscalers = json.array(list) })
  end)
  return ctx
end

return M
