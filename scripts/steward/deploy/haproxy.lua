-- steward.deploy.haproxy: a service's instances as servers of an HAProxy backend, driven
-- through HAProxy's runtime API (the admin socket, one command per connection). Servers are
-- named <revision>-<index>; traffic moves between revisions by server weights. The socket and
-- backend come from the operator's `services.<name>.haproxy`, never from the caller.
local unix = require "steward.unix"
local task = require "steward.task"
local time = require "steward.time"

local type, pairs, ipairs, tostring, tonumber, error = type, pairs, ipairs, tostring, tonumber, error
local format, concat, sort, floor = string.format, table.concat, table.sort, math.floor

local M = {}

-- HAProxy's limit for a server's weight (`set server ... weight`).
M.MAX_WEIGHT = 256
M.TIMEOUT = 5          -- seconds one runtime API command may take
M.DRAIN_TIMEOUT = 30   -- seconds remove() waits for a draining server's connections

local services = {}    -- name -> the operator's service table (M.configure)

-- configure(services): the config's `services` (set by the daemon; scripts and tests call it).
function M.configure(s)
  if s ~= nil and type(s) ~= "table" then error("haproxy.configure: services table expected", 2) end
  services = s or {}
end

local function check_service(fname, service)
  if type(service) ~= "string" or service == "" then
    error(format("haproxy.%s: service: service name expected, got %s", fname, type(service)), 3)
  end
end

local function check_revision(fname, revision)
  if type(revision) ~= "string" or not revision:match("^[%w._-]+$") then
    error(format("haproxy.%s: revision: a revision id (letters, digits, '.', '_', '-') expected, got %s",
      fname, type(revision) == "string" and format("%q", revision) or type(revision)), 3)
  end
end

-- The service's haproxy settings, or nil, err naming the field.
local function target(service)
  local s = services[service]
  if type(s) ~= "table" then return nil, format("haproxy: unknown service '%s' (not in the config's services)", service) end
  local h = s.haproxy
  local where = "services." .. service .. ".haproxy"
  if type(h) ~= "table" then return nil, where .. ": not configured (socket and backend expected)" end
  if type(h.socket) ~= "string" or h.socket == "" then return nil, where .. ".socket: path of HAProxy's admin socket expected" end
  if type(h.backend) ~= "string" or not h.backend:match("^[%w._:-]+$") then
    return nil, where .. ".backend: a backend name expected"
  end
  if h.check ~= nil and (type(h.check) ~= "string" or not h.check:match("^[%w%s._:-]*$")) then
    return nil, where .. ".check: server health-check keywords expected (\"check inter 1s fall 3 rise 2\")"
  end
  return h
end

-- One runtime API command on its own connection: HAProxy answers and closes. -> reply text
-- or nil, err (the socket unreachable, or no answer within M.TIMEOUT).
local function raw_command(socket, cmd)
  local conn
  local h = task.spawn({ name = "haproxy", timeout = M.TIMEOUT }, function()
    local c, err = unix.connect(socket, { raw = true })
    if not c then return nil, err end
    conn = c
    local ok, werr = c:write(cmd .. "\n")
    if not ok then return nil, werr end
    local out = {}
    while true do
      local data = c:read()
      if not data then break end
      out[#out + 1] = data
    end
    return concat(out)
  end)
  local ok, reply, err = h:join()
  if conn then conn:close() end
  if not ok then return nil, format("haproxy: %s: %s", cmd, reply == "timeout" and "no answer within " .. M.TIMEOUT .. "s" or tostring(reply)) end
  if not reply then return nil, format("haproxy: %s: %s", cmd, tostring(err)) end
  return reply
end

-- A command whose success is an empty reply or one of the `ok` patterns; any other reply is
-- HAProxy's error message, returned with the command it answered.
local function command(socket, cmd, ok)
  local reply, err = raw_command(socket, cmd)
  if not reply then return nil, err end
  local text = reply:gsub("%s+$", "")
  if text == "" then return true end
  for _, pat in ipairs(ok or {}) do
    if text:find(pat) then return true, text end
  end
  return nil, format("haproxy: %s: %s", cmd, text:gsub("\n.*", ""))
end

-- ---- show stat ----

local function split_csv_line(line)
  local out, i = {}, 1
  for field in (line .. ","):gmatch("([^,]*),") do
    out[i] = field
    i = i + 1
  end
  return out
end

local NUMERIC = { "qcur", "qmax", "scur", "smax", "stot", "req_tot", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx",
  "hrsp_4xx", "hrsp_5xx", "hrsp_other", "econ", "eresp", "wretr", "wredis", "weight", "uweight",
  "qtime", "ctime", "rtime", "ttime", "lbtot", "chkfail", "cli_abrt", "srv_abrt" }

-- The backend's servers from `show stat <backend> 4 -1`: name -> fields.
local function server_stats(h)
  local reply, err = raw_command(h.socket, format("show stat %s 4 -1", h.backend))
  if not reply then return nil, err end
  local lines = {}
  for line in reply:gmatch("[^\n]+") do lines[#lines + 1] = line end
  if not (lines[1] or ""):match("^# pxname,") then
    return nil, format("haproxy: show stat %s 4 -1: %s", h.backend, (lines[1] or "empty answer"))
  end
  local cols = split_csv_line(lines[1]:sub(3))
  local out = {}
  for i = 2, #lines do
    local f = split_csv_line(lines[i])
    local row = {}
    for j, name in ipairs(cols) do row[name] = f[j] end
    if row.pxname == h.backend and row.svname and row.svname ~= "BACKEND" then
      local s = { name = row.svname, addr = row.addr, check_status = row.check_status ~= "" and row.check_status or nil }
      for _, k in ipairs(NUMERIC) do s[k] = tonumber(row[k]) or 0 end
      s.status = (row.status or ""):match("^(%S+)") or ""
      s.revision, s.index = row.svname:match("^(.*)%-(%d+)$")
      s.index = tonumber(s.index)
      out[row.svname] = s
    end
  end
  return out
end

local function servers_of(all, revision)
  local out = {}
  for name, s in pairs(all) do
    if s.revision == revision then out[#out + 1] = s end
  end
  sort(out, function(a, b) return a.index < b.index end)
  return out
end

-- ---- weights ----

-- weights(shares, counts) -> { [revision] = per-server weight }. A revision's percent is split
-- over its servers; the largest per-server weight is M.MAX_WEIGHT so the rounding is as fine
-- as HAProxy allows. A revision with percent > 0 never rounds to 0 (it keeps at least weight
-- 1 per server); one at 0 always gets 0.
function M.weights(shares, counts)
  local top = 0
  for rev, p in pairs(shares) do
    local n = counts[rev] or 0
    if p > 0 and n > 0 and p / n > top then top = p / n end
  end
  local out = {}
  for rev, p in pairs(shares) do
    local n = counts[rev] or 0
    if p <= 0 or n == 0 then
      out[rev] = 0
    else
      local w = floor(p / n / top * M.MAX_WEIGHT + 0.5)
      out[rev] = w < 1 and 1 or w
    end
  end
  return out
end

-- ---- the interface ----

local function ctx(fname, service, revision)
  check_service(fname, service)
  check_revision(fname, revision)
  return target(service)
end

-- Drains the servers, waits (bounded) for their sessions and queue to empty, then deletes
-- them (HAProxy deletes only a server in maintenance without connections).
local function remove_servers(h, names)
  for _, name in ipairs(names) do
    local ok, err = command(h.socket, format("set server %s/%s state drain", h.backend, name))
    if not ok then return nil, err end
  end
  local deadline = time.monotonic() + M.DRAIN_TIMEOUT
  local pending = names
  while #pending > 0 do
    local all, err = server_stats(h)
    if not all then return nil, err end
    local left = {}
    for _, name in ipairs(pending) do
      local s = all[name]
      if s and (s.scur > 0 or s.qcur > 0) then
        left[#left + 1] = name
      elseif s then
        local ok, derr = command(h.socket, format("set server %s/%s state maint", h.backend, name))
        if not ok then return nil, derr end
        ok, derr = command(h.socket, format("del server %s/%s", h.backend, name), { "^Server deleted" })
        -- idle keep-alive connections to the server are released shortly after maint
        if not ok and not derr:find("connections", 1, true) then return nil, derr end
        if not ok then left[#left + 1] = name end
      end
    end
    pending = left
    if #pending > 0 then
      if time.monotonic() > deadline then
        return nil, format("haproxy: remove: servers %s of backend %s still have connections after %ds",
          concat(pending, ", "), h.backend, M.DRAIN_TIMEOUT)
      end
      time.sleep(0.1)
    end
  end
  return true
end

-- sync(service, revision, endpoints): servers <revision>-1..n at those addresses (added with
-- health checks and weight 0 — no traffic until set_weights — or re-pointed); servers of the
-- revision beyond n are drained and removed. -> true or nil, err
function M.sync(service, revision, endpoints)
  local h, err = ctx("sync", service, revision)
  if type(endpoints) ~= "table" then error("haproxy.sync: endpoints: list of {host, port} expected", 2) end
  for i, e in ipairs(endpoints) do
    local host, port = type(e) == "table" and (e.host or e[1]), type(e) == "table" and tonumber(e.port or e[2])
    if type(host) ~= "string" or not host:match("^[%w.:%-%[%]]+$") or not port or port < 1 or port > 65535 or port % 1 ~= 0 then
      error(format("haproxy.sync: endpoints[%d]: {host = string, port = 1..65535} expected", i), 2)
    end
  end
  if not h then return nil, err end
  local all, serr = server_stats(h)
  if not all then return nil, serr end
  local existing = servers_of(all, revision)
  -- A revision that has traffic keeps its share when it grows: new servers get the weight
  -- its servers have now.
  local live_weight = 0
  for _, s in ipairs(existing) do
    if s.status ~= "DRAIN" and s.status ~= "MAINT" and s.uweight > live_weight then live_weight = s.uweight end
  end
  for i, e in ipairs(endpoints) do
    local host, port = e.host or e[1], tonumber(e.port or e[2])
    local name = format("%s/%s-%d", h.backend, revision, i)
    local cur = all[format("%s-%d", revision, i)]
    if not cur then
      local ok, cerr = command(h.socket, format("add server %s %s:%d %s weight %d", name, host, port, h.check or "check", live_weight),
        { "^New server registered" })
      if not ok then return nil, cerr end
      if (h.check or "check"):match("%f[%w]check%f[^%w]") then
        ok, cerr = command(h.socket, "enable health " .. name)
        if not ok then return nil, cerr end
      end
      ok, cerr = command(h.socket, "enable server " .. name)
      if not ok then return nil, cerr end
    elseif cur.addr ~= format("%s:%d", host, port) then
      local ok, cerr = command(h.socket, format("set server %s addr %s port %d", name, host, port),
        { "changed", "no need to change" })
      if not ok then return nil, cerr end
    end
  end
  local gone = {}
  for _, s in ipairs(existing) do
    if s.index > #endpoints then gone[#gone + 1] = s.name end
  end
  if #gone > 0 then return remove_servers(h, gone) end
  return true
end

-- set_weights(service, {[revision] = percent}): each revision's percent (0..100, summing to
-- 100) split over its servers. Servers of revisions not named keep their weight.
function M.set_weights(service, shares)
  check_service("set_weights", service)
  if type(shares) ~= "table" then error("haproxy.set_weights: shares: {[revision] = percent} expected", 2) end
  local sum = 0
  for rev, p in pairs(shares) do
    check_revision("set_weights", rev)
    if type(p) ~= "number" or p < 0 or p > 100 or p ~= p then
      error(format("haproxy.set_weights: shares[%s]: a percent from 0 to 100 expected", rev), 2)
    end
    sum = sum + p
  end
  -- (percents such as 33.3 + 33.3 + 33.4 do not add up to exactly 100 in binary)
  if sum < 100 - 1e-9 or sum > 100 + 1e-9 then error(format("haproxy.set_weights: shares: percents add up to %g, 100 expected", sum), 2) end
  local h, err = target(service)
  if not h then return nil, err end
  local all, serr = server_stats(h)
  if not all then return nil, serr end
  local counts, by_rev = {}, {}
  for rev in pairs(shares) do
    by_rev[rev] = servers_of(all, rev)
    counts[rev] = #by_rev[rev]
    if counts[rev] == 0 and shares[rev] > 0 then
      return nil, format("haproxy: set_weights: revision '%s' has no servers in backend %s (sync it first)", rev, h.backend)
    end
  end
  local w = M.weights(shares, counts)
  -- Raise the revisions gaining traffic before lowering the others, so no moment has every
  -- server at weight 0.
  local revs = {}
  for rev in pairs(shares) do revs[#revs + 1] = rev end
  sort(revs, function(a, b) return shares[a] > shares[b] end)
  for _, rev in ipairs(revs) do
    for _, s in ipairs(by_rev[rev]) do
      local ok, cerr = command(h.socket, format("set server %s/%s weight %d", h.backend, s.name, w[rev]))
      if not ok then return nil, cerr end
    end
  end
  return true
end

local function set_state(fname, service, revision, state)
  local h, err = ctx(fname, service, revision)
  if not h then return nil, err end
  local all, serr = server_stats(h)
  if not all then return nil, serr end
  local list = servers_of(all, revision)
  if #list == 0 then return nil, format("haproxy: %s: revision '%s' has no servers in backend %s", fname, revision, h.backend) end
  for _, s in ipairs(list) do
    local ok, cerr = command(h.socket, format("set server %s/%s state %s", h.backend, s.name, state))
    if not ok then return nil, cerr end
  end
  return true
end

-- drain: no new requests (HAProxy's DRAIN state); requests in flight finish.
function M.drain(service, revision) return set_state("drain", service, revision, "drain") end
-- enable: back to READY (after drain or disable).
function M.enable(service, revision) return set_state("enable", service, revision, "ready") end
-- disable: maintenance: no traffic at all.
function M.disable(service, revision) return set_state("disable", service, revision, "maint") end

-- remove(service, revision): drain, wait for connections to end, delete the servers.
function M.remove(service, revision)
  local h, err = ctx("remove", service, revision)
  if not h then return nil, err end
  local all, serr = server_stats(h)
  if not all then return nil, serr end
  local names = {}
  for _, s in ipairs(servers_of(all, revision)) do names[#names + 1] = s.name end
  if #names == 0 then return true end
  return remove_servers(h, names)
end

-- stats(service) -> { servers = {[name] = {...}}, revisions = {[revision] = {...}} }: the
-- backend's counters from `show stat` (req_tot, hrsp_2xx, hrsp_5xx, ... cumulative since
-- HAProxy started or the server was added; qcur, scur now; rtime the mean response time of
-- the last 1024 requests, ms; status UP/DOWN/DRAIN/MAINT/...). A revision sums its servers'
-- counters; its rtime is their mean weighted by requests.
local SUMMED = { "req_tot", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
  "qcur", "scur", "stot", "econ", "eresp", "weight", "cli_abrt", "srv_abrt" }
function M.stats(service)
  check_service("stats", service)
  local h, err = target(service)
  if not h then return nil, err end
  local all, serr = server_stats(h)
  if not all then return nil, serr end
  local revisions = {}
  for _, s in pairs(all) do
    if s.revision then
      local r = revisions[s.revision]
      if not r then
        r = { servers = 0, up = 0, rtime = 0, _rw = 0 }
        for _, k in ipairs(SUMMED) do r[k] = 0 end
        revisions[s.revision] = r
      end
      r.servers = r.servers + 1
      if s.status == "UP" then r.up = r.up + 1 end
      for _, k in ipairs(SUMMED) do r[k] = r[k] + s[k] end
      r._rw = r._rw + s.rtime * s.req_tot
    end
  end
  for _, r in pairs(revisions) do
    r.rtime = r.req_tot > 0 and r._rw / r.req_tot or 0
    r._rw = nil
  end
  return { servers = all, revisions = revisions, backend = h.backend }
end

return M
