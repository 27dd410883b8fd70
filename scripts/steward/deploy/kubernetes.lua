-- steward.deploy.kubernetes: a service's revisions on Kubernetes through its REST API
-- (steward.http): one Deployment and one Service per revision made from the operator's base
-- Deployment and Service, scale and image changes as merge patches guarded by
-- resourceVersion (retried on 409 Conflict), blue-green by switching the base Service's
-- selector, canary weights in a Gateway API HTTPRoute, readiness from watch streams. The API
-- URL, names, token and CA come from `services.<name>.kubernetes`, never from the caller.
local http = require "steward.http"
local json = require "steward.json"
local fs = require "steward.fs"
local time = require "steward.time"

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring, tonumber, error, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local format, sort, max, min, ceil = string.format, table.sort, math.max, math.min, math.ceil

local M = {}

M.CONFLICT_RETRIES = 5   -- attempts of one update that keeps meeting 409 Conflict
M.WATCH_SECONDS = 2      -- timeoutSeconds of one watch request (the next one resumes after it)
M.REVISION_LABEL = "steward.dev/revision"

local services = {}

-- configure(services): the config's `services` (set by the daemon; scripts and tests call it).
function M.configure(s)
  if s ~= nil and type(s) ~= "table" then error("kubernetes.configure: services table expected", 2) end
  services = s or {}
end

local function check_service(fname, service)
  if type(service) ~= "string" or service == "" then
    error(format("kubernetes.%s: service: service name expected, got %s", fname, type(service)), 3)
  end
end

-- Revisions become parts of object names (DNS-1123 labels) and label values.
local function check_revision(fname, revision)
  if type(revision) ~= "string" or not revision:match("^[a-z0-9][a-z0-9.-]*$") or revision:match("[.-]$") or #revision > 40 then
    error(format("kubernetes.%s: revision: a revision id usable in Kubernetes names (lower-case letters, digits, '-', '.'; at most 40) expected, got %s",
      fname, type(revision) == "string" and format("%q", revision) or type(revision)), 3)
  end
end

local NAME_FIELDS = { "namespace", "deployment" }
local function target(service)
  local s = services[service]
  if type(s) ~= "table" then return nil, format("kubernetes: unknown service '%s' (not in the config's services)", service) end
  local k = s.kubernetes
  local where = "services." .. service .. ".kubernetes"
  if type(k) ~= "table" then return nil, where .. ": not configured" end
  if type(k.api) ~= "string" or not k.api:match("^https?://") then return nil, where .. ".api: http(s):// URL of the API server expected" end
  for _, f in ipairs(NAME_FIELDS) do
    if type(k[f]) ~= "string" or not k[f]:match("^[a-z0-9][a-z0-9.-]*$") then return nil, format("%s.%s: a Kubernetes name expected", where, f) end
  end
  for _, f in ipairs { "service", "httproute", "container" } do
    if k[f] ~= nil and (type(k[f]) ~= "string" or not k[f]:match("^[a-z0-9][a-z0-9.-]*$")) then
      return nil, format("%s.%s: a Kubernetes name expected", where, f)
    end
  end
  for _, f in ipairs { "image", "token_file", "ca_file" } do
    if k[f] ~= nil and type(k[f]) ~= "string" then return nil, format("%s.%s: string expected", where, f) end
  end
  return k, where
end

-- ---- the REST calls ----

local function status_message(body, code)
  if type(body) == "table" and body.kind == "Status" then
    return format("%d %s: %s", code, tostring(body.reason or "?"), tostring(body.message or ""))
  end
  return format("HTTP %d", code)
end

-- call(k, method, path [, body, content_type]) -> decoded object, or nil, err, status
local function call(k, method, path, body, ctype)
  local headers = { Accept = "application/json" }
  if k.token_file then
    local token, terr = fs.read(k.token_file)
    if not token then return nil, format("kubernetes: token_file: %s", tostring(terr)) end
    headers.Authorization = "Bearer " .. token:gsub("%s+$", "")
  end
  local data
  if body ~= nil then
    local err
    data, err = json.encode(body)
    if not data then return nil, "kubernetes: " .. tostring(err) end
    headers["Content-Type"] = ctype or "application/json"
  end
  local res, err = http.request { url = k.api:gsub("/+$", "") .. path, method = method, body = data,
    headers = headers, timeout = k.timeout or "30s", cafile = k.ca_file }
  if not res then return nil, format("kubernetes: %s %s: %s", method, path, tostring(err)) end
  local obj = json.decode(res.body)
  if res.status >= 400 then
    return nil, format("kubernetes: %s %s: %s", method, path, status_message(obj, res.status)), res.status
  end
  if type(obj) ~= "table" then
    return nil, format("kubernetes: %s %s: HTTP %d with a body that is not a JSON object", method, path, res.status), res.status
  end
  return obj, nil, res.status
end

local function deployments(k) return format("/apis/apps/v1/namespaces/%s/deployments", k.namespace) end
local function services_path(k) return format("/api/v1/namespaces/%s/services", k.namespace) end
local function routes(k) return format("/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes", k.namespace) end

-- update(k, path, mutate): read-modify-write with optimistic concurrency. mutate(obj) returns
-- a merge patch (or nil when the object is already as wanted); the patch carries the
-- resourceVersion it was computed from, so a concurrent change makes it fail with 409 and
-- it is recomputed from the new version.
local function update(k, path, mutate)
  local last
  for _ = 1, M.CONFLICT_RETRIES do
    local obj, err = call(k, "GET", path)
    if not obj then return nil, err end
    local patch, merr = mutate(obj)
    if patch == nil then
      if merr then return nil, merr end
      return obj
    end
    patch.metadata = patch.metadata or {}
    patch.metadata.resourceVersion = obj.metadata and obj.metadata.resourceVersion
    local res, perr, code = call(k, "PATCH", path, patch, "application/merge-patch+json")
    if res then return res end
    if code ~= 409 then return nil, perr end
    last = perr
  end
  return nil, format("%s (gave up after %d attempts)", last, M.CONFLICT_RETRIES)
end

local function image_of(k, revision)
  return k.image and (k.image:gsub("{revision}", revision)) or nil
end

-- The container whose image a revision sets: `container`, else the first.
local function with_image(containers, k, image)
  local out, found = {}, false
  for i, c in ipairs(containers or {}) do
    local copy = {}
    for f, v in pairs(c) do copy[f] = v end
    if (k.container and c.name == k.container) or (not k.container and i == 1) then
      copy.image, found = image, true
    end
    out[i] = copy
  end
  if not found then return nil, format("kubernetes: deployment %s has no container %s", k.deployment, tostring(k.container or "")) end
  return json.array(out)
end

local function rev_name(base, revision) return base .. "-" .. revision end

-- ---- the interface ----

local function ctx(fname, service, revision, optional)
  check_service(fname, service)
  if not (optional and revision == nil) then check_revision(fname, revision) end
  return target(service)
end

local function check_count(fname, n)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then error(format("kubernetes.%s: n: a count >= 0 expected", fname), 3) end
end

local function copy_table(t)
  if type(t) ~= "table" then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = copy_table(v) end
  return setmetatable(o, getmetatable(t))
end

-- start(service, revision, n): the revision's Deployment <deployment>-<revision> (the base
-- Deployment's pod template, the revision's image and label) with n replicas, and, when an
-- HTTPRoute or Service is configured, its Service <service>-<revision>. Idempotent: an
-- existing revision is scaled to n. -> true or nil, err
function M.start(service, revision, n)
  local k, err = ctx("start", service, revision)
  check_count("start", n)
  if not k then return nil, err end
  local name = rev_name(k.deployment, revision)
  local _, gerr, code = call(k, "GET", deployments(k) .. "/" .. name)
  if code == 404 then
    local base, berr = call(k, "GET", deployments(k) .. "/" .. k.deployment)
    if not base then return nil, berr end
    local tmpl = copy_table(base.spec.template)
    tmpl.metadata = tmpl.metadata or {}
    tmpl.metadata.labels = tmpl.metadata.labels or {}
    tmpl.metadata.labels[M.REVISION_LABEL] = revision
    local image = image_of(k, revision)
    if image then
      local cs, cerr = with_image(tmpl.spec.containers, k, image)
      if not cs then return nil, cerr end
      tmpl.spec.containers = cs
    end
    local match = copy_table((base.spec.selector or {}).matchLabels or {})
    match[M.REVISION_LABEL] = revision
    local _, cerr = call(k, "POST", deployments(k), {
      apiVersion = "apps/v1", kind = "Deployment",
      metadata = { name = name, namespace = k.namespace, labels = { [M.REVISION_LABEL] = revision, ["app.kubernetes.io/managed-by"] = "steward" } },
      spec = { replicas = n, selector = { matchLabels = match }, template = tmpl },
    })
    if cerr then return nil, cerr end
  elseif gerr then
    return nil, gerr
  else
    local ok, serr = M.scale(service, revision, n)
    if not ok then return nil, serr end
  end
  if k.service then
    local sname = rev_name(k.service, revision)
    local _, serr, scode = call(k, "GET", services_path(k) .. "/" .. sname)
    if scode == 404 then
      local base, berr = call(k, "GET", services_path(k) .. "/" .. k.service)
      if not base then return nil, berr end
      local sel = copy_table(base.spec.selector or {})
      sel[M.REVISION_LABEL] = revision
      local ports = json.array {}
      for i, p in ipairs(base.spec.ports or {}) do
        ports[i] = { name = p.name, port = p.port, targetPort = p.targetPort, protocol = p.protocol }
      end
      local _, cerr = call(k, "POST", services_path(k), {
        apiVersion = "v1", kind = "Service",
        metadata = { name = sname, namespace = k.namespace, labels = { [M.REVISION_LABEL] = revision, ["app.kubernetes.io/managed-by"] = "steward" } },
        spec = { selector = sel, ports = ports },
      })
      if cerr then return nil, cerr end
    elseif serr then
      return nil, serr
    end
  end
  return true
end

-- scale(service, revision, n): spec.replicas of the revision's Deployment.
function M.scale(service, revision, n)
  local k, err = ctx("scale", service, revision)
  check_count("scale", n)
  if not k then return nil, err end
  local res, uerr = update(k, deployments(k) .. "/" .. rev_name(k.deployment, revision), function(obj)
    if obj.spec.replicas == n then return nil end
    return { spec = { replicas = n } }
  end)
  if not res then return nil, uerr end
  return true
end

-- set_image(service, revision [, deployment_revision]): the base Deployment (or the
-- revision's, when deployment_revision is given) runs the image of `revision` (the
-- configured image with {revision}): a rolling update by Kubernetes' own controller.
function M.set_image(service, revision, on)
  local k, err = ctx("set_image", service, revision)
  if on ~= nil then check_revision("set_image", on) end
  if not k then return nil, err end
  local image = image_of(k, revision)
  if not image then return nil, format("services.%s.kubernetes.image: not configured", service) end
  local name = on and rev_name(k.deployment, on) or k.deployment
  local res, uerr = update(k, deployments(k) .. "/" .. name, function(obj)
    local cs, cerr = with_image(obj.spec.template.spec.containers, k, image)
    if not cs then return nil, cerr end
    return { spec = { template = { spec = { containers = cs } } } }
  end)
  if not res then return nil, uerr end
  return true
end

-- stop(service, revision): deletes the revision's Deployment and Service (their pods go with
-- Kubernetes' own graceful termination).
function M.stop(service, revision)
  local k, err = ctx("stop", service, revision)
  if not k then return nil, err end
  local _, derr, code = call(k, "DELETE", deployments(k) .. "/" .. rev_name(k.deployment, revision))
  if derr and code ~= 404 then return nil, derr end
  if k.service then
    _, derr, code = call(k, "DELETE", services_path(k) .. "/" .. rev_name(k.service, revision))
    if derr and code ~= 404 then return nil, derr end
  end
  return true
end

local function status_of(obj)
  local st, spec, md = obj.status or {}, obj.spec or {}, obj.metadata or {}
  local s = {
    name = md.name, resource_version = md.resourceVersion,
    replicas = spec.replicas or 1, ready = st.readyReplicas or 0, updated = st.updatedReplicas or 0,
    available = st.availableReplicas or 0, current = st.replicas or 0,
    observed = (st.observedGeneration or 0) >= (md.generation or 0),
    image = (((spec.template or {}).spec or {}).containers or {})[1] and spec.template.spec.containers[1].image,
  }
  -- `kubectl rollout status`'s rule: the controller saw this generation, every replica is
  -- updated, available, and no old one is left.
  s.complete = s.observed and s.updated == s.replicas and s.available == s.replicas and s.current == s.replicas
  return s
end

-- status(service [, revision]) -> {replicas, ready, updated, available, current, observed,
-- complete, image, resource_version} of the revision's Deployment (the base one without).
function M.status(service, revision)
  local k, err = ctx("status", service, revision, true)
  if not k then return nil, err end
  local obj, gerr = call(k, "GET", deployments(k) .. "/" .. (revision and rev_name(k.deployment, revision) or k.deployment))
  if not obj then return nil, gerr end
  return status_of(obj)
end

-- wait_ready(service, revision, n, timeout): watches the revision's Deployment (the base one
-- when revision is nil) until n replicas are ready (n nil: the rollout is complete). A watch
-- from a resourceVersion the server no longer keeps (410 Gone/Expired) starts again from a
-- fresh read. -> status table, or nil, err ("timeout ..." with the last status)
function M.wait_ready(service, revision, n, timeout)
  local k, err = ctx("wait_ready", service, revision, true)
  if n ~= nil then check_count("wait_ready", n) end
  local limit = timeout and time.parse_duration(timeout)
  if timeout ~= nil and not limit then error("kubernetes.wait_ready: timeout: a duration expected", 2) end
  if not k then return nil, err end
  limit = limit or 300
  local name = revision and rev_name(k.deployment, revision) or k.deployment
  local deadline = time.monotonic() + limit
  local function done(s) if n then return s.ready >= n end return s.complete end
  local last
  local rv
  while true do
    if not rv then -- (re-)list: the current state and the version to watch from
      local list, lerr = call(k, "GET", deployments(k) .. "?fieldSelector=metadata.name%3D" .. name)
      if not list then return nil, lerr end
      local obj = (list.items or {})[1]
      if not obj then return nil, format("kubernetes: deployment %s not found in namespace %s", name, k.namespace) end
      last = status_of(obj)
      if done(last) then return last end
      rv = list.metadata and list.metadata.resourceVersion
    end
    local left = deadline - time.monotonic()
    if left <= 0 then break end
    local secs = max(1, min(M.WATCH_SECONDS, ceil(left)))
    local path = format("%s?watch=1&resourceVersion=%s&fieldSelector=metadata.name%%3D%s&timeoutSeconds=%d",
      deployments(k), rv, name, secs)
    local headers = { Accept = "application/json" }
    -- a watch answers a stream of JSON lines; the request ends with timeoutSeconds
    local res, werr
    if k.token_file then
      local token, terr = fs.read(k.token_file)
      if not token then return nil, "kubernetes: token_file: " .. tostring(terr) end
      headers.Authorization = "Bearer " .. token:gsub("%s+$", "")
    end
    res, werr = http.request { url = k.api:gsub("/+$", "") .. path, headers = headers, timeout = secs + 10, cafile = k.ca_file }
    if not res then return nil, format("kubernetes: GET %s: %s", path, tostring(werr)) end
    if res.status == 410 then
      rv = nil
    elseif res.status >= 400 then
      return nil, format("kubernetes: GET %s: %s", path, status_message(json.decode(res.body), res.status))
    else
      for line in res.body:gmatch("[^\n]+") do
        local ev = json.decode(line)
        if type(ev) ~= "table" then return nil, format("kubernetes: watch %s: a line that is not JSON", name) end
        if ev.type == "ERROR" then
          local o = ev.object or {}
          if o.code == 410 then rv = nil break end
          return nil, format("kubernetes: watch %s: %s", name, status_message(o, o.code or 500))
        elseif ev.type == "DELETED" then
          return nil, format("kubernetes: deployment %s was deleted while waiting for it", name)
        elseif type(ev.object) == "table" then
          last = status_of(ev.object)
          rv = ev.object.metadata and ev.object.metadata.resourceVersion or rv
          if done(last) then return last end
        end
      end
    end
  end
  return nil, format("kubernetes: timeout: deployment %s has %d of %s replicas ready after %gs", name,
    last and last.ready or 0, tostring(n or (last and last.replicas)), limit), last
end

-- switch(service, revision): blue-green: the base Service selects the revision's pods only.
function M.switch(service, revision)
  local k, err = ctx("switch", service, revision)
  if not k then return nil, err end
  if not k.service then return nil, format("services.%s.kubernetes.service: not configured (needed to switch)", service) end
  local res, uerr = update(k, services_path(k) .. "/" .. k.service, function(obj)
    local sel = (obj.spec or {}).selector or {}
    if sel[M.REVISION_LABEL] == revision then return nil end
    return { spec = { selector = { [M.REVISION_LABEL] = revision } } }
  end)
  if not res then return nil, uerr end
  return true
end

-- set_weights(service, {[revision] = percent}): canary: the HTTPRoute's backendRefs to the
-- revisions' Services <service>-<revision> get the percents as weights (added when missing,
-- with the port of the route's first backend); other backendRefs are left as they are.
function M.set_weights(service, shares)
  check_service("set_weights", service)
  if type(shares) ~= "table" then error("kubernetes.set_weights: shares: {[revision] = percent} expected", 2) end
  local sum = 0
  for rev, p in pairs(shares) do
    check_revision("set_weights", rev)
    if type(p) ~= "number" or p < 0 or p > 100 or p % 1 ~= 0 then
      error(format("kubernetes.set_weights: shares[%s]: a whole percent from 0 to 100 expected", rev), 2)
    end
    sum = sum + p
  end
  if sum ~= 100 then error(format("kubernetes.set_weights: shares: percents add up to %g, 100 expected", sum), 2) end
  local k, err = target(service)
  if not k then return nil, err end
  if not k.httproute or not k.service then
    return nil, format("services.%s.kubernetes.httproute and .service: needed for weights", service)
  end
  local revs = {}
  for rev in pairs(shares) do revs[#revs + 1] = rev end
  sort(revs)
  local res, uerr = update(k, routes(k) .. "/" .. k.httproute, function(obj)
    local rules = (obj.spec or {}).rules
    if type(rules) ~= "table" or #rules == 0 then return nil, format("kubernetes: httproute %s has no rules", k.httproute) end
    local out = json.array {}
    for i, rule in ipairs(rules) do
      local r = copy_table(rule)
      local refs, seen = json.array {}, {}
      local port
      for _, ref in ipairs(rule.backendRefs or {}) do
        port = port or ref.port
        local copy = copy_table(ref)
        for _, rev in ipairs(revs) do
          if ref.name == rev_name(k.service, rev) then copy.weight, seen[rev] = shares[rev], true end
        end
        refs[#refs + 1] = copy
      end
      for _, rev in ipairs(revs) do
        if not seen[rev] then refs[#refs + 1] = { name = rev_name(k.service, rev), port = port, weight = shares[rev] } end
      end
      r.backendRefs = refs
      out[i] = r
    end
    return { spec = { rules = out } }
  end)
  if not res then return nil, uerr end
  return true
end

-- weights(service) -> {[revision] = weight} as the HTTPRoute's first rule has them.
function M.weights(service)
  check_service("weights", service)
  local k, err = target(service)
  if not k then return nil, err end
  if not k.httproute or not k.service then return nil, format("services.%s.kubernetes.httproute: not configured", service) end
  local obj, gerr = call(k, "GET", routes(k) .. "/" .. k.httproute)
  if not obj then return nil, gerr end
  local out = {}
  local prefix = k.service .. "-"
  for _, ref in ipairs((((obj.spec or {}).rules or {})[1] or {}).backendRefs or {}) do
    if type(ref.name) == "string" and ref.name:sub(1, #prefix) == prefix then
      out[ref.name:sub(#prefix + 1)] = ref.weight or 1
    end
  end
  return out
end

return M
