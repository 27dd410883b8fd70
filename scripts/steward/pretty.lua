-- Renders Lua values for people: nested tables with sorted keys, depth and size limits,
-- cycles marked, strings quoted, optional ANSI colour (the REPL turns it on for a terminal).
local type, tostring, pairs, next = type, tostring, pairs, next
local sort, concat, format = table.sort, table.concat, string.format
local getmetatable = getmetatable
local json_null = require("steward.json").null

local M = {}

local DEFAULTS = { depth = 6, items = 100, width = 80, indent = "  ", color = false }

local COLORS = {
  string = "\27[32m", number = "\27[36m", boolean = "\27[35m", ["nil"] = "\27[90m",
  meta = "\27[90m",
}
local RESET = "\27[0m"

local function paint(opts, kind, s)
  if not opts.color then return s end
  return (COLORS[kind] or "") .. s .. RESET
end

local function quote(s)
  return (format("%q", s):gsub("\\\n", "\\n"):gsub("\r", "\\r"):gsub("%z", "\\0"))
end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local KIND_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (KIND_ORDER[ta] or 9) < (KIND_ORDER[tb] or 9) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function scalar(v, opts)
  local t = type(v)
  if t == "string" then return paint(opts, "string", quote(v)) end
  if t == "number" then
    if v ~= v then return paint(opts, "number", "nan") end
    if v == math.huge then return paint(opts, "number", "inf") end
    if v == -math.huge then return paint(opts, "number", "-inf") end
    if v == math.floor(v) and v > -1e15 and v < 1e15 then
      return paint(opts, "number", format("%d", v))
    end
    return paint(opts, "number", format("%.17g", v))
  end
  if t == "boolean" or t == "nil" then return paint(opts, t, tostring(v)) end
  if t == "userdata" and v == json_null then return paint(opts, "nil", "json.null") end
  local mt = getmetatable(v)
  if mt and type(mt) == "table" and mt.__tostring then
    return paint(opts, "meta", tostring(v))
  end
  return paint(opts, "meta", "<" .. tostring(v) .. ">")
end

local render

local function render_table(t, opts, depth, seen, indent)
  if seen[t] then return paint(opts, "meta", "<cycle: " .. tostring(t) .. ">") end
  if depth >= opts.depth then return paint(opts, "meta", "{...}") end
  local mt = getmetatable(t)
  if type(mt) == "table" and mt.__tostring then return paint(opts, "meta", tostring(t)) end
  if next(t) == nil then return "{}" end
  seen[t] = true
  local n = #t
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, key_less)
  local parts, shown, total = {}, 0, n + #keys
  for i = 1, n do
    if shown >= opts.items then break end
    parts[#parts + 1] = render(t[i], opts, depth + 1, seen, indent .. opts.indent)
    shown = shown + 1
  end
  for _, k in ipairs(keys) do
    if shown >= opts.items then break end
    local ks = is_ident(k) and k or ("[" .. render(k, opts, depth + 1, seen, indent) .. "]")
    parts[#parts + 1] = ks .. " = " .. render(t[k], opts, depth + 1, seen, indent .. opts.indent)
    shown = shown + 1
  end
  if shown < total then
    parts[#parts + 1] = paint(opts, "meta", format("... (%d more)", total - shown))
  end
  seen[t] = nil
  local flat = "{ " .. concat(parts, ", ") .. " }"
  if #flat + #indent <= opts.width and not flat:find("\n", 1, true) then return flat end
  local inner = indent .. opts.indent
  return "{\n" .. inner .. concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

render = function(v, opts, depth, seen, indent)
  if type(v) == "table" then return render_table(v, opts, depth, seen, indent) end
  return scalar(v, opts)
end

-- format(value [, opts]) -> string. opts: depth, items, width, indent, color.
function M.format(v, opts)
  local o = {}
  for k, d in pairs(DEFAULTS) do o[k] = d end
  if opts ~= nil then
    if type(opts) ~= "table" then error("pretty.format: opts must be a table", 2) end
    for k, val in pairs(opts) do o[k] = val end
  end
  return render(v, o, 0, {}, "")
end

return M
