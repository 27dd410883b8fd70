-- Runs a docs page's Lua examples as the reader would, so a page and its modules cannot drift.
-- Called as a function (busted-style specs): each ```lua block that starts with `local` (the
-- other blocks are fragments of a config) runs in its own environment, and what it prints must
-- be what its `--> ` comments say, in order (a comment may be cut short with a trailing part
-- the reader need not see):
--   assert(loadfile("tests/support/doc_examples.lua"))()("docs/scaling/keda.md", assert)
-- .tap(t, page, opts) is the TAP form: every ```lua block runs (opts.skip(line_before_fence)
-- true leaves one out, e.g. a walkthrough step run against a daemon elsewhere), one `ok` per
-- block and one `is` per `-->` line; whitespace runs count as one space unless opts.exact;
-- the number of printed lines is checked too unless opts.count == false. Returns how many
-- blocks ran, for the caller to require its page's examples.
-- .checks(t, path) is the `assert` the function form takes, speaking TAP instead of raising on
-- a wrong print (for TAP specs that want the function form's `local`-blocks-only rule):
--   examples("docs/billing/revenue.md", examples.checks(t, "docs/billing/revenue.md"))
local function printer(got)
  return function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    got[#got + 1] = table.concat(parts, " ")
  end
end

local function norm(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

local function tap(t, page, opts)
  opts = opts or {}
  local f = assert(io.open(page))
  local text = f:read("*a")
  f:close()
  local same = opts.exact and function(s) return s end or norm
  local ran = 0
  for before, code in ("\n" .. text):gmatch("([^\n]*)\n[ \t]*```lua\n(.-)```") do
    if not (opts.skip and opts.skip(before)) then
      ran = ran + 1
      local printed = {}
      local fn = assert(loadstring(code, "=" .. page .. "#" .. ran))
      setfenv(fn, setmetatable({ print = printer(printed) }, { __index = _G }))
      local ok, err = pcall(fn)
      t.ok(ok, page .. " block " .. ran .. " runs" .. (ok and "" or (": " .. tostring(err))))
      local want = {}
      for line in code:gmatch("%-%-> ([^\n]*)") do want[#want + 1] = same(line) end
      if opts.count ~= false then
        t.is(#printed, #want, page .. " block " .. ran .. " prints " .. #want .. " lines")
      end
      for k, w in ipairs(want) do
        t.is(opts.exact and printed[k] or norm(printed[k] or ""), w, page .. " block " .. ran .. " prints " .. w)
      end
    end
  end
  return ran
end

local function checks(t, path)
  return setmetatable({
    equal = function(got, want) t.is(got, want, path .. ": prints " .. tostring(want)) end,
    truthy = function(v) t.ok(v, path .. ": its blocks ran") end,
  }, { __call = function(_, v, msg, ...)
    if not v then error(msg or "assertion failed", 2) end
    return v, msg, ...
  end })
end

return setmetatable({ tap = tap, checks = checks }, { __call = function(_, path, assert)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  local ran = 0
  for code in text:gmatch("```lua\n(.-)```") do
    if code:match("^local ") then
      ran = ran + 1
      local want, got = {}, {}
      for line in code:gmatch("%-%-> ([^\n]*)") do want[#want + 1] = line end
      local fn = assert(loadstring(code, "=" .. path))
      setfenv(fn, setmetatable({ print = printer(got) }, { __index = _G }))
      fn()
      assert.equal(#got, #want)
      for i = 1, #got do assert.equal(got[i], want[i]:sub(1, #got[i])) end
    end
  end
  assert.truthy(ran > 0)
end })
