-- steward.deploy.analysis_define: checks an analysis spec (Argo Rollouts' AnalysisTemplate
-- fields, in Lua) and splits it into the plain data a run stores (names, intervals, counts,
-- limits) and the functions that stay in the policy's code (providers, conditions). Argo's own
-- validation rules (utils/analysis/factory.go, ValidateMetric) are kept, with their reasons.
local time = require "steward.time"

local type, pairs, ipairs, error, tostring, format = type, pairs, ipairs, error, tostring, string.format
local floor = math.floor

local M = {}

-- Argo's defaults (pkg/apis/rollouts/v1alpha1 and utils/defaults).
M.DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
M.DEFAULT_MEASUREMENT_HISTORY_LIMIT = 10

local SPEC_FIELDS = { metrics = true, dry_run = true }
local METRIC_FIELDS = {
  name = true, provider = true, interval = true, count = true, initial_delay = true,
  success_condition = true, failure_condition = true, failure_limit = true, inconclusive_limit = true,
  consecutive_error_limit = true, consecutive_success_limit = true, dry_run = true, keep = true,
}

local function fail(where, msg) error("analysis: " .. where .. ": " .. msg, 0) end

local function duration(where, v)
  if v == nil then return nil end
  local secs, err = time.parse_duration(v)
  if not secs or secs < 0 then
    fail(where, format("duration like \"30s\" or \"5m\" expected, got %s%s", tostring(v), err and (" (" .. err .. ")") or ""))
  end
  return secs
end

local function integer(where, v, min, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= floor(v) or v < min then
    fail(where, format("integer >= %d expected, got %s", min, tostring(v)))
  end
  return v
end

-- compile(spec) -> {plain = {...} (stored with the run), fns = {[name] = {provider, success, failure}}}
-- Raises an error naming the field on a bad spec.
function M.compile(spec)
  if type(spec) ~= "table" then error("analysis: spec: table expected, got " .. type(spec), 0) end
  if spec.__analysis then return spec end
  for k in pairs(spec) do
    if not SPEC_FIELDS[k] then fail(tostring(k), "unknown field") end
  end
  if type(spec.metrics) ~= "table" or #spec.metrics == 0 then fail("metrics", "a non-empty list of metrics expected") end
  local plain, fns, seen = {}, {}, {}
  for i, m in ipairs(spec.metrics) do
    local w = "metrics[" .. i .. "]"
    if type(m) ~= "table" then fail(w, "table expected") end
    for k in pairs(m) do
      if not METRIC_FIELDS[k] then fail(w .. "." .. tostring(k), "unknown field") end
    end
    if type(m.name) ~= "string" or not m.name:match("^[%w._-]+$") then
      fail(w .. ".name", "a name of letters, digits, '.', '_' or '-' expected")
    end
    if seen[m.name] then fail(w .. ".name", "duplicate name '" .. m.name .. "'") end
    seen[m.name] = true
    for _, f in ipairs { "provider", "success_condition", "failure_condition" } do
      if m[f] ~= nil and type(m[f]) ~= "function" then fail(w .. "." .. f, "function expected, got " .. type(m[f])) end
    end
    local p = {
      name = m.name,
      interval = duration(w .. ".interval", m.interval),
      initial_delay = duration(w .. ".initial_delay", m.initial_delay),
      count = integer(w .. ".count", m.count, 0, nil),
      failure_limit = integer(w .. ".failure_limit", m.failure_limit, -1, 0),
      inconclusive_limit = integer(w .. ".inconclusive_limit", m.inconclusive_limit, 0, 0),
      consecutive_error_limit = integer(w .. ".consecutive_error_limit", m.consecutive_error_limit, 0,
        M.DEFAULT_CONSECUTIVE_ERROR_LIMIT),
      consecutive_success_limit = integer(w .. ".consecutive_success_limit", m.consecutive_success_limit, 0, 0),
      keep = integer(w .. ".keep", m.keep, 1, M.DEFAULT_MEASUREMENT_HISTORY_LIMIT),
      dry_run = m.dry_run == true or nil,
    }
    if m.dry_run ~= nil and type(m.dry_run) ~= "boolean" then fail(w .. ".dry_run", "boolean expected") end
    if p.count == 0 then p.count = nil end
    if p.interval == 0 then fail(w .. ".interval", "a positive duration expected") end
    -- Argo's ValidateMetric rules.
    local count, fl, csl = p.count or 0, p.failure_limit, p.consecutive_success_limit
    if csl == 0 and fl == -1 then
      fail(w, "failure_limit and consecutive_success_limit cannot both be disabled")
    end
    if count > 0 then
      if fl >= 0 and count < fl + csl then
        fail(w .. ".count", format("must be >= failure_limit + consecutive_success_limit (%d + %d)", fl, csl))
      elseif fl < 0 and count < csl then
        fail(w .. ".count", "must be >= consecutive_success_limit")
      end
      if count < p.inconclusive_limit then fail(w .. ".count", "must be >= inconclusive_limit") end
    end
    if count > 1 and not p.interval then fail(w .. ".interval", "needed when count > 1") end
    plain[i] = p
    fns[m.name] = { provider = m.provider, success = m.success_condition, failure = m.failure_condition }
  end
  -- Argo's spec.dryRun: rules naming metrics (here Lua patterns, anchored); each must match one.
  if spec.dry_run ~= nil then
    if type(spec.dry_run) ~= "table" then fail("dry_run", "list of metric name patterns expected") end
    for i, pat in ipairs(spec.dry_run) do
      if type(pat) ~= "string" then fail("dry_run[" .. i .. "]", "string expected") end
      local n = 0
      for _, p in ipairs(plain) do
        if p.name:match("^" .. pat .. "$") then p.dry_run, n = true, n + 1 end
      end
      if n == 0 then fail("dry_run[" .. i .. "]", "the rule '" .. pat .. "' matches no metric name") end
    end
  end
  return { __analysis = true, plain = plain, fns = fns }
end

return M
