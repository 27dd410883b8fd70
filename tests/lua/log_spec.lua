-- steward.log: structured records from Lua (checked through a child steward's stderr).
local t = require "steward.tap"
local log = require "steward.log"

t.ok(log.enabled("error"), "error is enabled at the default level")
t.ok(not log.enabled("debug"), "debug is off at the default level")
t.raises(function() log.enabled("loud") end, "level must be", "an unknown level is misuse")
t.raises(function() log.info(nil) end, "string expected", "a message is required")
t.raises(function() log.info("x", "not a table") end, "table expected", "fields must be a table")

local bin = os.getenv("STEWARD_BIN") or "build/steward"
local function run(env, code)
  local p = io.popen(env .. " " .. bin .. " eval --local '" .. code .. "' 2>&1")
  local out = p:read("*a"); p:close()
  return out
end
local out = run("", [[require("steward.log").info("hello world", {b = 2, a = "x y", ok = true})]])
t.like(out, 'level=info msg="hello world" a="x y" b=2 ok=true', "logfmt with sorted, quoted fields")
t.like(out, "^ts=%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ ", "records start with an ISO timestamp")
out = run("STEWARD_LOG_FORMAT=json", [[require("steward.log").warn("w", {k = "v\"q"})]])
t.like(out, '"level":"warn","msg":"w","k":"v\\"q"}', "JSON lines escape values")
out = run("STEWARD_LOG_FORMAT=json", [[require("steward.log").info("n", {tasks = 5, lag = 0.25, up = true, s = "5", inf = math.huge})]])
local rec = require("steward.json").decode(out)
t.is(rec.tasks, 5, "a number field stays a JSON number")
t.is(rec.lag, 0.25, "a fractional number stays a JSON number")
t.is(rec.up, true, "a boolean field stays a JSON boolean")
t.is(rec.s, "5", "a string that looks like a number stays a string")
t.is(rec.inf, "inf", "a number JSON cannot hold (inf, nan) is written as a string")
out = run("STEWARD_LOG_LEVEL=error", [[require("steward.log").warn("hidden")]])
t.is(out, "", "records below the level are dropped")
out = run("STEWARD_LOG_LEVEL=debug", [[require("steward.log").debug("shown", {n = "a\nb"})]])
t.like(out, 'msg=shown n="a\\nb"', "newlines in values are escaped, one record per line")
t.done()
