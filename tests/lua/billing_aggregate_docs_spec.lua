-- docs/billing/metrics.md runs as written: every ```lua block runs in a fresh environment and
-- prints what its `-->` comments say, so the page and steward.billing.aggregate cannot drift.
local t = require "steward.tap"
local fs = require "steward.fs"

local function norm(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

local page = os.getenv("BILLING_DOC") or "docs/billing/metrics.md"
local text = assert(fs.read(page))
local i = 0
for code in text:gmatch("```lua\n(.-)```") do
  i = i + 1
  local printed = {}
  local fn = assert(loadstring(code, "=" .. page .. "#" .. i))
  setfenv(fn, setmetatable({ print = function(...)
    local parts = {}
    for k = 1, select("#", ...) do parts[k] = tostring((select(k, ...))) end
    printed[#printed + 1] = table.concat(parts, " ")
  end }, { __index = _G }))
  local ok, err = pcall(fn)
  t.ok(ok, page .. " block " .. i .. " runs" .. (ok and "" or (": " .. tostring(err))))
  local want = {}
  for line in code:gmatch("%-%-> ([^\n]*)") do want[#want + 1] = norm(line) end
  t.is(#printed, #want, page .. " block " .. i .. " prints " .. #want .. " lines")
  for k, w in ipairs(want) do t.is(norm(printed[k] or ""), w, page .. " block " .. i .. " prints " .. w) end
end
t.ok(i >= 5, page .. " has its examples")
t.done()
