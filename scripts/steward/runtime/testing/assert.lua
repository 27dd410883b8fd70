-- steward.runtime.testing.assert: the assertions of `steward test` specs. One style, busted's:
-- assert.same (deep equality), assert.equal, assert.truthy, assert.falsy, assert.match,
-- assert.error. A failure raises a value that carries the message, the spec line and, for
-- assert.same, every differing path ("got X, expected Y at .a.b[2]").
local pretty = require "steward.pretty"

local type, pairs, ipairs, tostring, pcall, error, select = type, pairs, ipairs, tostring, pcall, error, select
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

-- Sources of the runner's own files: a failure is reported at the first frame outside them.
M.internal = {}
M.internal[debug.getinfo(1, "S").source] = true

local function show(v) return pretty.format(v, { color = false }) end

function M.where()
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if not M.internal[info.source] and info.what ~= "C" and info.what ~= "tail" then
      return info.short_src .. ":" .. (info.currentline or 0)
    end
  end
  return "?"
end

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f)
  return f.where .. ": " .. f.message .. (f.detail and ("\n" .. f.detail) or "")
end

function M.is_failure(v) return getmetatable(v) == Failure end

local function fail(message, detail, msg)
  if msg then message = tostring(msg) .. ": " .. message end
  error(setmetatable({ message = message, detail = detail, where = M.where() }, Failure), 0)
end
M.fail = fail

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return "." .. k end
  return "[" .. show(k) .. "]"
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- Every difference between got and want, as {path, got, want, kind}; at most `limit`.
local function diff(got, want, path, out, limit, seen)
  if #out >= limit then return end
  if type(got) == "table" and type(want) == "table" then
    if got == want then return end
    seen = seen or {}
    if seen[got] == want then return end
    seen[got] = want
    local keys, have = {}, {}
    for k in pairs(want) do keys[#keys + 1] = k; have[k] = true end
    for k in pairs(got) do if not have[k] then keys[#keys + 1] = k end end
    sort(keys, key_less)
    for _, k in ipairs(keys) do
      local g, w = got[k], want[k]
      local p = path .. key_text(k)
      if g == nil then
        out[#out + 1] = { path = p, kind = "missing", want = w }
      elseif w == nil then
        out[#out + 1] = { path = p, kind = "extra", got = g }
      else
        diff(g, w, p, out, limit, seen)
      end
      if #out >= limit then return end
    end
    return
  end
  if got == want or (got ~= got and want ~= want) then return end
  out[#out + 1] = { path = path, kind = "differ", got = got, want = want }
end

function M.diff(got, want, limit)
  local out = {}
  diff(got, want, "", out, limit or 20, nil)
  return out
end

-- The readable form of a diff: one line per differing path.
function M.diff_text(got, want)
  local d = M.diff(got, want, 20)
  local lines = {}
  for _, e in ipairs(d) do
    local p = e.path == "" and "(the value)" or e.path
    if e.kind == "missing" then
      lines[#lines + 1] = format("  %s: missing, expected %s", p, show(e.want))
    elseif e.kind == "extra" then
      lines[#lines + 1] = format("  %s: not expected, got %s", p, show(e.got))
    else
      lines[#lines + 1] = format("  %s: got %s, expected %s", p, show(e.got), show(e.want))
    end
  end
  if #d >= 20 then lines[#lines + 1] = "  (more differences not shown)" end
  return concat(lines, "\n"), #d
end

local A = {}

-- assert.same(got, want [, msg]): deep equality (tables compared key by key).
function A.same(got, want, msg)
  local text, n = M.diff_text(got, want)
  if n == 0 then return got end
  fail(format("values differ (%d difference%s)", n, n == 1 and "" or "s"),
       text .. "\n  got:      " .. show(got) .. "\n  expected: " .. show(want), msg)
end

-- assert.equal(got, want [, msg]): got == want (no deep comparison).
function A.equal(got, want, msg)
  if got == want then return got end
  fail("not equal", "  got:      " .. show(got) .. "\n  expected: " .. show(want), msg)
end

function A.not_equal(got, unwanted, msg)
  if got ~= unwanted then return got end
  fail("expected a different value", "  got: " .. show(got), msg)
end

function A.truthy(v, msg)
  if v then return v end
  fail("expected a truthy value", "  got: " .. show(v), msg)
end

function A.falsy(v, msg)
  if not v then return v end
  fail("expected nil or false", "  got: " .. show(v), msg)
end

-- assert.match(s, pattern [, msg]): s is a string and contains the Lua pattern.
function A.match(s, pattern, msg)
  if type(s) == "string" and s:find(pattern) then return s end
  fail("no match", "  got:     " .. show(s) .. "\n  pattern: " .. show(pattern), msg)
end

-- assert.error(fn [, pattern [, msg]]) -> the error: fn must raise an error whose message
-- contains pattern (a Lua pattern).
A["error"] = function(fn, pattern, msg)
  if type(fn) ~= "function" then error("assert.error: fn: function expected, got " .. type(fn), 2) end
  local ok, err = pcall(fn)
  if ok then fail("expected an error, none was raised", pattern and ("  expected to match: " .. show(pattern)), msg) end
  local text = M.is_failure(err) and err.message or tostring(err)
  if pattern ~= nil and not text:find(pattern) then
    fail("the error does not match", "  error:   " .. text .. "\n  pattern: " .. show(pattern), msg)
  end
  return err
end
A.errors = A["error"]

-- assert.count(list, n [, msg]): #list == n, showing the list when not.
function A.count(list, n, msg)
  if type(list) == "table" and #list == n then return list end
  fail(format("expected %d item%s, got %s", n, n == 1 and "" or "s",
              type(list) == "table" and tostring(#list) or type(list)),
       "  got: " .. show(list), msg)
end

-- The spec's `assert`: the table above, and still callable as Lua's assert(v, msg, ...).
function M.new()
  return setmetatable({}, {
    __index = A,
    __call = function(_, v, ...)
      if v then return v, ... end
      local msg = select("#", ...) > 0 and (...) or "assertion failed!"
      fail(tostring(msg))
    end,
  })
end

return M
