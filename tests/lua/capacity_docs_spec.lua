-- The capacity and cost pages run as written: every ```lua block of docs/scaling/capacity.md
-- and docs/scaling/cost.md runs in a fresh environment, and what a block prints matches the
-- `-->` comments after its print calls (whitespace aside), so the pages and the modules cannot
-- drift apart.
local t = require "steward.tap"
local fs = require "steward.fs"

local function blocks(path)
  local text = assert(fs.read(path))
  local out = {}
  for code in text:gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

local function norm(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

for _, page in ipairs({ "docs/scaling/capacity.md", "docs/scaling/cost.md" }) do
  for i, code in ipairs(blocks(page)) do
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
    for k, w in ipairs(want) do t.is(norm(printed[k] or ""), w, page .. " block " .. i .. " prints " .. w) end
  end
end
t.done()
