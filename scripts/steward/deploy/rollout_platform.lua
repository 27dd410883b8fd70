-- steward.deploy.rollout_platform: what a rollout asks of the place a service runs, in three
-- verbs — ensure(revision, n) (n ready instances of a revision, in the traffic pool), weights
-- {[revision] = percent}, retire(revision) (drain, out of the pool, stopped) — over the drivers
-- the operator's `services` entry names: the supervisor and HAProxy for a service with `run` and
-- `haproxy`, Kubernetes for one with `kubernetes`. The drivers resolve everything else (commands,
-- sockets, URLs) from the same `services` entry; a policy never names them.
local type, pairs, tostring, format, pcall, require = type, pairs, tostring, string.format, pcall, require

local M = {}

-- The drivers by name; nil entries are required on first use. A spec may hand its own doubles
-- to steward.deploy.rollout's engine (opts.drivers) instead.
local function driver(drivers, name)
  local d = drivers and drivers[name]
  if d then return d end
  local ok, mod = pcall(require, "steward.deploy." .. name)
  if not ok then return nil, format("the %s driver (steward.deploy.%s) is not available: %s", name, name, tostring(mod)) end
  return mod
end

local function call(d, what, fname, ...)
  local f = d[fname]
  if type(f) ~= "function" then return nil, format("%s has no %s()", what, fname) end
  local r, err = f(...)
  if r == nil then return nil, format("%s.%s: %s", what, fname, tostring(err)) end
  return r
end

local Local = {}
Local.__index = Local

function Local:ensure(rev, n)
  local sup, hap = self.sup, self.hap
  if n <= 0 then return self:retire(rev) end
  -- scale starts up to n (those running count) and drains those above n
  local ok, err = call(sup, "supervisor", sup.scale and "scale" or "start", self.service, rev, n)
  if not ok then return nil, err end
  ok, err = call(sup, "supervisor", "wait_ready", self.service, rev, n, self.ready_timeout)
  if not ok then return nil, err end
  local eps
  eps, err = call(sup, "supervisor", "endpoints", self.service, rev)
  if not eps then return nil, err end
  return call(hap, "haproxy", "sync", self.service, rev, eps)
end

function Local:weights(w)
  return call(self.hap, "haproxy", "set_weights", self.service, w)
end

-- Out of the backend first (remove drains, waits for the connections, deletes the servers),
-- then the processes stop (the supervisor drains them: stop signal, grace, SIGKILL).
function Local:retire(rev)
  local ok, err = call(self.hap, "haproxy", "remove", self.service, rev)
  if not ok then return nil, err end
  return call(self.sup, "supervisor", "stop", self.service, rev)
end

local Kube = {}
Kube.__index = Kube

function Kube:ensure(rev, n)
  local k = self.k
  -- start creates the revision's Deployment (and Service), or scales an existing one to n
  local ok, err = call(k, "kubernetes", n > 0 and "start" or "scale", self.service, rev, n)
  if not ok then return nil, err end
  if n <= 0 then return true end
  return call(k, "kubernetes", "wait_ready", self.service, rev, n, self.ready_timeout)
end

-- Weights go to the HTTPRoute when the service has one; without one only a switch (one
-- revision at 100) can be made, by the Service's selector (blue-green).
function Kube:weights(w)
  if self.def.httproute then return call(self.k, "kubernetes", "set_weights", self.service, w) end
  for rev, pct in pairs(w) do
    if pct == 100 then return call(self.k, "kubernetes", "switch", self.service, rev) end
  end
  return nil, format("services.%s.kubernetes.httproute: needed to split traffic between revisions (a canary)", self.service)
end

function Kube:retire(rev) return call(self.k, "kubernetes", "stop", self.service, rev) end

-- new(service, def, drivers, opts) -> platform | nil, err. def: the service's `services` entry.
function M.new(service, def, drivers, opts)
  if type(def) ~= "table" then
    return nil, format("service %s is not declared in the config's services", tostring(service))
  end
  local ready_timeout = opts and opts.ready_timeout or 600
  if def.kubernetes then
    local k, err = driver(drivers, "kubernetes")
    if not k then return nil, err end
    return setmetatable({ service = service, k = k, def = def.kubernetes, ready_timeout = ready_timeout }, Kube)
  end
  if def.run and def.haproxy then
    local sup, err = driver(drivers, "supervisor")
    if not sup then return nil, err end
    local hap
    hap, err = driver(drivers, "haproxy")
    if not hap then return nil, err end
    return setmetatable({ service = service, sup = sup, hap = hap, ready_timeout = ready_timeout }, Local)
  end
  return nil, format("service %s: a rollout needs `run` and `haproxy`, or `kubernetes`, in its services entry", service)
end

-- replicas(def) -> the instance count the service runs at
function M.replicas(def)
  if type(def) ~= "table" then return 1 end
  if def.run and type(def.run.instances) == "number" then return def.run.instances end
  if def.kubernetes and type(def.kubernetes.replicas) == "number" then return def.kubernetes.replicas end
  return 1
end

return M
