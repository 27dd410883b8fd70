-- steward.scaling.sources: where an autoscaler's metrics come from. Each constructor checks its
-- fields and returns a source {kind, per_instance, sample = fn(ctx, memo)}; the control loop
-- (steward.scaling.loop) calls sample every tick with ctx = {service, revision, instances, now}
-- (now: the monotonic clock) and a memo table it keeps per autoscaler and metric across policy
-- reloads, where a rate keeps its earlier samples. sample answers the shape steward.scaling.hpa
-- reads as obs.metrics[name]: {per_instance = {[instance id] = v}} or {value = v}, or
-- {error = "..."} (a metric that cannot be read is HPA's failed metric, never a made-up 0).
local time = require "steward.time"

local type, pairs, ipairs, tostring, error, format, pcall, require = type, pairs, ipairs, tostring, error,
  string.format, pcall, require
local remove = table.remove

local M = {}

M.KINDS = { haproxy = true, prometheus = true, events = true, proc = true }

local function fail(kind, field, reason) error(format("scaling.source.%s: %s: %s", kind, field, reason), 3) end

local function fields(kind, o, known)
  if type(o) ~= "table" then error(format("scaling.source.%s: table expected, got %s", kind, type(o)), 3) end
  for k in pairs(o) do
    if not known[k] then fail(kind, tostring(k), "unknown field") end
  end
end

local function window_of(kind, v, default)
  local w, err = time.parse_duration(v == nil and default or v)
  if not w or w <= 0 then fail(kind, "window", "a duration > 0 expected (\"1s\"): " .. tostring(err)) end
  return w
end

-- Keeps the samples of the last `window` seconds (and the one just before, so a rate always
-- spans at least the window once there is history) and answers the oldest kept.
local function remember(memo, now, value, window)
  local ring = memo.ring or {}
  memo.ring = ring
  ring[#ring + 1] = { t = now, v = value }
  while #ring > 2 and now - ring[2].t >= window do remove(ring, 1) end
  return ring[1]
end

-- ---- HAProxy: per server = per instance ----

local HAPROXY_METRICS = { rps = "req_tot", queue = "qcur", rtime = "rtime", scur = "scur" }

-- haproxy{metric = "rps"|"queue"|"rtime"|"scur" [, window = "1s"]}: rps is the requests per
-- second each server answered over the last window (HAProxy's counters are cumulative: a rate
-- is a difference of samples); queue (qcur) and scur are the current queue and sessions; rtime
-- HAProxy's mean response time of the server's last 1024 requests (ms). A server maps to the
-- instance whose address it points at.
function M.haproxy(o)
  fields("haproxy", o, { metric = true, window = true })
  local col = HAPROXY_METRICS[o.metric]
  if not col then fail("haproxy", "metric", "\"rps\", \"queue\", \"rtime\" or \"scur\" expected, got " .. tostring(o.metric)) end
  local metric, window = o.metric, window_of("haproxy", o.window, "1s")
  return { kind = "haproxy", metric = metric, per_instance = true, default_type = "pods",
    sample = function(ctx, memo)
      local haproxy = require "steward.deploy.haproxy"
      local st, err = haproxy.stats(ctx.service)
      if not st then return { error = tostring(err) } end
      local by_addr = {}
      for _, inst in ipairs(ctx.instances) do
        if inst.port and inst.revision == ctx.revision then by_addr[(inst.host or "127.0.0.1") .. ":" .. inst.port] = inst end
      end
      local per, seen = {}, 0
      memo.servers = memo.servers or {}
      for name, s in pairs(st.servers) do
        local inst = by_addr[s.addr or ""]
        if inst and s.revision == ctx.revision then
          if metric == "rps" then
            -- a server re-pointed at another instance starts a new history
            local m = memo.servers[name]
            if not m or m.addr ~= s.addr then m = { addr = s.addr }; memo.servers[name] = m end
            local first = remember(m, ctx.now, s.req_tot, window)
            local dt = ctx.now - first.t
            if dt > 0 then
              local d = s.req_tot - first.v
              if d < 0 then d = s.req_tot end -- re-added: counters restart at 0
              per[inst.id] = d / dt
              seen = seen + 1
            end
          else
            per[inst.id] = s[col] or 0
            seen = seen + 1
          end
        end
      end
      if seen == 0 then
        return { error = format("haproxy %s: no sample yet for %s %s (a rate needs two samples, a server its instance)",
          metric, ctx.service, ctx.revision), per_instance = per }
      end
      return { per_instance = per }
    end }
end

-- A deploy metric provider (steward.deploy.metrics.<module>) as a source of one value: its
-- errors are renamed to this module's and a failed sample is the source's error.
local function one_value(module, o, src)
  local ok, fn = pcall(require("steward.deploy.metrics." .. module).provider, o)
  if not ok then error("scaling.source." .. tostring(fn):gsub("^[^:]*:%d+: ", ""):gsub("^metrics%.", ""), 3) end
  src.sample = function()
    local v, err = fn()
    if v == nil then return { error = tostring(err) } end
    return { value = v }
  end
  return src
end

-- ---- Prometheus: one value ----

-- prometheus{url, query [, timeout]}: the instant query's one number (steward.deploy.metrics.
-- prometheus); the policy needs the `http` capability for the URL.
function M.prometheus(o)
  fields("prometheus", o, { url = true, query = true, timeout = true, headers = true })
  return one_value("prometheus", o, { kind = "prometheus", per_instance = false, default_type = "external",
    needs = { http = o.url } })
end

-- ---- steward's own events: one value ----

-- events{type, window [, match] [, select = "count"|"rate"]}: the events of a type over the last
-- window (steward.deploy.metrics.events).
function M.events(o)
  fields("events", o, { type = true, window = true, match = true, select = true, tenant = true })
  if o.select ~= nil and o.select ~= "count" and o.select ~= "rate" then
    fail("events", "select", "\"count\" or \"rate\" expected")
  end
  return one_value("events", o, { kind = "events", per_instance = false, default_type = "object" })
end

-- ---- /proc of the supervised instances: per instance ----

-- proc{metric = "cpu"|"rss" [, window = "1s"]}: cpu is the CPU seconds per second each
-- instance's process used over the last window (utime + stime of proc.info), rss its resident
-- memory in bytes. The instance's own process only (its children are not summed).
function M.proc(o)
  fields("proc", o, { metric = true, window = true })
  if o.metric ~= "cpu" and o.metric ~= "rss" then fail("proc", "metric", "\"cpu\" or \"rss\" expected, got " .. tostring(o.metric)) end
  local metric, window = o.metric, window_of("proc", o.window, "1s")
  return { kind = "proc", metric = metric, per_instance = true, default_type = metric == "cpu" and "resource" or "pods",
    sample = function(ctx, memo)
      local proc = require "steward.proc"
      local per, seen = {}, 0
      memo.pids = memo.pids or {}
      local alive = {}
      for _, inst in ipairs(ctx.instances) do
        if inst.pid and inst.revision == ctx.revision then
          local info = proc.info(inst.pid)
          if info and info.utime then
            alive[inst.pid] = true
            if metric == "rss" then
              if info.rss then per[inst.id] = info.rss; seen = seen + 1 end
            else
              local m = memo.pids[inst.pid]
              if not m or m.start ~= info.start_time then m = { start = info.start_time }; memo.pids[inst.pid] = m end
              local first = remember(m, ctx.now, info.utime + info.stime, window)
              local dt = ctx.now - first.t
              if dt > 0 then per[inst.id] = (info.utime + info.stime - first.v) / dt; seen = seen + 1 end
            end
          end
        end
      end
      for pid in pairs(memo.pids) do if not alive[pid] then memo.pids[pid] = nil end end
      if seen == 0 then
        return { error = format("proc %s: no sample yet for %s %s", metric, ctx.service, ctx.revision), per_instance = per }
      end
      return { per_instance = per }
    end }
end

return M
