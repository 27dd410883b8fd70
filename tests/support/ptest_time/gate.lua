-- A deploy gate that reads the time three ways: os.time/os.date (as Lua programmers do),
-- time.now, and the local time in the service's zone. Its spec (gate_spec.lua) moves the fake
-- clock and checks that all three follow it.
local time = require "steward.time"
return {
  name = "gate",
  config = { zone = "Europe/Paris", open_from = 9, open_until = 17 },
  decide = function(input, ctx)
    local here = time.localtime(time.now(), ctx.config.zone)
    local open = here.wday ~= 1 and here.wday ~= 7 and here.hour >= ctx.config.open_from and here.hour < ctx.config.open_until
    return { allow = open, os_time = os.time(), os_date = os.date("!%Y-%m-%d %H:%M:%S"),
             date_t = os.date("!*t").hour, local_text = time.format(time.now(), "%a %H:%M %Z", ctx.config.zone),
             fixed = os.date("!%Y", 0), table_time = os.time({ year = 2030, month = 1, day = 1, hour = 12 }) }
  end,
}
