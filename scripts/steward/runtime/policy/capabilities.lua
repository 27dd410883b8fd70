-- Capabilities: what a policy declares it needs (`capabilities = {...}` in the policy), what
-- the operator granted it (`grants` in the config, by policy name pattern), and the checks
-- each guarded function makes at run time (docs/policies.md, "Capabilities").
--
-- A declaration is a list of names, each optionally with a scope:
--   capabilities = { "notify", http = { "https://hooks.slack.com/" }, ["fs.read"] = { "/var/log/app" } }
-- A grant has the same shape; `true` grants the capability without a narrower scope. A policy
-- loads only when every capability it declares is granted and its declared scope is inside
-- the grant's; it then runs with its declared scope (or the grant's, when it declared none).
-- A guarded function called without the capability answers nil, "capability 'x' not granted
-- to <policy>" (counted, logged, audited by the caller's hook).
-- Tenant policies never get proc, fs.* or pg, whatever the grants say: those reach the
-- host, which no tenant owns.
local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

-- name -> what its scope items are (for errors and the docs)
M.KNOWN = {
  http = "URL prefixes or host names",
  proc = "absolute paths of executables, or {exe = path, args = {Lua patterns}}",
  ["fs.read"] = "absolute directory prefixes",
  ["fs.write"] = "absolute directory prefixes",
  pg = "connection names (the config's pg_connections)",
  ["events.emit"] = "event type patterns (\"deploy.*\")",
  notify = "channel kinds (email, slack, sms, teams, pagerduty, webhook, log)",
  alerting = "true: the alerting state (alerts, silences, incidents, notifications) through steward.alerting",
  archive = "true: move old events and decisions into archive files and read them back (steward.archive)",
  deploy = "service names or patterns (\"api\", \"web-*\") of the config's services, acted on through steward.deploy.*",
  success = "true: tickets, health scores and onboarding milestones through steward.success (docs/customer-success.md)",
  billing = "true: plans, subscriptions, usage, invoices, payments through steward.billing.* (docs/billing.md)",
}

-- What every policy may do without a grant (listed for `steward check` and GET /v1/policies).
M.DEFAULTS = { "computation", "log", "metrics", "kv", "time", "events.emit of its own namespace" }

M.HOST = { proc = true, ["fs.read"] = true, ["fs.write"] = true, pg = true, deploy = true, success = true,
  billing = true }

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  sort(out)
  return out
end

-- A scope: true (unbounded) or a list of items; items are strings, or tables for proc.
local function check_scope(cap, scope, where)
  if scope == true then return true end
  if type(scope) ~= "table" then return nil, format("%s: true or a list of %s expected", where, M.KNOWN[cap]) end
  for i, item in ipairs(scope) do
    local at = format("%s[%d]", where, i)
    if cap == "proc" and type(item) == "table" then
      if type(item.exe) ~= "string" or item.exe:sub(1, 1) ~= "/" then return nil, at .. ".exe: an absolute path expected" end
      if item.args ~= nil then
        if type(item.args) ~= "table" then return nil, at .. ".args: a list of Lua patterns expected" end
        for j, pat in ipairs(item.args) do
          if type(pat) ~= "string" or not pcall(string.match, "", pat) then
            return nil, format("%s.args[%d]: a Lua pattern expected", at, j)
          end
        end
      end
      if item.env ~= nil and type(item.env) ~= "table" then return nil, at .. ".env: a list of variable names expected" end
    elseif type(item) ~= "string" or item == "" then
      return nil, format("%s: a string expected (%s)", at, M.KNOWN[cap])
    elseif (cap == "proc" or cap == "fs.read" or cap == "fs.write") and item:sub(1, 1) ~= "/" then
      return nil, format("%s: an absolute path expected, got %q", at, item)
    end
  end
  for k in pairs(scope) do
    if type(k) ~= "number" then return nil, format("%s: unknown field '%s'", where, tostring(k)) end
  end
  return true
end

-- parse(list_or_map, where) -> { [cap] = true | {items} } or nil, err
function M.parse(decl, where)
  local out = {}
  if decl == nil then return out end
  if type(decl) ~= "table" then return nil, where .. ": a list of capability names expected" end
  for k, v in pairs(decl) do
    local cap, scope
    if type(k) == "number" then cap, scope = v, true else cap, scope = k, v end
    if type(cap) ~= "string" or not M.KNOWN[cap] then
      return nil, format("%s: unknown capability '%s' (known: %s)", where, tostring(cap), concat(sorted_keys(M.KNOWN), ", "))
    end
    local ok, err = check_scope(cap, scope, where .. "." .. cap)
    if not ok then return nil, err end
    if out[cap] ~= nil and out[cap] ~= true and scope ~= true then
      for _, item in ipairs(scope) do out[cap][#out[cap] + 1] = item end
    else
      out[cap] = (out[cap] == true or scope == true) and (out[cap] == nil and scope or true) or scope
    end
  end
  return out
end

-- A policy-name pattern: "*", "alerting.*", or an exact name.
local function name_matches(pat, name)
  if pat == "*" then return true end
  if pat:sub(-2) == ".*" then
    local prefix = pat:sub(1, -2)
    return name:sub(1, #prefix) == prefix
  end
  return pat == name
end

-- check_grants(grants) -> true or nil, err naming the place (config validation)
function M.check_grants(grants)
  if type(grants) ~= "table" then return nil, "expected { [policy name pattern] = { capability = true | scope } }" end
  for pat, g in pairs(grants) do
    if type(pat) ~= "string" or not (pat == "*" or pat:match("^[%w_.-]+$") or pat:match("^[%w_.-]+%.%*$")) then
      return nil, format("[%s]: a policy name or pattern (\"ops.*\", \"*\") expected", tostring(pat))
    end
    local _, err = M.parse(g, "[" .. pat .. "]")
    if err then return nil, err end
  end
  return true
end

-- granted(grants, name) -> the union of every matching entry
function M.granted(grants, name)
  local out = {}
  for _, pat in ipairs(sorted_keys(grants or {})) do
    if name_matches(pat, name) then
      local g = M.parse(grants[pat], pat) or {}
      for cap, scope in pairs(g) do
        if out[cap] == true or scope == true then
          out[cap] = true
        else
          out[cap] = out[cap] or {}
          for _, item in ipairs(scope) do out[cap][#out[cap] + 1] = item end
        end
      end
    end
  end
  return out
end

-- ---- scope matching ----

local function parse_url(u)
  if type(u) ~= "string" then return nil end
  local scheme, rest = u:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  authority = authority:gsub("^.*@", "") -- userinfo is not part of where a request goes
  local host, port = authority:match("^%[(.-)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil end
  scheme = scheme:lower()
  port = tonumber(port) or ({ http = 80, https = 443, smtp = 25, smtps = 465 })[scheme]
  if path == "" then path = "/" end
  return { scheme = scheme, host = host:lower(), port = port, path = path }
end

-- Scope items parsed once (grants are few and fixed between reloads): item -> parsed, or false.
local parsed_strings = {}
local function parse_item(item)
  local g = parsed_strings[item]
  if g ~= nil then return g end
  if not item:find("://", 1, true) then
    local host, port = item:match("^([^:]+):?(%d*)$")
    g = host and { host_only = true, host = host:lower(), port = tonumber(port) } or false
  else
    g = parse_url(item) or false
  end
  parsed_strings[item] = g
  return g
end

-- A scope item for http: "https://api.example.com/v1/" (scheme, host, port, path prefix on a
-- segment boundary) or "api.example.com" / "api.example.com:8443" (that host, any path).
local function url_allowed(item, u)
  local g = parse_item(item)
  if not g then return false end
  if g.host_only then
    return u.host == g.host and (g.port == nil or g.port == u.port)
  end
  if g.scheme ~= u.scheme or g.host ~= u.host or g.port ~= u.port then return false end
  if g.path == "/" then return true end
  local p = u.path:match("^[^?#]*")
  if p:sub(1, #g.path) ~= g.path then return false end
  return g.path:sub(-1) == "/" or #p == #g.path or p:sub(#g.path + 1, #g.path + 1) == "/"
end

function M.url_in(scope, url)
  if scope == true then return true end
  local u = parse_url(url)
  if not u then return false end
  for _, item in ipairs(scope) do
    if url_allowed(item, u) then return true end
  end
  return false
end

-- Lexical normalisation: "/a/./b/../c" -> "/a/c"; nil for a relative path.
function M.normalize(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then return nil end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. concat(parts, "/")
end

local function under(prefix, path)
  prefix = M.normalize(prefix)
  if not prefix then return false end
  if prefix == "/" then return true end
  return path == prefix or path:sub(1, #prefix + 1) == prefix .. "/"
end

-- path_in(scope, path, resolve): resolve(path) -> the path with symbolic links resolved (for
-- its longest existing ancestor), so a link inside a granted directory cannot lead outside.
function M.path_in(scope, path, resolve)
  local p = M.normalize(path)
  if not p then return false, "an absolute path is required" end
  if scope == true then return true end
  local real = resolve and resolve(p) or p
  for _, item in ipairs(scope) do
    if under(item, p) and under(resolve and resolve(M.normalize(item)) or item, real) then return true end
  end
  return false
end

-- proc_in(scope, cmd) -> the matching grant item (for env), or nil
function M.proc_in(scope, cmd)
  local exe = cmd[1]
  if type(exe) ~= "string" or exe:sub(1, 1) ~= "/" then return nil, "the program must be an absolute path" end
  exe = M.normalize(exe)
  if scope == true then return {} end
  for _, item in ipairs(scope) do
    if type(item) == "string" then
      if M.normalize(item) == exe then return {} end
    elseif M.normalize(item.exe) == exe then
      local ok = true
      if item.args then
        for i = 2, #cmd do
          local matched = false
          for _, pat in ipairs(item.args) do
            if tostring(cmd[i]):match(pat) then matched = true; break end
          end
          if not matched then ok = false; break end
        end
      end
      if ok then return item end
    end
  end
  return nil
end

-- A type pattern as `on` uses: "deploy.*", "deploy.done", "*".
function M.type_in(scope, t)
  if scope == true then return true end
  for _, pat in ipairs(scope) do
    if pat == "*" or pat == t then return true end
    if pat:sub(-2) == ".*" and t:sub(1, #pat - 1) == pat:sub(1, -2) then return true end
  end
  return false
end

-- A service name inside a deploy scope: "*", the name itself, or a pattern ending in "*".
function M.service_in(scope, name)
  if scope == true then return true end
  for _, pat in ipairs(scope) do
    if pat == "*" or pat == name then return true end
    if pat:sub(-1) == "*" and name:sub(1, #pat - 1) == pat:sub(1, -2) then return true end
  end
  return false
end

function M.item_in(scope, x)
  if scope == true then return true end
  for _, item in ipairs(scope) do if item == x then return true end end
  return false
end

-- A scope inside another: every declared item is allowed by the grant.
local function scope_within(cap, declared, granted)
  -- A declaration without a scope asks for whatever scope is granted.
  if granted == true or declared == true then return true end
  for _, item in ipairs(declared) do
    local ok
    if cap == "http" then
      local probe = item:find("://", 1, true) and item or ("https://" .. item .. "/")
      ok = M.url_in(granted, probe) and (item:find("://", 1, true) or M.url_in(granted, "http://" .. item .. "/"))
    elseif cap == "fs.read" or cap == "fs.write" then
      ok = M.path_in(granted, item)
    elseif cap == "proc" then
      local exe = type(item) == "table" and item.exe or item
      ok = false
      for _, g in ipairs(granted) do
        local gexe = type(g) == "table" and g.exe or g
        -- A declared executable is inside a grant of the same executable whose arguments
        -- (if the grant limits them) the declaration limits at least as much.
        if M.normalize(gexe) == M.normalize(exe) and (type(g) ~= "table" or not g.args or (type(item) == "table" and item.args)) then
          ok = true
        end
      end
    elseif cap == "deploy" then
      ok = M.service_in(granted, item) or M.item_in(granted, item)
    elseif cap == "events.emit" then
      ok = M.type_in(granted, item) or (item:sub(-2) == ".*" and M.item_in(granted, item))
    else
      ok = M.item_in(granted, item)
    end
    if not ok then return false end
  end
  return true
end

-- resolve(p, grants, opts) -> effective { [cap] = scope } or nil, err listing each capability
-- missing. opts.trust: no grants apply (steward test, simulate): the declaration is taken
-- as granted. p.tenant: host capabilities are refused whatever is granted.
function M.resolve(p, declared, grants, opts)
  opts = opts or {}
  local granted = opts.trust and declared or M.granted(grants, p.name)
  local missing, effective = {}, {}
  for _, cap in ipairs(sorted_keys(declared)) do
    local d = declared[cap]
    if p.tenant and M.HOST[cap] then
      missing[#missing + 1] = format("'%s' (never granted to a tenant's policy)", cap)
    elseif granted[cap] == nil then
      missing[#missing + 1] = format("'%s'", cap)
    elseif not scope_within(cap, d, granted[cap]) then
      missing[#missing + 1] = format("'%s' beyond its grant", cap)
    else
      effective[cap] = d == true and granted[cap] or d
    end
  end
  if #missing > 0 then
    return nil, format("capabilities not granted to %s: %s", p.name, concat(missing, ", "))
  end
  return effective
end

-- describe(caps) -> a JSON-friendly view { cap = true | {items} }
function M.describe(caps)
  local out = {}
  for cap, scope in pairs(caps or {}) do
    if scope == true then
      out[cap] = true
    else
      local items = {}
      for i, item in ipairs(scope) do
        items[i] = type(item) == "table" and (item.exe .. (item.args and (" " .. concat(item.args, " ")) or "")) or item
      end
      out[cap] = items
    end
  end
  return next(out) and out or nil
end

-- summary(caps) -> one line: "http (https://x/), proc (/usr/bin/git)", or "nothing beyond the defaults"
function M.summary(caps)
  local d = M.describe(caps)
  if not d then return "nothing beyond the defaults" end
  local parts = {}
  for _, cap in ipairs(sorted_keys(d)) do
    parts[#parts + 1] = d[cap] == true and cap or (cap .. " (" .. concat(d[cap], ", ") .. ")")
  end
  return concat(parts, ", ")
end

return M
