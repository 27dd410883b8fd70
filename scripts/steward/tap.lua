-- TAP producer for Lua specs (the Test Anything Protocol that prove reads), in the manner
-- of Perl's Test::More: plan, ok, is, isnt, like, is_deeply, raises, done.
local pretty = require "steward.pretty"
local type, tostring, pairs, pcall, select = type, tostring, pairs, pcall, select
local write = io.write

local M = {}

-- STEWARD_TAP_OFFSET: a shell test that printed tests of its own before running a Lua part
-- sets it so the numbers continue.
local count, failed, planned = tonumber(os.getenv("STEWARD_TAP_OFFSET") or "") or 0, 0, nil

local function diag_lines(msg)
  for line in (tostring(msg) .. "\n"):gmatch("(.-)\n") do write("# ", line, "\n") end
end

function M.plan(n)
  planned = n
  write("1..", n, "\n")
end

function M.diag(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  diag_lines(table.concat(parts, " "))
end

-- The first caller outside this file: assertions may be tail calls, so count no levels.
local function where()
  local me = debug.getinfo(1, "S").source
  for level = 2, 20 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source ~= me and info.what ~= "C" and info.what ~= "tail" then
      return info.short_src .. ":" .. (info.currentline or 0)
    end
  end
  return "?"
end

local function report(pass, name, detail)
  count = count + 1
  name = name and (" - " .. tostring(name):gsub("\n", " ")) or ""
  if pass then
    write("ok ", count, name, "\n")
  else
    failed = failed + 1
    write("not ok ", count, name, "\n")
    diag_lines("  at " .. where())
    if detail then diag_lines(detail) end
  end
  io.stdout:flush()
  return pass
end

function M.ok(v, name) return report(not not v, name) end

function M.is(got, want, name)
  return report(got == want, name,
    "       got: " .. pretty.format(got) .. "\n  expected: " .. pretty.format(want))
end

function M.isnt(got, unwanted, name)
  return report(got ~= unwanted, name, "  got the unwanted " .. pretty.format(got))
end

function M.like(got, pattern, name)
  local pass = type(got) == "string" and got:find(pattern) ~= nil
  return report(pass, name, "       got: " .. pretty.format(got) .. "\n  expected to match: " .. pattern)
end

local function deep_equal(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if a == b or (a ~= a and b ~= b) then return true end
    return false, path
  end
  for k, v in pairs(a) do
    local ok, p = deep_equal(v, b[k], path .. "[" .. pretty.format(k) .. "]")
    if not ok then return false, p end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "[" .. pretty.format(k) .. "]" end
  end
  return true
end
M.deep_equal = deep_equal

function M.is_deeply(got, want, name)
  local pass, path = deep_equal(got, want, "")
  return report(pass, name, pass or ("  differ at " .. (path ~= "" and path or "the top") ..
    "\n       got: " .. pretty.format(got) .. "\n  expected: " .. pretty.format(want)))
end

-- raises(fn, pattern, name): fn must raise an error whose message matches pattern.
function M.raises(fn, pattern, name)
  local ok, err = pcall(fn)
  if ok then return report(false, name, "  expected an error, none was raised") end
  err = tostring(err)
  return report(pattern == nil or err:find(pattern) ~= nil, name,
    "  error: " .. err .. "\n  expected to match: " .. tostring(pattern))
end

function M.pass(name) return report(true, name) end
function M.fail(name, detail) return report(false, name, detail) end

function M.skip(reason, n)
  for _ = 1, n or 1 do
    count = count + 1
    write("ok ", count, " # skip ", reason, "\n")
  end
end

-- done([{plan = false}]): prints the plan if none was given (unless plan = false, for a
-- script whose caller adds tests and prints the plan); exits non-zero when a test failed.
function M.done(opts)
  if not planned and not (opts and opts.plan == false) then write("1..", count, "\n") end
  io.stdout:flush()
  if failed > 0 or (planned and planned ~= count) then os.exit(1) end
end

function M.counts() return count, failed end

return M
