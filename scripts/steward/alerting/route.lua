-- steward.alerting.route: Alertmanager 0.25's routing tree, configured as a Lua table.
-- Semantics follow dispatch/route.go: a depth-first search where the first matching child
-- wins unless it has `continue`, a node none of whose children match is itself the match,
-- options are inherited from the parent (timers, receiver, group_by) except the time
-- intervals, and route keys / group keys are spelled as Alertmanager spells them, so they
-- can be compared with its API and logs.
local matchers = require "steward.alerting.matchers"

local type, tostring, error, ipairs, pairs, setmetatable, tonumber =
  type, tostring, error, ipairs, pairs, setmetatable, tonumber
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

M.DEFAULTS = { group_wait = 30, group_interval = 300, repeat_interval = 4 * 3600 }

-- Prometheus durations (model.ParseDuration): units y w d h m s ms, largest first, each once.
local UNITS = { { "y", 365 * 86400 }, { "w", 7 * 86400 }, { "d", 86400 }, { "h", 3600 },
  { "ms", 0.001 }, { "m", 60 }, { "s", 1 } }
local ORDER = { y = 1, w = 2, d = 3, h = 4, m = 5, s = 6, ms = 7 }

-- parse_duration(v) -> seconds, or nil, err. Numbers are seconds.
function M.parse_duration(v)
  if type(v) == "number" then
    if v < 0 or v ~= v then return nil, "duration must be a non-negative number" end
    return v
  end
  if type(v) ~= "string" then return nil, "duration: number or string expected, got " .. type(v) end
  if v == "0" then return 0 end
  local total, last, pos = 0, 0, 1
  if v == "" then return nil, "empty duration string" end
  while pos <= #v do
    local num, unit, nxt = v:match("^(%d+)(m?s?)()", pos)
    if not num or unit == "" then
      num, unit, nxt = v:match("^(%d+)([ywdhms])()", pos)
    end
    if not num or unit == "" then return nil, format("not a valid duration string: %q", v) end
    local o = ORDER[unit]
    if o <= last then return nil, format("not a valid duration string: %q", v) end
    last = o
    for _, u in ipairs(UNITS) do
      if u[1] == unit then total = total + tonumber(num) * u[2] end
    end
    pos = nxt
  end
  return total
end

-- format_duration(seconds) -> "1h30m", as Prometheus prints durations.
function M.format_duration(s)
  if s == 0 then return "0s" end
  local ms = math.floor(s * 1000 + 0.5)
  local out = {}
  for _, u in ipairs({ { "y", 365 * 86400000 }, { "w", 7 * 86400000 }, { "d", 86400000 },
                       { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 } }) do
    if ms >= u[2] then
      local n = math.floor(ms / u[2])
      out[#out + 1] = n .. u[1]
      ms = ms - n * u[2]
    end
  end
  return concat(out)
end

local LABEL_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"

local KNOWN = { receiver = true, group_by = true, group_wait = true, group_interval = true,
  repeat_interval = true, repeat_backoff = true, matchers = true, match = true, match_re = true, continue = true,
  mute_time_intervals = true, active_time_intervals = true, routes = true }

local Route = {}
Route.__index = Route

local function check_names(v, where)
  if v == nil then return {} end
  if type(v) ~= "table" then error(where .. ": array of strings expected, got " .. type(v), 0) end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then error(format("%s[%d]: string expected, got %s", where, i, type(s)), 0) end
    out[i] = s
  end
  return out
end

-- build(spec, parent, where) -> node; content errors raise a table {err} caught by new().
local function build(spec, parent, where)
  if type(spec) ~= "table" then error(where .. ": table expected, got " .. type(spec), 0) end
  for k in pairs(spec) do
    if not KNOWN[k] then error(format("%s: unknown field %s", where, tostring(k)), 0) end
  end
  local function bad(msg) error({ where .. "." .. msg }, 0) end

  local o = {}
  if parent then
    for k, v in pairs(parent.options) do o[k] = v end
  else
    for k, v in pairs(M.DEFAULTS) do o[k] = v end
    o.group_by, o.group_by_all = {}, false
  end

  if spec.receiver ~= nil then
    if type(spec.receiver) ~= "string" then error(where .. ".receiver: string expected, got " .. type(spec.receiver), 0) end
    if spec.receiver ~= "" then o.receiver = spec.receiver end
  end

  -- group_by: {'...'} is "all labels"; an empty list inherits, as in 0.25 (config.go only
  -- sets GroupBy when the list has a label).
  if spec.group_by ~= nil then
    local names = check_names(spec.group_by, where .. ".group_by")
    local list, seen, all = {}, {}, false
    for _, n in ipairs(names) do
      if n == "..." then
        all = true
      else
        if not n:match(LABEL_NAME) then bad(format("group_by: invalid label name %q in group by list", n)) end
        if seen[n] then bad(format("group_by: duplicated label %q in group_by", n)) end
        seen[n] = true
        list[#list + 1] = n
      end
    end
    if all and #list > 0 then
      bad("group_by: cannot have wildcard group_by (`...`) and other other labels at the same time")
    end
    if #list > 0 then
      sort(list)
      o.group_by, o.group_by_all = list, false
    elseif all then
      o.group_by_all = true
    end
  end

  for _, k in ipairs({ "group_wait", "group_interval", "repeat_interval" }) do
    if spec[k] ~= nil then
      local d, err = M.parse_duration(spec[k])
      if not d then bad(k .. ": " .. err) end
      o[k] = d
    end
  end
  -- repeat_backoff (beyond Alertmanager): each plain repeat waits factor times longer than
  -- the previous one, up to max; inherited like the timers.
  if spec.repeat_backoff ~= nil then
    local b = spec.repeat_backoff
    if type(b) ~= "table" then error(where .. ".repeat_backoff: table expected, got " .. type(b), 0) end
    for k in pairs(b) do
      if k ~= "factor" and k ~= "max" then error(format("%s.repeat_backoff: unknown field %s", where, tostring(k)), 0) end
    end
    if type(b.factor) ~= "number" or b.factor < 1 then bad("repeat_backoff.factor: number >= 1 expected") end
    local mx, err = M.parse_duration(b.max or "24h")
    if not mx then bad("repeat_backoff.max: " .. err) end
    o.repeat_backoff = { factor = b.factor, max = mx }
  end
  if spec.group_interval ~= nil and o.group_interval == 0 then bad("group_interval: cannot be zero") end
  if spec.repeat_interval ~= nil and o.repeat_interval == 0 then bad("repeat_interval: cannot be zero") end

  o.mute_time_intervals = check_names(spec.mute_time_intervals, where .. ".mute_time_intervals")
  o.active_time_intervals = check_names(spec.active_time_intervals, where .. ".active_time_intervals")

  -- match / match_re (Alertmanager's deprecated maps) then matchers, sorted together.
  local list = {}
  for _, pair in ipairs({ { "match", "=" }, { "match_re", "=~" } }) do
    local map = spec[pair[1]]
    if map ~= nil then
      if type(map) ~= "table" then error(where .. "." .. pair[1] .. ": table expected, got " .. type(map), 0) end
      for name, value in pairs(map) do
        if type(name) ~= "string" or type(value) ~= "string" then
          error(where .. "." .. pair[1] .. ": string keys and values expected", 0)
        end
        if not name:match(LABEL_NAME) then bad(format("%s: invalid label name %q", pair[1], name)) end
        -- match_re values are anchored by the config loader and again by the matcher, so
        -- route keys show "^(?:re)$" (the same language either way).
        if pair[2] == "=~" then value = "^(?:" .. value .. ")$" end
        local m, err = matchers.new(pair[2], name, value)
        if not m then bad(pair[1] .. "." .. name .. ": " .. err) end
        list[#list + 1] = m
      end
    end
  end
  local ms, err = matchers.list(spec.matchers, where .. ".matchers")
  if not ms then error({ err }, 0) end
  for _, m in ipairs(ms) do list[#list + 1] = m end
  ms = matchers.List.sort(setmetatable(list, matchers.List))

  if spec.continue ~= nil and type(spec.continue) ~= "boolean" then
    error(where .. ".continue: boolean expected, got " .. type(spec.continue), 0)
  end

  if not parent then
    if not o.receiver then bad("receiver: root route must specify a default receiver") end
    if #ms > 0 then bad("matchers: root route must not have any matchers") end
    if spec.continue then bad("continue: cannot have continue in root route") end
    if #o.mute_time_intervals > 0 then bad("mute_time_intervals: root route must not have any mute time intervals") end
    if #o.active_time_intervals > 0 then bad("active_time_intervals: root route must not have any active time intervals") end
  end

  local node = setmetatable({
    parent = parent,
    options = o,
    matchers = ms,
    continue = spec.continue == true,
    config = spec,
    routes = {},
  }, Route)
  -- Options are also fields of the node, for convenience: node.receiver, node.group_wait...
  for k, v in pairs(o) do node[k] = v end
  node.key = (parent and (parent.key .. "/") or "") .. tostring(ms)
  if spec.routes ~= nil then
    if type(spec.routes) ~= "table" then error(where .. ".routes: array expected, got " .. type(spec.routes), 0) end
    for i, child in ipairs(spec.routes) do
      local c = build(child, node, where .. ".routes[" .. i .. "]")
      c.index = i - 1
      c.id = c.key .. "/" .. (i - 1)
      node.routes[i] = c
    end
  end
  if not parent then node.id = node.key end
  return node
end

-- new(spec) -> tree (the root route), or nil, err for invalid content (a matcher that does
-- not parse, a bad duration, a root with matchers...). Wrong Lua types raise.
function M.new(spec)
  if type(spec) ~= "table" then error("route.new: spec: table expected, got " .. type(spec), 2) end
  local ok, res = pcall(build, spec, nil, "route")
  if ok then return res end
  if type(res) == "table" then return nil, res[1] end
  error("route.new: " .. tostring(res), 2)
end

local function check_labels(labels, fn)
  if type(labels) ~= "table" then error(fn .. ": labels: table expected, got " .. type(labels), 3) end
  for k, v in pairs(labels) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error(fn .. ": labels: string names and values expected, got " .. type(k) .. " = " .. type(v), 3)
    end
  end
end

local function match(node, labels, out)
  if not node.matchers:matches(labels) then return false end
  local before = #out
  for _, child in ipairs(node.routes) do
    if match(child, labels, out) and not child.continue then break end
  end
  if #out == before then out[#out + 1] = node end
  return true
end

-- match(labels) -> array of the routes the alert goes to (possibly several with continue).
function Route:match(labels)
  check_labels(labels, "route:match")
  local out = {}
  match(self, labels, out)
  return out
end

-- receivers(labels) -> array of receiver names, as `amtool config routes test` prints them.
function Route:receivers(labels)
  check_labels(labels, "route:receivers")
  local out = {}
  for i, r in ipairs(self:match(labels)) do out[i] = r.receiver end
  return out
end

-- group_labels(labels) -> the alert's labels that this route groups by.
function Route:group_labels(labels)
  check_labels(labels, "route:group_labels")
  local out = {}
  if self.group_by_all then
    for k, v in pairs(labels) do out[k] = v end
  else
    for _, n in ipairs(self.group_by) do
      if labels[n] ~= nil then out[n] = labels[n] end
    end
  end
  return out
end

-- labelset_string(labels): model.LabelSet.String() — `name="value"` (Go %q), sorted as
-- whole strings, ", "-separated, in braces.
function M.labelset_string(labels)
  local parts = {}
  for k, v in pairs(labels) do parts[#parts + 1] = k .. "=" .. matchers.go_quote(v) end
  sort(parts)
  return "{" .. concat(parts, ", ") .. "}"
end

-- group_key(labels) -> Alertmanager's aggregation group key: route key ":" group labels.
function Route:group_key(labels)
  check_labels(labels, "route:group_key")
  return self.key .. ":" .. M.labelset_string(self:group_labels(labels))
end

-- walk(fn): depth first, parents before children, as Route.Walk.
function Route:walk(fn)
  if type(fn) ~= "function" then error("route:walk: fn: function expected, got " .. type(fn), 2) end
  local function visit(n)
    fn(n)
    for _, c in ipairs(n.routes) do visit(c) end
  end
  visit(self)
end

-- find(id) -> the route with that id, or nil.
function Route:find(id)
  local found
  self:walk(function(n) if not found and n.id == id then found = n end end)
  return found
end

function Route.__tostring(r) return "route " .. r.id end

return M
