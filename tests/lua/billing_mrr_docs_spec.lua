-- docs/billing/mrr.md runs as written: each ```lua block of the page that is not a walkthrough
-- step (those run against a daemon in tests/e2e/billing_mrr.t) or a config fragment runs in a
-- fresh environment, and what it prints matches its `-->` comments, so page and modules cannot
-- drift apart.
local t = require "steward.tap"
local fs = require "steward.fs"

local PAGE = "docs/billing/mrr.md"
local text = assert(fs.read(PAGE))
local ran = 0
for before, code in text:gmatch("([^\n]*)\n```lua\n(.-)```") do
  if not before:match("walkthrough:") then
    ran = ran + 1
    local printed = {}
    local fn = assert(loadstring(code, "=" .. PAGE .. "#" .. ran))
    setfenv(fn, setmetatable({ print = function(...)
      local parts = {}
      for k = 1, select("#", ...) do parts[k] = tostring((select(k, ...))) end
      printed[#printed + 1] = table.concat(parts, " ")
    end }, { __index = _G }))
    local ok, err = pcall(fn)
    t.ok(ok, PAGE .. " block " .. ran .. " runs" .. (ok and "" or (": " .. tostring(err))))
    local want = {}
    for line in code:gmatch("%-%-> ([^\n]*)") do want[#want + 1] = line end
    t.is(#printed, #want, PAGE .. " block " .. ran .. " prints " .. #want .. " lines")
    for k, w in ipairs(want) do t.is(printed[k], w, PAGE .. " block " .. ran .. " prints " .. w) end
  end
end
t.ok(ran >= 1, "the page has a Lua example")
t.done()
