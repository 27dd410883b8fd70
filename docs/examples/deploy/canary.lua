-- The tutorial's rollout policy (docs/deployments.md): a canary of the service `web`, declared
-- in steward.lua's `services`. 20% of the traffic, a minute's pause, an analysis of the canary's
-- error rate from HAProxy's counters, 50%, then a pause until a person promotes. An analysis
-- failure aborts: all traffic back to the stable revision at once, the canary stopped 30 s later.
local deploy = require "steward.deploy"

return deploy.rollout_policy{
  name = "deploy.web",
  service = "web",
  strategy = deploy.canary{
    steps = {
      { set_weight = 20 },
      { pause = { duration = "1m" } },
      { analysis = { metrics = { {
          name = "error-rate",
          interval = "10s", count = 3, failure_limit = 0,
          provider = { haproxy = { metric = "error_rate" } },   -- the canary's 5xx share since the last measurement
          success_condition = function(rate) return rate < 0.05 end,
      } } } },
      { set_weight = 50 },
      { pause = {} },                                            -- until `promote`
    },
    abort_scale_down_delay = "30s",
    scale_down_delay = "30s",
  },
}
